"""Hostile input for every loader, by property-based testing.

Each test writes a small valid stream in a loader's exact real format, applies one corruption, and loads it.
The contract: either a clean load of a consistent stream (when the corruption leaves a valid file), or an
``ae.DataError`` that names the file and, for a text file, the line -- never another exception, never a hang,
and no cache file after an error. After an error the file is repaired and must then load.

``AUTOEMB_FUZZ_EXAMPLES=500 pytest tests/test_hostile_input.py`` searches harder than the default run.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autoemb_core as ae

EXAMPLES = int(os.environ.get("AUTOEMB_FUZZ_EXAMPLES", "0"))
LOAD_SECONDS = 20  # a load of a file this small that takes longer hangs


def fuzz(examples: int):
    return settings(max_examples=EXAMPLES or examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------------- the formats

@dataclass(frozen=True)
class Format:
    """How one loader's files look: what a line holds, where the files go, and how to load them."""

    name: str  # the dataset name given to load_dataset
    layout: str  # "lines" (one interaction a line), "netflix" (combined_data_N.txt) or "netflix-per-movie"
    stars: tuple  # valid ratings
    relpath: str = ""  # the file, for the "lines" layout
    header: str | None = None
    sep: str = ","
    star_format: str = "{:g}"
    mid_header: str = ""  # a header line as it would be pasted into the middle of the file
    options: dict = field(default_factory=dict)

    @property
    def netflix(self) -> bool:
        return self.layout != "lines"

    def load(self, folder: Path, cache: Path) -> ae.Interactions:
        if self.name == "csv":
            return ae.load_dataset("csv", path=folder / self.relpath, cache_dir=cache, **self.options)
        return ae.load_dataset(self.name, folder, cache_dir=cache)


HALF_STARS = tuple(k / 2 for k in range(1, 11))
WHOLE_STARS = (1.0, 2.0, 3.0, 4.0, 5.0)
CSV_OPTIONS = {"columns": {"user": "uid", "item": "iid", "rating": "stars", "timestamp": "ts"}, "delimiter": ";",
               "rating_range": (1, 5)}
TEXT_FORMATS = [
    Format("ml-20m", "lines", HALF_STARS, "ml-20m/ratings.csv", "userId,movieId,rating,timestamp", ",", "{:.1f}",
           "userId,movieId,rating,timestamp"),
    Format("ml-1m", "lines", WHOLE_STARS, "ml-1m/ratings.dat", None, "::", "{:.0f}",
           "UserID::MovieID::Rating::Timestamp"),
    Format("ml-100k", "lines", WHOLE_STARS, "ml-100k/u.data", None, "\t", "{:.0f}",
           "user id\titem id\trating\ttimestamp"),
    Format("netflix", "netflix", WHOLE_STARS, star_format="{:.0f}", mid_header="CustomerID,Rating,Date"),
    Format("netflix", "netflix-per-movie", WHOLE_STARS, star_format="{:.0f}", mid_header="CustomerID,Rating,Date"),
    Format("csv", "lines", tuple(k / 2 for k in range(2, 11)), "stream.csv", "uid;iid;stars;ts", ";", "{:g}",
           "uid;iid;stars;ts", CSV_OPTIONS),
]
IDS = [f.name if f.layout != "netflix-per-movie" else "netflix-per-movie" for f in TEXT_FORMATS]
PARQUET_COLUMNS = {"user": "uid", "item": "iid", "rating": "stars", "timestamp": "ts"}


@dataclass(frozen=True)
class Record:
    user: int
    item: int
    star: int  # index into the format's valid ratings
    day: int  # days since 1970; the timestamp is its midnight (what Netflix dates give)

    def row(self, fmt_stars, **raw) -> tuple:
        """The interaction as the loader returns it: (user, item, rating, timestamp), ids as text."""
        return (str(raw.get("user", self.user)), str(raw.get("item", self.item)),
                float(fmt_stars[self.star % len(fmt_stars)]), int(raw.get("time", self.day * 86400)))


