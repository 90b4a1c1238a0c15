"""The experiments behind the notebooks (Figure 1, Table 2, Figures 6-8) and the notebooks' parameters."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import autoemb_core as ae
from autoemb_core import experiments as ex
from autoemb_core import nbparams
from autoemb_core.config import Config
from autoemb_core.model import loss_and_correct
from autoemb_core.train import StreamingTrainer

ROOT = Path(__file__).parents[1]
FAST = dict(hidden=(8,), controller_hidden=(6,), batch_size=50, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny", cache=False)


# -- runs and Table 2 ---------------------------------------------------------------------------
def test_compare_and_run_methods_give_the_same_runs(tiny, tmp_path):
    data = tiny.head(600)
    base = Config(**FAST)
    runs = ex.compare(base, ["fse", "autoemb"], ["regression", "classification"], [0, 1], tmp_path / "c", data=data)
    assert list(zip(runs.task, runs.method, runs.seed))[:4] == [
        ("regression", "fse", 0), ("regression", "fse", 1), ("regression", "autoemb", 0), ("regression", "autoemb", 1)]
    assert len(runs) == 8 and (tmp_path / "c" / "classification-autoemb-seed1" / "summary.json").is_file()
    results = ex.run_methods(base, ["fse", "autoemb"], [0, 1], data, tmp_path / "r")
    assert list(results) == [("fse", 0), ("fse", 1), ("autoemb", 0), ("autoemb", 1)]
    regression = runs[runs.task == "regression"].reset_index(drop=True)
    assert [r.summary["online_loss"] for r in results.values()] == list(regression.online_loss)
    assert (tmp_path / "r" / "regression-fse-seed1" / "samples.parquet").is_file()


def runs_frame(dataset, fse=(0.20, 0.21), autoemb=(0.18, 0.19), accuracy=0.7):
    rows = []
    for method, losses in (("fse", fse), ("autoemb", autoemb)):
        for seed, loss in enumerate(losses):
            rows.append(dict(dataset=dataset, task="regression", method=method, seed=seed, online_loss=loss,
                             online_accuracy=accuracy + (0.01 if method == "autoemb" else 0)))
    return pd.DataFrame(rows)


def block(layout, metric):
    return layout[layout.index.get_level_values("metric") == metric].droplevel(["dataset", "task", "metric"])


def test_paper_table_layout_improvements_and_the_papers_numbers():
    layout = ex.paper_table(ex.overall_table(runs_frame("ml-20m")))
    assert list(layout.columns) == ["FSE", "AutoEmb"]
    assert layout.index.names == ["dataset", "task", "metric", "row"]
    mse = block(layout, "MSE loss")
    assert list(mse.index) == ["ours", "ours vs FSE", "paper (ml-20m)", "paper vs FSE"]
    assert mse.at["ours", "FSE"] == f"0.2050 ± {np.std([0.20, 0.21], ddof=1):.4f}"
    # lower loss is better: (0.205 - 0.185) / 0.205 = +9.76%
    assert mse.at["ours vs FSE", "AutoEmb"] == "+9.76%" and mse.at["ours vs FSE", "FSE"] == ""
    assert mse.at["paper (ml-20m)", "AutoEmb"] == "0.1803"
    assert mse.at["paper vs FSE", "AutoEmb"] == f"{(0.1840 - 0.1803) / 0.1840 * 100:+.2f}%"
    accuracy = block(layout, "Accuracy")
    assert accuracy.at["ours vs FSE", "AutoEmb"] == f"{0.01 / 0.7 * 100:+.2f}%"  # higher accuracy is better


def test_paper_table_without_the_paper_or_a_spread():
    layout = ex.paper_table(ex.overall_table(runs_frame("synthetic", fse=(0.2,), autoemb=(0.22,))))
    rows = layout.index.get_level_values("row")
    assert "paper" not in " ".join(rows)
    assert block(layout, "MSE loss").at["ours", "FSE"] == "0.2000"
    assert block(layout, "MSE loss").at["ours vs FSE", "AutoEmb"] == "-10.00%"


def test_save_tables_writes_csv_and_markdown_with_the_index(tmp_path):
    layout = ex.paper_table(ex.overall_table(runs_frame("ml-20m")))
    ex.save_tables(tmp_path, table2=layout, runs=runs_frame("ml-20m"))
    table2 = pd.read_csv(tmp_path / "table2.csv")
    assert list(table2.columns[:4]) == ["dataset", "task", "metric", "row"]
    assert "| ml-20m" in (tmp_path / "table2.md").read_text()
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 4


# -- Figure 1 -----------------------------------------------------------------------------------
def test_preliminary_split_holds_out_a_fixed_part_and_nests_the_training_sets(tiny):
    sizes = (1, 2, 4, 8)
    split = ex.preliminary_split(tiny, n_test=3, train_sizes=sizes, seed=0, n_validation=2)
    counts = np.bincount(tiny.user, minlength=tiny.n_users)
    assert set(split.users) == set(np.flatnonzero(counts >= 3 + 2 + 8)) and len(split.users) > 10
    for part, k in ((split.test, 3), (split.validation, 2)):
        assert (np.bincount(tiny.user[part], minlength=tiny.n_users)[split.users] == k).all()
        assert set(tiny.user[part]) == set(split.users)
    assert not set(split.test) & set(split.validation)
    # the other users' interactions, all of them, and none of the study users'
    assert set(tiny.user[split.others]).isdisjoint(split.users)
    assert len(split.others) == counts[np.setdiff1d(np.arange(tiny.n_users), split.users)].sum()
    previous = set()
    for x in sizes:
        train = split.train[x]
        assert (np.bincount(tiny.user[train], minlength=tiny.n_users)[split.users] == x).all()
        assert not set(train) & (set(split.test) | set(split.validation))
        assert previous <= set(train)
        previous = set(train)
        assert np.array_equal(split.training(x), np.sort(np.concatenate([split.others, train])))
    again, other = ex.preliminary_split(tiny, 3, sizes, 0, 2), ex.preliminary_split(tiny, 3, sizes, 1, 2)
    assert np.array_equal(again.test, split.test) and not np.array_equal(other.test, split.test)
    plan = ex.preliminary_plan(tiny, 3, sizes, n_validation=2)
    assert list(plan.index) == list(sizes)
    assert list(plan["study training ratings"]) == [x * len(split.users) for x in sizes]


def test_preliminary_split_says_when_no_user_has_enough_ratings(tiny):
    most = np.bincount(tiny.user).max()
    with pytest.raises(ae.DataError, match=f"most any user has is {most}.*\n.*lower n_test"):
        ex.preliminary_split(tiny, n_test=most, train_sizes=(1,))


def test_the_papers_protocol_trains_every_epoch_and_scores_the_last(tiny):
    """patience None: no early stopping, even where validation stalls at once; the test score is the last epoch's,
    the same as a fresh learner trained that many epochs and scored then."""
    split = ex.preliminary_split(tiny, 3, (4,), seed=0, n_validation=2)
    cfg = Config(**{**FAST, "method": "fixed-16", "table_lr": 2.0})  # a rate that overfits quickly
    stopped = ex.fit_until_stop(StreamingTrainer(tiny, cfg).learner, StreamingTrainer(tiny, cfg).stream,
                                split.training(4), split.validation, split.test, max_epochs=8, patience=1)
    assert stopped["epochs"] < 8  # early stopping would stop here ...
    trainer = StreamingTrainer(tiny, cfg)
    fit = ex.fit_until_stop(trainer.learner, trainer.stream, split.training(4), split.validation, split.test,
                            max_epochs=8, patience=None)
    assert fit["epochs"] == fit["epoch"] == 8  # ... the paper's protocol does not
    view = trainer.stream.view(torch.as_tensor(split.test))
    with torch.no_grad():
        loss = loss_and_correct(trainer.learner.predict(view)[0], view.target, cfg.task)[0].mean()
    assert fit["loss"] == pytest.approx(float(loss), rel=1e-12)


def test_fit_until_stop_keeps_the_best_validation_epoch_and_stops_after_patience(tiny):
    split = ex.preliminary_split(tiny, 3, (4,), seed=0, n_validation=2)
    cfg = Config(**{**FAST, "method": "fixed-16", "table_lr": 2.0})  # a rate that overfits quickly
    trainer = StreamingTrainer(tiny, cfg)
    fit = ex.fit_until_stop(trainer.learner, trainer.stream, split.training(4), split.validation, split.test,
                            max_epochs=12, patience=2)
    assert 1 <= fit["epoch"] <= fit["epochs"] <= 12
    assert fit["epochs"] == 12 or fit["epochs"] - fit["epoch"] == 2
    # by hand: the same epochs, scored on validation after each, with the same seeded shuffles
    again = StreamingTrainer(tiny, cfg)
    learner, stream = again.learner, again.stream

    def evaluate(part):  # held-out pairs, scored without training
        view = stream.pairs(tiny.user[part], tiny.item[part], tiny.rating[part])
        with torch.no_grad():
            return loss_and_correct(learner.predict(view)[0], view.target, cfg.task)[0]
    rng, losses, tests = np.random.default_rng([0, 7]), [], []
    for _ in range(fit["epochs"]):
        for chunk in torch.as_tensor(rng.permutation(split.training(4))).split(cfg.batch_size):
            view = stream.view(chunk)
            learner.train_w(view, *learner.training_outputs(view, learner.selection(view, learner.theta(view))))
        losses.append(float(evaluate(split.validation).mean()))
        tests.append(float(evaluate(split.test).mean()))
    best = int(np.argmin(losses))
    assert fit["epoch"] == best + 1 and fit["validation_loss"] == pytest.approx(losses[best], rel=1e-6)
    assert fit["loss"] == pytest.approx(tests[best], rel=1e-6)


def test_preliminary_study_trains_every_dimension_at_every_x(tiny):
    base = Config(**FAST)
    study = ex.preliminary_study(base, tiny, ["fixed-2", "fixed-16"], train_sizes=(2, 4), n_test=3, seeds=[0, 1],
                                 n_validation=2, max_epochs=2)
    assert len(study) == 8 and set(study.dimension) == {2, 16}
    assert study.loss.between(0, 1).all() and study.accuracy.between(0, 1).all()
    assert (study.epoch >= 1).all() and (study.epochs <= 2).all()
    split = ex.preliminary_split(tiny, 3, (2, 4), seed=1, n_validation=2)
    assert (study[study.train_size == 4].train_ratings == len(split.training(4))).all()


def test_preliminary_study_in_processes_gives_the_rows_of_one_process(tiny):
    """Figure 1's models in a pool of spawned processes: the same rows, in the same order, bit for bit."""
    base = Config(**{**FAST, "threads": 1})
    args = dict(train_sizes=(2, 4), n_test=3, seeds=[0, 1], n_validation=2, max_epochs=3, l2_grid=(0.0, 1e-3))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inline = ex.preliminary_study(base, tiny, ["fixed-2", "fixed-16"], **args)
        assert torch.get_num_threads() == 2  # the models ran on base.threads; the caller's count is restored
    finally:
        torch.set_num_threads(before)
    pooled = ex.preliminary_study(base, tiny, ["fixed-2", "fixed-16"], workers=2, **args)
    assert len(inline) == 8 and inline.loss.nunique() > 1
    pd.testing.assert_frame_equal(inline.drop(columns="seconds"), pooled.drop(columns="seconds"), check_exact=True)


