"""The one configuration of a run: every knob, with the paper's values as defaults where it gives them."""
from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .data import dataset_names
from .interactions import DataError
from .methods import METHODS, TABLE
from .regimes import REGIMES

TUNE_TRIALS = 16  # the tuning protocol's default budget: finished trials per method and task (autoemb_core.tuning)
# the memory frontier's default grid (autoemb_core.frontier): FSE widths, popularity-rule thresholds, hard penalties
FSE_WIDTHS = (2, 4, 8, 16, 32, 64, 128, 146)
RULE_THRESHOLDS = ((8, 64), (64, 512), (512, 4096))
HARD_PENALTIES = (0.0, 0.01, 0.1, 1.0)
DEMO_INTERACTIONS, DEMO_SEEDS = 30_000, (0, 1, 2)  # `demo`: the first interactions of synthetic, and its seeds
DEMO_TASKS, DEMO_REGIMES = ("regression",), ("paper", "esapn", "tuned")  # and what it shows: the regime table
# (competent needs a tuning of its own on a new stream: too long for a demo)
TRANSFORMS = ("bn-tanh", "tanh", "bn", "linear")  # Config.transform: which of BatchNorm and tanh follow eq. 1's Linear

PACKAGE_PARENT = Path(__file__).resolve().parents[1]

TUNABLE = ("lr", "table_lr", "factor_lr", "controller_lr", "logit_lr", "item_prior", "popularity_thresholds",
           "embedding_init_std", "embedding_l2", "train_passes", "train_microbatch", "transform", "selection")  # the settings a ``tuned:`` block of a params file may set