def records(min_size=1, max_size=12, days=(10_000, 13_000)):
    one = st.builds(Record, st.integers(1, 60), st.integers(1, 9), st.integers(0, 9), st.integers(*days))
    return st.lists(one, min_size=min_size, max_size=max_size)


@dataclass
class Written:
    """A stream written to disk: the file a corruption targets, its valid bytes, which row each of its lines
    holds, and every row in file order (the order ties keep)."""

    target: Path
    original: bytes
    line_rows: list  # per line of target (1-based line = index + 1): index into `order`, or None
    order: list  # rows in file order, as Record.row gives them
    line_of_record: dict  # record index -> its line in target (records in target only)


def fields_of(fmt: Format, rec: Record, override: dict) -> dict:
    """The text of each field of a record's line; ``override`` replaces some."""
    star = fmt.stars[rec.star % len(fmt.stars)]
    time = str(np.datetime64(rec.day, "D")) if fmt.netflix else str(rec.day * 86400)
    text = {"user": str(rec.user), "item": str(rec.item), "rating": fmt.star_format.format(star), "time": time}
    return {**text, **override}


def write(fmt: Format, folder: Path, recs: list[Record], overrides: dict | None = None) -> Written:
    """Write ``recs`` in the format; ``overrides`` maps (record index, field) to the text to put there."""
    overrides = overrides or {}
    texts = [fields_of(fmt, r, {f: t for (i, f), t in overrides.items() if i == k}) for k, r in enumerate(recs)]

    def row(k):
        raw = {f: t for (i, f), t in overrides.items() if i == k}
        if fmt.netflix and "time" in raw:
            raw["time"] = int(np.datetime64(raw["time"], "s").astype(np.int64))
        return recs[k].row(fmt.stars, **raw)

    if fmt.layout == "lines":
        lines = ([fmt.header] if fmt.header else []) + [fmt.sep.join(t[f] for f in ("user", "item", "rating", "time"))
                                                        for t in texts]
        line_rows = ([None] if fmt.header else []) + list(range(len(recs)))
        path = folder / fmt.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(("\n".join(lines) + "\n").encode())
        return Written(path, path.read_bytes(), line_rows, [row(k) for k in range(len(recs))],
                       {k: k + 1 + bool(fmt.header) for k in range(len(recs))})
    # Netflix: a "MovieID:" line, then "CustomerID,Rating,YYYY-MM-DD" lines, movies in order of first appearance
    movies = list(dict.fromkeys(texts[k]["item"] for k in range(len(recs))))
    groups = [[k for k in range(len(recs)) if texts[k]["item"] == m] for m in movies]
    if fmt.layout == "netflix":
        half = (len(groups) + 1) // 2
        files = [(folder / "netflix" / f"combined_data_{n + 1}.txt", part)
                 for n, part in enumerate([groups[:half], groups[half:]]) if part]
    else:
        by_number = sorted(zip(movies, groups), key=lambda mg: int(mg[0]))
        files = [(folder / "netflix" / "training_set" / f"mv_{int(m):07d}.txt", [g]) for m, g in by_number]
    order, written = [], None
    for path, part in files:
        lines, line_rows, line_of_record = [], [], {}
        for group in part:
            lines.append(texts[group[0]]["item"] + ":")
            line_rows.append(None)
            for k in group:
                lines.append(",".join(texts[k][f] for f in ("user", "rating", "time")))
                line_rows.append(len(order))
                line_of_record[k] = len(lines)
                order.append(row(k))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(("\n".join(lines) + "\n").encode())
        written = written or Written(path, path.read_bytes(), line_rows, None, line_of_record)
    written.order = order
    return written


