"""The notebooks' parameters: one spec per notebook, checked in one place, with each dataset's defaults.

Each notebook under ``notebooks/`` has one cell tagged ``parameters`` whose values are the defaults in
:data:`NOTEBOOKS` (a test keeps the two equal). papermill injects its ``-p``/``-y``/``-f`` values after that
cell, and the next cell calls :func:`notebook_setup`, which

1. rejects names that are neither a parameter of the notebook nor a :class:`~autoemb_core.config.Config`
   setting (papermill itself only warns about them), and values of the wrong type or range;
2. resolves every setting, later sources winning:
   ``Config`` defaults < the notebook's defaults < ``params/<dataset>.yaml`` < values given explicitly.
   A value counts as given when it differs from the notebook's default. So ``-p dataset netflix`` takes
   ``params/netflix.yaml`` (for example ``max_interactions: null``, the whole stream, instead of the quick
   default), and ``-p max_interactions 100000`` still wins over the file.

The notebook's knobs (``methods``, ``seeds``, the experiment's own) are not ``Config`` settings: they are
checked here and handed to the experiment functions; everything else becomes the run's base ``Config``.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

from .config import Config
from .methods import FIXED, METHODS, PAPER, TABLE2
from .data import dataset_names, load_dataset
from .interactions import DataError, Interactions

DEFAULT_DATASET = "synthetic"
CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(Config)) - {"params_file"}
# Config settings a notebook sets itself from its knobs, never from a parameter of the same name.
RESERVED = {"method": "methods", "seed": "seeds", "params_file": None}


# -- checks: each returns the normalised value or raises DataError --------------------------------
def _bad(name: str, value, reason: str, hint: str | None = None) -> DataError:
    return DataError(f"parameter {name}={value!r}: {reason}", hint=hint)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _listed(name, value, scalar=(int, float, str)):
    """A list parameter as a list: a list as it is; ``"[0, 1]"`` (a YAML or JSON list) parsed; ``"fse,autoemb"``
    split at its commas; a single value (``-p seeds 0``) as a one-item list."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise _bad(name, value, f"not a YAML or JSON list ({str(exc).splitlines()[0]})",
                       f"e.g. -p {name} '[0, 1, 2]'") from None
        return value
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, scalar) and not isinstance(value, bool):
        return [value]
    return value


def choice(*allowed) -> Callable:
    def check(name, value):
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            raise _bad(name, value, "not allowed" + (f" (did you mean {close[0]!r}?)" if close else ""),
                       "choose one of " + ", ".join(repr(a) for a in allowed))
        return value
    return check


def names_from(allowed) -> Callable:
    def check(name, value):
        items = _listed(name, value, scalar=str)
        if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) for v in items):
            raise _bad(name, value, "expected a non-empty list of names",
                       f"e.g. -y '{name}: [{allowed[0]}, {allowed[-1]}]' or -p {name} {allowed[0]},{allowed[-1]}")
        unknown = [v for v in items if v not in allowed]
        if unknown or len(set(items)) != len(items):
            raise _bad(name, value, f"unknown or repeated {unknown or items}", "choose from " + ", ".join(allowed))
        return list(items)
    return check


def int_list(minimum: int = 0, increasing: bool = False) -> Callable:
    def check(name, value):
        items = _parsed(name, value, int)
        if not isinstance(items, (list, tuple)) or not items or not all(_is_int(v) and v >= minimum for v in items):
            raise _bad(name, value, f"expected a non-empty list of integers >= {minimum}",
                       f"e.g. -y '{name}: [0, 1, 2]' or -p {name} 0,1,2")
        if len(set(items)) != len(items) or (increasing and list(items) != sorted(items)):
            raise _bad(name, value, "expected distinct values" + (", increasing" if increasing else ""))
        return list(items)
    return check


def positive_int(optional: bool = False) -> Callable:
    def check(name, value):
        if value is None and optional:
            return None
        if not _is_int(value) or value < 1:
            raise _bad(name, value, "expected a positive integer" + (" or None (all)" if optional else ""))
        return value
    return check


def fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise _bad(name, value, "expected a number in (0, 1]", f"e.g. -p {name} 0.2")
    return float(value)


def path_or_none(name, value):
    if value is not None and not isinstance(value, (str, Path)):
        raise _bad(name, value, "expected a folder path or None")
    return None if value is None else str(value)


