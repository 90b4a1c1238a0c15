"""Load a named dataset (MovieLens, Netflix Prize, a user's CSV/Parquet, or the synthetic stream) as a
chronological :class:`Interactions` stream, with an atomic on-disk cache keyed by the source files."""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .atomic import atomic_write
from .interactions import DataError, Interactions, from_arrays

CACHE_VERSION = 1
_SOURCES = {
    "ml": "https://grouplens.org/datasets/movielens/ (or `python -m autoemb_core download NAME`)",
    "netflix": "https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data (needs a Kaggle account)",
}


@dataclass(frozen=True)
class DelimitedFormat:
    """A ratings file with one interaction per line: which columns hold user, item, rating, time."""

    filename: str
    delimiter: str
    n_columns: int
    columns: tuple[int, int, int, int]  # positions of user, item, rating, timestamp
    header: tuple[str, ...] | None
    rating_range: tuple[float, float]
    rating_step: float  # 0.5 for half stars, 1.0 for whole stars
    layout: str = ""  # what a line looks like, for messages


_ML_CSV = DelimitedFormat("ratings.csv", ",", 4, (0, 1, 2, 3), ("userId", "movieId", "rating", "timestamp"),
                          (0.5, 5.0), 0.5, "userId,movieId,rating,timestamp")
# ratings.dat uses "::"; splitting on ":" gives empty fields between the values.
_ML_DAT = DelimitedFormat("ratings.dat", ":", 7, (0, 2, 4, 6), None, (1.0, 5.0), 1.0,
                          "UserID::MovieID::Rating::Timestamp")
_ML_UDATA = DelimitedFormat("u.data", "\t", 4, (0, 1, 2, 3), None, (1.0, 5.0), 1.0,
                            "user id<TAB>item id<TAB>rating<TAB>timestamp")
FORMATS = {"ml-20m": _ML_CSV, "ml-latest": _ML_CSV, "ml-latest-small": _ML_CSV, "ml-25m": _ML_CSV,
           "ml-1m": _ML_DAT, "ml-100k": _ML_UDATA}


def dataset_names() -> list[str]:
    from .synthetic import PRESETS
    return sorted(FORMATS) + ["netflix", "csv", "parquet"] + sorted(PRESETS)


# ----------------------------------------------------------------------------------------------
# public entry point

def load_dataset(name: str, data_dir=None, *, cache: bool = True, cache_dir=None,
                 max_interactions: int | None = None, **options) -> Interactions:
    """Load dataset ``name`` as a chronological stream.

    ``data_dir`` is the folder holding ``<name>/`` (or the dataset's files themselves); it defaults to
    ``$AUTOEMB_DATA_DIR`` or ``./data``. Parsed results are cached under ``cache_dir`` (default
    ``$AUTOEMB_CACHE_DIR`` or ``~/.cache/autoemb``), keyed by the source files' size and mtime.
    ``max_interactions`` keeps the first N interactions in time. Options by name:

    - synthetic presets: any :class:`autoemb_core.synthetic.SyntheticConfig` field, e.g. ``seed=1``;
    - ``csv`` / ``parquet``: ``path`` (or pass the file as ``data_dir``), ``columns`` mapping
      ``user/item/rating/timestamp`` to column names, ``delimiter``, ``rating_range``,
      ``timestamp_format`` (strptime format, for string timestamps).
    """
    from .synthetic import PRESETS, generate

    if not isinstance(name, str) or name not in dataset_names():
        raise DataError(f"unknown dataset {name!r}",
                        hint="valid names: " + ", ".join(dataset_names()))
    if max_interactions is not None and (not isinstance(max_interactions, int) or max_interactions < 1):
        raise DataError(f"max_interactions must be a positive integer, got {max_interactions!r}")
    if name in PRESETS:
        key = {"name": name, "options": options}
        result = _cached(name, key, lambda: generate(name, **options), cache, cache_dir)
    else:
        if name in FORMATS:
            if options:
                raise DataError(f"dataset {name!r} takes no options, got {sorted(options)}")
            path = _find_file(name, data_dir, FORMATS[name].filename)
            sources, build = [path], lambda: _load_delimited(path, FORMATS[name], name)
        elif name == "netflix":
            if options:
                raise DataError(f"dataset 'netflix' takes no options, got {sorted(options)}")
            sources = _netflix_files(data_dir)
            build = lambda: _load_netflix(sources)  # noqa: E731
        else:
            path, spec = _user_file_options(name, data_dir, options)
            sources, build = [path], lambda: _load_user_file(path, name, **spec)
        key = {"name": name, "options": {k: v for k, v in options.items() if k != "path"},
               "files": [_stat(p) for p in sources]}
        if name != "parquet":
            build = _explaining_encoding(build)
        result = _cached(name, key, build, cache, cache_dir)
    return result.head(max_interactions) if max_interactions else result


