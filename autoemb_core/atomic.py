"""Atomic file writes: write a temporary file in the target folder, fsync it, then rename it into place.
A reader sees the old file or the new one, never a torn one; a failed write leaves the old one intact."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_write(path, mode: str = "wb"):
    """``with atomic_write(path) as f: ...`` -- the file appears at ``path`` only if the block succeeds.

    The data goes to a hidden temporary file beside ``path``, which is flushed, fsynced, closed and renamed
    over ``path``; the folder is then fsynced so that the rename survives a crash. If anything fails (the
    block raises, the disk is full, the rename fails), the temporary file is removed, ``path`` keeps its
    previous content, and the error propagates. The new file keeps the previous file's permissions, or
    gets the usual ones (0o666 less the umask) -- not the 0o600 of a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_UMASK


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable. Best effort: some systems cannot open or fsync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_folder(folder):
    """``with atomic_folder(folder) as stage: ...`` -- files written into ``stage`` replace ``folder`` as a set,
    only if the block succeeds; a failure (a full disk, an exception) leaves the previous ``folder`` whole.

    The old folder is renamed aside, the stage renamed into place, then the old one deleted: a crash between
    the two renames leaves the previous set under ``.<name>.old-*`` beside it."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        yield stage
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(stage, folder)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _fsync_folder(folder.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
