"""The notebooks' parameters: one spec per notebook, checked in one place, with each dataset's defaults.

Each notebook under ``notebooks/`` has one cell tagged ``parameters`` whose values are the defaults in
:data:`NOTEBOOKS` (a test keeps the two equal). papermill injects its ``-p``/``-y``/``-f`` values in a cell after
that one, and the next cell calls :func:`notebook_setup`, which

1. rejects names that are neither a parameter of the notebook nor a :class:`~autoemb_core.config.Config`
   setting (papermill itself only warns about them), and checks the notebook's own knobs (``methods``,
   ``seeds``, Figure 1's sizes, ...), which are handed to the experiment functions;
2. builds the runs' base ``Config`` with :func:`autoemb_core.config.resolve`, as the command line does: the
   values given > ``params/<dataset>.yaml`` > the notebook's defaults > ``Config``'s. Config checks them.
   A value is given when papermill injected it (its injected-parameters cell, read from the kernel's input
   history), even if it equals the notebook's default, or when it differs from that default. So
   ``-p dataset netflix`` takes ``params/netflix.yaml``'s ``max_interactions: null``, the whole stream, and
   ``-p max_interactions 10000`` keeps 10,000 even where that is the notebook's own default.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

from . import tuning
from .config import SETTINGS, Config, Figure1Settings, from_layers, layers, must, not_one_of, params_dir
from .methods import FIXED, METHODS, PAPER, TABLE2
from .data import load_dataset
from .interactions import DataError, Interactions

DEFAULT_DATASET = Config.dataset
# Config settings a notebook sets itself from its knobs, never from a parameter of the same name.
RESERVED = {"method": "methods", "seed": "seeds"}
PAPERMILL = "# Parameters"  # the first line of the cell papermill injects


# -- the notebooks' own knobs: each check returns the normalised value or raises DataError --------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _listed(name, value, scalar=(int, float, str)):
    """A list parameter as a list: a list as it is; ``"[0, 1]"`` (a YAML or JSON list) parsed; ``"fse,autoemb"``
    split at its commas; a single value (``-p seeds 0``) as a one-item list."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise must(name, f"a YAML or JSON list ({str(exc).splitlines()[0]})", value,
                       hint=f"e.g. -p {name} '[0, 1, 2]'") from None
        return value
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, scalar) and not isinstance(value, bool):
        return [value]
    return value


def choice(*allowed) -> Callable:
    def check(name, value):
        if value not in allowed:
            raise not_one_of(name, value, allowed)
        return value
    return check


def names_from(allowed) -> Callable:
    def check(name, value):
        items = _listed(name, value, scalar=str)
        if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) for v in items):
            raise must(name, "a non-empty list of names", value,
                       hint=f"e.g. -y '{name}: [{allowed[0]}, {allowed[-1]}]' or -p {name} {allowed[0]},{allowed[-1]}")
        unknown = [v for v in items if v not in allowed]
        if unknown or len(set(items)) != len(items):
            raise must(name, f"distinct names, not unknown or repeated {unknown or items}", value,
                       hint="choose from " + ", ".join(allowed))
        return list(items)
    return check


def int_list(minimum: int = 0, increasing: bool = False) -> Callable:
    def check(name, value):
        items = _parsed(name, value, int)
        if not isinstance(items, (list, tuple)) or not items or not all(_is_int(v) and v >= minimum for v in items):
            raise must(name, f"a non-empty list of integers >= {minimum}", value,
                       hint=f"e.g. -y '{name}: [0, 1, 2]' or -p {name} 0,1,2")
        if len(set(items)) != len(items) or (increasing and list(items) != sorted(items)):
            raise must(name, "distinct values" + (", increasing" if increasing else ""), value)
        return list(items)
    return check


def non_negative_int(name, value):
    if not (_is_int(value) and value >= 0):
        raise must(name, "an integer >= 0", value)
    return value


def positive_int(name, value):
    if not _is_int(value) or value < 1:
        raise must(name, "a positive integer", value)
    return value


def fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise must(name, "a number in (0, 1]", value, hint=f"e.g. -p {name} 0.2")
    return float(value)


def folder(name, value):
    if not isinstance(value, (str, Path)):
        raise must(name, "a folder path", value)
    return str(value)