def _explaining_encoding(build):
    """Wrap a text loader: when it fails on a file that is UTF-16 or UTF-32 text, say so instead."""
    def checked():
        try:
            return build()
        except DataError as exc:
            if exc.path is not None and _looks_utf16(Path(exc.path)):
                raise DataError("the file is UTF-16 or UTF-32 encoded, not UTF-8 text", exc.path, 1,
                                hint="convert it to UTF-8, e.g. iconv -f UTF-16 -t UTF-8 FILE > FILE.utf8") from None
            raise
    return checked


def _looks_utf16(path: Path) -> bool:
    """A UTF-16/32 byte-order mark, or NUL in every other byte of the first 4 KiB: ASCII text in UTF-16 without a
    byte-order mark (error path only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")) or (
        len(head) >= 8 and (head[0::2].count(0) == len(head[0::2]) or head[1::2].count(0) == len(head[1::2])))


def _line_of_row(path: Path, row: int, *, header: bool = False, skip_empty: bool = False) -> int | None:
    """The line number (lines end at '\\n') of data row ``row`` as pyarrow's CSV reader counts rows: it also
    breaks lines at a lone '\\r', and with ``skip_empty`` skips empty lines. Error path only."""
    seen = -2 if header else -1
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            for piece in _line_body(raw).split(b"\r"):
                if skip_empty and not piece:
                    continue
                seen += 1
                if seen == row:
                    return number
    return None


def _line_body(raw: bytes) -> bytes:
    """A line without its '\\n' or '\\r\\n' ending."""
    body = raw[:-1] if raw.endswith(b"\n") else raw
    return body[:-1] if body.endswith(b"\r") else body


def _stat(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


# ----------------------------------------------------------------------------------------------
# finding files

def _data_root(data_dir) -> Path:
    return Path(data_dir if data_dir is not None else os.environ.get("AUTOEMB_DATA_DIR", "data")).expanduser()


def _find_file(name: str, data_dir, filename: str) -> Path:
    root = _data_root(data_dir)
    candidates = [root / name / filename, root / filename]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"no {filename} for dataset {name!r}; looked for " + " and ".join(str(c) for c in candidates),
        hint=f"get the archive from {_SOURCES['ml']} and unzip it so that {candidates[0]} exists, "
             f"or pass data_dir=<folder holding {filename}>")


def _netflix_files(data_dir) -> list[Path]:
    root = _data_root(data_dir)
    for folder in (root / "netflix", root):
        combined = sorted(folder.glob("combined_data_*.txt"), key=_number_in_name)
        if combined:
            return combined
        per_movie = sorted((folder / "training_set").glob("mv_*.txt"), key=_number_in_name)
        if per_movie:
            return per_movie
    raise DataError(
        f"no Netflix Prize files in {root / 'netflix'} or {root}",
        hint=f"download them from {_SOURCES['netflix']} and put combined_data_1.txt .. combined_data_4.txt "
             f"(or the original training_set/mv_*.txt files) into {root / 'netflix'}")


def _number_in_name(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1


# ----------------------------------------------------------------------------------------------
# MovieLens-style delimited files

def _load_delimited(path: Path, fmt: DelimitedFormat, name: str) -> Interactions:
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path, hint="re-download or re-extract it")
    table = _read_columns(path, fmt)
    if table.num_rows == 0:
        _raise_at_first_bad_line(path, fmt, fallback="no rows")
    if any(column.null_count for column in table.columns):  # an empty field, or NA/null/NaN
        _raise_at_first_bad_line(path, fmt, fallback="an empty or missing value")
    user, item, rating, timestamp = (table.column(i).to_numpy() for i in range(4))
    problem = _check_values(user, item, rating, timestamp, fmt.rating_range, fmt.rating_step)
    if problem is not None:
        _raise_at_first_bad_line(path, fmt, fallback=problem)
    return from_arrays(user, item, rating, timestamp, name, {"source": [str(path)]})


def _read_columns(path: Path, fmt: DelimitedFormat) -> pa.Table:
    """Parse with pyarrow's multi-threaded reader into a (user, item, rating, timestamp) table."""
    names = [f"c{i}" for i in range(fmt.n_columns)]
    wanted = [names[i] for i in fmt.columns]
    types = dict(zip(wanted, (pa.int64(), pa.int64(), pa.float32(), pa.int64())))
    if fmt.header is not None:
        _check_header(path, fmt)
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if fmt.header else 0,
                                           block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=wanted,
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        _raise_at_first_bad_line(path, fmt, fallback=str(exc))
    return table.select(wanted)