def write_parquet(folder: Path, recs: list[Record], **replace) -> tuple[Path, list]:
    """A Parquet stream; ``replace`` maps a role to the arrow array to write for it instead."""
    arrays = {"user": pa.array([r.user for r in recs], pa.int64()),
              "item": pa.array([r.item for r in recs], pa.int64()),
              "rating": pa.array([float(HALF_STARS[r.star]) for r in recs], pa.float64()),
              "timestamp": pa.array([r.day * 86400 for r in recs], pa.int64())}
    arrays.update(replace)
    path = folder / "stream.parquet"
    pq.write_table(pa.table({PARQUET_COLUMNS[k]: v for k, v in arrays.items()}), path)
    return path, [r.row(HALF_STARS) for r in recs]


# ---------------------------------------------------------------------------------------------- the contract

@contextlib.contextmanager
def time_limit(seconds: float = LOAD_SECONDS):
    def expire(signum, frame):
        raise TimeoutError(f"a load took over {seconds} s: it hangs")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def workspace():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def rows_of(data: ae.Interactions) -> list[tuple]:
    return list(zip(map(str, data.raw_user_ids[data.user].tolist()), map(str, data.raw_item_ids[data.item].tolist()),
                    data.rating.tolist(), data.timestamp.tolist()))


def chronological(order: list[tuple]) -> list[tuple]:
    """The stream the loader must return for rows in this file order: by timestamp, stable on ties."""
    return sorted(order, key=lambda row: row[3])


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.iterdir()) if cache.exists() else []


def assert_consistent(data: ae.Interactions) -> None:
    n = len(data)
    assert n >= 1 and len(data.item) == len(data.rating) == len(data.timestamp) == n
    assert (data.user.dtype, data.item.dtype, data.timestamp.dtype) == (np.int64, np.int64, np.int64)
    assert np.all(np.diff(data.timestamp) >= 0) and data.timestamp[0] >= 0
    assert np.isfinite(data.rating).all()
    for codes, raw in ((data.user, data.raw_user_ids), (data.item, data.raw_item_ids)):
        assert codes.min() == 0 and codes.max() == len(raw) - 1
        assert np.all(codes <= np.concatenate([[0], np.maximum.accumulate(codes)[:-1] + 1])), "first-appearance order"


class Trial:
    """A stream written in a fresh folder with a cache of its own: corrupt its target file, load, repair."""

    def __init__(self, folder: Path, fmt: Format | None, recs: list[Record], overrides=None, **parquet_columns):
        self.folder, self.fmt, self.recs, self.cache = folder, fmt, recs, folder / "cache"
        if fmt is None:  # Parquet
            target, order = write_parquet(folder, recs, **parquet_columns)
            self.written = Written(target, target.read_bytes(), [], order, {})
        else:
            self.written = write(fmt, folder, recs, overrides)
        self.target, self.original = self.written.target, self.written.original

    def load(self) -> ae.Interactions:
        if self.fmt is None:
            return ae.load_dataset("parquet", path=self.target, columns=PARQUET_COLUMNS, cache_dir=self.cache)
        return self.fmt.load(self.folder, self.cache)

    def attempt(self, content: bytes | None = None):
        """Write ``content`` (if given) to the target and load; return the stream or the DataError, after
        checking what each must satisfy."""
        if content is not None:
            self.target.write_bytes(content)
        try:
            with time_limit():
                data = self.load()
        except ae.DataError as err:
            assert Path(err.path).resolve() == self.target.resolve() and str(self.target) in str(err), str(err)
            if err.line is not None:
                assert f"line {err.line}" in str(err), str(err)
            assert cache_files(self.cache) == [], f"a failed load left {cache_files(self.cache)} behind"
            return err
        assert_consistent(data)
        files = cache_files(self.cache)
        assert len(files) == 1 and files[0].suffix == ".npz", files
        return data

    def loads(self, expected: list | None = None) -> ae.Interactions:
        data = self.attempt()
        assert not isinstance(data, ae.DataError), str(data)
        assert rows_of(data) == chronological(self.written.order if expected is None else expected)
        return data

    def repair(self) -> None:
        """After a failed load: the valid stream again (all files rewritten) loads, and is cached."""
        shutil.rmtree(self.folder / "netflix", ignore_errors=True)  # a new movie id may have split the files
        fresh = Trial(self.folder, self.fmt, self.recs)
        fresh.loads()


