"""Loaders on small fixtures in the exact real formats, id remapping, order, labels, cache, bad input."""
import os
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import autoemb_core as ae
from autoemb_core import data as data_module
from autoemb_core.interactions import first_appearance_codes, from_arrays

ML_LINES = "userId,movieId,rating,timestamp\n"


def load(name, data_dir, **kw):
    return ae.load_dataset(name, data_dir, **kw)


def write(path: Path, text, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


# ---------------------------------------------------------------------------- real formats

def test_movielens_csv_sorted_stable_and_remapped(data_dir):
    d = load("ml-latest-small", data_dir)
    # file rows sorted by timestamp, ties kept in file order: 4, 6, 3, 1, 5, 2, 0
    assert d.timestamp.tolist() == [974820598, 974820598, 974820889, 1112484676, 1112484676, 1112484819, 1112486027]
    assert d.user.tolist() == [0, 1, 0, 2, 1, 2, 2]
    assert d.raw_user_ids.tolist() == [2, 3, 1]
    assert d.item.tolist() == [0, 1, 2, 3, 4, 1, 4]
    assert d.raw_item_ids.tolist() == [62, 32, 3, 29, 2]
    assert d.rating.tolist() == [5.0, 4.5, 4.0, 3.5, 0.5, 3.5, 3.5]
    assert (d.user.dtype, d.item.dtype, d.rating.dtype, d.timestamp.dtype) == (np.int64, np.int64, np.float32, np.int64)
    assert (d.n_users, d.n_items, d.name) == (3, 5, "ml-latest-small")


@pytest.mark.parametrize("name", ["ml-20m", "ml-latest"])
def test_other_movielens_csv_names_read_the_same_format(data_dir, name):
    os.rename(data_dir / "ml-latest-small", data_dir / name)
    assert load(name, data_dir).rating.tolist() == [5.0, 4.5, 4.0, 3.5, 0.5, 3.5, 3.5]


def test_ml1m_double_colon_format(data_dir):
    d = load("ml-1m", data_dir)
    assert d.timestamp.tolist() == [978298413, 978298709, 978300760, 978300760, 978302109]
    assert d.raw_user_ids[d.user].tolist() == [2, 2, 1, 3, 1]
    assert d.raw_item_ids[d.item].tolist() == [1193, 3105, 1193, 661, 661]
    assert d.rating.tolist() == [4, 5, 5, 1, 3]


def test_ml100k_tab_format(data_dir):
    d = load("ml-100k", data_dir)
    assert d.raw_user_ids[d.user].tolist() == [22, 196, 196, 186]
    assert d.raw_item_ids[d.item].tolist() == [377, 377, 242, 302]
    assert d.rating.tolist() == [1, 5, 3, 3]


NETFLIX_EXPECTED = dict(
    user=[822109, 822109, 1488844, 885013, 2059652, 1488844, 885013],
    item=[3, 1, 2, 4, 2, 1, 1],
    rating=[1, 5, 2, 5, 4, 3, 4],
    day=["2004-01-20", "2005-05-13", "2005-05-13", "2005-05-13", "2005-09-05", "2005-09-06", "2005-10-19"],
)


def _check_netflix(d):
    assert d.raw_user_ids[d.user].tolist() == NETFLIX_EXPECTED["user"]
    assert d.raw_item_ids[d.item].tolist() == NETFLIX_EXPECTED["item"]
    assert d.rating.tolist() == NETFLIX_EXPECTED["rating"]
    assert d.timestamp.astype("datetime64[s]").astype("datetime64[D]").astype(str).tolist() == NETFLIX_EXPECTED["day"]
    assert d.user.tolist() == [0, 0, 1, 2, 3, 1, 2] and d.item.tolist() == [0, 1, 2, 3, 2, 1, 1]


def test_netflix_combined_files(data_dir):
    _check_netflix(load("netflix", data_dir))


def test_netflix_per_movie_files_give_the_same_stream(data_dir):
    _check_netflix(load("netflix", data_dir / "netflix-per-movie"))


def test_netflix_crlf_and_files_in_numeric_order(tmp_path):
    # combined_data_10 must come after combined_data_2; CRLF line ends are accepted
    write(tmp_path / "netflix" / "combined_data_2.txt", b"2:\r\n7,4,2001-01-02\r\n")
    write(tmp_path / "netflix" / "combined_data_10.txt", b"10:\r\n8,4,2001-01-02\r\n")
    d = load("netflix", tmp_path)
    assert d.raw_item_ids[d.item].tolist() == [2, 10]
    assert d.raw_user_ids[d.user].tolist() == [7, 8]


def test_generic_csv_with_column_mapping_string_ids_and_dates(tmp_path):
    path = write(tmp_path / "mine.csv", "who;what;stars;when\nann;x;4;2020-01-02\nbob;y;2;2020-01-01\nann;y;5;2020-01-03\n")
    d = ae.load_dataset("csv", path=path, delimiter=";", rating_range=(1, 5),
                        columns={"user": "who", "item": "what", "rating": "stars", "timestamp": "when"})
    assert d.raw_user_ids[d.user].tolist() == ["bob", "ann", "ann"]
    assert d.raw_item_ids[d.item].tolist() == ["y", "x", "y"]
    assert d.rating.tolist() == [2, 4, 5]
    assert np.diff(d.timestamp).tolist() == [86400, 86400]


def test_generic_parquet(tmp_path):
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"user": [5, 6, 5], "item": [1, 1, 2], "rating": [1.0, 2.0, 3.0],
                             "timestamp": [30, 10, 20]}), path)
    d = ae.load_dataset("parquet", path)
    assert d.raw_user_ids[d.user].tolist() == [6, 5, 5] and d.rating.tolist() == [2, 3, 1]