def _check_header(path: Path, fmt: DelimitedFormat) -> None:
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    found = tuple(first.split(fmt.delimiter))
    if found != fmt.header:
        raise DataError(
            f"unexpected header {first[:120]!r}; expected {fmt.delimiter.join(fmt.header)!r}", path, 1,
            hint="is this the right file for the dataset? (wrong delimiter or columns)")


def _check_values(user, item, rating, timestamp, rating_range, rating_step) -> str | None:
    """A reason if any value is invalid, else None (vectorized; the line is located afterwards)."""
    lo, hi = rating_range
    if (user < 0).any() or (item < 0).any():
        return "negative id"
    if not np.isfinite(rating).all() or (rating < lo).any() or (rating > hi).any():
        return f"rating outside [{lo}, {hi}]"
    if rating_step and not np.all(np.mod(rating, rating_step) == 0):
        return f"rating not a multiple of {rating_step}"
    if (timestamp < 0).any():
        return "negative timestamp"
    return None


def _raise_at_first_bad_line(path: Path, fmt: DelimitedFormat, fallback: str):
    """Scan the file line by line (error path only) and raise a DataError at the first bad line."""
    lo, hi = fmt.rating_range
    data_lines = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and fmt.header is not None:
                continue
            for piece in _line_body(raw).split(b"\r"):  # pyarrow also ends a line at a lone '\r'
                reason = _line_problem(piece, fmt, lo, hi)
                if reason:
                    raise DataError(reason, path, number, hint=_hint_for(reason))
                data_lines += bool(piece)
    if not data_lines:
        raise DataError("no interactions in the file" + (" (only a header)" if fmt.header else ""), path,
                        hint="the file is truncated or incomplete: re-download or re-extract it")
    raise DataError(f"could not parse the file ({fallback})", path, hint="check the file's format")


