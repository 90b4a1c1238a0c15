"""The reproduction report: each claim's effect on constructed runs whose answer is known, and the report
command end to end (every claim present, finished runs reused, the files the issue names)."""
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from autoemb_core import experiments as ex
from autoemb_core import figures as fg
from autoemb_core import report as rp
from autoemb_core import sweep
from autoemb_core.__main__ import main
from autoemb_core.config import Config, read_params
from autoemb_core.stats import CONTRADICTED, REPRODUCED, SMALLER, VERDICTS
from autoemb_core.train import RunResult

FAST = dict(hidden=(8,), controller_hidden=(6,), batch_size=50, progress=False)


def summaries(losses: dict, task="regression", dataset="d") -> pd.DataFrame:
    """A compare() frame: ``losses[method]`` is the online loss per seed."""
    return pd.DataFrame([{"dataset": dataset, "task": task, "method": m, "seed": s, "online_loss": v,
                          "online_accuracy": 0.5} for m, values in losses.items() for s, v in enumerate(values)])


def test_table2_claims_are_relative_paired_advantages_with_the_papers_effect():
    noise = np.array([0.0, 0.01, -0.01, 0.02, -0.02])  # a shared per-seed effect that pairing removes
    losses = {"fse": 0.20 + noise, "sam": 0.19 + noise, "darts": 0.195 + noise, "autoemb": 0.21 + noise,
              "biases": np.full(5, 0.25), "uniform": 0.21 + noise}
    claims = fg.claims_frame(fg.table2_claims(summaries(losses)))
    row = claims.set_index(["method", "comparator"])
    expected = (losses["fse"] - losses["sam"]) / losses["fse"]
    assert row.loc[("sam", "fse"), "effect"] == pytest.approx(expected.mean())
    assert row.loc[("sam", "fse"), "paper_effect"] == pytest.approx((0.1840 - 0.1819) / 0.1840)
    assert row.loc[("autoemb", "darts"), "verdict"] == CONTRADICTED  # AutoEmb is worse on every seed
    assert row.loc[("darts", "sam"), "verdict"] == CONTRADICTED
    assert row.loc[("autoemb", "biases"), "effect"] > 0 and np.isnan(row.loc[("autoemb", "biases"), "paper_effect"])
    assert ("autoemb", "random") not in row.index  # a method that did not run has no row
    assert set(claims["claim"]) == {"Table 2: ordering", "AutoEmb beats the controls"}


def test_a_claim_smaller_than_the_papers_is_smaller_than_claimed_even_when_real():
    fse = 0.2 + np.array([0.0, 0.001, 0.002])
    claims = fg.claims_frame(fg.table2_claims(summaries({"fse": fse, "autoemb": fse * (1 - 0.001)})))
    r = claims.iloc[0]
    assert r["ci_low"] > 0 and r["ci_high"] < r["paper_effect"] and r["verdict"] == SMALLER
    big = fg.claims_frame(fg.table2_claims(summaries({"fse": fse, "autoemb": fse * (1 - 0.03)}))).iloc[0]
    assert big["verdict"] == REPRODUCED and big["effect"] == pytest.approx(0.03)


def weight_records(slope: float, seeds=(0, 1, 2)) -> pd.DataFrame:
    """Records whose weight on larger dimensions is exactly 0.1 + slope * log2(1 + popularity)."""
    rows = []
    for seed in seeds:
        for i, pop in enumerate([0, 1, 3, 7, 15, 31]):
            larger = 0.1 + slope * np.log2(1 + pop)
            w2 = larger  # all of the larger weight on d=2's neighbour 128: sum_k w_k k/2 with w128 = larger
            for d, w in ((2, 1 - w2), (16, 0.0), (128, w2)):
                rows.append({"method": "autoemb", "seed": seed, "stage": "online", "batch": 1, "side": "user",
                             "id": i, "popularity": pop, "dimension": d, "weight": w})
    return pd.DataFrame(rows)