def study_frame(losses):
    """losses: {dimension: [loss at x = 1, 2, 4]}"""
    return pd.DataFrame([dict(dimension=d, train_size=x, seed=0, loss=loss, accuracy=1 - loss)
                         for d, values in losses.items() for x, loss in zip((1, 2, 4), values)])


def test_crossover_names_the_best_dimension():
    crossing = study_frame({2: [0.20, 0.19, 0.18], 16: [0.21, 0.18, 0.16], 128: [0.22, 0.185, 0.15]})
    table = ex.crossover(crossing)
    assert list(table["best by loss"]) == [2, 16, 128] and list(table["best by accuracy"]) == [2, 16, 128]
    assert table.loc[4, "loss d=128"] == 0.15


# -- Figures 6 and 7 ----------------------------------------------------------------------------
def test_popularity_edges_labels_and_buckets():
    values = np.array([0, 0, 1, 2, 3, 5, 9, 17, 40, 70])
    assert list(ex.popularity_edges(values, min_samples=1)) == [0, 1, 2, 4, 8, 16, 32, 64]
    assert list(ex.popularity_edges(values, min_samples=3)) == [0, 1, 2, 4, 8, 16]  # >= 16: 17, 40, 70
    assert list(ex.popularity_edges(values, min_samples=100)) == [0]
    assert ex.bucket_labels([0, 1, 2, 4, 8]) == ["0", "1", "2-3", "4-7", "≥8"]
    buckets = ex.bucketize(values, [0, 1, 2, 4, 8])
    assert list(buckets) == ["0", "0", "1", "2-3", "2-3", "4-7", "≥8", "≥8", "≥8", "≥8"] and buckets.ordered