def _line_problem(raw: bytes, fmt: DelimitedFormat, lo: float, hi: float) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8 text (garbage bytes or a wrong encoding)"
    text = text.rstrip("\r\n")
    if not text:  # pyarrow skips empty lines (but not blank ones)
        return None
    fields = text.split(fmt.delimiter)
    if len(fields) != fmt.n_columns:
        return f"expected {fmt.layout!r}, got {len(fields)} fields split on {fmt.delimiter!r}: {text[:80]!r}"
    user, item, rating, timestamp = (fields[i] for i in fmt.columns)
    for label, value in (("user id", user), ("item id", item), ("timestamp", timestamp)):
        digits = value.strip(" \t")
        if not re.fullmatch(r"[0-9]+", digits):
            return f"{label} {value!r} is not a non-negative integer"
        digits = digits.lstrip("0")
        if len(digits) > 19 or (len(digits) == 19 and int(digits) > _INT64_MAX):
            return f"{label} {value[:40]!r} is beyond the int64 range (at most {_INT64_MAX})"
    if not _NUMBER.fullmatch(rating.strip(" \t")):
        return f"rating {rating!r} is not a number"
    stars = float(rating)
    if not (lo <= stars <= hi) or (fmt.rating_step and stars % fmt.rating_step):
        return f"rating {rating!r} outside {lo}..{hi} in steps of {fmt.rating_step}"
    return None


_INT64_MAX = int(np.iinfo(np.int64).max)
# the numbers pyarrow's CSV reader parses as floats
_NUMBER = re.compile(r"[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)


def _hint_for(reason: str) -> str:
    if "fields" in reason:
        return "wrong delimiter, wrong columns, or a truncated line: re-download or repair the file"
    return "repair or remove this line, or re-download the file"


# ----------------------------------------------------------------------------------------------
# Netflix Prize

def _load_netflix(paths: list[Path]) -> Interactions:
    parts = [_parse_netflix_file(p) for p in paths]
    user, item, rating, timestamp = (np.concatenate([part[k] for part in parts]) for k in range(4))
    if len(user) == 0:
        raise DataError("no ratings in the file" + ("s " + ", ".join(p.name for p in paths) if len(paths) > 1 else ""),
                        paths[0] if len(paths) == 1 else paths[0].parent,
                        hint="only 'MovieID:' lines: the files are truncated; re-download them")
    return from_arrays(user, item, rating, timestamp, "netflix", {"source": [str(p) for p in paths]})


def _parse_netflix_file(path: Path):
    """``MovieID:`` lines, each followed by ``CustomerID,Rating,YYYY-MM-DD`` lines."""
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path, hint="re-download the Netflix Prize files")
    try:
        lines = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=["line"], block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()},
                                                 strings_can_be_null=False)).column("line")
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        line, reason = (_first_undecodable_line(path, forbidden=b"\x1f")
                        or (None, f"not a Netflix Prize text file ({exc})"))
        raise DataError(reason, path, line,
                        hint="expected 'MovieID:' lines followed by 'CustomerID,Rating,YYYY-MM-DD' lines")
    lines = pc.utf8_rtrim(lines, characters="\r")
    is_movie = pc.ends_with(lines, ":").to_numpy(zero_copy_only=False)
    movie_rows = np.flatnonzero(is_movie)
    if len(movie_rows) == 0 or movie_rows[0] != 0:
        raise DataError("the file must start with a 'MovieID:' line", path, 1,
                        hint="is this a Netflix Prize combined_data_*.txt or mv_*.txt file?")
    movie_text = pc.utf8_slice_codeunits(pc.take(lines, pa.array(movie_rows)), 0, -1)
    movies = _to_int(movie_text, movie_rows, path, "movie id")
    data_rows = np.flatnonzero(~is_movie)
    data = pc.take(lines, pa.array(data_rows))
    blank = pc.equal(pc.utf8_length(data), 0).to_numpy(zero_copy_only=False)
    if blank.any():
        last_line_blank = data_rows[blank] == len(is_movie) - 1
        if not last_line_blank.all():
            raise DataError("empty line", path, _line_of_row(path, int(data_rows[blank][0])),
                            hint="remove the blank line")
        keep = ~blank
        data, data_rows = pc.filter(data, pa.array(keep)), data_rows[keep]
    fields = pc.split_pattern(data, ",")
    counts = pc.list_value_length(fields).to_numpy(zero_copy_only=False)
    if (counts != 3).any():
        bad = int(np.flatnonzero(counts != 3)[0])
        raise DataError(f"expected 'CustomerID,Rating,YYYY-MM-DD', got {data[bad].as_py()[:80]!r}", path,
                        _line_of_row(path, int(data_rows[bad])),
                        hint="a truncated or malformed line: re-download the file")
    flat = pc.list_flatten(fields)
    customer = _to_int(flat[0::3], data_rows, path, "customer id")
    stars = _to_int(flat[1::3], data_rows, path, "rating")
    bad = np.flatnonzero((stars < 1) | (stars > 5))
    if len(bad):
        raise DataError(f"rating {stars[bad[0]]} outside 1..5", path, _line_of_row(path, int(data_rows[bad[0]])),
                        hint="Netflix Prize ratings are whole stars 1..5")
    dates = flat[2::3]
    try:
        days = pc.cast(pc.strptime(dates, format="%Y-%m-%d", unit="s"), pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        bad = _first_bad_date(dates)
        text = repr(dates[bad].as_py()[:40]) if bad is not None else "a date"
        raise DataError(f"date {text} is not YYYY-MM-DD", path,
                        None if bad is None else _line_of_row(path, int(data_rows[bad])),
                        hint="a truncated or malformed line: re-download the file")
    early = np.flatnonzero(days < 0)
    if len(early):
        raise DataError(f"date {dates[early[0]].as_py()!r} is before 1970-01-01 (a negative timestamp)", path,
                        _line_of_row(path, int(data_rows[early[0]])),
                        hint="Netflix Prize ratings date from 1998 to 2005: repair the line or re-download the file")
    # movie of each data line = the last movie header above it
    movie = movies[np.searchsorted(movie_rows, data_rows, side="right") - 1]
    return customer, movie, stars.astype(np.float32), days


def _to_int(strings: pa.Array, rows: np.ndarray, path: Path, what: str) -> np.ndarray:
    ok = pc.match_substring_regex(strings, r"^\d{1,18}$").to_numpy(zero_copy_only=False)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{what} {strings[bad].as_py()[:40]!r} is not a non-negative integer of at most 18 digits",
                        path, _line_of_row(path, int(rows[bad])),
                        hint="a truncated or malformed line: re-download the file")
    return pc.cast(strings, pa.int64()).to_numpy()


