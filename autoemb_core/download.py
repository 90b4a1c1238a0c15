"""Download and unpack the MovieLens archives from GroupLens, verified and atomic.

``download("ml-20m", "data")`` streams ``ml-20m.zip`` to a hidden temporary file in ``data/``, hashing
it on the way, checks its MD5, unpacks it into a hidden temporary folder and renames the folder to
``data/ml-20m``. An interrupted or failed run leaves no archive and no folder that looks complete.
Netflix Prize data cannot be downloaded this way (it needs a Kaggle account): asking for it raises a
:class:`DataError` that says where to get it and where to put it.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .interactions import DataError

BASE_URL = "https://files.grouplens.org/datasets/movielens"
NETFLIX_URL = "https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveSpec:
    """One GroupLens archive: where it is, the folder it unpacks to, the files that folder must hold,
    and its MD5 (``None`` for the archives GroupLens keeps updating: then ``<url>.md5`` is fetched)."""

    url: str
    folder: str
    files: tuple[str, ...]
    md5: str | None = None

    @property
    def md5_url(self) -> str:
        return self.url + ".md5"


def _spec(name: str, files: tuple[str, ...], md5: str | None = None) -> ArchiveSpec:
    return ArchiveSpec(f"{BASE_URL}/{name}.zip", name, files, md5)


_CSV_FILES = ("ratings.csv", "movies.csv", "tags.csv", "links.csv")
_GENOME_FILES = ("genome-scores.csv", "genome-tags.csv")

# MD5s of the frozen archives, as published by GroupLens in <url>.md5 (e.g. "MD5 (ml-20m.zip) = ...").
ARCHIVES: dict[str, ArchiveSpec] = {
    "ml-20m": _spec("ml-20m", _CSV_FILES + _GENOME_FILES, "cd245b17a1ae2cc31bb14903e1204af3"),
    "ml-25m": _spec("ml-25m", _CSV_FILES + _GENOME_FILES, "6b51fb2759a8657d3bfcbfc42b592ada"),
    "ml-latest": _spec("ml-latest", _CSV_FILES),  # updated by GroupLens: MD5 fetched at download time
    "ml-latest-small": _spec("ml-latest-small", _CSV_FILES),  # likewise
    "ml-1m": _spec("ml-1m", ("ratings.dat", "movies.dat", "users.dat"), "c4d9eecfca2ab87c1945afe126590906"),
    "ml-100k": _spec("ml-100k", ("u.data", "u.item", "u.user"), "0e33842e24a9c977be4e0107933c0723"),
}

# Looked up through the module at call time, so tests can replace it.
_urlopen = urllib.request.urlopen
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


def download(name: str, data_dir, *, force: bool = False, timeout: float = 60,
             progress: bool = True) -> Path:
    """Download MovieLens archive ``name`` from GroupLens and unpack it; return ``data_dir/<name>``.

    If that folder already holds the expected files it is returned without downloading, unless
    ``force``. The archive's MD5 is checked (the published value for frozen archives, ``<url>.md5`` for
    ``ml-latest*``); the zip itself is deleted once unpacked. Raises :class:`DataError` for an unknown
    name, ``netflix`` (manual download only), a network failure, a checksum mismatch or a corrupt zip.
    """
    data_dir = Path(data_dir)
    if name == "netflix":
        raise DataError(
            "the Netflix Prize data cannot be downloaded automatically: it needs a Kaggle account",
            hint=f"sign in and download it from {NETFLIX_URL}, then put combined_data_1.txt ... "
                 f"combined_data_4.txt (or the original training_set/mv_*.txt files) into "
                 f"{data_dir / 'netflix'}/")
    if not isinstance(name, str) or name not in ARCHIVES:
        raise DataError(f"unknown archive {name!r}",
                        hint="valid names: " + ", ".join(sorted(ARCHIVES)) + " (netflix: manual download)")
    spec = ARCHIVES[name]
    target = data_dir / spec.folder
    if not force and _complete(target, spec):
        return target

    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.folder}.", suffix=".zip.part", dir=data_dir)
    archive = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _fetch(spec, name, data_dir, out, timeout, progress)
        expected = spec.md5 or _published_md5(spec, timeout)
        if expected is not None and got != expected:
            raise DataError(f"checksum mismatch for {spec.url}: expected md5 {expected}, got {got}",
                            hint="the download was corrupted or the file changed upstream; run again "
                                 "(the partial file has been removed)")
        _extract(archive, spec, data_dir, target, force)
    finally:
        archive.unlink(missing_ok=True)
    return target


def _complete(folder: Path, spec: ArchiveSpec) -> bool:
    return folder.is_dir() and all((folder / f).is_file() for f in spec.files)


def _manual_hint(spec: ArchiveSpec, data_dir: Path) -> str:
    return (f"download it by hand from {spec.url} (on a machine with internet access) and unzip it into "
            f"{data_dir}/, so that {data_dir / spec.folder}/ holds " + ", ".join(spec.files))


def _fetch(spec: ArchiveSpec, name: str, data_dir: Path, out, timeout: float, progress: bool) -> str:
    """Stream ``spec.url`` into ``out``; return the MD5 of what was written."""
    md5 = hashlib.md5()
    received = 0
    bar = None
    try:
        try:
            response = _urlopen(spec.url, timeout=timeout)
        except _NETWORK_ERRORS as exc:
            raise DataError(f"could not download {spec.url}: {_why(exc)}",
                            hint=_manual_hint(spec, data_dir)) from exc
        with response:
            total = _content_length(response)
            if progress:
                try:
                    from tqdm.auto import tqdm
                    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                               desc=f"{name}.zip")
                except ImportError:  # pragma: no cover - tqdm is a dependency
                    bar = None
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except _NETWORK_ERRORS as exc:
                    raise DataError(f"download of {spec.url} failed after {received:,} bytes: {_why(exc)}",
                                    hint="run again, or " + _manual_hint(spec, data_dir)) from exc
                if not chunk:
                    break
                out.write(chunk)
                md5.update(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DataError(f"download of {spec.url} was cut short: got {received:,} of {total:,} bytes",
                            hint="run again, or " + _manual_hint(spec, data_dir))
        out.flush()
        os.fsync(out.fileno())
    finally:
        if bar is not None:
            bar.close()
    return md5.hexdigest()


def _content_length(response) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason} (no network, or the host cannot be reached)"
    if isinstance(exc, TimeoutError):
        return "timed out (no network, or the host is too slow)"
    return f"{type(exc).__name__}: {exc}"


def _published_md5(spec: ArchiveSpec, timeout: float) -> str | None:
    """The MD5 GroupLens publishes next to an updated archive, or ``None`` (with a warning)."""
    try:
        with _urlopen(spec.md5_url, timeout=timeout) as response:
            text = response.read(4096).decode("ascii", "replace")
    except _NETWORK_ERRORS as exc:
        warnings.warn(f"could not fetch {spec.md5_url} ({_why(exc)}): {spec.folder}.zip is NOT "
                      f"checksum-verified", stacklevel=3)
        return None
    found = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    if found is None:
        warnings.warn(f"{spec.md5_url} holds no MD5: {spec.folder}.zip is NOT checksum-verified",
                      stacklevel=3)
        return None
    return found.group(0).lower()


def _extract(archive: Path, spec: ArchiveSpec, data_dir: Path, target: Path, force: bool) -> None:
    """Unpack ``archive`` into a hidden temporary folder, check it, then rename it to ``target``."""
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.", suffix=".extract", dir=data_dir))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)  # zipfile drops absolute paths and ".." components
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
            raise DataError(f"the archive downloaded from {spec.url} is not a valid zip: {exc}",
                            hint="run again with force=True, or " + _manual_hint(spec, data_dir)) from exc
        unpacked = staging / spec.folder
        missing = [f for f in spec.files if not (unpacked / f).is_file()]
        if missing:
            raise DataError(f"the archive downloaded from {spec.url} lacks {spec.folder}/" +
                            f", {spec.folder}/".join(missing),
                            hint=_manual_hint(spec, data_dir))
        old = None
        if target.exists() or target.is_symlink():
            if force:  # the caller asked to replace it: move it aside, delete it once replaced
                old = data_dir / f".{spec.folder}.old.{os.getpid()}.{staging.name}"
                os.rename(target, old)
            else:  # an incomplete folder someone else made: keep it, under a new name
                kept = _free_name(data_dir / f"{spec.folder}.incomplete")
                os.rename(target, kept)
                warnings.warn(f"{target} lacked some of {', '.join(spec.files)}; it was moved to "
                              f"{kept} and replaced by the downloaded archive", stacklevel=3)
        try:
            os.rename(unpacked, target)
        except OSError:
            if old is not None:
                os.rename(old, target)
                old = None
            if _complete(target, spec):  # another process finished the same download first
                return
            raise
        finally:
            if old is not None:
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _free_name(path: Path) -> Path:
    candidate, i = path, 1
    while candidate.exists() or candidate.is_symlink():
        candidate, i = path.with_name(f"{path.name}.{i}"), i + 1
    return candidate