def fake_result(samples=None, alphas=None, batches=None, task="regression"):
    return SimpleNamespace(samples=samples, alphas=alphas, batches=batches, summary={"task": task})


def test_popularity_metrics_average_each_bucket():
    samples = pd.DataFrame({"user_popularity": [0, 1, 2, 3, 8, 9], "item_popularity": [5] * 6,
                            "loss": [0.1, 0.2, 0.3, 0.5, 0.4, 0.6], "correct": [1, 0, 1, 1, 0, 0]})
    results = {("fse", 0): fake_result(samples), ("autoemb", 0): fake_result(samples.assign(loss=samples.loss * 2))}
    metrics = ex.popularity_metrics(results, "user", edges=[0, 1, 2, 4])
    fse = metrics[metrics.method == "fse"].set_index("bucket")
    assert list(fse.index) == ["0", "1", "2-3", "≥4"] and list(fse.samples) == [1, 1, 2, 2]
    assert fse.loc["2-3", "loss"] == pytest.approx(0.4) and fse.loc["≥4", "accuracy"] == 0
    autoemb = metrics[metrics.method == "autoemb"].set_index("bucket")
    assert autoemb.loc["≥4", "loss"] == pytest.approx(1.0)
    table = ex.popularity_table(metrics)
    assert list(table.columns[:2]) == ["samples", "loss FSE"] and table.loc["≥4", "loss AutoEmb"] == 1.0
    assert list(ex.sample_edges(results, "item", min_samples=6)) == [0, 1, 2, 4]
    with pytest.raises(ae.DataError, match="side"):
        ex.sample_edges(results, "items")


