"""Each figure of the study (table, claims, figure) on a small report's saved runs: its claims are the rows the
report wrote to claims.csv, its table and figure are the study's, and the notebooks call these functions instead
of rebuilding the claims."""
import io
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from autoemb_core import DataError  # noqa: E402
from autoemb_core import experiments as ex  # noqa: E402
from autoemb_core import figures as fg  # noqa: E402
from autoemb_core import frontier as fr  # noqa: E402
from autoemb_core.__main__ import main  # noqa: E402
from autoemb_core.methods import FIXED  # noqa: E402
from autoemb_core.train import RunResult  # noqa: E402
from test_frontier import constructed  # noqa: E402

ROOT = Path(__file__).parents[1]
DATASET, METHODS, SEEDS, MIN_SAMPLES, EARLY = "synthetic-tiny", ("fse", "autoemb"), (0, 1), 200, 0.2
# the frontier's runs, constructed: its own runs (each in a process of its own) would cost minutes
FRONTIER = constructed({"fse d=2": ("fse", 0.23, 0.23, 2_000), "fse d=146": ("fse", 0.20, 0.20, 80_000),
                        "autoemb-hard penalty=0.1": ("autoemb-hard", 0.2005, 0.2004, 15_000),
                        "autoemb soft": ("autoemb", 0.199, 0.199, 90_000)}, seeds=(0, 1), noise=1e-3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A report on 1,500 interactions, regression, 2 seeds: FSE, AutoEmb, Figure 1 and the frontier (of
    :data:`FRONTIER`'s runs); its folder."""
    folder = tmp_path_factory.mktemp("report")
    (folder / "small.yaml").write_text("hidden: [8]\ncontroller_hidden: [6]\nbatch_size: 100\nrecord_alpha_every: 1\n")
    argv = ["report", "--dataset", DATASET, "--max-interactions", "1500", "--tasks", "regression",
            "--seeds", *map(str, SEEDS), "--methods", *METHODS, "--train-sizes", "1", "4", "--n-test", "2",
            "--n-validation", "2", "--max-epochs", "2", "--frontier", "--no-progress", "--no-tune",
            "--params", str(folder / "small.yaml"), "--results-dir", str(folder)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fr, "frontier", lambda *args, **kwargs: FRONTIER)
        assert main(argv) == 0
    return folder


def runs(folder, methods) -> dict:
    """The report's runs of ``methods``, loaded from its folder."""
    return {(m, s): RunResult.load(folder / "runs" / f"regression-{m}-seed{s}") for m in methods for s in SEEDS}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def written(folder, *names) -> pd.DataFrame:
    claims = pd.read_csv(folder / "claims.csv", dtype=str, keep_default_na=False)
    return claims[claims["claim"].isin(names)].reset_index(drop=True)


def assert_written(claims: pd.DataFrame, folder, *names) -> None:
    """``claims`` are, to the last digit, the rows ``names`` of the report's claims.csv."""
    assert len(claims) and set(claims["claim"]) == set(names)
    ours = pd.read_csv(io.StringIO(claims[fg.COLUMNS].to_csv(index=False)), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(ours, written(folder, *names), check_exact=True)


def title(fig) -> str:
    return fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()


def test_table2_gives_the_reports_claims_and_its_table(folder):
    summaries = pd.read_csv(folder / "runs.csv")
    table = fg.table2(summaries)
    assert_written(table.claims, folder, "Table 2: ordering")
    assert table.figure is None
    pd.testing.assert_frame_equal(table.data, ex.overall_table(summaries))
    assert table.table.reset_index().to_markdown(index=False) in (folder / "REPORT.md").read_text()


def test_figure1_gives_the_reports_crossover_claims_table_and_figure(folder):
    study = pd.read_csv(folder / "figure1_runs.csv")
    capacity = fg.figure1(study, DATASET, "regression")
    assert_written(capacity.claims, folder, "Figure 1: crossover")
    pd.testing.assert_frame_equal(capacity.table, ex.crossover(study))
    assert "Figure 1" in title(capacity.figure)


def test_figure1_stream_gives_the_reports_claims_by_popularity(folder):
    fixed = runs(folder, FIXED)
    stream = fg.figure1_stream(fixed, DATASET, "user", ex.sample_edges(fixed, "user", MIN_SAMPLES))
    assert_written(stream.claims, folder, "Figure 1 (stream): crossover")
    pd.testing.assert_frame_equal(stream.table, ex.popularity_table(stream.data))
    assert set(stream.data["method"]) == set(FIXED) and "streaming view" in title(stream.figure)


def test_figure6_gives_the_reports_claims_its_table_and_the_advantage(folder):
    results = runs(folder, METHODS)
    edges = ex.sample_edges(results, "user", MIN_SAMPLES)
    by_popularity = fg.figure6(results, DATASET, "user", edges)
    assert_written(by_popularity.claims, folder, "Figure 6: advantage by popularity")
    assert set(by_popularity.claims["comparator"]) == {"fse"}
    pd.testing.assert_frame_equal(by_popularity.table, ex.popularity_table(by_popularity.data))
    per_run = by_popularity.data.groupby(["method", "seed"])["samples"].sum()
    assert all(per_run[key] == len(r.samples) for key, r in results.items()), "a prediction fell outside the buckets"
    assert "Figure 6" in title(by_popularity.figure)


def test_figure7_gives_the_reports_slope_claims_and_the_mean_weights(folder):
    results = runs(folder, METHODS)
    records = ex.weight_records({k: r for k, r in results.items() if k[0] == "autoemb"})
    edges = ex.sample_edges(results, "user", MIN_SAMPLES)
    weights = fg.figure7(records, DATASET, "regression", edges)
    assert_written(weights.claims, folder, "Figure 7: weight moves to larger dimensions")
    assert set(weights.data["method"]) == {"autoemb"} and set(weights.data["stage"]) == {"online"}
    assert set(weights.data["side"]) == {"user", "item"} == set(weights.table.index.get_level_values("side"))
    users = ex.mean_weights(ex.select_weights(records, "autoemb", "user", stage="online", edges=edges))
    pd.testing.assert_frame_equal(weights.table.loc["user"], users, check_index_type=False, check_categorical=False)
    assert "Figure 7" in title(weights.figure) and len(weights.figure.axes) == 2


def test_figure7_draws_users_and_items_each_with_its_own_buckets():
    from test_plots import weight_frame
    records = weight_frame(n=150)  # items are 3x as popular as users; seen 200 and 300 are online
    online = records[(records.method == "autoemb") & (records.stage == "online")]

    def hand_means(side, edges):
        part = online[(online.side == side) & (online.dimension == 2)]
        upper = [*edges[1:], np.inf]
        means = [part[(part.popularity >= lo) & (part.popularity < hi)].weight.mean() for lo, hi in zip(edges, upper)]
        return [m for m in means if np.isfinite(m)]  # a bucket nobody is in is not drawn

    weights = fg.figure7(records, "d", "regression", {"user": [0, 4, 16], "item": [0, 32]})
    users, items = weights.figure.axes
    assert "users" in users.get_title() and "items" in items.get_title()
    assert [t.get_text() for t in users.get_xticklabels()] == ["0-3", "4-15", "≥16"]
    assert [t.get_text() for t in items.get_xticklabels()] == ["0-31", "≥32"]
    assert np.allclose(users.get_lines()[0].get_ydata(), hand_means("user", [0, 4, 16]))
    assert np.allclose(items.get_lines()[0].get_ydata(), hand_means("item", [0, 32]))
    assert list(weights.table.index.get_level_values("side").unique()) == ["user", "item"]
    assert weights.table.loc[("item", "≥32"), "d=2"] == pytest.approx(round(hand_means("item", [0, 32])[1], 4))
    assert len(weights.data) == len(online) and set(weights.data["side"]) == {"user", "item"}

    # the notebook's call, (edges, side, method): the edges are the side's, the other side's come from its records,
    # whose last bucket holds at least 200 (id, recording) pairs: 2 * 118 users of 32 or more, 2 * 86 of 64 too few
    # (counted once per dimension, 3 * 172 would do)
    notebook = fg.figure7(records, "d", "regression", [0, 8], "item", "autoemb")
    users, items = notebook.figure.axes
    assert [t.get_text() for t in items.get_xticklabels()] == ["0-7", "≥8"]
    assert [t.get_text() for t in users.get_xticklabels()][-1] == "≥32"
    assert np.allclose(items.get_lines()[0].get_ydata(), hand_means("item", [0, 8]))
    assert notebook.claims.equals(weights.claims) and set(notebook.claims["comparator"]) == {""}
    with pytest.raises(DataError, match="side"):
        fg.figure7(records, "d", "regression", [0, 8], "items")

    nobody = fg.figure7(records[records.side == "user"], "d", "regression", [0, 4, 16])
    assert "no weights" in nobody.figure.axes[1].texts[0].get_text()
    assert set(nobody.table.index.get_level_values("side")) == {"user"}


def test_figure8_gives_the_reports_early_claims_and_the_curves(folder):
    curves = fg.figure8(runs(folder, METHODS), DATASET, EARLY, points=5)
    assert_written(curves.claims, folder, "Figure 8: advantage early in the stream")
    assert curves.data.groupby(["method", "seed"]).size().eq(5).all()
    pd.testing.assert_frame_equal(curves.table, ex.curve_table(curves.data, "loss"))
    assert "Figure 8" in title(curves.figure)


def test_the_frontier_gives_the_reports_claims_and_its_table(folder):
    memory = fg.frontier(FRONTIER, "regression", DATASET)
    names = {n for n in pd.read_csv(folder / "claims.csv")["claim"] if n.startswith("hard AutoEmb")}
    assert_written(memory.claims, folder, *names)
    assert memory.table.to_markdown(index=False) in (folder / "REPORT.md").read_text()
    pd.testing.assert_frame_equal(memory.data, pd.read_csv(folder / "frontier.csv"))
    assert "seconds" not in fg.frontier(FRONTIER, "regression", DATASET, timings=False).table
    assert memory.figure.axes[0].get_title() == f"Memory frontier on {DATASET}"


def test_figures_import_neither_the_report_nor_matplotlib():
    code = ("import sys, autoemb_core.figures\n"
            "assert 'autoemb_core.report' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("0*.ipynb")), ids=lambda p: p.stem)
def test_the_notebooks_take_their_claims_from_the_figures(notebook):
    """A notebook calls a figure's function; it assembles no claims of its own."""
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    code = "\n".join("".join(c["source"]) for c in cells)
    assert "figures." in code
    for assembly in ("claims_frame", "table2_claims", "preliminary_claims", "stream_capacity_claims",
                     "popularity_claims", "weight_claims", "weight_slopes", "early_claims", "early_losses",
                     "frontier_claims"):
        assert f"{assembly}(" not in code, f"{notebook.name} rebuilds its claims ({assembly})"