def test_max_interactions_keeps_the_first_in_time(data_dir):
    d = load("ml-latest-small", data_dir, max_interactions=3)
    assert len(d) == 3 and d.timestamp.tolist() == [974820598, 974820598, 974820889]
    assert (d.n_users, d.n_items) == (2, 3)


def test_summary(data_dir):
    s = load("ml-latest-small", data_dir).summary()
    assert (s["interactions"], s["users"], s["items"]) == (7, 3, 5)
    assert s["rating_histogram"] == {0.5: 1, 3.5: 3, 4.0: 1, 4.5: 1, 5.0: 1}
    assert s["positive_fraction"] == pytest.approx(3 / 7)


# ---------------------------------------------------------------------------- remapping and labels

def test_first_appearance_codes():
    codes, raw = first_appearance_codes(np.array([50, 7, 50, 3, 7, 99]))
    assert codes.tolist() == [0, 1, 0, 2, 1, 3] and raw.tolist() == [50, 7, 3, 99]


def test_from_arrays_is_stable_on_ties():
    d = from_arrays([1, 2, 3, 4], [1, 1, 1, 1], [1, 2, 3, 4], [5, 5, 1, 5], "t")
    assert d.raw_user_ids[d.user].tolist() == [3, 1, 2, 4]


def test_labels():
    stars = np.array([0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5], dtype=np.float32)
    assert ae.binary_label(stars).tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert ae.class_label(stars).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ae.class_label(np.array([1, 2, 3, 4, 5])).tolist() == [0, 1, 2, 3, 4]  # Netflix: rating - 1
    assert ae.binary_label(stars, threshold=2.75).sum() == 5


# ---------------------------------------------------------------------------- bad input

def _error(name, data_dir, **kw):
    with pytest.raises(ae.DataError) as info:
        load(name, data_dir, **kw)
    return info.value


def test_unknown_dataset_lists_valid_names(tmp_path):
    err = _error("ml-30m", tmp_path)
    assert "ml-30m" in str(err) and "ml-20m" in str(err) and "netflix" in str(err)


