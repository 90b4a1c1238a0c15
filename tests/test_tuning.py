"""The tuning protocol (autoemb_core.tuning): blind to the online stage, within its budget, written to the
results folder only, resumable after a kill, reused when finished, and announced by the report."""
import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import autoemb_core as ae
from autoemb_core import tuning
from autoemb_core.config import Config, params_dir
from autoemb_core.methods import TABLE, Choice

SMALL = dict(dims=(2, 4), hidden=(8,), controller_hidden=(6,), batch_size=50, progress=False)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny").head(2000)


def studies(folder: Path, name: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "tuning" / f"{name}.journal")))
    return optuna.load_study(study_name=name, storage=storage).trials


def test_tuning_never_sees_the_online_stage_and_stays_in_its_space(tiny, tmp_path):
    """Flipping every online label changes nothing the tuning does; each value is in the method's space, the
    first trial is the current settings, and the budget is the number of finished trials."""
    flipped = copy.copy(tiny)
    flipped.rating = tiny.rating.copy()
    split = int(round(len(tiny) * Config().offline_fraction))
    flipped.rating[split:] = 6 - flipped.rating[split:]
    base = Config(**SMALL)
    runs = [tuning.ensure_tuned(base, d, ["biases", "popularity-rule"], ["regression"], 5, tmp_path / name)
            for d, name in ((tiny, "a"), (flipped, "b"))]
    assert runs[0].tuned == runs[1].tuned
    for name in ("biases", "popularity-rule"):
        a, b = (studies(tmp_path / x, f"regression-{name}") for x in "ab")
        assert [t.value for t in a] == [t.value for t in b] and len(a) == 5
        assert a[0].params["train_passes"] == 1 and a[0].params["train_microbatch"] is None  # the current settings
        values = runs[0].tuned["regression"][name]
        for key, spec in TABLE[name].space.items():
            if isinstance(spec, Choice):
                assert values[key] in spec.values
            elif key != "popularity_thresholds":
                assert spec[0] <= values[key] <= spec[1] or values[key] == getattr(base, key)
    written = yaml.safe_load((tmp_path / "a" / "tuned.yaml").read_text())
    assert written["tuned"] == {"regression": {k: runs[0].tuned["regression"][k] for k in ("biases", "popularity-rule")}}
    assert Config(**{**SMALL, "tuned": written["tuned"]}).tuned == written["tuned"]  # usable as a params file


def test_a_method_with_tuned_values_is_not_tuned_and_no_trials_means_untuned(tiny, tmp_path):
    base = Config(**SMALL, tuned={"regression": {"biases": {"lr": 0.01}, "autoemb": {"lr": 0.001}}})
    assert not tuning.needs_tuning(base, "biases", "regression")
    assert not tuning.needs_tuning(base, "autoemb-hard", "regression")  # it borrows autoemb's values
    assert not tuning.needs_tuning(base, "global-mean", "regression")  # nothing to tune
    assert tuning.needs_tuning(base, "biases", "classification")
    assert tuning.ensure_tuned(base, tiny, ["biases"], ["regression"], 5, tmp_path) is base
    assert tuning.ensure_tuned(base, tiny, ["fse"], ["regression"], 0, tmp_path) is base
    assert not (tmp_path / "tuned.yaml").exists()


def test_a_value_on_the_edge_of_its_range_is_flagged():
    lo, hi = TABLE["fse"].space["lr"]
    assert tuning.on_edge({"lr": lo}, "fse") and "lower" in tuning.on_edge({"lr": lo}, "fse")[0]
    assert tuning.on_edge({"lr": hi}, "fse") and "upper" in tuning.on_edge({"lr": hi}, "fse")[0]
    assert tuning.on_edge({"lr": (lo * hi) ** 0.5, "train_passes": 1}, "fse") == []
    assert "largest of its choices" in tuning.on_edge({"train_passes": 3}, "fse")[0]  # a grid's top: widen it
    assert tuning.on_edge({"train_microbatch": 50}, "fse") == []  # None, the whole batch, lies beyond 50
    assert tuning.on_edge({"embedding_l2": 0.0, "train_microbatch": 1}, "mf") == []  # nothing below 0 or 1
    assert tuning.thresholds(8, 4, 3) == [8, 32] and tuning.thresholds(5, 2, 2) == [5]