@pytest.fixture
def records():
    alphas = pd.DataFrame({"batch": [0, 0, 2, 2, 2], "seen": [10, 10, 30, 30, 30],
                           "side": ["user", "item", "user", "user", "item"], "id": [0, 0, 0, 1, 3],
                           "popularity": [0, 0, 5, 1, 9], "w2": [0.5, 0.2, 0.1, 0.6, 0.3],
                           "w16": [0.5, 0.8, 0.9, 0.4, 0.7]})
    batches = pd.DataFrame({"batch": [0, 1, 2], "stage": ["offline", "offline", "online"]})
    results = {("fse", 0): fake_result(alphas=pd.DataFrame()),
               ("autoemb", 0): fake_result(alphas=alphas, batches=batches),
               ("darts", 3): fake_result(alphas=alphas.assign(w2=1 - alphas.w16 * 0 - 0.5, w16=0.5), batches=batches)}
    return ex.weight_records(results)


def test_weight_records_are_long_with_stage_and_method(records):
    assert set(records.method) == {"autoemb", "darts"} and len(records) == 2 * 5 * 2
    autoemb = records[(records.method == "autoemb") & (records.id == 1)].set_index("dimension")
    assert autoemb.loc[2, "weight"] == 0.6 and autoemb.loc[16, "weight"] == 0.4
    assert set(autoemb.stage) == {"online"} and set(records[records.batch == 0].stage) == {"offline"}
    assert set(records[records.method == "darts"].seed) == {3}


def test_select_weights_filters_and_buckets(records):
    user = ex.select_weights(records, method="autoemb", side="user")
    assert sorted(user.id.unique()) == [0, 1] and len(user) == 3 * 2
    assert set(ex.select_weights(records, method="autoemb", side="user", popularity=(1, 5)).popularity) == {1, 5}
    assert set(ex.select_weights(records, method="autoemb", popularity=(6, None)).popularity) == {9}
    assert set(ex.select_weights(records, method="autoemb", seen=20).seen) == {10}
    assert set(ex.select_weights(records, method="autoemb", seen=30, window=20).seen) == {30}
    assert set(ex.select_weights(records, stage="offline").batch) == {0}
    bucketed = ex.select_weights(records, method="autoemb", side="user", stage="online", edges=[0, 2])
    assert list(bucketed.drop_duplicates("id").sort_values("id").bucket) == ["≥2", "0-1"]
    means = ex.mean_weights(bucketed)
    assert means.loc["≥2", "d=2"] == pytest.approx(0.1) and means.loc["0-1", "d=16"] == pytest.approx(0.4)
    assert list(means.records) == [1, 1]
    assert ex.mean_weights(bucketed.iloc[:0]).empty


