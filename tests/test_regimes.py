"""Regimes: each bundle reaches the embedding methods' runs as documented, the floor runs as tuned, explicit values
win, and the fixed setups are never tuned (their causality test is test_engine's)."""
import dataclasses

import pytest

from autoemb_core import tuning
from autoemb_core.config import Config, resolve
from autoemb_core.interactions import DataError
from autoemb_core.regimes import REGIMES


@pytest.mark.parametrize("regime", ["paper", "esapn"])
@pytest.mark.parametrize("method", ["fse", "autoemb", "darts", "uniform"])
def test_a_fixed_setup_reaches_the_embedding_methods_and_ignores_the_tuned_block(regime, method):
    cfg = resolve({"regime": regime, "method": method, "dataset": "ml-100k"}).resolved()
    assert cfg.tuned.get("regression", {}).get(method)  # ml-100k's params file has tuned values for it ...
    assert cfg.tuned_values() == {}  # ... which this regime does not apply
    for key, value in REGIMES[regime].settings.items():
        got = getattr(cfg, key)
        assert (list(got) if isinstance(got, tuple) else got) == (list(value) if isinstance(value, tuple) else value)
    assert not tuning.needs_tuning(dataclasses.replace(cfg, tuned={}), method, "regression")


def test_the_paper_regime_is_the_papers_numbers():
    cfg = resolve({"regime": "paper", "method": "autoemb"}).resolved()
    assert (cfg.lr, cfg.rows_lr, cfg.controller_lr) == (0.01, 0.01, 0.001)  # one DLRS rate, tables included
    assert (cfg.transform, cfg.selection, cfg.shared_batchnorm, cfg.head_batchnorm) == ("bn-tanh", "mean", False, False)
    assert (cfg.train_passes, cfg.train_microbatch, cfg.dims, cfg.hidden) == (1, None, (2, 16, 128), (512, 512))


@pytest.mark.parametrize("regime", list(REGIMES))
@pytest.mark.parametrize("method", ["biases", "mf", "item-mean"])
def test_the_floor_runs_as_tuned_in_every_regime(regime, method):
    in_regime = resolve({"regime": regime, "method": method, "dataset": "ml-100k"}).resolved()
    tuned = resolve({"method": method, "dataset": "ml-100k"}).resolved()
    assert in_regime.regime is None and in_regime.differences(tuned.to_dict()) == {}  # the same run


def test_explicit_values_win_over_the_regime_and_a_wrong_name_is_one_clear_line():
    cfg = resolve({"regime": "esapn", "method": "fse", "lr": 0.05, "head_batchnorm": False}).resolved()
    assert (cfg.lr, cfg.head_batchnorm, cfg.predict_batchnorm) == (0.05, False, "batch")
    with pytest.raises(DataError, match="did you mean 'esapn'"):
        Config(regime="espan")


def test_the_tuned_regime_tunes_what_has_no_values():
    cfg = Config(regime="tuned", method="fse")
    assert tuning.needs_tuning(cfg, "fse", "regression")
    assert not tuning.needs_tuning(Config(regime="paper", method="fse"), "fse", "regression")
    assert tuning.needs_tuning(Config(regime="paper"), "biases", "regression")  # the floor is tuned in every regime


def test_competent_has_the_protocol_choose_the_architecture_of_the_autoemb_family_only(tmp_path):
    """competent: the selecting methods' space adds transform and selection, in a study of its own, and a method
    whose tuned values did not choose them is tuned again; FSE and the floor are the tuned runs."""
    import autoemb_core as ae
    base = Config(regime="competent", dims=(2, 4), hidden=(8,), controller_hidden=(6,), batch_size=50, progress=False,
                  tuned={"regression": {"uniform": {"lr": 0.001}, "fse": {"lr": 0.001}}})
    assert set(tuning.space("uniform", "competent")) - set(tuning.space("uniform")) == {"transform", "selection"}
    assert tuning.space("fse", "competent") == tuning.space("fse")
    assert tuning.needs_tuning(base, "uniform", "regression") and not tuning.needs_tuning(base, "fse", "regression")
    assert resolve({"regime": "competent", "method": "fse"}).resolved().regime is None
    data = ae.load_dataset("synthetic-tiny").head(1500)
    tuned = tuning.ensure_tuned(base, data, ["uniform", "fse"], ["regression"], 3, tmp_path, log=open(tmp_path / "log", "w"))
    values = tuned.tuned["regression"]["uniform"]
    assert values["transform"] in ("bn-tanh", "tanh", "bn", "linear") and values["selection"] in ("mean", "sum")
    assert tuned.tuned["regression"]["fse"] == {"lr": 0.001}
    assert (tmp_path / "tuning" / "regression-uniform-competent.journal").is_file()
    assert not tuning.needs_tuning(tuned, "uniform", "regression")
    run = dataclasses.replace(tuned, method="uniform").resolved()
    assert (run.transform, run.selection, run.regime) == (values["transform"], values["selection"], "competent")
    assert run.validation == "incoming"  # the mode that breaks the collapse (benchmarks/tuning/validation_modes.md)


def test_competent_studies_first_score_every_variant_at_the_tuned_rates():
    """Before TPE draws, a competent study scores the current settings and then every architecture variant (4
    transforms x 2 selections) at the method's tuned values; a method without tuned values starts as before."""
    tuned = {"regression": {"autoemb": {"lr": 0.0002, "table_lr": 0.25, "controller_lr": 0.0009, "train_passes": 2,
                                        "train_microbatch": None}}}
    cfg = Config(regime="competent", tuned=tuned)
    points = tuning.first_points(cfg, "autoemb", "regression")
    assert points[0] == {k: v for key in tuning.space("autoemb", "competent")
                         for k, v in tuning.current(cfg, key).items()}  # the current settings
    variants = points[1:]
    assert {(p["transform"], p["selection"]) for p in variants} == {
        (t, s) for t in ("bn-tanh", "tanh", "bn", "linear") for s in ("mean", "sum")} and len(variants) == 8
    assert all({k: p[k] for k in tuned["regression"]["autoemb"]} == tuned["regression"]["autoemb"] for p in variants)
    assert tuning.first_points(Config(regime="competent"), "autoemb", "regression") == points[:1]
    assert tuning.first_points(Config(tuned=tuned), "autoemb", "regression") == [
        {k: v for key in tuning.space("autoemb") for k, v in tuning.current(Config(), key).items()}]  # tuned: no variants

@pytest.mark.parametrize("variant, matched", [("bn-tanh", True), ("bn", True), ("tanh", False), ("linear", False)])
def test_competent_fse_gets_the_normalisation_autoembs_variant_keeps(variant, matched):
    """Matched architecture: where AutoEmb's chosen transform keeps a BatchNorm, FSE normalises its input too (a
    run of the competent regime's own); where it keeps none, FSE is the tuned run."""
    tuned = {"regression": {"autoemb": {"transform": variant, "selection": "mean"}, "fse": {"lr": 0.001}}}
    fse = Config(regime="competent", method="fse", tuned=tuned).resolved()
    assert fse.input_batchnorm == matched and fse.lr == 0.001
    assert (fse.regime == "competent") == matched
    assert not Config(regime="tuned", method="fse", tuned=tuned).resolved().input_batchnorm