def test_the_first_trial_is_the_current_settings_and_every_space_holds_them():
    """Each method's current settings are a point of its space (0 for mf's embedding_l2 is one of its choices)."""
    import optuna
    for method in ("mf", "fse", "popularity-rule", "autoemb"):
        cfg = Config(method=method)
        first = {k: v for key in TABLE[method].space for k, v in tuning.current(cfg, key).items()}
        study = optuna.create_study()
        study.enqueue_trial(first)
        trial = study.ask()
        values = {key: tuning.suggest(trial, key, spec, len(cfg.dims)) for key, spec in TABLE[method].space.items()}
        assert values == {key: list(cfg.rule_thresholds) if key == "popularity_thresholds" else getattr(cfg, key)
                          for key in TABLE[method].space}


def test_a_method_that_nests_another_starts_its_study_where_that_one_is_tuned(tiny, tmp_path):
    """MF's second trial is the biases' chosen values with its factors at the low ends of their ranges, and there
    it scores as the biases do (to 1e-5): a richer model cannot end tuned worse than the one it contains."""
    assert tuning.nested_start(Config(), "mf", "regression") is None  # nothing tuned to start from
    assert tuning.nested_start(Config(tuned={"regression": {"biases": {"lr": 0.01}}}), "fse", "regression") is None
    base = Config(**SMALL)
    tuned = tuning.ensure_tuned(base, tiny, ["biases", "mf"], ["regression"], 3, tmp_path)
    biases = tuned.tuned["regression"]["biases"]
    start = tuning.nested_start(tuning.dataclasses.replace(base, tuned={"regression": {"biases": biases}}), "mf",
                                "regression")
    assert start == {**{k: biases[k] for k in TABLE["biases"].space}, "factor_lr": TABLE["mf"].space["factor_lr"][0],
                     "embedding_init_std": TABLE["mf"].space["embedding_init_std"][0], "embedding_l2": 0.0}
    mf, first = studies(tmp_path, "regression-mf"), studies(tmp_path, "regression-biases")
    assert mf[1].params == start
    at_biases = min(t.value for t in first if t.params == {k: biases[k] if not isinstance(biases[k], float)
                                                             else t.params[k] for k in t.params}
                    and all(abs(t.params[k] - v) <= 5e-3 * abs(v) for k, v in biases.items() if isinstance(v, float)))
    assert mf[1].value == pytest.approx(at_biases, rel=1e-5)


SCRIPT = """
import sys, torch
import autoemb_core as ae
from autoemb_core import tuning
from autoemb_core.config import Config
torch.set_num_threads(1)
data = ae.load_dataset("synthetic-tiny").head(3000)
base = Config(dims=(2, 4), hidden=(8,), controller_hidden=(6,), batch_size=50, progress=False)
tuning.ensure_tuned(base, data, ["biases"], ["regression"], 10, sys.argv[1])
"""


