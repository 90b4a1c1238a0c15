"""The figures (titles, labels, one line per method) and the weights explorer's logic, without a browser."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from autoemb_core import DataError, plots  # noqa: E402
from autoemb_core import experiments as ex  # noqa: E402
from autoemb_core.explorer import WeightsExplorer, popularity_stops  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_figure1_has_a_line_per_dimension_and_the_papers_labels():
    study = pd.DataFrame([dict(dimension=d, train_size=x, seed=s, loss=0.2 + 0.01 * s + 0.001 * d,
                               accuracy=0.7 - 0.01 * s) for d in (2, 16, 128) for x in (1, 2, 4) for s in (0, 1)])
    fig = plots.preliminary(study, "classification")
    assert "Figure 1" in fig._suptitle.get_text()
    left, right = fig.axes[:2]
    assert (left.get_ylabel(), right.get_ylabel()) == ("CE", "Accuracy")
    assert left.get_xlabel().startswith("x (training ratings")
    assert legend_labels(left) == ["d = 2", "d = 16", "d = 128"]
    assert len(left.get_lines()) >= 3 and left.get_xscale() == "log"


T_975_2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom (3 seeds)


def test_figure1_draws_each_dimensions_paired_difference_from_the_largest_with_its_95_interval():
    shift = {2: -0.01, 16: 0.005, 128: 0.0}  # d = 2 better than d = 128, d = 16 worse; seed noise partly shared
    noise = {0: 0.0, 1: 0.004, 2: -0.003}
    study = pd.DataFrame([dict(dimension=d, train_size=x, seed=s, accuracy=0.7 - shift[d] + noise[s] * d / 64,
                               loss=0.2 + shift[d] + noise[s] * (1 + d / 64) + x / 100)
                          for d in (2, 16, 128) for x in (1, 4) for s in (0, 1, 2)])
    fig = plots.preliminary(study, "regression")
    assert len(fig.axes) == 4
    for ax, column, sign in ((fig.axes[2], "loss", "< 0: better"), (fig.axes[3], "accuracy", "> 0: better")):
        assert "difference from d = 128" in ax.get_title() and sign in ax.get_title()
        assert "band: 95% interval over 3 seeds, paired by seed" in ax.get_title()
        assert legend_labels(ax) == ["d = 2", "d = 16", "d = 128 (reference)"]
        assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_label().endswith("(reference)")] == [0]
        for line, band, d in zip(ax.get_lines(), ax.collections, (2, 16)):
            for x, y in zip(line.get_xdata(), line.get_ydata()):
                by_seed = study[study.train_size == x].pivot(index="seed", columns="dimension", values=column)
                change = by_seed[d] - by_seed[128]
                diff = (100 * change / by_seed[128] if column == "loss" else 100 * change).to_numpy()
                half = T_975_2 * diff.std(ddof=1) / np.sqrt(3)
                assert y == pytest.approx(diff.mean())
                edge = band.get_paths()[0].vertices
                at_x = edge[np.isclose(edge[:, 0], x), 1]
                assert (at_x.min(), at_x.max()) == pytest.approx((diff.mean() - half, diff.mean() + half))

    one = plots.preliminary(study[study.seed == 0], "regression")
    assert "one seed: no band" in one.axes[2].get_title() and not one.axes[2].collections


def test_figure6_and_8_have_a_line_per_method_and_its_difference_from_fse():
    losses = {"fse": 0.2, "sam": 0.19, "autoemb": 0.22}
    metrics = pd.DataFrame([dict(method=m, seed=s, bucket=b, samples=5, loss=losses[m] + 0.01 * s, accuracy=0.6,
                                 task="regression") for m in ("autoemb", "fse", "sam") for b in ("0", "1", "2-3")
                            for s in (0, 1)])
    fig = plots.popularity(metrics, "item")
    assert "Figure 6" in fig._suptitle.get_text() and "items" in fig._suptitle.get_text()
    assert fig.axes[0].get_ylabel() == "MSE" and "item interactions" in fig.axes[0].get_xlabel()
    assert legend_labels(fig.axes[0]) == ["FSE", "SAM", "AutoEmb"]
    assert len(fig.axes) == 4 and "difference from FSE" in fig.axes[2].get_title()
    assert "band: ± sd over 2 seeds, paired by seed" in fig.axes[2].get_title()  # Figure 6 keeps its sd band
    assert legend_labels(fig.axes[2]) == ["SAM", "AutoEmb", "FSE (reference)"]
    assert fig.axes[2].get_ylabel() == "MSE − FSE (%)" and fig.axes[3].get_ylabel() == "Accuracy − FSE (points)"
    change = plots.difference_from(metrics, "fse", "loss", ["bucket"])
    expected = 100 * (metrics.loc[change.index, "loss"] - (0.2 + 0.01 * change["seed"])) / (0.2 + 0.01 * change["seed"])
    assert np.allclose(change["difference"], expected) and set(change["method"]) == {"sam", "autoemb"}
    fixed = plots.popularity(metrics[metrics.method != "fse"], "item")  # no FSE (Figure 1's stream): one row
    assert len(fixed.axes) == 2

    curves = pd.DataFrame([dict(method=m, seed=s, seen=n, loss=0.2, accuracy=0.6, task="regression")
                           for m in ("darts", "fse") for s in (0, 1) for n in (10, 20)])
    fig = plots.learning_curves(curves)
    assert "Figure 8" in fig._suptitle.get_text() and fig.axes[0].get_xlabel() == "number of training examples"
    assert legend_labels(fig.axes[1]) == ["FSE", "DARTS"] and len(fig.axes) == 4
    # each method has its own marker and dash, so a line under another stays visible
    styles = {(line.get_marker(), tuple(line.get_dashes()) if hasattr(line, "get_dashes") else line.get_linestyle())
              for line in fig.axes[0].get_lines()}
    assert len(styles) >= 2
    with pytest.raises(ValueError, match="one task"):
        plots.learning_curves(pd.concat([curves, curves.assign(task="classification")]))
    marked = plots.learning_curves(curves, early_fraction=0.2)  # the claim's early window, shaded on every panel
    for ax in marked.axes:
        span = ax.patches[-1]
        box = span.get_window_extent(renderer=None).transformed(ax.transData.inverted())
        assert box.x0 == pytest.approx(0, abs=1e-9) and box.x1 == pytest.approx(0.2 * 20)
    assert legend_labels(marked.axes[1]) == ["FSE", "DARTS"]  # the legend keeps the methods


def weight_frame(n=40, methods=("autoemb", "sam"), seen=(100, 200, 300)):
    rng = np.random.default_rng(0)
    rows = []
    for method in methods:
        for s in seen:
            for side in ("user", "item"):
                for i in range(n):
                    w = rng.dirichlet([1, 1, 1])
                    for d, weight in zip((2, 16, 128), w):
                        rows.append(dict(method=method, seed=0, batch=s // 100, seen=s, side=side, id=i,
                                         popularity=i * (3 if side == "item" else 1), dimension=d, weight=weight,
                                         stage="online" if s > 150 else "offline"))
    return pd.DataFrame(rows)


def test_figure7_and_the_explorer_view_draw_weights_and_say_when_there_are_none():
    records = weight_frame()
    selection = ex.select_weights(records, method="autoemb", edges=[0, 4, 16])
    fig = plots.weights_by_popularity(selection, "autoemb")
    users, items = fig.axes
    assert "Figure 7" in fig._suptitle.get_text() and "25th-75th percentile" in fig._suptitle.get_text()
    assert users.get_title() == "(a) AutoEmb, users" and items.get_title() == "(b) AutoEmb, items"
    assert "user interactions" in users.get_xlabel() and "item interactions" in items.get_xlabel()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["d = 2", "d = 16", "d = 128"]
    for ax, side in ((users, "user"), (items, "item")):
        assert ax.get_yscale() == "log"
        means = selection[selection.side == side].groupby(["dimension", "bucket"], observed=True)["weight"].mean()
        assert np.allclose(ax.get_lines()[0].get_ydata(), means.loc[2].to_numpy())  # d = 2's means, bucket by bucket
        assert len({tuple(line.get_color()) if not isinstance(line.get_color(), str) else line.get_color()
                    for line in ax.get_lines()}) == 3
    only_users = plots.weights_by_popularity(selection[selection.side == "user"], "autoemb")
    assert "no weights" in only_users.axes[1].texts[0].get_text() and not only_users.axes[0].texts
    empty = plots.weights_by_popularity(selection.iloc[:0], "autoemb")
    assert all("no weights" in ax.texts[0].get_text() for ax in empty.axes) and not empty.legends

    context = ex.select_weights(records, method="autoemb", side="user")
    view = plots.weights_against_popularity(context, (4, 16), "AutoEmb, users with popularity 4-16")
    left, right = view.axes
    assert view._suptitle.get_text() == "AutoEmb, users with popularity 4-16"
    assert left.get_xscale() == "symlog" and "means: d = 2:" in right.get_title()
    assert legend_labels(left) == ["chosen: 4-16", "d = 2", "d = 16", "d = 128"]
    svg = plots.svg_with_text(view)
    assert "AutoEmb, users with popularity 4-16</text>" in svg  # text kept as text, for the browser test
    nothing = plots.weights_against_popularity(context.iloc[:0], (4, 16), "none")
    assert "no weights" in nothing.axes[0].texts[0].get_text()


def test_save_writes_png_and_svg(tmp_path):
    fig, _ = plt.subplots()
    paths = plots.save(fig, tmp_path / "figs", "figure")
    assert [p.name for p in paths] == ["figure.png", "figure.svg"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and b"<svg" in paths[1].read_bytes()[:500]


def test_explorer_state_follows_every_widget():
    records = weight_frame()
    explorer = WeightsExplorer(records, window=150, draw=False)
    assert [v for _, v in explorer.controls["method"].options] == ["autoemb", "sam"]
    start = explorer.state
    assert start == {"method": "autoemb", "side": "user", "popularity": (0, 117), "seen": 300, "window": 150}
    assert set(explorer.selection.seen) == {200, 300} and set(explorer.selection.side) == {"user"}
    assert explorer.context.equals(explorer.selection)  # the whole popularity range is chosen

    explorer.controls["side"].value = "item"
    assert explorer.state["side"] == "item" and set(explorer.selection.side) == {"item"}
    explorer.controls["method"].value = "sam"
    assert set(explorer.selection.method) == {"sam"}
    explorer.controls["popularity"].value = (4, 16)
    assert explorer.state["popularity"] == (4, 16) and set(explorer.selection.popularity) == {6, 9, 12, 15}
    assert set(explorer.context.popularity) == {3 * i for i in range(40)}  # figure (a): every popularity
    explorer.controls["seen"].value = 100
    assert set(explorer.selection.seen) == {100}
    means = explorer.selection.groupby("dimension").weight.mean()
    assert list(explorer.summary.columns) == ["d=2", "d=16", "d=128", "records"]
    assert explorer.summary.iloc[0]["d=2"] == pytest.approx(round(means[2], 4))
    assert explorer.summary.iloc[0]["records"] == 4
    assert "SAM, items with popularity 4-16, stream 0-100: 4 ids" == explorer.title()


def test_explorer_draws_outside_a_kernel_and_needs_weights():
    explorer = WeightsExplorer(weight_frame(methods=("darts",)), draw=True)
    explorer.controls["popularity"].value = (64, 117)  # no user that popular: an empty view, not an error
    assert explorer.selection.empty and explorer.summary.empty
    assert popularity_stops(weight_frame()) == [0, 1, 2, 4, 8, 16, 32, 64, 117]
    with pytest.raises(DataError, match="no selection weights"):
        WeightsExplorer(weight_frame().assign(method="fse"))