def _first_bad_date(dates: pa.Array) -> int | None:
    """Index of the first string that pyarrow cannot read as a YYYY-MM-DD date (error path only)."""
    return _first_failing_row(dates, lambda part: pc.strptime(part, format="%Y-%m-%d", unit="s"))


def _first_failing_row(values, convert) -> int | None:
    """Index of the first value that ``convert`` (a vectorized pyarrow conversion) rejects, found by bisection in
    about one pass over the values; None if it accepts them all. Error path only."""
    try:
        convert(values)
        return None
    except pa.ArrowException:
        pass
    lo, hi = 0, len(values)  # convert(values[lo:hi]) fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(values.slice(lo, mid - lo))
            lo = mid
        except pa.ArrowException:
            hi = mid
    return lo


def _first_undecodable_line(path: Path, forbidden: bytes = b"") -> tuple[int, str] | None:
    """(line, reason) of the first line that is not UTF-8 text or holds a ``forbidden`` byte. Error path only."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number, "not valid UTF-8 text (garbage bytes or a wrong encoding)"
            for byte in forbidden:
                if byte in raw:
                    return number, f"the control byte {bytes([byte])!r} (garbage bytes)"
    return None


# ----------------------------------------------------------------------------------------------
# a user's own CSV or Parquet stream

_ROLES = ("user", "item", "rating", "timestamp")


def _user_file_options(name: str, data_dir, options: dict):
    allowed = {"path", "columns", "delimiter", "rating_range", "timestamp_format"}
    unknown = set(options) - allowed
    if unknown:
        raise DataError(f"unknown option(s) {sorted(unknown)} for dataset {name!r}",
                        hint="valid options: " + ", ".join(sorted(allowed)))
    path = options.get("path", data_dir)
    if path is None:
        raise DataError(f"dataset {name!r} needs path=<file>", hint=f"load_dataset({name!r}, path='stream.{name}')")
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"no such file: {path}", hint=f"pass path=<an existing .{name} file>")
    columns = dict(zip(_ROLES, _ROLES))
    columns.update(options.get("columns") or {})
    if set(columns) != set(_ROLES):
        raise DataError(f"columns must map exactly {_ROLES}, got keys {sorted(columns)}")
    rating_range = tuple(options.get("rating_range", (0.5, 5.0)))
    if len(rating_range) != 2 or not rating_range[0] <= rating_range[1]:
        raise DataError(f"rating_range must be (low, high), got {options.get('rating_range')!r}")
    delimiter = options.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise DataError(f"delimiter must be one character, got {delimiter!r}")
    return path, {"columns": columns, "delimiter": delimiter, "rating_range": rating_range,
                  "timestamp_format": options.get("timestamp_format")}


def _load_user_file(path: Path, name: str, columns: dict, delimiter: str, rating_range, timestamp_format):
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path)
    wanted = [columns[r] for r in _ROLES]
    try:
        if name == "parquet":
            import pyarrow.parquet as pq
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
        names = table.column_names  # a header that is not UTF-8 fails here
    except (pa.ArrowException, UnicodeDecodeError, OSError) as exc:
        if name == "csv" and (hit := _first_bad_csv_line(path, delimiter)):
            raise DataError(hit[1], path, hit[0], hint=f"wrong delimiter ({delimiter!r}), a truncated line or "
                            "garbage bytes: repair the line") from None
        raise DataError(f"could not read the file as {name}: {exc}", path,
                        hint=f"check the delimiter ({delimiter!r}) and that every line has all columns" if name == "csv"
                        else "it is not a complete Parquet file: write it again") from None
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(f"missing column(s) {missing}; the file has {names}", path, 1 if name == "csv" else None,
                        hint="pass columns={'user': ..., 'item': ..., 'rating': ..., 'timestamp': ...}")
    if table.num_rows == 0:
        raise DataError("no interactions in the file" + (" (only a header)" if name == "csv" else ""), path)
    if name == "csv" and any(pa.types.is_binary(table.column(c).type) for c in wanted):
        line, reason = _first_undecodable_line(path) or (None, "text that is not valid UTF-8")
        raise DataError(reason, path, line, hint="save the file as UTF-8, or repair the line")
    user, item = (_id_column(table.column(columns[r]), path, columns[r], name) for r in ("user", "item"))
    rating = _number_column(table.column(columns["rating"]), path, columns["rating"], pa.float32(), name)
    timestamp = _timestamp_column(table.column(columns["timestamp"]), path, columns["timestamp"], timestamp_format,
                                  name)
    lo, hi = rating_range
    bad = np.flatnonzero(~np.isfinite(rating) | (rating < lo) | (rating > hi))
    if len(bad):
        raise _row_error(f"rating {rating[bad[0]]} in column {columns['rating']!r} outside [{lo}, {hi}]", path, name,
                         bad[0], hint="pass rating_range=(low, high) if your scale differs")
    if (timestamp < 0).any():
        row = np.flatnonzero(timestamp < 0)[0]
        raise _row_error(f"negative timestamp {timestamp[row]} in column {columns['timestamp']!r}", path, name, row,
                         hint="timestamps are seconds since 1970-01-01")
    return from_arrays(user, item, rating, timestamp, name, {"source": [str(path)], "columns": columns})


def _row_error(reason: str, path: Path, name: str, row, hint: str | None = None) -> DataError:
    """A DataError at data row ``row``: at its line in a CSV file (after the header, skipping empty lines), at
    its row number in a Parquet file, which has no lines. Error path only."""
    if name == "csv":
        return DataError(reason, path, _line_of_row(path, int(row), header=True, skip_empty=True), hint=hint)
    return DataError(f"{reason} (row {int(row) + 1})", path, hint=hint)


def _first_bad_csv_line(path: Path, delimiter: str) -> tuple[int | None, str] | None:
    """(line, reason) of the first line that is not UTF-8 or has another number of fields than the header line,
    split as pyarrow's reader splits it (quotes, and a lone '\\r' also ends a line); (None, reason) for a file
    of one line. Error path only."""
    import csv
    n_fields, rows = None, 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            for piece in _line_body(raw).split(b"\r"):
                if not piece:
                    continue
                rows += 1
                try:
                    text = piece.decode("utf-8").lstrip("\ufeff")
                except UnicodeDecodeError:
                    return number, "not valid UTF-8 text (garbage bytes or a wrong encoding)"
                try:
                    count = len(next(csv.reader([text], delimiter=delimiter)))
                except csv.Error as exc:
                    return number, f"cannot be split into fields ({exc}): {text[:80]!r}"
                if n_fields is None:
                    n_fields = count
                elif count != n_fields:
                    return number, (f"{count} fields where the header has {n_fields} (split on {delimiter!r}): "
                                    f"{text[:80]!r}")
    return (None, "no interactions in the file (only a header line)") if rows < 2 else None


def _null_check(column: pa.ChunkedArray, path: Path, label: str, name: str) -> None:
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise _row_error(f"column {label!r} has an empty or missing value (empty, NA, NaN or null)", path, name, row)


def _id_column(column: pa.ChunkedArray, path: Path, label: str, name: str) -> np.ndarray:
    _null_check(column, path, label, name)
    kind = column.type
    if pa.types.is_integer(kind):
        values = column.to_numpy()
        bad = np.flatnonzero(values > _INT64_MAX) if pa.types.is_unsigned_integer(kind) else np.flatnonzero(values < 0)
        if len(bad):
            raise _row_error(f"{'negative' if values[bad[0]] < 0 else 'too large'} id {values[bad[0]]} in column "
                             f"{label!r}", path, name, bad[0], hint="ids are integers from 0 to 2**63-1, or text")
        return values.astype(np.int64)
    if pa.types.is_floating(kind):  # a CSV column with a number beyond int64 (or a fraction) is read as floats
        values = column.to_numpy()
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (np.abs(values) >= 2.0 ** 53))
        if len(bad):
            raise _row_error(f"id {float(values[bad[0]])!r} in column {label!r} is negative, not finite, or beyond the "
                             "int64 range", path, name, bad[0], hint="ids are integers from 0 to 2**63-1, or text")
    try:
        strings = pc.cast(column, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise DataError(f"column {label!r} has type {kind}; ids must be integers or text", path) from None
    except pa.ArrowInvalid:
        row = _first_failing_row(column, lambda part: pc.cast(part, pa.string()))
        raise _row_error(f"an id in column {label!r} is not valid UTF-8 text", path, name, row or 0) from None
    bad = pc.or_(pc.equal(pc.utf8_length(strings), 0), pc.match_substring(strings, "\x00"))
    bad = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
    if len(bad):
        raise _row_error(f"{'empty id' if not strings[int(bad[0])].as_py() else 'id with a NUL byte'} in column "
                         f"{label!r}", path, name, bad[0], hint="repair or remove the line")
    return np.asarray(strings.to_numpy(zero_copy_only=False), dtype=str)


def _number_column(column: pa.ChunkedArray, path: Path, label: str, type_, name: str) -> np.ndarray:
    _null_check(column, path, label, name)
    convert = lambda part: pc.cast(part, type_)  # noqa: E731
    try:
        return convert(column).to_numpy()
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise DataError(f"column {label!r} has type {column.type}, not numbers", path) from None
    except pa.ArrowInvalid as exc:
        row = _first_failing_row(column, convert)
        if row is None:
            raise DataError(f"column {label!r} is not numeric ({exc})", path) from None
        raise _row_error(f"value {str(column[row].as_py())[:40]!r} in column {label!r} is not a number", path, name,
                         row) from None


_INTEGER_TEXT = r"^\s*[+-]?[0-9]+\s*$"


def _timestamp_column(column: pa.ChunkedArray, path: Path, label: str, timestamp_format, name: str) -> np.ndarray:
    _null_check(column, path, label, name)
    kind = column.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if text and timestamp_format is not None:
        convert = lambda part: pc.cast(pc.strptime(part, format=timestamp_format, unit="s"), pa.int64())  # noqa: E731
    elif text or pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        convert = lambda part: pc.cast(pc.cast(part, pa.timestamp("s")), pa.int64())  # noqa: E731
    else:
        convert = lambda part: pc.cast(part, pa.int64())  # noqa: E731
    hint = "use integer seconds, ISO dates, or pass timestamp_format='%Y-%m-%d ...'"
    try:
        return convert(column).to_numpy()
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise DataError(f"column {label!r} has type {kind}, not timestamps", path, hint=hint) from None
    except pa.ArrowInvalid as exc:
        integers = pc.match_substring_regex(column, _INTEGER_TEXT).to_numpy(zero_copy_only=False) if text else None
        if integers is not None and integers[0] and not integers.all():  # integer seconds and a stray value
            row = int(np.flatnonzero(~integers)[0])
        else:
            row = _first_failing_row(column, convert)
        if row is None:
            raise DataError(f"column {label!r} is not a timestamp ({exc})", path, hint=hint) from None
        raise _row_error(f"value {str(column[row].as_py())[:40]!r} in column {label!r} is not a timestamp", path,
                         name, row, hint=hint) from None


# ----------------------------------------------------------------------------------------------
# cache

_ARRAYS = ("user", "item", "rating", "timestamp", "raw_user_ids", "raw_item_ids")


def cache_root(cache_dir=None) -> Path:
    return Path(cache_dir or os.environ.get("AUTOEMB_CACHE_DIR") or Path.home() / ".cache" / "autoemb").expanduser()


def _cached(name: str, key: dict, build, enabled: bool, cache_dir) -> Interactions:
    if not enabled:
        return build()
    root = cache_root(cache_dir)
    key_text = json.dumps(dict(key, version=CACHE_VERSION), sort_keys=True, default=str)
    digest = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    path = root / f"{name}-{digest}.npz"
    if path.exists():
        try:
            return _read_cache(path, key_text)
        except Exception as exc:  # corrupt or foreign file: rebuild it
            warnings.warn(f"rebuilding the cache {path}: {exc}", stacklevel=3)
    result = build()
    try:
        _write_cache(path, result, key_text)
        for stale in root.glob(f"{name}-*.npz"):
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(f"could not write the cache {path}: {exc}", stacklevel=3)
    return result


def _read_cache(path: Path, key_text: str) -> Interactions:
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["meta"]))
        if meta.get("key") != key_text:
            raise ValueError("key mismatch")
        arrays = {k: archive[k] for k in _ARRAYS}
    n = len(arrays["user"])
    if not all(len(arrays[k]) == n for k in ("item", "rating", "timestamp")) or n != meta["n"]:
        raise ValueError("inconsistent array lengths")
    if n and (arrays["user"].max() >= len(arrays["raw_user_ids"]) or arrays["item"].max() >= len(arrays["raw_item_ids"])):
        raise ValueError("ids out of range")
    return Interactions(**arrays, name=meta["name"], meta=meta["meta"])


def _write_cache(path: Path, data: Interactions, key_text: str) -> None:
    meta = json.dumps({"key": key_text, "n": len(data), "name": data.name, "meta": data.meta}, default=str)
    with atomic_write(path) as f:
        np.savez(f, meta=np.array(meta), **{k: getattr(data, k) for k in _ARRAYS})