@dataclass
class Config:
    """A run. Defaults follow the paper (§3.2) and ``shared/design-notes.md``; where the paper is silent
    the default was chosen by a measurement recorded in docs/protocol.md."""

    # data and protocol (§2.5, §3.1)
    dataset: str = "synthetic"
    data_dir: str | None = None
    max_interactions: int | None = None
    task: str = "regression"  # regression: MSE on sigmoid vs rating > 3.5; classification: CE over 5 classes
    method: str = "autoemb"
    batch_size: int = 500
    offline_fraction: float = 0.7
    # the tuning protocol's stream: the first N interactions of the offline stage (None: all of it), so that a
    # stream of millions is tuned in a budget of trials at the cost of a smaller one; never what a run computes
    tune_interactions: int | None = None
    seed: int = 0
    device: str = "auto"  # cpu, cuda or auto

    # model (§2.2-2.4, §3.2)
    dims: tuple[int, ...] = (2, 16, 128)
    hidden: tuple[int, ...] = (512, 512)
    controller_hidden: tuple[int, ...] = (512, 512)
    popularity_buckets: int = 34  # one-hot of min(floor(log2(1 + popularity)), buckets - 1)
    transform: str = "bn-tanh"  # eq. 1-2, each space to d_N: Linear -> BatchNorm -> tanh (bn-tanh, the paper's),
    # Linear -> tanh (tanh), Linear -> BatchNorm (bn) or Linear alone (linear)
    shared_batchnorm: bool = False  # one BatchNorm for all spaces (ESAPN) instead of one per space
    head_batchnorm: bool = False  # ESAPN's head: BatchNorm on the head's input (each side's representation) and
    # after each hidden Linear, before tanh, for FSE and the AutoEmb architecture alike; False: the paper's head
    input_batchnorm: bool = False  # BatchNorm on the head's input alone (each side's representation): FSE's
    # normalisation matched to an AutoEmb variant that keeps one (the competent regime); head_batchnorm includes it
    selection: str = "mean"  # eq. 7: (1/N) sum_n alpha_n e_n; "sum" drops the 1/N
    embedding_init_std: float = 0.1
    embedding_l2: float = 0.0  # L2 penalty on the embedding rows in W's training loss: l2 * mean over samples of
    # |e_user|^2 + |e_item|^2 (0: none, as in the paper); Figure 1's capacity study tunes it per dimension
    popularity_thresholds: tuple[int, ...] | None = None  # popularity-rule: space n for popularity in
    # [thresholds[n-1], thresholds[n]); N - 1 increasing thresholds, so d grows with popularity; None: 8, 64, ...
    fse_width: int | None = None  # fse's embedding size; None: sum(dims), the paper's FSE with AutoEmb's memory
    mf_width: int | None = None  # mf's factor width; None: sum(dims), FSE's memory (146 by default)
    factor_lr: float = 0.01  # mf's factor tables, row-wise (its bias tables learn at table_lr); 0.003-0.03 scored
    # alike on ml-100k's offline stage, 0.1 and table_lr's 0.2 worse
    storage: str = "full"  # full: every id keeps all sum(dims) dimensions; mixed (autoemb-hard always, and
    # popularity-rule): one table per size, each id one row in the table of its chosen space (autoemb_core.mixed)
    move_init: str = "transfer"  # mixed storage: an id's row in its new space starts from its old row carried
    # through the transforms (transfer), or from a fresh random row as a new id's (fresh)
    memory_penalty: float = 0.0  # autoemb-hard: Theta's validation loss adds this times the mean over the batch's
    # ids of sum_n alpha_n d_n / d_N (the expected share of the largest size): the frontier's knob
    item_prior: float = 5.0  # item-mean: pseudo-interactions at the global mean that shrink a rare item's mean

    # optimisation
    optimizer: str = "adam"  # the dense parameters (DLRS layers, controllers): adam or sgd
    table_optimizer: str = "adagrad"  # embedding and bias tables, row-wise: adagrad, adam (lazy) or sgd
    lr: float = 3e-4  # W's dense layers (and the tables when table_lr is None)
    table_lr: float | None = 0.2  # W's embedding tables (and biases' bias tables); None: = lr
    controller_lr: float = 1e-4  # Theta of autoemb and sam: the controllers
    logit_lr: float = 0.1  # Theta of darts: the per-id logits, row-wise with table_optimizer
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    unroll: str = "optimizer"  # eq. 9's virtual step W' = W - step: the step W's own optimizers take
    # (row-wise for the tables, dense for the DLRS, with their current moments), or "sgd": xi * grad
    xi: float | None = None  # sgd unroll: the virtual step size; None: = lr; 0: first order (either unroll)
    hypergradient: str = "exact"  # exact (double backprop) or finite-difference (DARTS, at the original W)
    validation: str = "uniform"  # Theta's validation batch: uniform over all past interactions, the previous
    # batch, incoming: the incoming batch once it has been predicted (data W has not trained on yet), or
    # holdout: uniform over the past held-out interactions (W never trains on them, for every method)
    holdout_fraction: float = 0.1  # validation=holdout: the share of every batch held out from W's training
    validation_size: int | None = None  # None: batch_size
    predict_batchnorm: str = "running"  # BatchNorm statistics used to predict a batch: running or batch
    grad_clip: float | None = None  # clip the global L2 norm of W's gradient, and of Theta's, to this; None: off

    regime: str | None = None  # a named bundle of settings (autoemb_core.regimes: paper, esapn, tuned, competent) for the
    # embedding methods, under the values given by a flag or a params file; None: none

    # how W learns from a batch once it is predicted (every method; tuned like the rates)
    train_passes: int = 1  # steps over the predicted batch (each pass over all of its micro-batches)
    train_microbatch: int | None = None  # None: the whole batch in one step a pass; m: in stream order, in
    # chunks of m interactions, one step each (m = 1 with sgd tables: per-sample SGD)
    row_gradient: str = "sum"  # a table row's gradient in a step: its own samples' gradients summed, whatever the
    # step's size, or "mean": the mean loss's (that sum over the step's size). Measured (benchmarks/row_gradient.md):
    # the same under adagrad tables to 5 digits; under sgd, sum's best rate is 0.1-0.3 at every m, mean's moves 100x

    # speed: neither changes the model, only how it is computed (equal within float rounding)
    fast_path: bool = True  # transforms once per unique id, tanh via sigmoid, fused Adam, and the prediction
    # taken from the training forward where the two are the same; False: the plain per-sample path

    # bookkeeping
    record_alpha_every: int = 10  # record selection weights every this many batches
    progress: bool = True
    results_dir: str = "results"
    checkpoint_dir: str | None = None  # keep a resumable checkpoint of the run here; None: no checkpoints
    checkpoint_every: int | None = None  # batches between checkpoints; None: about every checkpoint_minutes
    checkpoint_minutes: float = 5.0
    resume: bool = False  # continue from checkpoint_dir's checkpoint of this run, if there is one
    threads: int | None = None  # torch's CPU threads for the run (saved with it); None: as the process has them
    tuned: dict = field(default_factory=dict)  # {task: {method: {setting: value}}}, from a params file
    explicit: tuple[str, ...] = ()  # settings given explicitly: a tuned value never overrides them
    sources: dict = field(default_factory=dict, repr=False, compare=False)  # setting -> the params file that set
    # it, named in its error messages; not a setting

    def __post_init__(self):
        self.dims = tuple(int(d) for d in self.dims)
        self.hidden = tuple(int(h) for h in self.hidden)
        self.controller_hidden = tuple(int(h) for h in self.controller_hidden)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        if self.popularity_thresholds is not None:
            self.popularity_thresholds = tuple(int(t) for t in self.popularity_thresholds)
        self.explicit = tuple(self.explicit)
        self.tuned = self.tuned or {}
        self.validate()

    # -- derived ------------------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Width of each embedding table row."""
        if self.spec.width is not None:
            return self.spec.width
        chosen = getattr(self, self.spec.width_setting) if self.spec.width_setting else None
        return sum(self.dims) if chosen is None else chosen

    @property
    def spec(self):
        """This run's row of the method table (:mod:`autoemb_core.methods`)."""
        return TABLE[self.method]

    @property
    def selecting(self) -> bool:
        return self.spec.family == "selecting"

    @property
    def mixed(self) -> bool:
        """Whether each id stores one row at its chosen size (hard selection) instead of all sum(dims)."""
        return self.spec.storage == "mixed" or self.storage == "mixed"

    @property
    def reference(self) -> bool:
        return self.spec.family == "reference"

    @property
    def rule_thresholds(self) -> tuple[int, ...]:
        """popularity-rule's thresholds: as set, or 8, 64, ... (one fewer than dims)."""
        if self.popularity_thresholds is not None:
            return self.popularity_thresholds
        return tuple(8 ** k for k in range(1, len(self.dims)))

    @property
    def rows_lr(self) -> float:
        """The embedding tables' learning rate."""
        return self.lr if self.table_lr is None else self.table_lr

    @property
    def batchnorm(self) -> bool:
        """Whether the model has BatchNorm anywhere (the transform's, or the head's)."""
        return self.head_batchnorm or self.input_batchnorm or (self.spec.learner == "embedding" and self.selecting
                                       and self.transform in ("bn-tanh", "bn"))

    @property
    def holdout(self) -> float:
        """The share of every batch W never trains on (0 unless validation is holdout)."""
        return self.holdout_fraction if self.validation == "holdout" else 0.0

    def resolved(self) -> "Config":
        """This run's settings with its regime's bundle and the tuned values for its task and method applied,
        except where a setting was given explicitly."""
        values = {**self.regime_values(), **self.tuned_values(), **self.matched_values()}
        if self.regime is not None and not self.in_regime and not values.get("input_batchnorm"):
            values["regime"] = None  # the floor: the same run, bit for bit and as saved, in every regime
        return dataclasses.replace(self, **values) if values else self

    @property
    def in_regime(self) -> bool:
        """Whether this run's regime applies to its method: the embedding methods take it (a regime that tunes the
        architecture: the AutoEmb architecture's only), while the floor (the reference predictors and mf) runs as in
        ``tuned`` whatever the regime."""
        if self.regime is None or self.spec.learner != "embedding":
            return False
        regime = REGIMES[self.regime]
        return (self.selecting or not regime.architecture) and bool(regime.settings or regime.architecture)

    def regime_values(self) -> dict:
        """The settings of this run's regime (:mod:`autoemb_core.regimes`) that :meth:`resolved` applies."""
        bundle = REGIMES[self.regime].settings if self.in_regime else {}
        return {k: v for k, v in bundle.items() if k not in self.explicit}

    def matched_values(self) -> dict:
        """A method that ``matches`` another (FSE: AutoEmb), in a regime that tunes the architecture (competent): the
        BatchNorm of its input where the other's chosen transform keeps one, else nothing (the tuned run)."""
        if self.spec.matches is None or self.regime is None or not REGIMES[self.regime].architecture \
                or "input_batchnorm" in self.explicit:
            return {}
        chosen = self.tuned.get(self.task, {}).get(self.spec.matches, {}).get("transform")
        return {"input_batchnorm": True} if chosen in ("bn-tanh", "bn") else {}

    def tuned_values(self) -> dict:
        """The tuned values :meth:`resolved` applies to this run (none in a regime that is not tuned)."""
        if self.in_regime and not REGIMES[self.regime].tuned:
            return {}
        block = self.tuned.get(self.task, {})
        values = block.get(self.method, block.get(self.spec.tuned_as, {}))
        return {k: v for k, v in values.items() if k not in self.explicit}

    @property
    def bilevel(self) -> bool:
        return self.spec.theta == "bilevel"

    @property
    def controller_features(self) -> int:
        return self.popularity_buckets + len(self.dims) + 1

    @property
    def virtual_lr(self) -> float:
        return self.lr if self.xi is None else self.xi

    @property
    def n_outputs(self) -> int:
        return 1 if self.task == "regression" else 5

    # -- checks and I/O -------------------------------------------------------------------------
    def validate(self) -> None:
        """Every setting's check. An error names the setting, the params file it came from (if one did) and,
        where it helps, a hint: the one place a run's settings are checked, for the CLI and the notebooks alike."""
        where = self.sources.get
        choices = {"dataset": dataset_names(), "task": ("regression", "classification"), "method": METHODS,
                   "device": ("cpu", "cuda", "auto"), "selection": ("mean", "sum"), "optimizer": ("adam", "sgd"),
                   "hypergradient": ("exact", "finite-difference"), "unroll": ("optimizer", "sgd"),
                   "validation": ("uniform", "previous", "incoming", "holdout"),
                   "table_optimizer": ("adam", "adagrad", "sgd"), "storage": ("full", "mixed"),
                   "move_init": ("transfer", "fresh"), "row_gradient": ("mean", "sum"),
                   "transform": TRANSFORMS, "predict_batchnorm": ("running", "batch")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise not_one_of(name, getattr(self, name), allowed, where(name))
        for name in ("batch_size", "popularity_buckets", "record_alpha_every", "train_passes"):
            if not _integer(getattr(self, name)):
                raise must(name, "a positive integer", getattr(self, name), where(name))
        positive = ["batch_size", "train_passes", "lr", "factor_lr", "controller_lr", "logit_lr", "popularity_buckets", "record_alpha_every",
                    "embedding_init_std", "checkpoint_minutes", "item_prior"]
        for name in positive:
            if not getattr(self, name) > 0:
                raise must(name, "> 0", getattr(self, name), where(name))
        if self.regime is not None and self.regime not in REGIMES:
            raise not_one_of("regime", self.regime, tuple(REGIMES), where("regime"))
        for name in ("max_interactions", "tune_interactions"):
            if getattr(self, name) is not None and not (_integer(getattr(self, name)) and getattr(self, name) >= 1):
                raise must(name, "a positive integer or null (all)", getattr(self, name), where(name))
        for name in ("data_dir", "results_dir", "checkpoint_dir"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), (str, os.PathLike)):
                raise must(name, "a folder path" + (" or null" if name != "results_dir" else ""),
                           getattr(self, name), where(name))
        if not self.dims or sorted(self.dims) != list(self.dims) or min(self.dims) < 1:
            raise must("dims", "increasing positive sizes", self.dims, where("dims"))
        if not 0 < self.offline_fraction < 1:
            raise must("offline_fraction", "in (0, 1)", self.offline_fraction, where("offline_fraction"))
        if self.storage == "mixed" and TABLE[self.method].storage == "full":
            can = [m.name for m in TABLE.values() if m.storage != "full"]
            raise DataError(f"storage=mixed needs one space per id: it is for {' and '.join(can)}, not "
                            f"{self.method}", where("storage"), hint="use storage: full, or method autoemb-hard")
        for name in ("fse_width", "mf_width", "train_microbatch"):
            if getattr(self, name) is not None and not (_integer(getattr(self, name)) and getattr(self, name) >= 1):
                raise must(name, "a positive integer or null", getattr(self, name), where(name))
        for name in ("memory_penalty", "embedding_l2"):
            if not getattr(self, name) >= 0:
                raise must(name, ">= 0", getattr(self, name), where(name))
        for name in ("grad_clip", "checkpoint_every", "table_lr", "threads"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise must(name, "> 0 or null", getattr(self, name), where(name))
        if self.xi is not None and self.xi < 0:
            raise must("xi", ">= 0 (0 = first order)", self.xi, where("xi"))
        if not 0 < self.holdout_fraction < 1:
            raise must("holdout_fraction", "in (0, 1)", self.holdout_fraction, where("holdout_fraction"))
        t = self.rule_thresholds
        if len(t) != len(self.dims) - 1 or list(t) != sorted(set(t)) or (t and t[0] < 1):
            raise must("popularity_thresholds", f"{len(self.dims) - 1} increasing positive counts (one fewer than "
                       "dims)", list(t), where("popularity_thresholds"))
        self._validate_tuned()

    def _validate_tuned(self) -> None:
        where = self.sources.get("tuned")
        if not isinstance(self.tuned, dict):
            raise DataError("tuned must be a mapping {task: {method: {setting: value}}}", where)
        for task, methods in self.tuned.items():
            if task not in ("regression", "classification") or not isinstance(methods, dict):
                raise DataError(f"tuned: {task!r} is not a task with a mapping of methods", where,
                                hint="tuned: {regression: {fse: {lr: 0.001}}}")
            for method, values in methods.items():
                if method not in METHODS or not isinstance(values, dict):
                    raise DataError(f"tuned.{task}: {method!r} is not a method with a mapping of settings",
                                    where, hint=f"methods: {', '.join(METHODS)}")
                bad = sorted(set(values) - set(TUNABLE))
                if bad:
                    raise DataError(f"tuned.{task}.{method}: {bad} cannot be tuned", where,
                                    hint=f"tunable settings: {', '.join(TUNABLE)}")

    # where a run's data, results and checkpoints are, and how it is watched: not part of what it computes
    # (the data itself is compared by its fingerprint or size; the thread count can change the last bits of a
    # sum, so a run is bit for bit only at the same count, but what it computes is the same)
    BOOKKEEPING = ("progress", "data_dir", "results_dir", "checkpoint_dir", "checkpoint_every", "checkpoint_minutes",
                   "resume", "device", "threads", "tuned", "explicit", "tune_interactions")

    # settings added with a default other than what runs saved before them computed: their value in those runs
    BEFORE = {"row_gradient": "mean"}

    def differences(self, other: dict) -> dict:
        """Settings that change what a run computes and differ from ``other`` (a :meth:`to_dict`)."""
        mine, defaults = self.to_dict(), {**type(self)(method=self.method).to_dict(), **self.BEFORE}
        # a setting added after ``other`` was saved computes what it computed before at its default (or BEFORE's)
        other = {**{k: v for k, v in defaults.items() if k not in other}, **other}
        return {k: (other.get(k), mine.get(k)) for k in sorted(set(mine) | set(other))
                if k not in self.BOOKKEEPING and mine.get(k) != other.get(k)}

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self) if f.name != "sources"}

    @classmethod
    def from_dict(cls, values: dict, source=None) -> "Config":
        """A Config of ``values``; ``source``, a params file or a mapping setting -> params file, is named in
        errors. :func:`resolve` builds a run's Config from its files and the values given."""
        sources = dict(source) if isinstance(source, dict) else {k: str(source) for k in values} if source else {}
        unknown = sorted(set(values) - SETTINGS)
        if unknown:
            raise DataError(f"unknown setting(s) {unknown}", sources.get(unknown[0]),
                            hint="valid settings: " + ", ".join(sorted(SETTINGS)))
        try:
            return cls(**values, sources=sources)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            files = set(sources.values())
            raise DataError(f"bad setting: {exc}", files.pop() if len(files) == 1 else None) from None