def test_weight_slope_recovers_a_known_slope():
    slopes = fg.weight_slopes(weight_records(0.1))
    assert slopes["slope"].to_numpy() == pytest.approx([0.1, 0.1, 0.1])
    flat = fg.claims_frame(fg.weight_claims(fg.weight_slopes(weight_records(0.0)), "d", "regression"))
    assert flat["effect"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    rising = fg.weight_slopes(weight_records(0.1)).assign(slope=lambda f: f["slope"] + [0.0, 0.01, -0.01])
    assert fg.claims_frame(fg.weight_claims(rising, "d", "regression"))["verdict"].iloc[0] == REPRODUCED


def test_early_losses_weigh_the_first_part_of_the_offline_stage_by_batch_size():
    batches = pd.DataFrame({"stage": ["offline"] * 5 + ["online"], "seen": [10, 20, 30, 40, 100, 110],
                            "size": [10, 10, 10, 10, 60, 10], "loss": [1.0, 0.5, 0.2, 0.2, 0.1, 9.0]})
    result = RunResult({}, {"task": "regression"}, batches, pd.DataFrame())
    early = fg.early_losses({("fse", 0): result}, fraction=0.2)  # seen <= 20: the first two batches
    assert early["loss"].iloc[0] == pytest.approx(0.75)


def test_preliminary_claims_read_the_crossover_at_both_ends():
    rows = []
    for seed in range(3):
        for x, (small, large) in ((1, (0.20, 0.22)), (16, (0.21, 0.21)), (256, (0.19, 0.15))):
            rows += [{"seed": seed, "train_size": x, "dimension": 2, "method": "fixed-2", "loss": small + seed * 1e-3},
                     {"seed": seed, "train_size": x, "dimension": 128, "method": "fixed-128", "loss": large + seed * 1e-3}]
    claims = fg.claims_frame(fg.preliminary_claims(pd.DataFrame(rows), "d", "regression")).set_index("bucket")
    assert claims.loc["x=1", "method"] == "fixed-2" and claims.loc["x=1", "effect"] > 0
    assert claims.loc["x=256", "method"] == "fixed-128" and claims.loc["x=256", "verdict"] == REPRODUCED


def test_report_command_writes_every_claim_and_reuses_finished_runs(tmp_path, monkeypatch):
    folder = tmp_path / "rep"
    argv = ["report", "--dataset", "synthetic-tiny", "--seeds", "0", "1", "--max-interactions", "3000",
            "--methods", "biases", "fse", "uniform", "random", "popularity-rule", "sam", "darts", "autoemb",
            "--train-sizes", "1", "4", "--n-test", "2", "--n-validation", "2", "--max-epochs", "2", "--results-dir", str(folder),
            "--no-progress", "--no-tune", "--params", str(tmp_path / "small.yaml")]
    (tmp_path / "small.yaml").write_text("hidden: [8]\ncontroller_hidden: [6]\nbatch_size: 50\nrecord_alpha_every: 1\n")
    open_before = set(plt.get_fignums())
    assert main(argv) == 0
    assert set(plt.get_fignums()) <= open_before, "the report leaves its figures open (each run of it leaks them)"
    claims = pd.read_csv(folder / "claims.csv", keep_default_na=False)
    assert list(claims.columns) == rp.COLUMNS
    assert set(claims["claim"]) == {"Table 2: ordering", "AutoEmb beats the controls", "Figure 6: advantage by popularity",
                                    "Figure 7: weight moves to larger dimensions", "Figure 8: advantage early in the stream",
                                    "Figure 1 (stream): crossover", "Figure 1: crossover",
                                    "Figure 1: crossover (paper's protocol)"}
    assert set(claims["task"]) == {"regression", "classification"}
    assert set(claims["verdict"]) <= set(VERDICTS)
    assert "**Bottom line.** Of " in (folder / "REPORT.md").read_text()
    assert (claims["n_seeds"] == 2).all() and (claims["ci_low"] <= claims["ci_high"]).all()
    text = (folder / "REPORT.md").read_text()
    assert "python -m autoemb_core report --dataset synthetic-tiny" in text and "| torch |" in text
    assert (folder / "figures" / "figure1_capacity.png").is_file()
    assert (folder / "figures" / "figure1_capacity_paper_protocol.png").is_file()
    paper = pd.read_csv(folder / "figure1_runs_paper.csv")  # the paper's protocol: every epoch, no L2, no stopping
    assert (paper["epochs"] == 2).all() and (paper["embedding_l2"] == 0).all() and (paper["protocol"] == "paper").all()
    meta = json.loads((folder / "report.json").read_text())
    assert meta["seeds"] == [0, 1] and meta["versions"]["torch"]

    def no_runs(*args, **kwargs):
        raise AssertionError("a finished run was run again")
    monkeypatch.setattr(sweep, "run", no_runs)
    monkeypatch.setattr(ex, "preliminary_study", no_runs)
    assert main(argv) == 0
    again = pd.read_csv(folder / "claims.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(claims, again)

    # --rejudge, on a report saved under the old vocabulary and without its paper effects, gives back today's
    # claims from the saved files alone (sweep.run and the Figure 1 study still raise), and says so in REPORT.md
    old = again.assign(verdict=again["verdict"].replace({"contradicted": "not reproduced",
                                                         "smaller than claimed": "not reproduced"}), paper_effect="")
    old.to_csv(folder / "claims.csv", index=False)
    before = (folder / "REPORT.md").read_text()
    assert main(["report", "--dataset", "synthetic-tiny", "--rejudge", "--results-dir", str(folder)]) == 0
    rejudged = pd.read_csv(folder / "claims.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(claims, rejudged, check_exact=False, rtol=1e-12)
    text = (folder / "REPORT.md").read_text()
    assert "Judged again on " in text and "--rejudge" in text
    strip = lambda t: [line for line in t.splitlines() if line and not line.startswith("Judged again")]
    assert strip(text) == strip(before)  # the same report, from the saved files


def test_report_needs_two_seeds(tmp_path, capsys):
    assert main(["report", "--dataset", "synthetic-tiny", "--seeds", "0", "--results-dir", str(tmp_path)]) == 2
    assert "at least 2 seeds" in capsys.readouterr().err


def test_report_under_regimes_sets_every_claim_side_by_side_on_the_same_floor(tmp_path):
    folder = tmp_path / "regimes"
    (tmp_path / "small.yaml").write_text("hidden: [8]\ncontroller_hidden: [6]\nbatch_size: 50\nrecord_alpha_every: 1\n")
    argv = ["report", "--dataset", "synthetic-tiny", "--seeds", "0", "1", "--max-interactions", "3000", "--tasks",
            "regression", "--methods", "biases", "fse", "uniform", "sam", "darts", "autoemb", "--no-figure1",
            "--regimes", "paper", "esapn", "tuned", "--results-dir", str(folder), "--no-progress", "--no-tune",
            "--params", str(tmp_path / "small.yaml")]
    assert main(argv) == 0
    claims = pd.read_csv(folder / "claims.csv", keep_default_na=False)
    assert list(claims.columns) == ["regime", *rp.COLUMNS]
    assert list(dict.fromkeys(claims["regime"])) == ["paper", "esapn", "tuned"]
    runs = pd.read_csv(folder / "runs.csv")
    by = runs.set_index(["regime", "method", "seed"])["online_loss"]
    for seed in (0, 1):  # the floor is the same run in every regime; the methods are not
        assert by["paper", "biases", seed] == by["esapn", "biases", seed] == by["tuned", "biases", seed]
        assert len({by[r, "autoemb", seed] for r in ("paper", "esapn", "tuned")}) == 3
    assert runs.groupby("regime")["seconds"].sum()["tuned"] >= 0
    first = (folder / "paper" / "runs" / "regression-biases-seed0" / "summary.json").read_text()
    for r in ("esapn", "tuned"):  # the floor ran once, in the first regime, and was reused from a copy after it
        assert (folder / r / "runs" / "regression-biases-seed0" / "summary.json").read_text() == first
    assert "biases" in set(runs[runs["regime"] == "tuned"]["method"])
    saved = json.loads(next((folder / "esapn" / "runs").glob("regression-autoemb-seed0/summary.json")).read_text())
    assert saved["config"]["head_batchnorm"] and saved["config"]["predict_batchnorm"] == "batch"
    assert saved["config"]["regime"] == "esapn" and saved["config"]["hidden"] == [8]  # a params file's value wins
    text = (folder / "REPORT.md").read_text()
    assert "## Why the paper saw what it saw" in text and "| paper " in text and "| esapn " in text
    assert "**Bottom line.** Of " in text and "under esapn, " in text
    assert "Untuned" in (folder / "tuned" / "REPORT.md").read_text()
    meta = json.loads((folder / "esapn" / "report.json").read_text())
    assert meta["regime"]["settings"]["head_batchnorm"] is True and not meta["regime"]["tuned"]
    assert "Regime **esapn**" in (folder / "esapn" / "REPORT.md").read_text()
    top = json.loads((folder / "report.json").read_text())
    assert set(top["regime_settings"]) == {"paper", "esapn", "tuned"} and "`predict_batchnorm: batch`" in text
    table = rp.regime_table(claims, ["paper", "esapn", "tuned"])
    row = claims[(claims["regime"] == "esapn") & (claims["claim"] == "Table 2: ordering")].iloc[0]
    match = table[(table["claim"] == row["claim"]) & (table["method"] == row["method"])
                  & (table["comparator"] == row["comparator"])]
    assert match["esapn"].iloc[0].endswith(row["verdict"])
    spread = rp.spread_table(runs, 900)
    assert set(spread["method"]) == {"fse", "sam", "darts", "autoemb"} and (spread["paper ±"] > 0).all()


def test_where_a_claim_holds_names_the_regimes_and_tallies_only_those_that_judged_it():
    R, C = "reproduced", "contradicted"
    claims = pd.DataFrame({"claim": ["A", "A", "A", "B", "B", "F", "F"],
                           "regime": ["paper", "esapn", "tuned", "paper", "tuned", "tuned", "tuned"],
                           "verdict": [C, R, C, C, C, R, C]})
    lines = rp.where_it_holds(claims, ["paper", "esapn", "tuned"])
    assert lines[0].startswith("- **A**: reproduced rows under esapn, none under paper, tuned (paper: 0 of 1, esapn: 1 "
                               "of 1, tuned: 0 of 1). esapn and paper differ in: ")
    assert "lr" in lines[0] and "predict_batchnorm" in lines[0]
    assert lines[1] == ("- **B**: no row is reproduced under any regime (paper: 0 of 1, tuned: 0 of 1): no setup "
                        "measured here gives the paper's result.")
    assert lines[2] == "- **F** (judged under tuned only): reproduced in tuned: 1 of 2 rows."

def test_the_papers_effect_comes_from_its_row_for_the_dataset_and_else_from_ml20m():
    assert fg.paper_effect("regression", "autoemb", "fse", "netflix") == pytest.approx((0.1821 - 0.1779) / 0.1821)
    assert fg.paper_effect("classification", "sam", "fse", "ml-latest") == pytest.approx((1.1257 - 1.1249) / 1.1257)
    assert fg.paper_effect("regression", "autoemb", "fse", "ml-100k") == pytest.approx((0.1840 - 0.1803) / 0.1840)
    assert "no row for ml-100k" in rp.paper_source("ml-100k") and rp.paper_source("netflix").endswith("for netflix")


def test_the_bottom_line_is_generated_from_the_claims():
    claims = pd.DataFrame({"claim": ["A", "A", "B", "C"], "metric": ["x, relative"] * 4,
                           "mde": [0.01, 0.02, 0.03, 0.04], "verdict": [REPRODUCED, CONTRADICTED, SMALLER, CONTRADICTED]})
    line = rp.bottom_line(claims, {"seeds": [0, 1, 2], "interactions": 30_000, "tuning": "**Untuned** ..."})
    assert "Of 4 claim rows, 1 reproduced, 1 smaller than claimed, 2 contradicted." in line
    assert "Reproduced in at least one row: A." in line and "in every row: B, C." in line
    assert "3 seeds (median detectable effect 2.50%)" in line and "untuned" in line and "Few seeds decide little" in line


def test_a_later_regime_reuses_the_values_an_earlier_one_tuned_and_competent_starts_from_them(tmp_path):
    """On a stream with no tuned values, ``tuned`` tunes every method; ``competent`` then tunes only the
    architecture's methods, and their studies first score the variants at the values ``tuned`` chose."""
    folder = tmp_path / "regimes"
    (tmp_path / "small.yaml").write_text("hidden: [8]\ncontroller_hidden: [6]\nbatch_size: 50\n")
    argv = ["report", "--dataset", "synthetic-tiny", "--seeds", "0", "1", "--max-interactions", "2000", "--tasks",
            "regression", "--methods", "biases", "fse", "uniform", "--no-figure1", "--regimes", "tuned", "competent",
            "--results-dir", str(folder), "--no-progress", "--tune-trials", "2", "--params", str(tmp_path / "small.yaml")]
    assert main(argv) == 0
    chosen = read_params(folder / "tuned" / "tuned.yaml")["tuned"]["regression"]
    assert set(chosen) == {"biases", "fse", "uniform"}
    studies = sorted(p.name for p in (folder / "competent" / "tuning").glob("*.csv"))
    assert studies == ["regression-uniform-competent.csv"]  # biases and fse: the tuned regime's values, not tuned again
    trials = pd.read_csv(folder / "competent" / "tuning" / "regression-uniform-competent.csv")
    assert trials.loc[1, "lr"] == pytest.approx(chosen["uniform"]["lr"], rel=1e-2)  # the first variant, at tuned's lr
    assert (trials.loc[1, "transform"], trials.loc[1, "selection"]) == ("bn-tanh", "mean")
    assert "none was tuned here" in (folder / "competent" / "REPORT.md").read_text() or \
        "uniform (regression) had no tuned values" in (folder / "competent" / "REPORT.md").read_text()


def test_a_killed_figure1_study_resumes_from_its_finished_models(tmp_path, monkeypatch):
    """A report killed during Figure 1 keeps the models it finished (figure1_runs.partial.csv); run again, it
    trains only the others, and the study equals one made without a stop."""
    from autoemb_core.config import Figure1Settings
    from autoemb_core.data import load_dataset
    data = load_dataset("synthetic-tiny", max_interactions=1500)
    base = Config(dataset="synthetic-tiny", **FAST)
    settings = rp.ReportSettings(base, tmp_path, seeds=(0, 1), figure1=Figure1Settings(
        train_sizes=(1, 2), n_test=2, n_validation=1, max_epochs=2, protocol="capacity"))
    whole = rp.preliminary(settings, base, data, tmp_path / "whole")
    assert len(whole) == 2 * 2 * 3 and not list((tmp_path / "whole").glob("*partial*"))

    real, trained = ex._preliminary_cell, []

    def killed_after(n):
        def cell(*args, **kwargs):
            if len(trained) == n:
                raise KeyboardInterrupt
            trained.append(args[2][:3])  # (method, seed, x)
            return real(*args, **kwargs)
        return cell
    monkeypatch.setattr(ex, "_preliminary_cell", killed_after(5))
    with pytest.raises(KeyboardInterrupt):
        rp.preliminary(settings, base, data, tmp_path / "killed")
    assert len(pd.read_csv(tmp_path / "killed" / "figure1_runs.partial.csv")) == 5
    first = list(trained)
    monkeypatch.setattr(ex, "_preliminary_cell", killed_after(len(whole)))
    trained.clear()
    resumed = rp.preliminary(settings, base, data, tmp_path / "killed")
    assert len(trained) == len(whole) - 5 and not set(trained) & set(first)
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), whole.drop(columns="seconds"), check_exact=True)
    assert not list((tmp_path / "killed").glob("*partial*"))


def test_figure1_is_reused_where_its_models_are_the_same_runs_and_made_again_where_they_are_not(tmp_path, monkeypatch):
    """The saved Figure 1 study is keyed by the fixed-d models' own config: competent (which leaves them as tuned)
    reuses one made without a regime; paper (its rates reach them) and a changed grid make it again."""
    from autoemb_core.config import Figure1Settings
    made = []

    def study(base, data, *args, **kwargs):
        made.append(base.regime)
        return pd.DataFrame({"method": ["fixed-2"], "seed": [0]})
    monkeypatch.setattr(ex, "preliminary_study", study)
    from autoemb_core.data import load_dataset
    data = load_dataset("synthetic-tiny", max_interactions=500)
    figure1 = Figure1Settings(train_sizes=(1, 2), protocol="capacity")
    settings = rp.ReportSettings(Config(dataset="synthetic-tiny", **FAST), tmp_path, seeds=(0, 1), figure1=figure1)
    for regime in (None, "competent", "paper", None):
        rp.preliminary(settings, Config(dataset="synthetic-tiny", regime=regime, **FAST), data, tmp_path)
    assert made == [None, "paper", None]  # competent reused the first; paper's made again, and then None's
    wider = rp.ReportSettings(settings.base, tmp_path, seeds=(0, 1), figure1=Figure1Settings(train_sizes=(1, 4)))
    rp.preliminary(wider, settings.base, data, tmp_path)
    assert made == [None, "paper", None, None]
