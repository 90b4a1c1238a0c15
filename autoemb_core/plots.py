"""The paper's figures, drawn with seaborn from the tidy frames of :mod:`autoemb_core.experiments`.

Each function returns a matplotlib Figure titled and labelled like the paper's; :func:`save` writes it as
PNG and SVG. Styles are applied in a context, so importing this module changes no global setting.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .atomic import atomic_write
from .methods import PAPER, display
from .stats import paired_interval

ORDER = [display(m) for m in PAPER]
SIDE_WORDS = {"user": "users", "item": "items"}


def loss_name(task: str) -> str:
    """The loss the paper reports for ``task``: MSE (regression) or CE (classification)."""
    return {"regression": "MSE", "classification": "CE"}[task]


@contextmanager
def _style():
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        yield


def _task(frame: pd.DataFrame) -> str:
    tasks = frame["task"].unique() if "task" in frame else ["regression"]
    if len(tasks) != 1:
        raise ValueError(f"one task per figure, got {list(tasks)}")
    return tasks[0]


def _methods(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    frame = frame.assign(method=frame["method"].map(lambda m: display(m)))
    present = list(dict.fromkeys(frame["method"]))
    return frame, [m for m in ORDER if m in present] + [m for m in present if m not in ORDER]


def _t_interval(values) -> tuple[float, float]:
    """The 95% t interval of the mean of ``values`` (per-seed differences), as the claims compute it."""
    r = paired_interval(values, np.zeros(len(values)))
    return r["low"], r["high"]


def _spread(frame: pd.DataFrame, interval: bool = False):
    """Error bars over seeds, when there are several: ± one standard deviation, or with ``interval`` the 95% t
    interval of the mean (exact, where seaborn's ``("ci", 95)`` would bootstrap)."""
    if frame["seed"].nunique() < 2:
        return None
    return _t_interval if interval else ("sd", 1)


def _nothing(ax) -> None:
    ax.text(0.5, 0.5, "no weights recorded for this selection", ha="center", va="center", transform=ax.transAxes)


def save(fig, folder, name: str, close: bool = False) -> list[Path]:
    """``fig`` as ``<folder>/<name>.png`` and ``.svg``, each written atomically; returns the paths. ``close``:
    then free it (commands; a notebook keeps its figure to show it)."""
    paths = []
    for fmt in ("png", "svg"):
        path = Path(folder) / f"{name}.{fmt}"
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(path)
    if close:
        plt.close(fig)
    return paths


METRICS = (("loss", None), ("accuracy", "Accuracy"))


MARKERS = "osD^vPX*"
DASHES = ["", (4, 1.5), (1, 1), (3, 1.25, 1.5, 1.25), (5, 1, 1, 1), (2, 2), (6, 2), (1, 2)]


def _palette(order: list[str]) -> dict:
    """One colour per method (or dimension), the same in every panel: seaborn's colorblind palette, with its
    vermilion (too close to its orange) moved after its purple."""
    colors = sns.color_palette("colorblind", 10)
    return dict(zip(order, [colors[i] for i in (0, 1, 2, 4, 3, 5, 6, 7, 8, 9)] * (1 + len(order) // 10)))


def difference_from(frame: pd.DataFrame, reference: str, column: str, keys) -> pd.DataFrame:
    """Each other method's ``column`` minus the ``reference`` method's at the same seed and ``keys``, as
    ``difference``: in percent of the reference for the loss, in percentage points for accuracy."""
    base = frame[frame["method"] == reference].set_index(["seed", *keys])[column].rename("reference")
    other = frame[frame["method"] != reference].join(base, on=["seed", *keys])
    change = other[column] - other["reference"]
    return other.assign(difference=100 * (change / other["reference"] if column == "loss" else change))


def svg_with_text(fig) -> str:
    """``fig`` as SVG whose text stays text (readable in the page, by a browser test too), not glyph paths."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()


def _metric_panels(frame: pd.DataFrame, order: list[str], task: str, suptitle: str, xlabel: str, draw, keys,
                   reference: str | None = None, legend_title=None, interval: bool = False):
    """(a) the task's loss and (b) accuracy, ``draw(ax, column, frame, hue_order, palette, errorbar)`` plotting
    each with a band of ± one standard deviation over seeds; with a ``reference`` among several methods, a
    second row draws every other method's difference from it, paired by seed, with the same band or, with
    ``interval``, the 95% t interval of the mean difference: lines within a few percent of each other are told
    apart there, not in the first row. Its titles say which band it is and what the sign means."""
    palette = _palette(order)
    others = [m for m in order if m != reference]
    rows = 2 if reference in order and others else 1
    seeds = frame["seed"].nunique()
    band = (f"band: {'95% interval' if interval else '± sd'} over {seeds} seeds, paired by seed" if seeds > 1
            else "one seed: no band")
    with _style():
        fig, axes = plt.subplots(rows, 2, figsize=(11, 3.7 * rows), squeeze=False)
        for k, (column, label) in enumerate(METRICS):
            label = label or loss_name(task)
            ax = axes[0, k]
            draw(ax, column, frame, order, palette, _spread(frame))
            ax.set(xlabel=xlabel, ylabel=label, title=f"({'ab'[k]}) {label}")
            ax.legend(title=legend_title)
            if rows == 2:
                ax = axes[1, k]
                change = difference_from(frame, reference, column, keys)
                draw(ax, "difference", change, others, palette, _spread(change, interval))
                ax.axhline(0, color=palette[reference], linewidth=1.5, label=f"{reference} (reference)")
                unit, sign = ("%", "<") if column == "loss" else ("points", ">")
                ax.set(xlabel=xlabel, ylabel=f"{label} − {reference} ({unit})",
                       title=f"({'cd'[k]}) {label}, difference from {reference} ({sign} 0: better)\n{band}")
                ax.legend(title=legend_title)
        fig.suptitle(suptitle)
        fig.tight_layout()
    return fig


def _lines(x: str, log2: bool = False, numeric: bool = True):
    """A ``draw`` for :func:`_metric_panels`: one line per hue with its own marker and dash, so that lines that
    coincide stay visible, and the band ``errorbar`` (:func:`_spread`)."""
    def draw(ax, column, frame, order, palette, errorbar):
        styles = {name: k for k, name in enumerate(palette)}  # by the method's place in the first row
        sns.lineplot(frame, x=x, y=column, hue="method", hue_order=order, style="method", style_order=order,
                     markers={m: MARKERS[styles[m] % len(MARKERS)] for m in order},
                     dashes={m: DASHES[styles[m] % len(DASHES)] for m in order}, palette=palette,
                     errorbar=errorbar, err_style="band", sort=numeric, markersize=6, linewidth=1.4,
                     alpha=0.9, ax=ax)
        if not numeric:
            ax.tick_params(axis="x", labelrotation=45)
        if log2:
            ax.set_xscale("log", base=2)
    return draw


def preliminary(study: pd.DataFrame, task: str = "regression"):
    """Figure 1: test loss and accuracy against x, the training ratings per user, one line per dimension; and
    each dimension's difference from the largest, paired by seed with its 95% interval: the lines of the first
    row lie nearly on one another, the sign of the difference is what the figure is about."""
    frame = study.assign(method=study["dimension"].map(lambda d: f"d = {d}"))
    order = [f"d = {d}" for d in sorted(study["dimension"].unique())]
    sizes = sorted(frame["train_size"].unique())

    def draw(ax, column, part, hue_order, palette, errorbar):
        _lines("train_size", log2=True)(ax, column, part, hue_order, palette, errorbar)
        ax.set_xticks(sizes, [str(x) for x in sizes])

    return _metric_panels(frame, order, task, "Figure 1: Impact of embedding dimensionality on recommendations",
                          "x (training ratings per user)", draw, ["train_size"], reference=order[-1],
                          legend_title="embedding", interval=True)


def popularity(metrics: pd.DataFrame, side: str = "user", title: str | None = None, reference: str = "fse"):
    """Figure 6: online loss and accuracy per popularity bucket, one line per method, and each method's
    difference from ``reference`` (FSE) per bucket."""
    frame, order = _methods(metrics)
    frame = frame.assign(bucket=frame["bucket"].astype(str))
    return _metric_panels(frame, order, _task(metrics),
                          title or f"Figure 6: Performance with different popularities (online stage, {SIDE_WORDS[side]})",
                          f"popularity ({side} interactions before the batch)", _lines("bucket", numeric=False),
                          ["bucket"], reference=display(reference))


def popularity_advantage(claims: pd.DataFrame):
    """Figure 6 as the claims measure it: a method's relative online loss advantage over each comparator per
    popularity bucket, with its 95% interval over seeds (positive: the method is better)."""
    with _style():
        fig, ax = plt.subplots(figsize=(9, 3.8))
        if claims.empty:
            _nothing(ax)
            return fig
        comparators = list(dict.fromkeys(claims["comparator"]))
        buckets = list(dict.fromkeys(claims["bucket"]))
        width = 0.8 / len(comparators)
        for k, (comparator, color) in enumerate(zip(comparators, sns.color_palette("colorblind"))):
            part = claims[claims["comparator"] == comparator].set_index("bucket").reindex(buckets)
            x = [i + (k - (len(comparators) - 1) / 2) * width for i in range(len(buckets))]
            effect = 100 * part["effect"]
            err = [100 * (part["effect"] - part["ci_low"]), 100 * (part["ci_high"] - part["effect"])]
            ax.errorbar(x, effect, yerr=err, fmt="o", capsize=3, color=color,
                        label=f"vs {display(comparator)}")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(buckets)), buckets, rotation=45)
        method = display(claims["method"].iloc[0])
        ax.set(xlabel="popularity (interactions before the batch)", ylabel="loss advantage (%)",
               title=f"Figure 6: {method}'s online {loss_name(claims['task'].iloc[0])} advantage by popularity "
                     f"(95% interval over seeds; > 0: {method} better)")
        ax.legend()
        fig.tight_layout()
    return fig


def weights_by_popularity(selection: pd.DataFrame, method: str = "autoemb"):
    """Figure 7: each dimension's selection weight per popularity bucket, users left and items right (each side
    its own buckets, its claim its own slope), the mean over the recorded ids with a band from their 25th to 75th
    percentile, on a log scale: weights near 0 stay readable beside weights near 1."""
    names = {d: f"d = {d}" for d in sorted(selection["dimension"].unique())}
    palette = _palette(list(names.values()))
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
        for k, (ax, side) in enumerate(zip(axes, SIDE_WORDS)):
            frame = selection[selection["side"] == side]
            if frame.empty:
                _nothing(ax)
            else:
                frame = frame.assign(bucket=frame["bucket"].astype(str))
                buckets = list(dict.fromkeys(frame.sort_values("popularity")["bucket"]))
                stats = frame.groupby(["dimension", "bucket"])["weight"].describe()
                for (dim, name), marker in zip(names.items(), MARKERS):
                    part = stats.loc[dim].reindex(buckets)
                    x = range(len(buckets))
                    ax.plot(x, part["mean"], marker=marker, color=palette[name], label=name)
                    ax.fill_between(x, part["25%"], part["75%"], color=palette[name], alpha=0.25, linewidth=0)
                ax.set_yscale("log")
                ax.set_xticks(range(len(buckets)), buckets, rotation=45)
                handles = ax.get_legend_handles_labels()
            ax.set(xlabel=f"popularity ({side} interactions before the batch)", ylabel="weight (log scale)",
                   title=f"({'ab'[k]}) {display(method)}, {SIDE_WORDS[side]}")
        if not selection.empty:  # one legend: the colours are the same on both sides
            fig.legend(*handles, title="embedding", loc="upper left", bbox_to_anchor=(1.0, 0.9))
        fig.suptitle("Figure 7: The weights on different embedding dimensions with different popularities "
                     "(mean over ids, band: 25th-75th percentile)")
        fig.tight_layout()
    return fig


def popularity_bins(popularity: pd.Series) -> pd.Series:
    """Each popularity's power-of-two bin, by its lower edge: 0, 1, 2 (2-3), 4 (4-7), ..."""
    values = popularity.to_numpy(dtype="int64")
    edges = 2 ** np.floor(np.log2(np.maximum(values, 1))).astype("int64")
    return pd.Series(np.where(values > 0, edges, 0), index=popularity.index)


def weights_against_popularity(context: pd.DataFrame, chosen: tuple[int, int], title: str = ""):
    """The explorer's view. (a) Each dimension's mean selection weight against the ids' popularity (power-of-two
    bins, a band from the 25th to the 75th percentile over ids), the chosen range shaded. (b) The weights of the
    ids in that range, as each dimension's cumulative distribution: unlike a histogram, no spike hides the other
    dimensions."""
    with _style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.8), gridspec_kw={"width_ratios": [3, 2]})
        fig.suptitle(title)
        if context.empty:
            _nothing(left)
            _nothing(right)
            fig.tight_layout()
            return fig
        dims = sorted(context["dimension"].unique())
        palette = _palette([f"d = {d}" for d in dims])
        frame = context.assign(bin=popularity_bins(context["popularity"]),
                               dimension=context["dimension"].map(lambda d: f"d = {d}"))
        stats = frame.groupby(["dimension", "bin"])["weight"].describe()
        lo, hi = chosen
        left.axvspan(max(lo, 0), hi, color="0.85", zorder=0, label=f"chosen: {lo:,}-{hi:,}")
        for name, color in palette.items():
            if name not in stats.index.get_level_values(0):
                continue
            part = stats.loc[name]
            left.plot(part.index, part["mean"], marker="o", color=color, label=name)
            left.fill_between(part.index, part["25%"], part["75%"], color=color, alpha=0.2, linewidth=0)
        left.set_xscale("symlog", base=2, linthresh=1)
        left.set(xlabel="popularity (interactions before the batch; power-of-two bins)", ylabel="weight",
                 ylim=(-0.02, 1.02))
        left.set_title("(a) mean weight by popularity (band: 25th-75th percentile of ids)", fontsize=9)
        left.legend(fontsize=8, loc="best")
        inside = frame[(frame["popularity"] >= lo) & (frame["popularity"] <= hi)]
        if inside.empty:
            _nothing(right)
        else:
            sns.ecdfplot(inside, x="weight", hue="dimension", hue_order=list(palette), palette=palette, ax=right)
            means = inside.groupby("dimension")["weight"].mean()
            right.set_title("(b) the chosen range; means: "
                            + ", ".join(f"{d}: {means[d]:.2f}" for d in palette if d in means), fontsize=8)
        right.set(xlim=(0, 1), xlabel="weight", ylabel="share of ids' weights at most x")
        fig.tight_layout()
    return fig


def learning_curves(curves: pd.DataFrame, reference: str = "fse", early_fraction: float | None = None):
    """Figure 8: loss and accuracy along the offline stage against the training examples seen, and each
    method's difference from ``reference`` (FSE); with ``early_fraction``, the early window its claim judges is
    shaded on every panel."""
    frame, order = _methods(curves)
    fig = _metric_panels(frame, order, _task(curves), "Figure 8: The offline parameter estimation process",
                         "number of training examples", _lines("seen"), ["seen"], reference=display(reference))
    if early_fraction:
        until = early_fraction * frame["seen"].max()
        for n, ax in enumerate(fig.axes):
            ax.axvspan(0, until, color="0.9", zorder=0, label=f"the early window (first {early_fraction:.0%})"
                       if n == 0 else None)
        fig.axes[0].text(until, 1.0, f" early window: first {early_fraction:.0%}", transform=fig.axes[0].get_xaxis_transform(),
                         ha="left", va="top", fontsize=8, color="0.35")
    return fig


FAMILY_NAMES = {"fse": "FSE-d", "mf": "MF-d", "popularity-rule": "popularity rule (mixed)", "autoemb-hard": "hard AutoEmb (λ)",
                "autoemb-hard move_init": "hard AutoEmb, other move_init", "autoemb": "soft AutoEmb",
                "biases": "floor: online biases", "item-mean": "floor: item mean"}


def frontier(table: pd.DataFrame, task: str = "regression", title: str = ""):
    """Online loss against embedding bytes (log scale), one series per family with 95% bars over seeds; the
    Pareto-optimal points ringed, FSE-146's loss dotted."""
    task_loss = f"online {loss_name(task)}"
    with _style():
        fig, ax = plt.subplots(figsize=(9.5, 4.6))
        series = table["family"].where(~table["setting"].str.startswith("move_init"), "autoemb-hard move_init")
        for family, group in table.groupby(series, sort=False):
            group = group.sort_values("embedding_bytes")
            alone = family not in ("fse", "mf", "popularity-rule", "autoemb-hard")
            ax.errorbar(group["embedding_bytes"], group["online_loss"], yerr=group["±95%"].fillna(0),
                        marker="x" if family in ("biases", "item-mean") else "s" if alone else "o", capsize=3, label=FAMILY_NAMES.get(family, family),
                        linestyle="-" if family in ("fse", "mf") else "none" if alone else "--")
            for _, row in group.iterrows():
                ax.annotate(row["setting"].replace("penalty=", "λ=").replace("thresholds=", ""),
                            (row["embedding_bytes"], row["online_loss"]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
        best = table[table["pareto"]]
        ax.scatter(best["embedding_bytes"], best["online_loss"], s=160, facecolors="none", edgecolors="black",
                   label="Pareto frontier")
        reference = table[table["point"] == "fse d=146"]
        if len(reference):
            ax.axhline(float(reference["online_loss"].iloc[0]), color="grey", linestyle=":", linewidth=1,
                       label="FSE-146")
        ax.set_xscale("log")
        ax.set_xlabel("embedding bytes allocated (tables, optimizer state, id maps, transforms)")
        ax.set_ylabel(task_loss)
        ax.set_title(title or "Memory frontier")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
    return fig