# -- Figure 8 -----------------------------------------------------------------------------------
def test_learning_curves_average_slices_of_a_stage():
    batches = pd.DataFrame({"batch": range(6), "stage": ["offline"] * 4 + ["online"] * 2,
                            "seen": [10, 20, 30, 35, 45, 55], "size": [10, 10, 10, 5, 10, 10],
                            "loss": [0.4, 0.2, 0.3, 0.6, 0.1, 0.1], "accuracy": [0.5, 0.6, 0.7, 0.8, 0.9, 0.9]})
    results = {("fse", 0): fake_result(batches=batches), ("sam", 0): fake_result(batches=batches.assign(loss=0.5))}
    curves = ex.learning_curves(results, "offline", points=2)
    fse = curves[curves.method == "fse"]
    # offline stage spans 0..35, slices [0, 17.5] and (17.5, 35]: batches ending at 10 | 20, 30, 35
    assert list(fse.seen) == [10, 35] and list(fse.samples) == [10, 25]
    assert fse.loss.iloc[1] == pytest.approx((0.2 * 10 + 0.3 * 10 + 0.6 * 5) / 25)
    assert fse.accuracy.iloc[1] == pytest.approx((0.6 * 10 + 0.7 * 10 + 0.8 * 5) / 25)
    online = ex.learning_curves(results, "online", points=5)
    assert online.groupby("method").samples.sum().tolist() == [20, 20]
    table = ex.curve_table(curves)
    assert list(table.columns) == ["FSE", "SAM"] and list(table.index) == [10, 35] and table.loc[10, "SAM"] == 0.5


# -- the notebooks' parameters -------------------------------------------------------------------
def test_defaults_give_the_quick_synthetic_run():
    setup = nbparams.notebook_setup("overall", {})
    assert setup.config.dataset == "synthetic" and setup.config.max_interactions == 10_000
    assert setup.tasks == ["regression", "classification"] and setup.methods == list(ae.methods.TABLE2)
    assert setup.results_dir == ROOT / "results" / "synthetic" / "02_overall"
    assert setup.sources["max_interactions"] == "default" and setup.sources["device"] == "params/synthetic.yaml"
    assert str(ROOT) not in setup.table().to_string()


def test_a_dataset_takes_its_params_file_and_given_values_win():
    setup = nbparams.notebook_setup("popularity", {"dataset": "netflix"})
    assert setup.config.max_interactions is None and setup.sources["max_interactions"] == "params/netflix.yaml"
    assert setup.config.data_dir == str(ROOT / "data") and setup.sources["data_dir"] == "params/netflix.yaml"
    assert setup.results_dir == ROOT / "results" / "netflix" / "03_popularity"
    given = nbparams.notebook_setup("popularity", {"dataset": "netflix", "max_interactions": 1000, "lr": 0.01,
                                                   "task": "classification"})
    assert (given.config.max_interactions, given.config.lr, given.config.task) == (1000, 0.01, "classification")
    assert given.sources["lr"] == "given" and given.task == "classification"
    overall = nbparams.notebook_setup("overall", {"dataset": "netflix"})  # the file's task: regression
    assert overall.tasks == ["regression", "classification"]
    assert nbparams.notebook_setup("overall", {"task": "classification"}).tasks == ["classification"]


def test_a_params_file_given_with_f_is_accepted():
    import yaml
    values = yaml.safe_load((ROOT / "params" / "paper.yaml").read_text())
    setup = nbparams.notebook_setup("data_efficiency", values)
    assert (setup.config.lr, setup.config.controller_lr, setup.config.dims) == (0.01, 0.001, (2, 16, 128))


def test_strings_and_data_dirs_are_resolved(tmp_path, monkeypatch):
    setup = nbparams.notebook_setup("overall", {"methods": "fse,autoemb", "seeds": "3, 4"})
    assert setup.methods == ["fse", "autoemb"] and setup.seeds == [3, 4]
    assert setup.scheduler is None and setup.workers == 1
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    assert nbparams.notebook_setup("overall", {"data_dir": "mine"}).config.data_dir == str(tmp_path / "mine")
    assert nbparams.notebook_setup("overall", {"data_dir": "tests/fixtures"}).config.data_dir == \
        str(ROOT / "tests" / "fixtures")
    assert nbparams.notebook_setup("overall", {"results_dir": "out"}).results_dir == ROOT / "out"


