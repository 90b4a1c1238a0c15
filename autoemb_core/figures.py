"""Each figure of the study from its runs, as a :class:`StudyFigure`: a table for a reader, the claims the figure
carries and the matplotlib figure. The report and the notebooks call the same function per figure, so that a
notebook and ``REPORT.md`` cannot drift.

- Figure 1, the preliminary study: :func:`figure1` (models trained to convergence) and :func:`figure1_stream`
  (the same sizes streamed, by popularity);
- Table 2, the overall comparison: :func:`table2`;
- Figure 6, online metrics by popularity: :func:`figure6`;
- Figure 7, selection weights by popularity: :func:`figure7`;
- Figure 8, the offline stage's progress: :func:`figure8`;
- the memory frontier (beyond the paper): :func:`frontier`.

Each claim is a row of :data:`COLUMNS`: a paired per-seed effect with its interval and verdict
(:func:`autoemb_core.stats.claim_row`), signed so that a positive value favours the paper, and a relative change
where the paper's own effect is one (Table 2's numbers on MovieLens-20m): for "A has lower loss than B" it is
``(loss_B - loss_A) / loss_B`` per seed. matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import experiments as ex
from . import frontier as fr
from .interactions import DataError
from .methods import RIVALS
from .stats import claim_row as _row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLUMNS = ["claim", "dataset", "task", "metric", "method", "comparator", "bucket", "effect", "ci_low", "ci_high",
           "mde", "n_seeds", "paper_effect", "verdict"]
ORDERING = (("autoemb", "darts"), ("darts", "sam"), ("sam", "fse"), ("autoemb", "fse"))  # Table 2: A < B in loss
PAPER_DATASET = "ml-20m"  # where paper_effect comes from for a dataset the paper has no row for
SIDES = ("user", "item")  # Figure 7's panels, left to right


@dataclass(frozen=True)
class StudyFigure:
    """One figure of the study: ``table`` for a reader (what a notebook shows), ``claims`` (:func:`claims_frame`),
    ``figure`` (matplotlib; None for Table 2) and ``data``, the tidy frame behind the table and the figure
    (what a notebook saves as CSV)."""

    table: pd.DataFrame
    claims: pd.DataFrame
    figure: Figure | None
    data: pd.DataFrame


def _plots():
    from . import plots  # matplotlib only when a figure is drawn
    return plots


def claims_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[*COLUMNS, "std"])


def concat_claims(frames) -> pd.DataFrame:
    """Several claims frames as one, in their order."""
    return claims_frame([row for frame in frames for row in frame.to_dict("records")])


def _advantage(frame: pd.DataFrame, method: str, comparator: str, value: str = "loss") -> np.ndarray:
    """Per seed (paired on the seeds both have), ``(comparator - method) / comparator`` of ``value``."""
    a = frame[frame["method"] == method].set_index("seed")[value]
    b = frame[frame["method"] == comparator].set_index("seed")[value]
    seeds = sorted(set(a.index) & set(b.index))
    return ((b[seeds] - a[seeds]) / b[seeds]).to_numpy()


def _loss_name(task: str) -> str:
    return {"regression": "MSE", "classification": "CE"}[task]


def paper_dataset(dataset: str) -> str:
    """The dataset of the paper's Table 2 whose effects a claim on ``dataset`` is held to: its own row where the
    paper has one (ml-20m, ml-latest, netflix), else MovieLens-20m's."""
    return dataset if (dataset, "regression") in ex.PAPER_TABLE2 else PAPER_DATASET


def paper_effect(task: str, method: str, comparator: str, dataset: str = PAPER_DATASET) -> float | None:
    """The paper's relative loss advantage of ``method`` over ``comparator`` in its Table 2, on ``dataset``'s row
    (:func:`paper_dataset`)."""
    paper = ex.PAPER_TABLE2.get((paper_dataset(dataset), task), {})
    if method not in paper or comparator not in paper:
        return None
    return (paper[comparator][0] - paper[method][0]) / paper[comparator][0]


# -- Figure 1 ---------------------------------------------------------------------------------------
def preliminary_claims(study: pd.DataFrame, dataset: str, task: str) -> list[dict]:
    """Figure 1, the crossover: the smallest dimension beats the largest at the smallest x, and loses to it at
    the largest x (test loss of models early-stopped, or under the paper's protocol trained a fixed number of
    epochs: a claim of its own)."""
    small, large = f"fixed-{study['dimension'].min()}", f"fixed-{study['dimension'].max()}"
    sizes = sorted(study["train_size"].unique())
    paper = "protocol" in study and (study["protocol"] == "paper").all()
    name = "Figure 1: crossover" + (" (paper's protocol)" if paper else "")
    metric = f"test {_loss_name(task)}, relative"
    first, last = (study[study["train_size"] == x] for x in (sizes[0], sizes[-1]))
    return [_row(name, dataset, task, metric, small, large, _advantage(first, small, large), bucket=f"x={sizes[0]}"),
            _row(name, dataset, task, metric, large, small, _advantage(last, large, small), bucket=f"x={sizes[-1]}")]


