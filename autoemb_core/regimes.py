"""The regimes a claim is judged under: named bundles of settings, each a documented answer to "whose setup?".

A regime is applied when a run's settings are resolved (:meth:`autoemb_core.config.Config.resolved`): over the
defaults and the tuned values, under any value given by a flag or a params file. ``paper`` and ``esapn`` are fixed
setups, never tuned (the params files' tuned blocks do not apply); ``tuned`` is the package's defaults with every
method tuned by the protocol on the offline stage; ``competent`` also has the protocol choose the AutoEmb
architecture. The reference predictors (the floor) are not the paper's: in every regime they are the ``tuned`` runs,
so every regime is held to the same floor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from .methods import Choice


@dataclass(frozen=True)
class Regime:
    """``settings``: the Config values of the bundle. ``tuned``: whether the tuning protocol (and the tuned blocks
    of the params files) apply. ``why``: where each value comes from."""

    name: str
    settings: Mapping = field(default_factory=dict)
    tuned: bool = True
    why: str = ""
    architecture: Mapping = field(default_factory=dict)  # architecture settings the tuning protocol also chooses
    # for the AutoEmb architecture's methods (each a Choice), beside their rates

    def __post_init__(self):
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        object.__setattr__(self, "architecture", MappingProxyType(dict(self.architecture)))


# W's learner as Algorithm 1 has it: one step on each batch once it is predicted
ONE_STEP = {"train_passes": 1, "train_microbatch": None}

REGIMES = MappingProxyType({r.name: r for r in (
    Regime("paper", {**ONE_STEP, "transform": "bn-tanh", "shared_batchnorm": False, "selection": "mean",
                     "head_batchnorm": False, "predict_batchnorm": "running", "optimizer": "adam",
                     "table_optimizer": "adam", "lr": 0.01, "table_lr": None, "controller_lr": 0.001,
                     "logit_lr": 0.001}, tuned=False,
           why="The paper as written (§2.2-2.4, §3.2): eq. 1-2's Linear -> BatchNorm -> tanh with one BatchNorm "
               "per space, eq. 7's 1/N, the DLRS rate 0.01 for every part of W, the tables included (the paper "
               "gives one), and 0.001 for Theta (the controllers, and DARTS' logits). The paper names no "
               "optimizer: Adam, lazy and row-wise on the tables. One step per batch; no tuning."),
    Regime("esapn", {**ONE_STEP, "transform": "bn-tanh", "shared_batchnorm": True, "selection": "sum",
                     "head_batchnorm": True, "hidden": (512,), "predict_batchnorm": "batch", "optimizer": "adam",
                     "table_optimizer": "adam", "lr": 0.001, "table_lr": None, "controller_lr": 0.0001,
                     "logit_lr": 0.0001, "embedding_init_std": 1.0, "xi": 0.0, "validation": "previous"},
           tuned=False,
           why="As the only public AutoEmb code runs it (zgahhblhc/ESAPN, baselines/AutoEmb/train_autoemb.py and "
               "baselines/Fixed/train_fixed.py): one BatchNorm shared by the spaces (l. 189-190, 210), a plain "
               "weighted sum (l. 211), a head BN -> Linear(512) -> BN -> tanh -> Linear for FSE and AutoEmb "
               "alike (l. 199-204; Fixed l. 131-136), every forward on batch statistics (no .eval()), one Adam "
               "at 1e-3 for all of W with N(0, 1) embeddings (nn.Embedding's default), and Adam at 1e-4 for the "
               "controllers, first order on the previous batch (l. 218-252). Kept from this package: the "
               "chronological stream (ESAPN shuffles), the sizes 2, 16, 128 (ESAPN has 6), the one-hot "
               "popularity input (ESAPN's policies 3-5; its default learns a 32-d popularity embedding), lazy "
               "row-wise Adam (ESAPN's dense Adam moves absent rows by their momentum) and a mean loss (ESAPN "
               "sums it; Adam is invariant to the scale)."),
    Regime("tuned", {}, tuned=True,
           why="The paper's architecture at this package's defaults, every method tuned by the protocol on the "
               "offline stage (autoemb_core.tuning), the learner settings (train_passes, train_microbatch) "
               "included."),
    Regime("competent", {"validation": "incoming"}, tuned=True,
           architecture={"transform": Choice(("bn-tanh", "tanh", "bn", "linear")), "selection": Choice(("mean", "sum"))},
           why="As `tuned`, but the AutoEmb architecture's methods (the paper's learned three and the controls) "
               "also have their transform (eq. 1-2: BatchNorm and tanh, either or neither) and eq. 7's 1/N chosen by "
               "the tuning protocol on the offline stage, with the same budget of trials. FSE, mf and the floor are "
               "the `tuned` runs (FSE has no transform), except that FSE normalises its input where AutoEmb's chosen "
               "transform keeps a BatchNorm (matched architecture). Theta validates on the incoming batch once it is "
               "predicted: of "
               "the four validation modes it alone breaks the controller's collapse onto the largest space (AutoEmb's "
               "weight on 128-d 0.08-0.30 against 0.94-1.00 under the others, at the same loss; "
               "benchmarks/tuning/validation_modes.md)."),
)})


def check(names) -> list[str]:
    """``names`` without repeats, each a regime; else an error that names the wrong one and the closest regime."""
    import difflib

    from .interactions import DataError
    names = list(dict.fromkeys(names))
    if not names:
        raise DataError("--regimes: none given", hint="--regimes paper esapn tuned competent")
    for name in names:
        if name not in REGIMES:
            close = difflib.get_close_matches(name, list(REGIMES), n=1)
            raise DataError(f"--regimes: {name!r} is not a regime" + (f" (did you mean {close[0]!r}?)" if close else ""),
                            hint="choose from " + ", ".join(REGIMES))
    return names


def describe(name: str) -> dict:
    """The regime as report.json records it: its settings, whether it is tuned, what tuning chooses, and why."""
    r = REGIMES[name]
    return {"name": r.name, "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in r.settings.items()},
            "tuned": r.tuned, "architecture": {k: list(c.values) for k, c in r.architecture.items()}, "why": r.why}


def line(name: str) -> str:
    """One line for a report: the regime, its settings, and where they come from."""
    d = describe(name)
    settings = ", ".join(f"`{k}: {v}`" for k, v in d["settings"].items()) or "the package defaults"
    chosen = f"; tuning also chooses {', '.join(d['architecture'])}" if d["architecture"] else ""
    return (f"Regime **{name}** ({'tuned' if d['tuned'] else 'not tuned'}{chosen}) for the embedding methods, the floor "
            f"running as tuned: {settings}. {d['why']}")
