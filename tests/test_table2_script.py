"""benchmarks/table2.py's per-run tables read only the table's own runs, though its --results-dir (a report's
folder, reused) may hold other tasks' and seeds' runs."""
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from autoemb_core import experiments as ex
from autoemb_core.config import Config
from autoemb_core.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(dataset="synthetic-tiny", hidden=(8,), controller_hidden=(6,), batch_size=100, progress=False)


def table2_script():
    spec = importlib.util.spec_from_file_location("table2_script", ROOT / "benchmarks" / "table2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gap_and_weight_tables_hold_only_the_runs_asked_for(tmp_path):
    t2 = table2_script()
    data = load_dataset("synthetic-tiny", max_interactions=2000)
    base = Config(**FAST)
    folder = tmp_path / "runs"
    ex.compare(base, ["biases", "fse", "darts"], ["regression", "classification"], [0, 1], folder, data=data)
    asked = ex.compare(base, ["biases", "fse", "darts"], ["classification"], [0], folder, data=data, reuse=True)
    names = t2.run_names(asked)
    assert names == {"classification-biases-seed0", "classification-fse-seed0", "classification-darts-seed0"}

    gaps = t2.gap_table(folder, data, names, batch_size=base.batch_size, offline_fraction=base.offline_fraction)
    rows = gaps.drop(index=("share of samples", "")).index
    assert set(rows) == {("classification", "fse"), ("classification", "darts")}
    by_hand = (pd.read_parquet(folder / "classification-fse-seed0" / "samples.parquet")["loss"]
               - pd.read_parquet(folder / "classification-biases-seed0" / "samples.parquet")["loss"])
    popularity = pd.read_parquet(folder / "classification-biases-seed0" / "samples.parquet")["user_popularity"]
    assert np.isclose(gaps.loc[("classification", "fse"), "popularity: 0"], by_hand[popularity == 0].mean())

    moved = t2.weight_movement(folder, names)
    assert set(moved.index.get_level_values("task")) == {"classification"}
    assert t2.weight_movement(folder, {"regression-darts-seed1"}).index.get_level_values("task").unique().tolist() \
        == ["regression"]