@contextlib.contextmanager
def trial(fmt: Format | None, recs: list[Record], overrides=None, **parquet_columns):
    with workspace() as folder:
        yield Trial(folder, fmt, recs, overrides, **parquet_columns)


def changed_lines(new: bytes, start: int, stop: int) -> range:
    """The lines of ``new`` that bytes ``start:stop`` changed, with the line after them (a new line break
    makes the next line the changed one)."""
    return range(new[:start].count(b"\n") + 1, new[:stop].count(b"\n") + 2)


def unchanged_rows(written: Written, start: int, stop_old: int) -> list:
    """Rows of lines that lie wholly outside old bytes ``start:stop_old``, one line of margin after it."""
    rows, offset = [], 0
    for line in written.original.split(b"\n")[:-1]:
        begin, end = offset, offset + len(line)  # end: the index of the line's b"\n"
        offset = end + 1
        row = written.line_rows[written.original[:begin].count(b"\n")]
        if row is not None and (end < start or begin > stop_old + 1):
            rows.append(written.order[row])
    return rows


def other_rows(written: Written) -> list:
    """Rows held by files other than the target (Netflix), which no corruption touches."""
    in_target = {r for r in written.line_rows if r is not None}
    return [row for k, row in enumerate(written.order) if k not in in_target]


# ---------------------------------------------------------------------------------------------- text formats

@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@fuzz(12)
@given(recs=records(days=(12_000, 12_004)))
def test_valid_files_load_sorted_and_stable_on_ties(fmt, recs):
    """Timestamps out of order (with many ties) load fine: chronological, file order kept on ties."""
    with trial(fmt, recs) as t:
        first = t.loads()
        assert rows_of(t.loads()) == rows_of(first)  # the second load comes from the cache


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@fuzz(30)
@given(recs=records(), data=st.data())
def test_truncation_at_any_byte(fmt, recs, data):
    with trial(fmt, recs) as t:
        kept = t.original[: data.draw(st.integers(0, len(t.original) - 1), label="cut")]
        complete = kept.count(b"\n")
        partial_line = complete + 1 if not kept.endswith(b"\n") and kept else None
        rows = [t.written.order[r] for r in t.written.line_rows[:complete] if r is not None] + other_rows(t.written)
        outcome = t.attempt(kept)
        if isinstance(outcome, ae.DataError):
            if outcome.line is None:  # nothing left to load
                assert any(w in str(outcome) for w in ("empty", "no interactions", "no ratings")), str(outcome)
                assert not [r for r in t.written.line_rows[:complete] if r is not None]
            else:
                assert outcome.line == partial_line, str(outcome)
            t.repair()
            return
        loaded = rows_of(outcome)
        extra = Counter(loaded) - Counter(rows)
        assert not Counter(rows) - Counter(loaded) and sum(extra.values()) <= 1, (rows, loaded)
        if extra:  # the cut left a shorter but valid last line: same user and item
            original = t.written.order[t.written.line_rows[complete]]
            assert next(iter(extra))[:2] == original[:2], (extra, original)


GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=6),
    st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n", b"\x00", b",", b";", b":", b"::", b"\t", b"\xff", b"\xe9",
                     b"\xef\xbb\xbf", b'"', b"-", b"+", b".", b" ", b"9" * 25, b"nan", b"\x1f", b"e"]),
)


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@fuzz(40)
@given(recs=records(), garbage=GARBAGE, overwrite=st.booleans(), data=st.data())
def test_garbage_bytes_inserted_or_overwritten(fmt, recs, garbage, overwrite, data):
    with trial(fmt, recs) as t:
        old = t.original
        at = data.draw(st.integers(0, len(old) - (1 if overwrite else 0)), label="offset")
        new = old[:at] + garbage + old[at + len(garbage) if overwrite else at:]
        outcome = t.attempt(new)
        if isinstance(outcome, ae.DataError):
            lines = changed_lines(new, at, at + len(garbage))
            header_changed = fmt.header is not None and 1 in lines
            if outcome.line is None:
                assert any(w in str(outcome) for w in ("no interactions", "no ratings")), str(outcome)
            elif not (header_changed and "header" in str(outcome)):  # a changed header makes every line wrong
                assert outcome.line in lines, (str(outcome), lines, new)
            t.repair()
        elif not fmt.netflix:  # (in Netflix files a new 'MovieID:' line may move rows to another movie)
            kept = unchanged_rows(t.written, at, at + (len(garbage) if overwrite else 0))
            assert not Counter(kept) - Counter(rows_of(outcome)), (kept, rows_of(outcome), new)


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@fuzz(8)
@given(recs=records(), encoding=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32"]))
def test_utf16_and_utf32_files_say_so(fmt, recs, encoding):
    with trial(fmt, recs) as t:
        bom = "\ufeff" if encoding.endswith("be") else ""  # "utf-16" and "utf-32" write one; "utf-16-le" none
        err = t.attempt((bom + t.original.decode()).encode(encoding))
        assert isinstance(err, ae.DataError) and "UTF-16" in str(err) and err.line == 1, err
        t.repair()


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
def test_a_utf8_byte_order_mark_is_fine(fmt):
    with trial(fmt, [Record(3, 2, 4, 12_000), Record(1, 2, 2, 11_000)]) as t:
        t.target.write_bytes(b"\xef\xbb\xbf" + t.original)
        t.loads()


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@fuzz(25)
@given(recs=records(), inserted=st.one_of(st.binary(min_size=1, max_size=3).map(lambda b: b"\x00" * len(b)),
                                          st.integers(0x80, 0xFF).map(lambda b: bytes([b]))), data=st.data())
def test_nul_bytes_and_latin1_bytes(fmt, recs, inserted, data):
    """A NUL byte or a byte > 0x7f (Latin-1 text) anywhere: the line that holds it, or, where the loader never
    reads that byte (the empty fields between '::' in ratings.dat), the same stream."""
    with trial(fmt, recs) as t:
        at = data.draw(st.integers(0, len(t.original)), label="offset")
        new = t.original[:at] + inserted + t.original[at:]
        outcome = t.attempt(new)
        if isinstance(outcome, ae.DataError):
            assert outcome.line == new[:at].count(b"\n") + 1, (str(outcome), new)
            if inserted[0] > 0x7F and "header" not in str(outcome):
                assert "UTF-8" in str(outcome), str(outcome)
            t.repair()
        else:
            assert rows_of(outcome) == chronological(t.written.order)


def _value_test(fmt, recs, index, field, text, accepted: bool, words=()):
    """Write ``text`` into one field of one line: it loads (accepted) or fails at that line."""
    with trial(fmt, recs, {(index, field): text}) as t:
        if accepted:
            t.loads()
            return
        outcome = t.attempt()
        assert isinstance(outcome, ae.DataError), f"{text!r} as {field} loaded"
        line = 1 if fmt.netflix and field == "item" else t.written.line_of_record[index]  # the first 'MovieID:' line
        assert outcome.line == line, (str(outcome), line)
        assert any(w in str(outcome) for w in words) or not words, str(outcome)
        t.repair()


def _target_index(fmt: Format, recs: list[Record], data, field_: str = "") -> int:
    """A record whose line is in the target file: for Netflix, one of the first movie's (in combined_data_1.txt,
    or the lowest-numbered mv_*.txt); a new movie id only for the record that opens the first movie."""
    if fmt.layout == "netflix" and field_ == "item":
        return 0
    movie = recs[0].item if fmt.layout == "netflix" else min(r.item for r in recs)
    candidates = [k for k, r in enumerate(recs) if r.item == movie or not fmt.netflix]
    return data.draw(st.sampled_from(candidates), label="row")


INT64_MAX = 2**63 - 1


def id_accepted(fmt: Format, value: int) -> bool:
    return 0 <= value < (10**18 if fmt.netflix else 2**63)


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@fuzz(25)
@given(recs=records(), data=st.data(),
       value=st.sampled_from([INT64_MAX, INT64_MAX + 1, 2**64, 10**30, 10**18 - 1, 10**18, -1, -(2**63), 10**400]))
def test_huge_and_negative_ids(fmt, recs, data, value):
    fields = ["user", "item"] if fmt.layout == "netflix" else ["user"] if fmt.netflix else ["user", "item", "time"]
    field_ = data.draw(st.sampled_from(fields), label="field")
    index = _target_index(fmt, recs, data, field_)
    _value_test(fmt, recs, index, field_, str(value), id_accepted(fmt, value),
                words=("int64", "integer", "negative", "18 digits", "timestamp", "id"))


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@fuzz(15)
@given(recs=records(), data=st.data(),
       text=st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "", "NA", "null", "N/A", " "]))