def test_a_tuning_killed_part_way_resumes_without_repeating_trials_and_a_finished_one_is_reused(tmp_path):
    folder = tmp_path / "results"
    command = [sys.executable, "-c", SCRIPT, str(folder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    journal = folder / "tuning" / "regression-biases.journal"
    deadline = time.time() + 240
    finished = []
    while time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
        if journal.is_file():
            finished = [t for t in studies(folder, "regression-biases") if t.state.is_finished()]
            if len(finished) >= 3:
                break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 3 <= len(finished) < 10, "the kill came too late to test a resume"
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 5, "trial_id"')  # a line cut short by the kill
    before = {t.number: (t.params, t.value) for t in studies(folder, "regression-biases") if t.state.is_finished()}
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = studies(folder, "regression-biases")
    done = [t for t in trials if t.state.is_finished() and t.state.name != "FAIL"]
    assert len(done) == 10
    for number, (params, value) in before.items():  # finished trials kept, not run again
        if trials[number].state.name != "FAIL":
            assert (trials[number].params, trials[number].value) == (params, value)
    assert f"{10 - len([n for n in before if trials[n].state.name != 'FAIL'])} of 10 trials to go" in again.stderr
    points = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(points)) == len(points)  # the resumed sampler drew new points, not the ones drawn before the kill
    tuned = (folder / "tuned.yaml").read_text()
    third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "trials to go" not in third.stderr  # finished: reused
    assert len(studies(folder, "regression-biases")) == len(trials)
    assert (folder / "tuned.yaml").read_text() == tuned


def test_report_on_a_stream_with_no_tuned_values_tunes_first_and_says_so(tmp_path, capsys):
    from autoemb_core.__main__ import main
    params = sorted(p.read_text() for p in params_dir().glob("*.yaml"))
    common = ["report", "--dataset", "synthetic-tiny", "--max-interactions", "2000", "--methods", "biases", "fse",
              "--tasks", "regression", "--seeds", "0", "1", "--no-figure1", "--no-progress"]
    assert main([*common, "--results-dir", str(tmp_path / "tuned"), "--tune-trials", "3"]) == 0
    text = (tmp_path / "tuned" / "REPORT.md").read_text()
    assert "tuned first on the offline stage of synthetic-tiny" in text and "3 trials each" in text
    chosen = yaml.safe_load((tmp_path / "tuned" / "tuned.yaml").read_text())["tuned"]["regression"]
    assert set(chosen) == {"biases", "fse"}
    assert "tuned.yaml, not in params/" in capsys.readouterr().err
    assert main([*common, "--results-dir", str(tmp_path / "untuned"), "--no-tune"]) == 0
    assert "**Untuned**" in (tmp_path / "untuned" / "REPORT.md").read_text()
    assert not (tmp_path / "untuned" / "tuned.yaml").exists()
    assert sorted(p.read_text() for p in params_dir().glob("*.yaml")) == params  # params/ untouched


def test_trials_in_parallel_workers_share_one_study_and_its_budget_exactly(tiny, tmp_path):
    """Two worker processes on one journal: exactly the budget of finished trials (a worker that would go past it
    ends its trial unrun), distinct points, and a rerun reuses the study."""
    base = Config(method="biases", batch_size=50, progress=False)
    r = tuning.tune_method(base, tiny, "biases", "regression", 6, tmp_path, log=open(os.devnull, "w"), workers=2)
    import optuna
    from optuna.storages.journal import JournalFileBackend
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "regression-biases.journal")))
    trials = optuna.load_study(study_name="regression-biases", storage=storage).trials
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 6 == r["trials"] and len([t for t in trials if t.state.name == "RUNNING"]) == 0
    assert len({tuple(sorted(t.params.items())) for t in done}) == 6  # two seeded samplers, no point drawn twice
    again = tuning.tune_method(base, tiny, "biases", "regression", 6, tmp_path, log=open(os.devnull, "w"), workers=2)
    assert again["values"] == r["values"] and again["trials"] == 6


def test_tune_interactions_tunes_on_a_prefix_of_the_offline_stage_and_a_study_keeps_its_stream(tmp_path, capsys):
    """--tune-interactions N: every trial sees only the first N interactions of the offline stage (the report says
    how many), a run's settings are unchanged by it, and a study tuned on one stream is never reused on another."""
    from autoemb_core.__main__ import main
    from autoemb_core.interactions import DataError
    from autoemb_core.data import load_dataset
    data = load_dataset("synthetic-tiny", max_interactions=2000)
    assert len(tuning.tuning_stream(data, Config(tune_interactions=600))) == 600
    assert len(tuning.tuning_stream(data, Config(tune_interactions=10**6))) == 1400  # never past the offline stage
    assert Config(tune_interactions=600).differences(Config().to_dict()) == {}  # what a run computes: unchanged
    with pytest.raises(DataError, match="tune_interactions"):
        Config(tune_interactions=0)
    common = ["report", "--dataset", "synthetic-tiny", "--max-interactions", "2000", "--methods", "biases",
              "--tasks", "regression", "--seeds", "0", "1", "--no-figure1", "--no-progress", "--tune-trials", "2",
              "--results-dir", str(tmp_path)]
    assert main([*common, "--tune-interactions", "600"]) == 0
    assert "(its first 600 interactions;" in (tmp_path / "REPORT.md").read_text()
    assert "(the 600 interactions it tuned on)" in (tmp_path / "tuned.yaml").read_text()
    capsys.readouterr()
    assert main([*common, "--tune-interactions", "700"]) == 2
    err = capsys.readouterr().err
    assert "tuned on 600 interactions" in err and "700" in err and "regression-biases.journal" in err