def _parsed(name, value, kind):
    """:func:`_listed`, with the items of a comma-separated string read as ``kind`` (kept as strings where they
    do not parse, for the check to refuse)."""
    if isinstance(value, str) and not value.strip().startswith("["):
        try:
            return [kind(v) for v in _listed(name, value)]
        except ValueError:
            return value
    return _listed(name, value, scalar=(int, float))


def float_list(name, value):
    items = _parsed(name, value, float)
    if not isinstance(items, (list, tuple)) or not items or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in items):
        raise must(name, "a non-empty list of numbers >= 0", value, hint=f"e.g. -y '{name}: [0.0, 0.1]'")
    return [float(v) for v in items]


def threshold_pairs(name, value):
    """A list of increasing threshold lists, one per point; a string ``8,64;64,512`` is read as two, a YAML or
    JSON string as its list, and a flat list of numbers (or one number) as one point."""
    if isinstance(value, str) and not value.strip().startswith("["):
        items = [[part.strip() for part in point.split(",") if part.strip()] for point in value.split(";")]
    else:
        items = _listed(name, value, scalar=int)
        if isinstance(items, list) and items and all(_is_int(x) for x in items):
            items = [items]
    try:
        pairs = [[int(x) for x in item] for item in items]
    except (TypeError, ValueError):
        pairs = None
    if not pairs or any(len(p) < 1 or p != sorted(set(p)) or p[0] < 1 for p in pairs):
        raise must(name, "a non-empty list of increasing positive thresholds per point", value,
                   hint=f"e.g. -y '{name}: [[8, 64], [64, 512]]' or -p {name} '8,64;64,512'")
    return pairs


def scheduler_address(name, value):
    """None (this kernel), ``local`` or a ``tcp://`` address: see :func:`autoemb_core.sweep.execute`."""
    if value is None or value == "local" or (isinstance(value, str) and value.startswith("tcp://")):
        return value
    raise must(name, "None, 'local' or a 'tcp://HOST:PORT' address", value,
               hint=f"e.g. -p {name} local -p workers 2, or -p {name} tcp://10.0.0.5:8786")


@dataclass(frozen=True)
class Knob:
    """One notebook parameter: its default and help, and either its check (a knob of the notebook's own) or
    ``check=None`` for a Config setting, which goes into the runs' Config, checked there."""

    default: Any
    check: Callable[[str, Any], Any] | None
    help: str

    @property
    def config(self) -> bool:
        return self.check is None


def _common(task: Knob, methods: list, seeds: list, max_interactions, folder_name: str, allowed=METHODS,
            workers: int = 1) -> dict:
    return {
        "dataset": Knob(DEFAULT_DATASET, None, "dataset name; its defaults come from params/<dataset>.yaml"),
        "data_dir": Knob(None, None, "folder holding <dataset>/; None: params/<dataset>.yaml's, "
                         "else $AUTOEMB_DATA_DIR or ./data"),
        "task": task,
        "methods": Knob(methods, names_from(allowed), "methods to run"),
        "seeds": Knob(seeds, int_list(0), "one run per seed"),
        "max_interactions": Knob(max_interactions, None, "keep the first N interactions in time; None: all"),
        "device": Knob("auto", None, "cuda where there is one, else cpu"),
        "scheduler": Knob(None, scheduler_address, "None: the runs one after another in this kernel; 'local': a "
                          "dask cluster of `workers` processes here; 'tcp://HOST:PORT': an existing dask scheduler"),
        "workers": Knob(workers, positive_int, "runs at a time (in processes of their own, or local dask workers)"),
        "results_dir": Knob(f"results/{{dataset}}/{folder_name}", folder,
                            "where tables and figures go; relative to the repository root; {dataset} is replaced"),
    }


_ONE_TASK = Knob("regression", None, "regression (MSE) or classification (CE)")
TUNE = Knob(tuning.TRIALS, non_negative_int, "a method with no tuned values for a task (none in params/<dataset>.yaml) "
            "is tuned first on the stream's offline stage with this many trials, into results_dir/tuned.yaml; 0: "
            "it runs at the defaults")
QUICK = Figure1Settings.quick()  # notebook 01's Figure 1, the demo's