def test_nan_inf_and_empty_ratings(fmt, recs, data, text):
    _value_test(fmt, recs, _target_index(fmt, recs, data), "rating", text, False)


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@fuzz(10)
@given(recs=records(), data=st.data(), seconds=st.sampled_from([-1, -86400, -(10**9)]))
def test_negative_timestamps(fmt, recs, data, seconds):
    text = str(np.datetime64(seconds, "s").astype("datetime64[D]")) if fmt.netflix else str(seconds)
    _value_test(fmt, recs, _target_index(fmt, recs, data), "time", text, False, words=("negative", "1970"))


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@fuzz(15)
@given(recs=records(), data=st.data())
def test_a_header_line_in_the_middle(fmt, recs, data):
    with trial(fmt, recs) as t:
        lines = t.original.split(b"\n")[:-1]
        after = data.draw(st.integers(1, len(lines)), label="after line")
        lines.insert(after, fmt.mid_header.encode())
        err = t.attempt(b"\n".join(lines) + b"\n")
        assert isinstance(err, ae.DataError) and err.line == after + 1, (err, lines)
        t.repair()


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=IDS)
@pytest.mark.parametrize("content, words", [(b"", "empty"), ("header", "no ")])
def test_a_file_of_size_zero_or_a_header_alone(fmt, content, words):
    with trial(fmt, [Record(1, 1, 3, 12_000), Record(2, 1, 3, 12_001)]) as t:  # one movie: one Netflix file
        if content == "header":  # the header line, or a 'MovieID:' line, or for u.data and ratings.dat blank lines
            content = (fmt.header or "1:").encode() + b"\n" if fmt.header or fmt.netflix else b"\n\n"
        err = t.attempt(content)
        assert isinstance(err, ae.DataError) and words in str(err) and err.line is None, err
        t.repair()


# ---------------------------------------------------------------------------------------------- Parquet

@fuzz(12)
@given(recs=records(days=(12_000, 12_004)))
def test_parquet_loads_sorted_and_stable_on_ties(recs):
    with trial(None, recs) as t:
        t.loads()


@fuzz(40)
@given(recs=records(), data=st.data())
def test_parquet_truncated_at_any_byte(recs, data):
    with trial(None, recs) as t:
        err = t.attempt(t.original[: data.draw(st.integers(0, len(t.original) - 1), label="cut")])
        assert isinstance(err, ae.DataError) and err.line is None, err
        t.repair()


@fuzz(40)
@given(recs=records(), garbage=st.binary(min_size=1, max_size=8), data=st.data())
def test_parquet_garbage_bytes(recs, garbage, data):
    with trial(None, recs) as t:
        at = data.draw(st.integers(0, len(t.original) - 1), label="offset")
        if isinstance(t.attempt(t.original[:at] + garbage + t.original[at + len(garbage):]), ae.DataError):
            t.repair()


