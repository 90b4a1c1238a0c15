"""The paper's figures, drawn with seaborn from the tidy frames of :mod:`autoemb_core.experiments`.

Each function returns a matplotlib Figure titled and labelled like the paper's; :func:`save` writes it as
PNG and SVG. Styles are applied in a context, so importing this module changes no global setting.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .atomic import atomic_write
from .experiments import NAMES

ORDER = [NAMES[m] for m in ("fse", "sam", "darts", "autoemb")]
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
    frame = frame.assign(method=frame["method"].map(lambda m: NAMES.get(m, m)))
    present = list(dict.fromkeys(frame["method"]))
    return frame, [m for m in ORDER if m in present] + [m for m in present if m not in ORDER]


def _spread(frame: pd.DataFrame):
    """Error bars of ± one standard deviation over seeds, when there are several."""
    return ("sd", 1) if frame["seed"].nunique() > 1 else None


def _nothing(ax) -> None:
    ax.text(0.5, 0.5, "no weights recorded for this selection", ha="center", va="center", transform=ax.transAxes)


def save(fig, folder, name: str) -> list[Path]:
    """``fig`` as ``<folder>/<name>.png`` and ``.svg``, each written atomically; returns the paths."""
    paths = []
    for fmt in ("png", "svg"):
        path = Path(folder) / f"{name}.{fmt}"
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths


def _metric_panels(task: str, suptitle: str, xlabel: str, draw, size=(11, 3.8), legend_title=None):
    """Two panels, (a) the task's loss and (b) accuracy; ``draw(ax, column)`` plots one of them."""
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=size)
        for ax, letter, (column, label) in zip(axes, "ab", (("loss", loss_name(task)), ("accuracy", "Accuracy"))):
            draw(ax, column)
            ax.set(xlabel=xlabel, ylabel=label, title=f"({letter}) {label}")
            ax.legend(title=legend_title)
        fig.suptitle(suptitle)
        fig.tight_layout()
    return fig


def preliminary(study: pd.DataFrame, task: str = "regression"):
    """Figure 1: test loss and accuracy against x, the training ratings per user, one line per dimension."""
    frame = study.assign(dimension=study["dimension"].map(lambda d: f"d = {d}"))
    hue_order = [f"d = {d}" for d in sorted(study["dimension"].unique())]
    sizes = sorted(frame["train_size"].unique())

    def draw(ax, column):
        sns.lineplot(frame, x="train_size", y=column, hue="dimension", hue_order=hue_order, style="dimension",
                     style_order=hue_order, markers=True, dashes=False, errorbar=_spread(frame), ax=ax)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(x) for x in sizes])

    return _metric_panels(task, "Figure 1: Impact of embedding dimensionality on recommendations",
                          "x (training ratings per user)", draw, size=(10, 3.8), legend_title="embedding")


def popularity(metrics: pd.DataFrame, side: str = "user", title: str | None = None):
    """Figure 6: online loss and accuracy per popularity bucket, one line per method."""
    frame, order = _methods(metrics)

    def draw(ax, column):
        sns.pointplot(frame, x="bucket", y=column, hue="method", hue_order=order, errorbar=_spread(frame),
                      dodge=0.3, markersize=4, linewidth=1.2, ax=ax)
        ax.tick_params(axis="x", labelrotation=45)

    return _metric_panels(_task(metrics),
                          title or f"Figure 6: Performance with different popularities (online stage, {SIDE_WORDS[side]})",
                          f"popularity ({side} interactions before the batch)", draw)


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
                        label=f"vs {NAMES.get(comparator, comparator)}")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(buckets)), buckets, rotation=45)
        method = NAMES.get(claims["method"].iloc[0], claims["method"].iloc[0])
        ax.set(xlabel="popularity (interactions before the batch)", ylabel="loss advantage (%)",
               title=f"Figure 6: {method}'s online {loss_name(claims['task'].iloc[0])} advantage by popularity "
                     f"(95% interval over seeds; > 0: {method} better)")
        ax.legend()
        fig.tight_layout()
    return fig


def weights_by_popularity(selection: pd.DataFrame, method: str = "autoemb", side: str = "user"):
    """Figure 7: the distribution of the selection weights on each dimension, per popularity bucket."""
    frame = selection.assign(dimension=selection["dimension"].map(lambda d: f"d = {d}"))
    hue_order = [f"d = {d}" for d in sorted(selection["dimension"].unique())]
    with _style():
        fig, ax = plt.subplots(figsize=(11, 3.8))
        if selection.empty:
            _nothing(ax)
        else:
            sns.boxplot(frame, x="bucket", y="weight", hue="dimension", hue_order=hue_order, showfliers=False,
                        palette="viridis", ax=ax)
            ax.legend(title="embedding", loc="upper left", bbox_to_anchor=(1.0, 1.0))
            ax.tick_params(axis="x", labelrotation=45)
        ax.set(xlabel=f"popularity (ppl, {side} interactions before the batch)", ylabel="weight",
               title=f"Figure 7: The weights on different embedding dimensions with different popularities "
                     f"({NAMES.get(method, method)}, {SIDE_WORDS[side]})")
        fig.tight_layout()
    return fig


def weight_distribution(selection: pd.DataFrame, title: str = ""):
    """The explorer's view: histograms of the selection weights on each dimension, with their means."""
    with _style():
        fig, ax = plt.subplots(figsize=(8, 3.6))
        if selection.empty:
            _nothing(ax)
        else:
            frame = selection.assign(dimension=selection["dimension"].map(lambda d: f"d = {d}"))
            means = selection.groupby("dimension")["weight"].mean()
            order = [f"d = {d}" for d in means.index]
            sns.histplot(frame, x="weight", hue="dimension", hue_order=order, bins=25, binrange=(0, 1),
                         stat="density", common_norm=False, element="step", palette="viridis", ax=ax)
            title += "  (means: " + ", ".join(f"d = {d}: {m:.2f}" for d, m in means.items()) + ")"
        ax.set(xlabel="weight", xlim=(0, 1), title=title)
        fig.tight_layout()
    return fig


def learning_curves(curves: pd.DataFrame):
    """Figure 8: loss and accuracy along the offline stage against the training examples seen."""
    frame, order = _methods(curves)

    def draw(ax, column):
        sns.lineplot(frame, x="seen", y=column, hue="method", hue_order=order, errorbar=_spread(frame),
                     marker="o", markersize=4, ax=ax)

    return _metric_panels(_task(curves), "Figure 8: The offline parameter estimation process",
                          "number of training examples", draw)


FAMILY_NAMES = {"fse": "FSE-d", "popularity-rule": "popularity rule (mixed)", "autoemb-hard": "hard AutoEmb (λ)",
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
            alone = family not in ("fse", "popularity-rule", "autoemb-hard")
            ax.errorbar(group["embedding_bytes"], group["online_loss"], yerr=group["±95%"].fillna(0),
                        marker="x" if family in ("biases", "item-mean") else "s" if alone else "o", capsize=3, label=FAMILY_NAMES.get(family, family),
                        linestyle="-" if family == "fse" else "none" if alone else "--")
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