def dataset_name(name, value):
    valid = dataset_names()
    if not isinstance(value, str) or value not in valid:
        close = difflib.get_close_matches(str(value), valid, n=1)
        raise _bad(name, value, "unknown dataset" + (f" (did you mean {close[0]!r}?)" if close else ""),
                   "valid names: " + ", ".join(valid))
    return value


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
        raise _bad(name, value, "expected a non-empty list of numbers >= 0", f"e.g. -y '{name}: [0.0, 0.1]'")
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
        raise _bad(name, value, "expected a non-empty list of increasing positive thresholds per point",
                   f"e.g. -y '{name}: [[8, 64], [64, 512]]' or -p {name} '8,64;64,512'")
    return pairs


def scheduler_address(name, value):
    """None (this kernel), ``local`` or a ``tcp://`` address: see :func:`autoemb_core.sweep.execute`."""
    if value is None or value == "local" or (isinstance(value, str) and value.startswith("tcp://")):
        return value
    raise _bad(name, value, "expected None, 'local' or a 'tcp://HOST:PORT' address",
               f"e.g. -p {name} local -p workers 2, or -p {name} tcp://10.0.0.5:8786")


@dataclass(frozen=True)
class Knob:
    """One notebook parameter: its default, its check, and whether it is a Config setting."""

    default: Any
    check: Callable[[str, Any], Any]
    help: str
    config: bool = False  # passed into Config under the same name (and may come from params/<dataset>.yaml)


def _common(task: Knob, methods: list, seeds: list, max_interactions, folder: str, allowed=METHODS,
            workers: int = 1) -> dict:
    return {
        "dataset": Knob(DEFAULT_DATASET, dataset_name, "dataset name; its defaults come from params/<dataset>.yaml"),
        "data_dir": Knob(None, path_or_none, "folder holding <dataset>/; None: params/<dataset>.yaml's, "
                         "else $AUTOEMB_DATA_DIR or ./data", config=True),
        "task": task,
        "methods": Knob(methods, names_from(allowed), "methods to run"),
        "seeds": Knob(seeds, int_list(0), "one run per seed"),
        "max_interactions": Knob(max_interactions, positive_int(optional=True),
                                 "keep the first N interactions in time; None: all", config=True),
        "device": Knob("auto", choice("auto", "cpu", "cuda"), "cuda where there is one, else cpu", config=True),
        "scheduler": Knob(None, scheduler_address, "None: the runs one after another in this kernel; 'local': a "
                          "dask cluster of `workers` processes here; 'tcp://HOST:PORT': an existing dask scheduler"),
        "workers": Knob(workers, positive_int(), "runs at a time (in processes of their own, or local dask workers)"),
        "results_dir": Knob(f"results/{{dataset}}/{folder}", path_or_none,
                            "where tables and figures go; relative to the repository root; {dataset} is replaced"),
    }


_ONE_TASK = Knob("regression", choice("regression", "classification"), "regression (MSE) or classification (CE)",
                 config=True)

NOTEBOOKS: dict[str, dict[str, Knob]] = {
    "preliminary": {
        **_common(_ONE_TASK, list(FIXED), [0, 1], 30_000, "01_preliminary",
                  allowed=FIXED),
        "n_test": Knob(10, positive_int(), "held-out test ratings per study user"),
        "n_validation": Knob(5, positive_int(), "validation ratings per study user (early stopping)"),
        "train_sizes": Knob([2, 8, 32], int_list(1, increasing=True), "the grid of x, training ratings per study user"),
        "max_epochs": Knob(10, positive_int(), "most epochs per model; training stops earlier when validation stalls"),
        "patience": Knob(2, positive_int(), "epochs without a better validation loss before stopping"),
    },
    "overall": {
        **_common(Knob("both", choice("regression", "classification", "both"),
                       "regression, classification or both (Table 2 has both)"),
                  list(TABLE2), [0, 1, 2], 10_000, "02_overall"),
    },
    "popularity": {
        **_common(_ONE_TASK, list(PAPER), [0, 1], 20_000, "03_popularity"),
        "side": Knob("user", choice("user", "item"), "whose popularity the buckets of Figures 6 and 7 count"),
        "min_samples": Knob(200, positive_int(), "the top popularity bucket holds at least this many samples"),
        "weights_method": Knob("autoemb", choice("autoemb", "sam", "darts"), "whose weights Figure 7 shows"),
        "record_alpha_every": Knob(2, positive_int(), "record the selection weights every this many batches",
                                   config=True),
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
        "points": Knob(20, positive_int(), "points along the offline stage"),
        "early_fraction": Knob(0.2, fraction, "the early, data-poor part of the offline stage that the claim reads"),
    },
}


