"""The method table: one frozen row per method, the only place that says what makes a method a method.

Every list of methods elsewhere (the CLI's choices, Table 2, the bilevel ones, the controls, the explorer's, the
tuning space) is derived from :data:`TABLE`. A new method is one row here and one learner class.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

# log-uniform ranges (lo, hi) of the settings the tuning protocol draws (autoemb_core.tuning), or a Choice;
# popularity_thresholds draws a first threshold and a ratio to the second. lr reaches down to 1e-8: on ml-100k
# FSE's best dense rate sat at the lower edge of ranges that stopped at 5e-5 and then 1e-6 (a nearly frozen head).
# table_lr reaches 3.0: on synthetic, random's best sat at the upper edge of 0.05..1 (0.946).
W_RATES = {"table_lr": (0.05, 3.0), "lr": (1e-8, 3e-3)}  # with LEARNING below: W's space
CONTROLLER = {"controller_lr": (1e-5, 1e-2)}


@dataclass(frozen=True)
class Choice:
    """A tuning setting drawn from a few values (not a log-uniform range)."""

    values: tuple


# how a predicted batch is learned (Config.train_passes, train_microbatch): in every learned method's space
LEARNING = {"train_passes": Choice((1, 2, 3)), "train_microbatch": Choice((1, 10, 50, None))}
W_RATES = {**W_RATES, **LEARNING}
BIAS_RATES = {"table_lr": (0.05, 2.0), "lr": (1e-5, 0.1), **LEARNING}  # lr (mu, and MF's classification head):
# down to 1e-5, as MF on ml-100k regression chose 0.00105, the lower edge of 1e-3..0.1


@dataclass(frozen=True)
class Method:
    """One method. ``family``: reference (no embeddings), fixed (one embedding per id, straight to the head) or
    selecting (the AutoEmb architecture: N spaces mixed by selection weights). ``theta``: how the selection weights
    learn: none, joint (with W, on the training batch's loss) or bilevel (on validation data, eq. 8-9).
    ``selector``: the family of :mod:`autoemb_core.selection` that produces the weights. ``storage``: full (every
    id keeps sum(dims) dimensions), mixed (one row at the chosen size, always) or either (the ``storage`` setting
    picks). ``space``: the tuning protocol's ranges, None where the method is not tuned (it borrows ``tuned_as``'s
    values, or none). ``nests``: a method this one contains as a special case (its study also starts there).
    ``matches``: the method whose chosen architecture this one matches in a regime that tunes it (FSE normalises its
    input where AutoEmb's transform keeps a BatchNorm). ``learner``: its learner class
    (:data:`autoemb_core.train.LEARNERS`). ``paper``: one of the paper's four; ``rival``: a method AutoEmb must beat
    (its claims)."""

    name: str
    family: str
    display: str
    theta: str = "none"
    learner: str = "embedding"
    selector: str = "none"
    storage: str = "full"
    space: Mapping | None = None
    tuned_as: str | None = None
    nests: str | None = None
    matches: str | None = None
    table2: bool = False
    paper: bool = False
    rival: bool = False
    width: int | None = None  # a fixed embedding width (fixed-d); None: the one ``width_setting`` names
    width_setting: str | None = None  # the Config setting that holds the width (None there: sum(dims))

    def __post_init__(self):
        if self.space is not None:
            object.__setattr__(self, "space", MappingProxyType(dict(self.space)))


def _fixed(d: int) -> Method:
    return Method(f"fixed-{d}", "fixed", f"fixed-{d}", width=d)


# rows in Table 2's order (the floor, FSE, the controls, the paper's learned three), then the rest
TABLE = MappingProxyType({m.name: m for m in (
    Method("global-mean", "reference", "global mean", learner="means", space={}, table2=True),
    Method("item-mean", "reference", "item mean", learner="means", space={"item_prior": (0.3, 100.0)}, table2=True),
    Method("biases", "reference", "biases", learner="biases", space=BIAS_RATES, table2=True,
           rival=True),
    Method("mf", "fixed", "MF", learner="mf", width_setting="mf_width", table2=True, rival=True, nests="biases",
           space={**BIAS_RATES, "lr": (1e-7, 0.1),  # MF's lr (its classification head) chose 1.16e-05 on synthetic,
                  # the lower edge of 1e-5..0.1
                  "factor_lr": (1e-5, 0.3), "embedding_init_std": (1e-5, 0.3),  # at their low
                  # ends MF is the biases (1e-3 was not: 0.8% worse on synthetic-tiny), where its study starts
                  "embedding_l2": Choice((0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1))}),  # 0 must be a choice: a log range
           # cannot hold it, and on ml-100k the range's lower end (1e-9) won
    Method("fse", "fixed", "FSE", width_setting="fse_width", space=W_RATES, table2=True, paper=True, matches="autoemb"),
    Method("uniform", "selecting", "uniform", selector="rule", space=W_RATES, table2=True, rival=True),
    Method("random", "selecting", "random", selector="rule", space=W_RATES, table2=True, rival=True),
    Method("popularity-rule", "selecting", "popularity rule", selector="rule", storage="either", table2=True,
           rival=True, space={**W_RATES, "popularity_thresholds": ((2, 64), (2, 32))}),
    Method("sam", "selecting", "SAM", theta="joint", selector="controllers", space={**W_RATES, **CONTROLLER},
           table2=True, paper=True),
    Method("darts", "selecting", "DARTS", theta="bilevel", selector="logits", space={**W_RATES, "logit_lr": (0.01, 1.0)},
           table2=True, paper=True),
    Method("autoemb", "selecting", "AutoEmb", theta="bilevel", selector="controllers", space={**W_RATES, **CONTROLLER},
           table2=True, paper=True),
    Method("autoemb-hard", "selecting", "autoemb-hard", theta="bilevel", selector="hard-controllers", storage="mixed",
           tuned_as="autoemb"),
    _fixed(2), _fixed(16), _fixed(128),
)})


def names(**where) -> tuple[str, ...]:
    """The methods whose rows have every given field value, in table order: ``names(table2=True)``."""
    return tuple(m.name for m in TABLE.values() if all(getattr(m, k) == v for k, v in where.items()))


def display(name: str) -> str:
    """The name a table or figure shows for method ``name`` (itself when it is not a method)."""
    return TABLE[name].display if name in TABLE else name


METHODS = tuple(TABLE)
TABLE2 = names(table2=True)
PAPER = names(paper=True)  # FSE, SAM, DARTS, AutoEmb
REFERENCE = names(family="reference")
FIXED = tuple(m.name for m in TABLE.values() if m.width is not None)  # Figure 1's fixed-d models
CONTROLS = names(family="selecting", theta="none")  # the allocation controls: fixed weights in AutoEmb's architecture
SELECTING = names(family="selecting")
BILEVEL = names(theta="bilevel")
LEARNED = tuple(m.name for m in TABLE.values() if m.theta != "none")  # selection weights that learn
RIVALS = names(rival=True)
TUNED = tuple(m.name for m in TABLE.values() if m.space is not None)  # what the tuning protocol tunes