def test_missing_folder_says_what_and_where(tmp_path):
    err = _error("ml-20m", tmp_path)
    assert "ratings.csv" in str(err) and str(tmp_path / "ml-20m") in str(err) and "grouplens" in str(err)
    err = _error("netflix", tmp_path)
    assert "combined_data_1.txt" in str(err) and "kaggle" in str(err)


@pytest.mark.parametrize("content, line, words", [
    ("userId;movieId;rating;timestamp\n1;2;3;4\n", 1, "header"),                  # wrong delimiter
    ("user,item,rating,time\n1,2,3,4\n", 1, "header"),                             # wrong columns
    (ML_LINES + "1,2,3.5,100\n1,x,3.5,100\n", 3, "item id 'x'"),                  # non-numeric
    (ML_LINES + "1,2,3.5,100\n1,3,6.0,100\n", 3, "rating '6.0' outside"),         # out of range
    (ML_LINES + "1,2,3.5,100\n1,3,0.0,100\n", 3, "outside"),
    (ML_LINES + "1,2,3.5,100\n1,3,3.7,100\n", 3, "steps of 0.5"),
    (ML_LINES + "1,2,3.5,100\n1,3,nan,100\n", 3, "outside"),                       # NaN rating
    (ML_LINES + "1,2,3.5,100\n1,3,3.5,-100\n", 3, "timestamp '-100'"),            # negative time
    (ML_LINES + "1,2,3.5,100\n1,3,3.5,99999999999999999999999\n", 3, "timestamp"),  # huge
    (ML_LINES + "-1,2,3.5,100\n", 2, "user id '-1'"),                              # negative id
    (ML_LINES + "1,2,3.5,100\n" + ML_LINES + "1,3,3.5,100\n", 3, "user id 'userId'"),  # header in the middle
    (ML_LINES + "1,2,3.5,100\n1,3,3.5", 3, "3 fields"),                            # truncated last line
    (ML_LINES.encode() + b"1,2,3.5,100\n1,\xff\xfe,3.5,100\n", 3, "UTF-8"),         # garbage bytes
])
def test_bad_movielens_csv_names_file_line_and_reason(tmp_path, content, line, words):
    path = write(tmp_path / "ml-20m" / "ratings.csv", content)
    err = _error("ml-20m", tmp_path)
    assert err.path == path and err.line == line and words in str(err), str(err)
    assert f"line {line}" in str(err)
    assert not any(Path(os.environ["AUTOEMB_CACHE_DIR"]).iterdir()), "no cache for bad input"


def test_empty_file(tmp_path):
    write(tmp_path / "ml-1m" / "ratings.dat", "")
    assert "empty" in str(_error("ml-1m", tmp_path))


def test_bad_ml1m_line(tmp_path):
    write(tmp_path / "ml-1m" / "ratings.dat", "1::2::5::978300760\n1:2:5:978300760\n")
    assert _error("ml-1m", tmp_path).line == 2


@pytest.mark.parametrize("content, line, words", [
    ("1:\n10,3,2005-09-06\n10,3\n", 3, "CustomerID,Rating,YYYY-MM-DD"),   # truncated last line
    ("1:\n10,3,2005-09-06\n10,7,2005-09-06\n", 3, "rating 7"),
    ("1:\n10,3,2005-09-06\n10,x,2005-09-06\n", 3, "rating 'x'"),
    ("1:\n10,3,2005-09-06\n10,3,2005-13-45\n", 3, "2005-13-45"),
    ("1:\n10,3,2005-09-06\n10,3,2005/09/06\n", 3, "YYYY-MM-DD"),
    ("10,3,2005-09-06\n", 1, "MovieID:"),
    ("x:\n10,3,2005-09-06\n", 1, "movie id 'x'"),
    ("1:\n10,3,2005-09-06\n\n11,3,2005-09-06\n", 3, "empty line"),
])
def test_bad_netflix_file(tmp_path, content, line, words):
    path = write(tmp_path / "netflix" / "combined_data_1.txt", content)
    err = _error("netflix", tmp_path)
    assert err.path == path and err.line == line and words in str(err), str(err)