NOTEBOOKS: dict[str, dict[str, Knob]] = {
    "preliminary": {
        **_common(_ONE_TASK, list(FIXED), [0, 1], 30_000, "01_preliminary",
                  allowed=FIXED),
        "n_test": Knob(QUICK.n_test, positive_int, "held-out test ratings per study user"),
        "n_validation": Knob(QUICK.n_validation, positive_int, "validation ratings per study user (early stopping)"),
        "train_sizes": Knob(list(QUICK.train_sizes), int_list(1, increasing=True),
                            "the grid of x, training ratings per study user"),
        "max_epochs": Knob(QUICK.max_epochs, positive_int,
                           "most epochs per model; training stops earlier when validation stalls"),
        "patience": Knob(QUICK.patience, positive_int, "epochs without a better validation loss before stopping"),
    },
    "overall": {
        **_common(Knob("both", choice("regression", "classification", "both"),
                       "regression, classification or both (Table 2 has both)"),
                  list(TABLE2), [0, 1, 2], 10_000, "02_overall"),
        "tune_trials": TUNE,
    },
    "popularity": {
        **_common(_ONE_TASK, list(PAPER), [0, 1], 20_000, "03_popularity"),
        "tune_trials": TUNE,
        "side": Knob("user", choice("user", "item"), "whose popularity the buckets of Figures 6 and 7 count"),
        "min_samples": Knob(200, positive_int, "the top popularity bucket holds at least this many samples"),
        "weights_method": Knob("autoemb", choice("autoemb", "sam", "darts"), "whose weights Figure 7 shows"),
        "record_alpha_every": Knob(2, None, "record the selection weights every this many batches"),
    },
    "memory": {
        **{k: v for k, v in _common(_ONE_TASK, ["fse"], [0, 1], 10_000, "05_memory", workers=2).items()
           if k != "methods"},
        "fse_widths": Knob([2, 16, 128, 146], int_list(1, increasing=True), "FSE's widths, one point each"),
        "thresholds": Knob([[8, 64]], threshold_pairs, "the popularity rule's thresholds (mixed storage), one "
                           "point per list"),
        "penalties": Knob([0.0, 0.1], float_list, "hard AutoEmb's memory penalties, one point each"),
        "soft": Knob(True, choice(True, False), "also soft AutoEmb"),
    },
    "data_efficiency": {
        **_common(_ONE_TASK, list(PAPER), [0, 1], 20_000, "04_data_efficiency"),
        "tune_trials": TUNE,
        "points": Knob(20, positive_int, "points along the offline stage"),
        "early_fraction": Knob(0.2, fraction, "the early, data-poor part of the offline stage that the claim reads"),
    },
}


def repo_root() -> Path:
    """The repository holding ``params/`` and ``notebooks/``."""
    return params_dir().parent