@pytest.mark.parametrize("notebook, name, given, expected", [
    ("overall", "seeds", 0, [0]),  # -p seeds 0: papermill injects an int
    ("overall", "seeds", "[0]", [0]),  # -p seeds "[0]": a string holding a YAML or JSON list
    ("overall", "seeds", "[3, 4]", [3, 4]),
    ("overall", "seeds", "5", [5]),
    ("overall", "methods", "fse", ["fse"]),
    ("overall", "methods", '["fse", "autoemb"]', ["fse", "autoemb"]),
    ("overall", "methods", "[fse, autoemb]", ["fse", "autoemb"]),
    ("preliminary", "train_sizes", 4, [4]),
    ("preliminary", "train_sizes", "[2, 8]", [2, 8]),
    ("memory", "fse_widths", 16, [16]),
    ("memory", "penalties", 0.1, [0.1]),
    ("memory", "penalties", 0, [0.0]),
    ("memory", "penalties", "[0, 0.5]", [0.0, 0.5]),
    ("memory", "thresholds", 8, [[8]]),
    ("memory", "thresholds", [16, 128], [[16, 128]]),
    ("memory", "thresholds", "[[8, 64], [16, 128]]", [[8, 64], [16, 128]]),
    ("memory", "thresholds", "[16, 128]", [[16, 128]]),
    ("memory", "thresholds", "8,64;16", [[8, 64], [16]]),
    ("overall", "scheduler", "local", "local"),
    ("overall", "scheduler", "tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
])
def test_every_list_parameter_takes_one_value_or_a_yaml_list(notebook, name, given, expected):
    setup = nbparams.notebook_setup(notebook, {name: given})
    assert getattr(setup, name) == expected and setup.sources[name] == "given"


@pytest.mark.parametrize("values, words", [
    ({"dataset": "netflx"}, "dataset='netflx' is not valid \\(did you mean 'netflix'\\?\\)"),
    ({"datset": "netflix"}, "unknown parameter.*'datset' \\(did you mean 'dataset'\\?\\)"),
    ({"seed": 1}, "cannot be set.*\n.*use seeds"),
    ({"seeds": 2.5}, "seeds must be a non-empty list of integers >= 0, got 2.5"),
    ({"seeds": "[0, 1"}, "seeds must be a YAML or JSON list .*, got '\\[0, 1'"),
    ({"seeds": "[]"}, "non-empty list"),
    ({"methods": "[fse, 1]"}, "non-empty list of names"),
    ({"scheduler": "locl"}, "scheduler must be None, 'local' or a 'tcp://HOST:PORT' address"),
    ({"workers": 0}, "workers must be a positive integer, got 0"),
    ({"seeds": [0, 0]}, "distinct"),
    ({"methods": ["autoemb", "fixed-3"]}, "unknown or repeated \\['fixed-3'\\]"),
    ({"methods": []}, "non-empty list"),
    ({"max_interactions": 0}, "positive integer or null"),
    ({"max_interactions": 2.5}, "positive integer"),
    ({"task": "ranking"}, "task='ranking' is not valid"),
    ({"device": "tpu"}, "device='tpu'"),
    ({"lr": -1.0}, "lr must be > 0"),
    ({"data_dir": 3}, "folder path"),
])
def test_bad_parameters_fail_clearly(values, words):
    with pytest.raises(ae.DataError, match=words):
        nbparams.notebook_setup("popularity", values)


@pytest.mark.parametrize("notebook, values, words", [
    ("preliminary", {"train_sizes": [4, 2]}, "increasing"),
    ("preliminary", {"methods": ["fse"]}, "unknown or repeated"),
    ("popularity", {"methods": ["fse", "sam"]}, "weights_method must be one of methods \\['fse', 'sam'\\]"),
    ("popularity", {"side": "users"}, "did you mean 'user'"),
    ("data_efficiency", {"points": 0}, "positive integer"),
])
def test_each_notebooks_own_knobs_are_checked(notebook, values, words):
    with pytest.raises(ae.DataError, match=words):
        nbparams.notebook_setup(notebook, values)


def test_only_new_injectable_names_count_as_parameters():
    namespace = {"dataset": "synthetic", "ex": ex, "frame": pd.DataFrame(), "_private": 1, "old": 5}
    setup = nbparams.notebook_setup("overall", namespace, before={"old"})
    assert setup.config.dataset == "synthetic"
    with pytest.raises(ae.DataError, match="'old'"):
        nbparams.notebook_setup("overall", namespace)
    with pytest.raises(ae.DataError, match="notebook='overal' is not valid \\(did you mean 'overall'\\?\\)"):
        nbparams.notebook_setup("overal", {})
