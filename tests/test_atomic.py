"""Atomic writes under failure: a full disk part-way through, an exception in the block, a real file-size
limit (EFBIG) in a subprocess, and a reader racing a writer. In every case the previous file stays
byte-identical and no temporary file is left in the folder."""
import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from autoemb_core import atomic
from autoemb_core.atomic import atomic_write, write_json_atomic

ROOT = Path(__file__).parents[1]
BIG_ROWS = '[{"id": k, "name": f"item {k}", "values": list(range(k % 17))} for k in range(3000)]'
BIG = {"rows": eval(BIG_ROWS)}  # ~250 KB of JSON


@pytest.fixture
def previous(tmp_path):
    """A folder holding one file with known content, the one each failed write must leave intact."""
    path = tmp_path / "out" / "summary.json"
    write_json_atomic(path, {"version": 1, "note": "the previous content"})
    return path, path.read_bytes()


def assert_intact(path: Path, content: bytes) -> None:
    assert path.read_bytes() == content, "the previous file changed"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "a temporary file was left behind"


class DiskFull:
    """A file object that accepts ``room`` bytes, then fails like a full disk (ENOSPC) -- part-way through."""

    def __init__(self, f, room: int):
        self._f, self._room = f, room

    def write(self, data):
        size = len(data.encode() if isinstance(data, str) else data)
        if size > self._room:
            self._f.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= size
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("room", [0, 1, 4096, 100_000])
def test_disk_full_part_way_through_a_write_keeps_the_previous_file(previous, monkeypatch, room):
    path, content = previous
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda *a, **k: DiskFull(real_fdopen(*a, **k), room))
    with pytest.raises(OSError) as info:
        write_json_atomic(path, BIG)
    assert info.value.errno == errno.ENOSPC
    assert_intact(path, content)


@pytest.mark.parametrize("where", ["flush", "fsync", "chmod", "replace"])
def test_a_failure_after_the_data_is_written_keeps_the_previous_file(previous, monkeypatch, where):
    path, content = previous
    if where == "flush":
        real_fdopen = os.fdopen

        def fdopen(*args, **kwargs):
            f = real_fdopen(*args, **kwargs)
            f.flush = _enospc  # the buffered data reaches the disk only here
            return f
        monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    else:
        monkeypatch.setattr(atomic.os, where, _enospc)
    with pytest.raises(OSError):
        write_json_atomic(path, BIG)
    monkeypatch.undo()
    assert_intact(path, content)


@pytest.mark.parametrize("error", [RuntimeError("the caller failed"), KeyboardInterrupt()])
def test_an_exception_inside_the_block_keeps_the_previous_file(previous, error):
    path, content = previous
    with pytest.raises(type(error)):
        with atomic_write(path, "w") as f:
            f.write('{"version": 2, "half": ')
            f.flush()
            raise error
    assert_intact(path, content)


def test_a_failed_first_write_leaves_no_file_at_all(tmp_path):
    path = tmp_path / "new" / "alphas.parquet"
    with pytest.raises(ValueError):
        with atomic_write(path) as f:
            f.write(b"PAR1 and then")
            raise ValueError("boom")
    assert list(path.parent.iterdir()) == []


def test_readers_see_the_old_file_until_the_write_completes(previous):
    path, content = previous
    with atomic_write(path, "w") as f:
        f.write('{"version": 2}\n')
        f.flush()
        assert path.read_bytes() == content, "the new content shows before the block ends"
        (tmp,) = [p for p in path.parent.iterdir() if p != path]
        assert tmp.name.startswith(".summary.json.") and tmp.name.endswith(".tmp")  # hidden, in the same folder
    assert json.loads(path.read_text()) == {"version": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]


def test_the_rename_is_made_durable_by_fsyncing_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)
    monkeypatch.setattr(atomic.os, "fsync", fsync)
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert synced == [False, True], "the file, then its folder after the rename"


def test_permissions_are_those_of_a_normal_file_or_the_previous_one(tmp_path):
    fresh = tmp_path / "fresh.json"
    write_json_atomic(fresh, {})
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask, "not the 0o600 of a temporary file"
    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    write_json_atomic(kept, {"x": 1})
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640


def test_text_mode_writes_utf8(tmp_path):
    with atomic_write(tmp_path / "t.md", "w") as f:
        f.write("Zhao et al. — ±0.01 é\n")
    assert (tmp_path / "t.md").read_bytes() == "Zhao et al. — ±0.01 é\n".encode()


# ---------------------------------------------------------------------------------------------- a real limit

def run_limited(script: str, limit: int) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter whose files may not grow beyond ``limit`` bytes (RLIMIT_FSIZE),
    with SIGXFSZ ignored, so that a write past the limit fails with EFBIG as a full disk fails a write."""
    prelude = textwrap.dedent(f"""
        import errno, resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        import autoemb_core as ae
        from autoemb_core.atomic import atomic_write, write_json_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    """)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=120, env=env)


def test_a_real_file_size_limit_fails_the_write_and_keeps_the_previous_file(previous):
    path, content = previous
    done = run_limited(f"""
        try:
            write_json_atomic({str(path)!r}, {{"rows": list(range(100_000))}})
        except OSError as exc:
            print("errno", exc.errno)
            sys.exit(0 if exc.errno == errno.EFBIG else 3)
        sys.exit(4)  # the write went through
    """, limit=64 * 1024)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"errno {errno.EFBIG}" in done.stdout
    assert_intact(path, content)


def test_a_real_file_size_limit_on_the_dataset_cache(tmp_path):
    """The cache write fails for real: the load still returns the stream, warns, and leaves no cache file."""
    cache = tmp_path / "cache"
    source = tmp_path / "ml-latest-small" / "ratings.csv"
    source.parent.mkdir()
    rng = np.random.default_rng(0)
    lines = [f"{u},{i},{s / 2},{t}" for u, i, s, t in zip(rng.integers(1, 500, 5000), rng.integers(1, 900, 5000),
                                                          rng.integers(1, 11, 5000), rng.integers(0, 10**9, 5000))]
    source.write_text("userId,movieId,rating,timestamp\n" + "\n".join(lines) + "\n")
    done = run_limited(f"""
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = ae.load_dataset("ml-latest-small", {str(tmp_path)!r}, cache_dir={str(cache)!r})
        print(len(data), [str(w.message) for w in caught])
    """, limit=source.stat().st_size)  # the source itself is only read
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("5000 ") and "could not write the cache" in done.stdout, done.stdout
    assert list(cache.iterdir()) == []


# ---------------------------------------------------------------------------------------------- a racing reader

def test_a_concurrent_reader_never_sees_a_torn_file(tmp_path):
    """A writer process rewrites a ~250 KB JSON file over and over; this process parses it meanwhile."""
    path = tmp_path / "live.json"
    rewrites = 40
    write_json_atomic(path, dict(BIG, version=0))
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from autoemb_core.atomic import write_json_atomic
        rows = {BIG_ROWS}
        for version in range(1, {rewrites + 1}):
            write_json_atomic({str(path)!r}, {{"rows": rows, "version": version}})
    """)], env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    seen, reads = set(), 0
    deadline = time.monotonic() + 120
    while writer.poll() is None and time.monotonic() < deadline:
        obj = json.loads(path.read_bytes())  # a torn file fails here
        assert len(obj["rows"]) == len(BIG["rows"])
        seen.add(obj["version"])
        reads += 1
    assert writer.wait(timeout=60) == 0
    seen.add(json.loads(path.read_bytes())["version"])
    assert reads > 0 and max(seen) == rewrites
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.json"]