def figure1(study: pd.DataFrame, dataset: str, task: str) -> StudyFigure:
    """Figure 1 from :func:`experiments.preliminary_study`'s frame: per x each dimension's test metrics and the
    best one (:func:`experiments.crossover`), the crossover claims and the figure."""
    return StudyFigure(ex.crossover(study), claims_frame(preliminary_claims(study, dataset, task)),
                       _plots().preliminary(study, task), study)


def stream_capacity_claims(metrics: pd.DataFrame, dataset: str, side: str = "user") -> list[dict]:
    """Figure 1's streaming view: in the online stage, the smallest fixed dimension beats the largest for the
    least popular bucket, and loses to it for the most popular."""
    rows = []
    for task, frame in metrics.groupby("task", sort=False):
        dims = sorted(int(m.split("-")[1]) for m in frame["method"].unique() if m.startswith("fixed-"))
        if len(dims) < 2:
            continue
        small, large = f"fixed-{dims[0]}", f"fixed-{dims[-1]}"
        buckets = [b for b in frame["bucket"].cat.categories if (frame["bucket"] == b).any()]
        metric = f"online {_loss_name(task)} by {side} popularity, relative"
        for bucket, (a, b) in ((buckets[0], (small, large)), (buckets[-1], (large, small))):
            part = frame[frame["bucket"] == bucket]
            rows.append(_row("Figure 1 (stream): crossover", dataset, task, metric, a, b, _advantage(part, a, b),
                             bucket=str(bucket)))
    return rows


def figure1_stream(results: dict, dataset: str, side: str = "user", edges=None) -> StudyFigure:
    """Figure 1's streaming view from the fixed dimensions' runs ``{(method, seed): RunResult}``: online
    metrics by ``side`` popularity (buckets ``edges``, default :func:`experiments.sample_edges`), the
    crossover claims and the figure."""
    metrics = ex.popularity_metrics(results, side, edges)
    figure = _plots().popularity(metrics, side, "Figure 1, streaming view: fixed dimensions online, by popularity")
    return StudyFigure(ex.popularity_table(metrics), claims_frame(stream_capacity_claims(metrics, dataset, side)),
                       figure, metrics)


# -- Table 2 ----------------------------------------------------------------------------------------
ORDERING_CLAIM, CONTROLS_CLAIM = "Table 2: ordering", "AutoEmb beats the controls"
TABLE2_CLAIMS = (ORDERING_CLAIM, CONTROLS_CLAIM)  # the claims whose paper effects come from the paper's Table 2


def table2_claims(runs: pd.DataFrame) -> list[dict]:
    """Table 2's ordering AutoEmb < DARTS < SAM < FSE in online loss, pair by pair (and AutoEmb against FSE),
    and AutoEmb against the controls; ``runs`` is :func:`experiments.compare`'s frame."""
    rows = []
    for (dataset, task), group in runs.groupby(["dataset", "task"], sort=False):
        frame = group.rename(columns={"online_loss": "loss"})
        present = set(frame["method"])
        metric = f"online {_loss_name(task)}, relative"
        for name, pairs in ((ORDERING_CLAIM, ORDERING), (CONTROLS_CLAIM, [("autoemb", c) for c in RIVALS])):
            for method, comparator in pairs:
                if {method, comparator} <= present:
                    rows.append(_row(name, dataset, task, metric, method, comparator,
                                     _advantage(frame, method, comparator),
                                     paper_effect(task, method, comparator, dataset)))
    return rows


def table2(runs: pd.DataFrame) -> StudyFigure:
    """Table 2 from :func:`experiments.compare`'s frame: laid out like the paper's (:func:`experiments.paper_table`),
    its claims, no figure; ``data`` is :func:`experiments.overall_table`."""
    overall = ex.overall_table(runs)
    return StudyFigure(ex.paper_table(overall), claims_frame(table2_claims(runs)), None, overall)