def _wrong_columns(n: int) -> dict:
    """Arrays of a wrong (or odd) type for a column of n rows."""
    return {
        "text numbers": pa.array([str(3 + k % 2) for k in range(n)]),
        "text words": pa.array(["x" * (k + 1) for k in range(n)]),
        "floats with fractions": pa.array([1.5 + k for k in range(n)]),
        "booleans": pa.array([k % 2 == 0 for k in range(n)]),
        "lists": pa.array([[k] for k in range(n)]),
        "structs": pa.array([{"a": k} for k in range(n)]),
        "timestamps": pa.array(np.arange(n) * 10**9 + 10**18, pa.timestamp("ns")),
        "dates": pa.array(np.arange(n, dtype=np.int32) + 12_000, pa.date32()),
        "binary, not UTF-8": pa.array([b"\xff\xfe" + bytes([k % 256]) for k in range(n)], pa.binary()),
        "all null": pa.nulls(n, pa.int64()),
        "NaN and inf": pa.array([float("nan") if k % 2 else float("inf") for k in range(n)]),
        "dictionary text": pa.array([str(1 + k % 3) for k in range(n)]).dictionary_encode(),
        "decimals": pa.array([k + 1 for k in range(n)], pa.decimal128(10, 2)),
    }


@fuzz(60)
@given(recs=records(), role=st.sampled_from(list(PARQUET_COLUMNS)), kind=st.sampled_from(list(_wrong_columns(1))))
def test_parquet_wrong_column_types(recs, role, kind):
    """A DataError that names the column (and no line: Parquet has none), or a consistent stream."""
    with trial(None, recs, **{role: _wrong_columns(len(recs))[kind]}) as t:
        outcome = t.attempt()
        if isinstance(outcome, ae.DataError):
            assert PARQUET_COLUMNS[role] in str(outcome) and outcome.line is None, str(outcome)


@fuzz(20)
@given(recs=records(), data=st.data(), case=st.sampled_from([
    ("user", pa.uint64(), 2**63), ("item", pa.uint64(), 2**64 - 1), ("user", pa.int64(), INT64_MAX),
    ("item", pa.int64(), -1), ("user", pa.float64(), 1e30), ("user", pa.float64(), -1.0),
    ("rating", pa.float64(), float("nan")), ("rating", pa.float64(), float("inf")), ("rating", pa.float64(), None),
    ("timestamp", pa.int64(), -1), ("timestamp", pa.int64(), INT64_MAX), ("timestamp", pa.float64(), 1e30),
]))
def test_parquet_bad_values_name_the_row(recs, data, case):
    role, type_, value = case
    row = data.draw(st.integers(0, len(recs) - 1), label="row")
    base = {"user": [r.user for r in recs], "item": [r.item for r in recs],
            "rating": [float(HALF_STARS[r.star]) for r in recs], "timestamp": [r.day * 86400 for r in recs]}[role]
    values = [value if k == row else v for k, v in enumerate(base)]
    with trial(None, recs, **{role: pa.array(values, type_)}) as t:
        outcome = t.attempt()
        if value == INT64_MAX:
            assert not isinstance(outcome, ae.DataError), str(outcome)
            return
        assert isinstance(outcome, ae.DataError) and f"(row {row + 1})" in str(outcome), str(outcome)
        t.repair()


@pytest.mark.parametrize("content, words", [(b"", "empty"), ("no rows", "no interactions")])
def test_parquet_of_size_zero_or_without_rows(content, words):
    with trial(None, [Record(1, 1, 3, 12_000)]) as t:
        if content == "no rows":
            with workspace() as other:
                content = Trial(other, None, []).original
        err = t.attempt(content)
        assert isinstance(err, ae.DataError) and words in str(err), err
        t.repair()
