"""The configuration: paper defaults, YAML presets under params/, overrides and clear errors (the precedence of
their sources: tests/test_settings.py)."""
from pathlib import Path

import pytest

from autoemb_core import DataError
from autoemb_core.config import Config, resolve

PARAMS = sorted((Path(__file__).parents[1] / "params").glob("*.yaml"))


def test_paper_values_are_the_defaults_where_the_paper_gives_them():
    c = Config()
    assert (c.dims, c.hidden, c.controller_hidden, c.batch_size, c.offline_fraction) == \
        ((2, 16, 128), (512, 512), (512, 512), 500, 0.7)
    assert c.controller_features == 38 and c.width == 146 and c.virtual_lr == c.lr
    assert Config(method="fixed-16").width == 16 and Config(xi=0).virtual_lr == 0


@pytest.mark.parametrize("path", PARAMS, ids=[p.name for p in PARAMS])
def test_every_params_file_loads_and_every_key_is_commented(path):
    """Hand-written keys carry a comment; the tuned: block that benchmarks/tune.py writes at the end is
    introduced by one comment line saying how it was made."""
    resolve(params=path)
    text = path.read_text()
    written, _, tuned = text.partition("# tuned by benchmarks/tune.py")
    for line in written.splitlines():
        if line and not line.startswith("#"):
            assert "#" in line, f"{path.name}: uncommented key {line!r}"
    if tuned:
        assert "tuned:" in tuned and resolve(params=path).tuned


def test_paper_preset_and_overrides():
    c = resolve({"method": "darts"}, Path(__file__).parents[1] / "params" / "paper.yaml")
    assert (c.lr, c.controller_lr, c.method, c.seed) == (0.01, 0.001, "darts", 0)


@pytest.mark.parametrize("bad, words", [
    (dict(method="autoemb2"), "method='autoemb2'"), (dict(task="ranking"), "task"), (dict(lr=0), "lr must be > 0"),
    (dict(dims=(16, 2)), "increasing"), (dict(xi=-1.0), "xi"), (dict(offline_fraction=1.0), "offline_fraction"),
    (dict(dataset="netflx"), "dataset='netflx' is not valid \\(did you mean 'netflix'\\?\\)"),
    (dict(max_interactions=0), "max_interactions must be a positive integer or null"),
    (dict(batch_size=2.5), "batch_size must be a positive integer"), (dict(data_dir=3), "data_dir must be a folder"),
])
def test_bad_values_are_refused_clearly(bad, words):
    with pytest.raises(DataError, match=words):
        Config(**bad)


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("lr: [\n")
    with pytest.raises(DataError, match="x.yaml.*not valid YAML"):
        resolve(params=path)
    path.write_text("lrr: 0.1\n")
    with pytest.raises(DataError, match="x.yaml: unknown setting.*lrr"):
        resolve(params=path)
    path.write_text("lr: -1\n")  # a bad value names the file it came from, a given one no file
    with pytest.raises(DataError, match="x.yaml: lr must be > 0"):
        resolve({"method": "fse"}, path)
    with pytest.raises(DataError, match="^lr must be > 0, got -2"):
        resolve({"lr": -2}, path)
    with pytest.raises(DataError, match="no such params file"):
        resolve(params=tmp_path / "missing.yaml")