# -- Figure 6 ---------------------------------------------------------------------------------------
def popularity_claims(metrics: pd.DataFrame, dataset: str, side: str = "user", method: str = "autoemb",
                      comparators=("fse", "sam")) -> list[dict]:
    """Figure 6: ``method``'s online loss advantage in each popularity bucket; ``metrics`` is
    :func:`experiments.popularity_metrics`'s frame."""
    rows = []
    for task, frame in metrics.groupby("task", sort=False):
        for comparator in comparators:
            if not {method, comparator} <= set(frame["method"]):
                continue
            for bucket, part in frame.groupby("bucket", observed=True, sort=True):
                rows.append(_row("Figure 6: advantage by popularity", dataset, task,
                                 f"online {_loss_name(task)} by {side} popularity, relative", method, comparator,
                                 _advantage(part, method, comparator), bucket=str(bucket)))
    return rows


def figure6(results: dict, dataset: str, side: str = "user", edges=None) -> StudyFigure:
    """Figure 6 from runs ``{(method, seed): RunResult}``: online metrics by ``side`` popularity (buckets
    ``edges``, default :func:`experiments.sample_edges`), AutoEmb's advantage per bucket as claims, and the
    figure of that advantage with its intervals. The paper's own view, one line per method, is
    :func:`plots.popularity` of ``data``."""
    metrics = ex.popularity_metrics(results, side, edges)
    claims = claims_frame(popularity_claims(metrics, dataset, side))
    return StudyFigure(ex.popularity_table(metrics), claims, _plots().popularity_advantage(claims), metrics)


# -- Figure 7 ---------------------------------------------------------------------------------------
def weight_slopes(records: pd.DataFrame, method: str = "autoemb", stage: str = "online") -> pd.DataFrame:
    """Per seed and side, the least-squares slope of the weight on larger dimensions, ``sum_k w_k k/(N-1)``
    (0: all weight on the smallest space, 1: all on the largest), against ``log2(1 + popularity)``, over
    ``method``'s recorded weights in ``stage``."""
    part = records[(records["method"] == method) & (records["stage"] == stage)]
    if part.empty:
        return pd.DataFrame(columns=["seed", "side", "slope", "records"])
    dims = sorted(part["dimension"].unique())
    rank = part["dimension"].map({d: k / max(len(dims) - 1, 1) for k, d in enumerate(dims)})
    part = part.assign(larger=part["weight"] * rank)
    per_id = part.groupby(["seed", "side", "batch", "id"], sort=False).agg(larger=("larger", "sum"),
                                                                          popularity=("popularity", "first"))
    rows = []
    for (seed, side), g in per_id.reset_index().groupby(["seed", "side"]):
        x, y = np.log2(1.0 + g["popularity"].to_numpy(float)), g["larger"].to_numpy(float)
        slope = float(np.cov(x, y, bias=True)[0, 1] / x.var()) if x.var() > 0 else float("nan")
        rows.append({"seed": seed, "side": side, "slope": slope, "records": len(g)})
    return pd.DataFrame(rows)


def weight_claims(slopes: pd.DataFrame, dataset: str, task: str, method: str = "autoemb") -> list[dict]:
    """Figure 7: the weight moves to larger dimensions as popularity grows (a positive slope)."""
    return [_row("Figure 7: weight moves to larger dimensions", dataset, task,
                 f"slope of the weight on larger dimensions per doubling of {side} popularity", method, "", g["slope"])
            for side, g in slopes.groupby("side")]


def figure7(records: pd.DataFrame, dataset: str, task: str, edges=None, side: str = "user",
            method: str = "autoemb") -> StudyFigure:
    """Figure 7 from :func:`experiments.weight_records`' frame: ``method``'s online weights on users and on items
    (the claims hold one slope per side, so the figure draws both), per popularity bucket (mean per dimension,
    :func:`experiments.mean_weights`, rows by ``side`` then bucket), the slope claims and the figure, a panel per
    side; ``data`` is the selection drawn, both sides, ``bucket`` as text.

    ``edges``: ``{side: edges}``, or one side's edges, those of ``side`` (Figure 6's buckets, as the report and
    the notebook pass them). A side without edges is bucketed by :func:`experiments.popularity_edges` of its
    recorded popularities (one per id and recording): the other side's buckets need no runs' samples."""
    if side not in SIDES:
        raise DataError(f"side must be one of {SIDES}, got {side!r}")
    given = edges if isinstance(edges, dict) else {side: edges}
    selections = {}
    for s in SIDES:
        part = ex.select_weights(records, method=method, side=s, stage="online")
        cut = given.get(s)
        if cut is None:
            cut = ex.popularity_edges(part.drop_duplicates(["seed", "batch", "id"])["popularity"])
        selections[s] = part.assign(bucket=ex.bucketize(part["popularity"], cut))
    drawn = {s: part for s, part in selections.items() if len(part)}
    table = (pd.concat({s: ex.mean_weights(part) for s, part in drawn.items()}, names=["side"]) if drawn
             else ex.mean_weights(records.iloc[:0]))
    selection = pd.concat([part.assign(bucket=part["bucket"].astype(str)) for part in selections.values()],
                          ignore_index=True)
    claims = claims_frame(weight_claims(weight_slopes(records, method), dataset, task, method))
    return StudyFigure(table, claims, _plots().weights_by_popularity(selection, method), selection)