SETTINGS = frozenset(f.name for f in dataclasses.fields(Config)) - {"sources"}


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def not_one_of(name: str, value, allowed, where=None) -> DataError:
    """The error for a value outside its choices: ``name='value' is not valid (did you mean ...?)``."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return DataError(f"{name}={value!r} is not valid" + (f" (did you mean {close[0]!r}?)" if close else ""), where,
                     hint="choose one of " + ", ".join(str(a) for a in allowed))


def must(name: str, what: str, value, where=None, hint: str | None = None) -> DataError:
    """The error for a value of the wrong kind or range: ``name must be <what>, got <value>``."""
    return DataError(f"{name} must be {what}, got {value!r}", where, hint=hint)


# -- where a run's settings come from --------------------------------------------------------------
def params_dir() -> Path:
    """``params/``: beside the package (a checkout or an editable install), else in the working directory or
    one of its parents (else the working directory's, absent)."""
    for candidate in (PACKAGE_PARENT, Path.cwd().resolve(), *Path.cwd().resolve().parents):
        if (candidate / "params" / "paper.yaml").is_file():
            return candidate / "params"
    return Path.cwd().resolve() / "params"


def read_params(path) -> dict:
    """A params file's settings: a YAML mapping of setting: value (the values are checked by Config)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such params file: {path}", hint="see the files under params/")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"not valid YAML: {exc}", path) from None
    if not isinstance(values, dict):
        raise DataError("expected a mapping of setting: value", path)
    return values


def layers(explicit: dict | None = None, params=None, defaults: dict | None = None) -> list[tuple[str, dict]]:
    """The sources of a run's settings as (label, values), lowest first: a caller's ``defaults`` ("defaults"),
    ``params/<dataset>.yaml`` (its path), the ``params`` file (its path) and the values given ("given"). The
    dataset is the given one, else the params file's, else the defaults' or Config's."""
    explicit, defaults = dict(explicit or {}), dict(defaults or {})
    file = read_params(params) if params is not None else {}
    name = explicit.get("dataset", file.get("dataset", defaults.get("dataset", Config.dataset)))
    own = params_dir() / f"{name}.yaml"
    found = [("defaults", defaults)]
    if own.is_file():
        found.append((str(own), read_params(own)))
    if params is not None:
        found.append((str(params), file))
    return found + [("given", explicit)]


def resolve(explicit: dict | None = None, params=None, defaults: dict | None = None) -> Config:
    """A run's Config, for the CLI, the notebooks, the report and the benchmarks alike. Later sources win:

        Config's defaults < ``defaults`` (a caller's own, such as a notebook's quick ones)
        < params/<dataset>.yaml (every key, its tuned: block included) < the ``params`` file < ``explicit``

    ``explicit`` holds the values given (None is a value: leave out what was not given). A value set by a file or
    given counts as explicit even where it equals a default: a tuned value never overrides it. A later file's
    tuned: block replaces an earlier one's for the same task and method."""
    return from_layers(layers(explicit, params, defaults))


def from_layers(found: list[tuple[str, dict]]) -> Config:
    """:func:`resolve` on the sources :func:`layers` found."""
    values, origin, tuned = {}, {}, {}
    for label, layer in found:
        for name, value in layer.items():
            if name == "tuned":
                tuned = _merge_tuned(tuned, value)
            else:
                values[name] = value
            if label != "defaults":
                origin[name] = label
    explicit = sorted({*values.get("explicit", ()), *(k for k in origin if k not in ("tuned", "explicit"))})
    files = {k: label for k, label in origin.items() if label != "given"}
    return Config.from_dict({**values, "tuned": tuned, "explicit": explicit}, files)


def _merge_tuned(into, block):
    """``block``'s tuned values over ``into``'s, method by method (a method's values are one tuning's point)."""
    if not isinstance(into, dict) or not isinstance(block, dict):
        return block  # Config's check names what is wrong with it
    merged = dict(into)
    for task, methods in block.items():
        merged[task] = {**into[task], **methods} if isinstance(into.get(task), dict) and isinstance(methods, dict) \
            else methods
    return merged


@dataclass(frozen=True)
class Figure1Settings:
    """Figure 1's capacity study (:func:`autoemb_core.experiments.preliminary_study`): its grid and each
    model's training budget. The defaults are the report's; :meth:`quick` is the demo's and notebook 01's."""

    train_sizes: tuple[int, ...] = (8, 32, 128)  # the grid of x: training ratings per study user
    n_test: int = 10  # held-out test ratings per study user, the same for every x
    n_validation: int = 10  # validation ratings per study user, for early stopping
    max_epochs: int = 20  # most epochs per model; training stops earlier when validation stalls
    patience: int = 2  # epochs without a better validation loss before stopping
    l2_grid: tuple[float, ...] = (0.0,)  # embedding_l2 values tried per model, the best on validation kept
    protocol: str = "both"  # capacity: early-stopped on validation, best of l2_grid; paper: the paper's likely
    # protocol, max_epochs epochs with no early stopping and no L2 (it states neither); both: each, side by side

    PROTOCOLS = ("capacity", "paper")

    def __post_init__(self):
        if self.protocol not in (*self.PROTOCOLS, "both"):
            raise not_one_of("figure1_protocol", self.protocol, (*self.PROTOCOLS, "both"))

    @property
    def protocols(self) -> tuple[str, ...]:
        return self.PROTOCOLS if self.protocol == "both" else (self.protocol,)

    @classmethod
    def quick(cls) -> "Figure1Settings":
        """A grid the first 30,000 interactions of ``synthetic`` can fill, in minutes (the capacity protocol only)."""
        return cls(train_sizes=(2, 8, 32), n_validation=5, max_epochs=10, protocol="capacity")

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}


FIGURE1 = Figure1Settings()