def repo_root() -> Path:
    """The repository holding ``params/`` and ``notebooks/``: the package's parent for an editable install,
    else the working directory or one of its parents."""
    for candidate in (Path(__file__).resolve().parents[1], Path.cwd().resolve(), *Path.cwd().resolve().parents):
        if (candidate / "params" / "paper.yaml").is_file():
            return candidate
    return Path.cwd().resolve()


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
        raise DataError(f"unknown notebook {notebook!r}", hint="one of " + ", ".join(NOTEBOOKS))
    spec = NOTEBOOKS[notebook]
    new = {k for k, v in namespace.items()
           if k not in before and not k.startswith("_") and not isinstance(v, types.ModuleType) and _literal(v)}
    reserved = sorted(new & set(RESERVED))
    if reserved:
        raise DataError(f"parameter(s) {reserved} cannot be set in this notebook",
                        hint="; ".join(f"use {RESERVED[r]}" for r in reserved if RESERVED[r]) or None)
    unknown = sorted(new - set(spec) - CONFIG_FIELDS)
    if unknown:
        close = {u: difflib.get_close_matches(u, [*spec, *CONFIG_FIELDS], n=1) for u in unknown}
        said = ", ".join(f"{u!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for u, c in close.items())
        raise DataError(f"unknown parameter(s) {said} for notebook {notebook!r}",
                        hint="its parameters: " + ", ".join(spec) + "; any Config setting is accepted too")

    values, sources = {}, {}
    for name, knob in spec.items():
        value = knob.check(name, namespace.get(name, knob.default))
        values[name] = value
        sources[name] = "default" if value == knob.check(name, knob.default) else "given"
    if "weights_method" in values and values["weights_method"] not in values["methods"]:
        raise _bad("weights_method", values["weights_method"], f"not among methods {values['methods']}",
                   "add it to methods or choose one of them")
    extra = {name: namespace[name] for name in sorted(new & CONFIG_FIELDS - set(spec))}
    sources.update({name: "given" for name in extra})

    root = repo_root()
    dataset = values["dataset"]
    path = root / "params" / f"{dataset}.yaml"
    if path.is_file():
        label = f"params/{path.name}"
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            if name == "dataset" or sources.get(name) == "given" or (name in spec and not spec[name].config):
                continue  # the file's own name, a value given explicitly, or a knob that is the notebook's own
            if name in spec:
                values[name] = spec[name].check(name, value)
            else:
                extra[name] = value
            sources[name] = label

    settings = {**{name: values[name] for name, knob in spec.items() if knob.config}, **extra, "dataset": dataset}
    if settings.get("data_dir") is not None:
        settings["data_dir"] = str(_resolve_input(Path(settings["data_dir"]), root))
    if settings.get("checkpoint_dir") is not None and not Path(settings["checkpoint_dir"]).is_absolute():
        settings["checkpoint_dir"] = str(root / settings["checkpoint_dir"])  # like results_dir
    results_dir = Path(str(values["results_dir"]).replace("{dataset}", dataset))
    results_dir = results_dir if results_dir.is_absolute() else root / results_dir
    settings["results_dir"] = str(results_dir)
    # a tuned value (params file's tuned: block) never overrides a value given or set in the file itself
    settings["explicit"] = sorted(k for k in settings if sources.get(k, "default") != "default" and k != "tuned")
    try:
        config = Config.from_dict(settings)
    except DataError as exc:
        raise DataError(f"bad setting for notebook {notebook!r}: {exc}") from None
    return Setup(notebook, config, values, results_dir, sources, root)


def _resolve_input(path: Path, root: Path) -> Path:
    """A relative input folder: from the working directory if it is there, else from the repository root."""
    if path.is_absolute() or (Path.cwd() / path).exists():
        return path.resolve()
    return (root / path).resolve()