def test_bad_user_csv(tmp_path):
    path = write(tmp_path / "s.csv", "user,item,rating,timestamp\n1,2,3,4\n1,2,9,5\n")
    with pytest.raises(ae.DataError, match="line 3.*rating 9"):
        ae.load_dataset("csv", path=path)
    with pytest.raises(ae.DataError, match="missing column"):
        ae.load_dataset("csv", path=path, columns={"user": "uid"})
    with pytest.raises(ae.DataError, match="unknown option"):
        ae.load_dataset("csv", path=path, colums={})
    with pytest.raises(ae.DataError, match="no such file"):
        ae.load_dataset("csv", path=tmp_path / "nope.csv")


# ---------------------------------------------------------------------------- cache

def _cache_files():
    return sorted(Path(os.environ["AUTOEMB_CACHE_DIR"]).iterdir())


def test_cache_is_used_and_keyed_by_size_and_mtime(data_dir, monkeypatch):
    first = load("ml-latest-small", data_dir)
    assert len(_cache_files()) == 1
    with monkeypatch.context() as patched:
        patched.setattr(data_module, "_load_delimited", lambda *a: pytest.fail("cache not used"))
        again = load("ml-latest-small", data_dir)
    assert again.rating.tolist() == first.rating.tolist() and again.raw_item_ids.tolist() == first.raw_item_ids.tolist()
    path = data_dir / "ml-latest-small" / "ratings.csv"
    path.write_text(path.read_text() + "4,2,1.0,1\n")  # the source changed: rebuild, drop the stale cache
    changed = load("ml-latest-small", data_dir)
    assert len(changed) == 8 and changed.rating[0] == 1.0
    assert len(_cache_files()) == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupt_cache_is_detected_and_rebuilt(data_dir, damage):
    expected = load("ml-latest-small", data_dir)
    (cache,) = _cache_files()
    raw = cache.read_bytes()
    damaged = {"truncate": raw[: len(raw) // 2], "garbage": os.urandom(len(raw)),
               "flip": raw[:-400] + bytes(b ^ 0xFF for b in raw[-400:-300]) + raw[-300:]}[damage]
    cache.write_bytes(damaged)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load("ml-latest-small", data_dir)
    assert any("rebuilding the cache" in str(w.message) for w in caught)
    assert again.user.tolist() == expected.user.tolist() and again.rating.tolist() == expected.rating.tolist()
    assert _cache_files()[0].read_bytes() != damaged


def test_failed_cache_write_leaves_no_file(data_dir, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", explode)
    with pytest.warns(UserWarning, match="could not write the cache"):
        d = load("ml-latest-small", data_dir)
    assert len(d) == 7 and _cache_files() == []


@pytest.mark.parametrize("high", [5, 10**12])  # the dense path and the sorting path
def test_first_appearance_codes_match_a_reference(high):
    rng = np.random.default_rng(high)
    ids = rng.integers(0, high, 5000)
    codes, raw = first_appearance_codes(ids)
    seen = {}
    expected = [seen.setdefault(v, len(seen)) for v in ids.tolist()]
    assert codes.tolist() == expected and raw.tolist() == list(seen)


def test_chronological_order_is_stable_on_random_ties():
    rng = np.random.default_rng(0)
    ts = rng.integers(0, 50, 10000)
    d = from_arrays(np.arange(10000), np.zeros(10000, int), np.ones(10000), ts, "t")
    assert (d.raw_user_ids[d.user] == np.argsort(ts, kind="stable")).all()
    big = np.array([2**62, -(2**62), 0, 2**62])  # the overflow-safe fallback
    d = from_arrays(np.arange(4), np.zeros(4, int), np.ones(4), big, "t")
    assert d.raw_user_ids[d.user].tolist() == [1, 2, 0, 3]