def _literal(value) -> bool:
    """Values papermill can inject: None, bool, numbers, strings, and lists or dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_literal(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _literal(v) for k, v in value.items())
    return False


def _display_path(path, root: Path) -> str:
    """A path relative to the repository root where it lies inside it, so outputs do not name the machine."""
    path = Path(path)
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


@dataclass
class Setup:
    """A notebook's resolved parameters: the base ``Config`` of its runs, every parameter's value (also as
    attributes: ``setup.methods``), where each came from, and the results folder."""

    notebook: str
    config: Config
    values: dict
    results_dir: Path
    sources: dict  # setting -> "default", "params/<dataset>.yaml" or "given"
    root: Path = field(repr=False, default_factory=repo_root)

    def __getattr__(self, name):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    @property
    def tasks(self) -> list[str]:
        """The tasks to run: ``task``, or both for ``task='both'``."""
        return ["regression", "classification"] if self.values["task"] == "both" else [self.values["task"]]

    def load(self) -> Interactions:
        """The dataset, cut to ``max_interactions``."""
        c = self.config
        return load_dataset(c.dataset, c.data_dir, max_interactions=c.max_interactions)

    def tune(self, data: Interactions) -> Config:
        """Tune first every method with no tuned values for a task (:func:`autoemb_core.tuning.ensure_tuned`,
        ``tune_trials`` trials on ``data``'s offline stage); the runs' Config then carries the chosen values."""
        self.config = tuning.ensure_tuned(self.config, data, self.methods, self.tasks, self.tune_trials,
                                          self.results_dir)
        return self.config

    def table(self) -> pd.DataFrame:
        """Each parameter (and each other Config setting given or read from a file): value and source."""
        rows = []
        for name, source in self.sources.items():
            if name == "results_dir":
                value = _display_path(self.results_dir, self.root)
            elif name == "data_dir":
                value = None if self.config.data_dir is None else _display_path(self.config.data_dir, self.root)
            else:
                value = self.values[name] if name in self.values else getattr(self.config, name)
            rows.append({"parameter": name, "value": value if isinstance(value, str) else repr(value),
                         "from": source})
        return pd.DataFrame(rows).set_index("parameter")


def notebook_setup(notebook: str, namespace: dict, before=frozenset()) -> Setup:
    """Check and resolve a notebook's parameters from its namespace (``globals()``).

    ``before`` holds the names defined before the parameters cell. Any other name holding a value papermill
    could have injected that is neither a parameter of ``notebook`` nor a Config setting is an error."""
    if notebook not in NOTEBOOKS:
        raise not_one_of("notebook", notebook, list(NOTEBOOKS))
    spec = NOTEBOOKS[notebook]
    new = {k for k, v in namespace.items()
           if k not in before and not k.startswith("_") and not isinstance(v, types.ModuleType) and _literal(v)}
    reserved = sorted(new & set(RESERVED))
    if reserved:
        raise DataError(f"parameter(s) {reserved} cannot be set in this notebook",
                        hint="; ".join(f"use {RESERVED[r]}" for r in reserved))
    unknown = sorted(new - set(spec) - SETTINGS)
    if unknown:
        close = {u: difflib.get_close_matches(u, [*spec, *SETTINGS], n=1) for u in unknown}
        said = ", ".join(f"{u!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for u, c in close.items())
        raise DataError(f"unknown parameter(s) {said} for notebook {notebook!r}",
                        hint="its parameters: " + ", ".join(spec) + "; any Config setting is accepted too")

    values = {name: namespace.get(name, knob.default) for name, knob in spec.items()}
    values.update({name: knob.check(name, values[name]) for name, knob in spec.items() if not knob.config})
    if "weights_method" in values and values["weights_method"] not in values["methods"]:
        raise must("weights_method", f"one of methods {values['methods']}", values["weights_method"],
                   hint="add it to methods or choose one of them")
    injected = _injected(namespace, spec)
    given = [name for name, knob in spec.items() if name in injected or values[name] != _default(name, knob)]
    given += sorted(new & SETTINGS - set(spec))  # any other Config setting
    sources = {name: "given" if name in given else "default" for name in spec}

    root = repo_root()
    found = layers({name: values.get(name, namespace.get(name)) for name in given if name in SETTINGS
                    and (name not in spec or spec[name].config)},
                   defaults={name: knob.default for name, knob in spec.items() if knob.config})
    for label, layer in found[1:]:
        for name in layer:
            if label != "given" and (name == "dataset" or (name in spec and not spec[name].config)):
                continue  # the file's own name, or a knob of the notebook's own (02's task)
            sources[name] = "given" if label == "given" else _display_path(label, root)
    config = from_layers(found)
    values.update({name: getattr(config, name) for name, knob in spec.items() if knob.config})

    moved = {}  # relative folders: the input from where it is found, the outputs under the repository root
    if config.data_dir is not None:
        moved["data_dir"] = str(_resolve_input(Path(config.data_dir), root))
    if config.checkpoint_dir is not None and not Path(config.checkpoint_dir).is_absolute():
        moved["checkpoint_dir"] = str(root / config.checkpoint_dir)
    results_dir = Path(str(values["results_dir"]).replace("{dataset}", config.dataset))
    results_dir = results_dir if results_dir.is_absolute() else root / results_dir
    config = dataclasses.replace(config, results_dir=str(results_dir), **moved)
    return Setup(notebook, config, values, results_dir, sources, root)


def _default(name: str, knob: Knob):
    return knob.default if knob.config else knob.check(name, knob.default)


def _injected(namespace: dict, spec: dict) -> set[str]:
    """The parameters papermill injected, whatever their values: the names its injected-parameters cell
    assigns. IPython keeps the source of every cell run in ``In``; going back from this cell, the first that
    assigns a parameter is papermill's (it begins with ``# Parameters``) or the parameters cell itself (then
    nothing was injected since). Outside a kernel (a plain dict), none."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return set()
    for source in reversed(history[:-1]):  # the last is the cell running this
        try:
            tree = ast.parse(source) if isinstance(source, str) else None
        except SyntaxError:
            continue
        names = {t.id for node in getattr(tree, "body", ()) if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
        if names & set(spec):
            return names if source.lstrip().startswith(PAPERMILL) else set()
    return set()


def _resolve_input(path: Path, root: Path) -> Path:
    """A relative input folder: from the working directory if it is there, else from the repository root."""
    if path.is_absolute() or (Path.cwd() / path).exists():
        return path.resolve()
    return (root / path).resolve()