# -- Figure 8 ---------------------------------------------------------------------------------------
def early_losses(results: dict, fraction: float = 0.2) -> pd.DataFrame:
    """Each run's loss over the first ``fraction`` of its offline stage (evaluate-then-train), at least its
    first batch."""
    rows = []
    for (method, seed), result in results.items():
        b = result.batches[result.batches["stage"] == "offline"]
        if len(b):
            early = b[b["seen"] <= max(fraction * b["seen"].iloc[-1], b["seen"].iloc[0])]
            rows.append({"method": method, "seed": seed, "task": result.summary["task"],
                         "loss": float((early["loss"] * early["size"]).sum() / early["size"].sum())})
    return pd.DataFrame(rows, columns=["method", "seed", "task", "loss"])


def early_claims(losses: pd.DataFrame, dataset: str, fraction: float = 0.2, method: str = "autoemb",
                 comparators=("fse", "sam")) -> list[dict]:
    """Figure 8: AutoEmb's advantage in the early, data-poor part of the offline stage."""
    rows = []
    for task, frame in losses.groupby("task", sort=False):
        for comparator in comparators:
            if {method, comparator} <= set(frame["method"]):
                rows.append(_row("Figure 8: advantage early in the stream", dataset, task,
                                 f"offline {_loss_name(task)} over the first {fraction:.0%} of the stage, relative",
                                 method, comparator, _advantage(frame, method, comparator)))
    return rows


def figure8(results: dict, dataset: str, early_fraction: float = 0.2, points: int = 20) -> StudyFigure:
    """Figure 8 from runs ``{(method, seed): RunResult}``: the offline stage's metrics in ``points`` slices (the
    loss per slice as the table), AutoEmb's advantage over the first ``early_fraction`` as claims, and the
    figure."""
    curves = ex.learning_curves(results, "offline", points)
    claims = claims_frame(early_claims(early_losses(results, early_fraction), dataset, early_fraction))
    return StudyFigure(ex.curve_table(curves, "loss"), claims, _plots().learning_curves(curves, early_fraction=early_fraction),
                       curves)


# -- the memory frontier ----------------------------------------------------------------------------
def frontier_view(table: pd.DataFrame, timings: bool = True) -> pd.DataFrame:
    """The frontier table for a reader: loss with its interval, bytes and their ratios, the change against
    FSE-146 and whether the point is Pareto-optimal; with ``timings``, peak RSS and seconds (which vary from run
    to run) too."""
    def change(r):
        if not np.isfinite(r["vs_fse146_loss"]):
            return ""
        half = r["vs_fse146_loss_±95%"]
        return f"{100 * r['vs_fse146_loss']:+.2f}%" + (f" ± {100 * half:.2f}" if np.isfinite(half) else "")
    out = pd.DataFrame({
        "point": table["point"],
        "online loss": [f"{v:.4f}" + (f" ± {h:.4f}" if np.isfinite(h) else "") for v, h in zip(table["online_loss"], table["±95%"])],
        "embedding MB": (table["embedding_bytes"] / 1e6).round(3),
        "× FSE-146": table["vs_fse146_bytes"].round(3), "× FSE-128": table["vs_fse128_bytes"].round(3),
        "loss vs FSE-146 (95% CI)": [change(r) for _, r in table.iterrows()],
        "parameters": table["embedding_parameters"].round().astype("Int64"),
        "Pareto": table["pareto"].map({True: "yes", False: ""})})
    if timings:
        out["peak RSS MB"] = table["peak_rss_mb"].round(0)
        out["seconds"] = table["seconds"].round(0)
    return out


def frontier(runs: pd.DataFrame, task: str, dataset: str, timings: bool = True) -> StudyFigure:
    """The memory frontier from :func:`frontier.frontier`'s runs: the table (:func:`frontier_view`; peak RSS and
    seconds only with ``timings``), the claims about hard AutoEmb (:func:`frontier.frontier_claims`) and the
    figure; ``data`` is :func:`frontier.frontier_table`."""
    table = fr.frontier_table(runs)
    return StudyFigure(frontier_view(table, timings), claims_frame(fr.frontier_claims(runs)),
                       _plots().frontier(table, task, f"Memory frontier on {dataset}"), table)
