"""autoemb_core.download: served from local fake archives (file:// URLs, a loopback HTTP server or a
replaced opener); nothing here touches the network."""
import dataclasses
import functools
import hashlib
import http.server
import io
import socket
import threading
import urllib.error
import zipfile

import pytest

from autoemb_core import download as dl
from autoemb_core.interactions import DataError

RATINGS = b"1\t10\t4\t881250949\n2\t20\t3\t891717742\n"


def make_zip(path, folder="ml-100k", files=("u.data", "u.item", "u.user"), extra=None):
    with zipfile.ZipFile(path, "w") as zf:
        for name in files:
            zf.writestr(f"{folder}/{name}", RATINGS if name == "u.data" else f"{name} contents\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def md5_of(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def serve(monkeypatch, name, zip_path, md5="auto"):
    """Point ARCHIVES[name] at ``zip_path`` through a file:// URL; md5 "auto" = the right one."""
    spec = dataclasses.replace(dl.ARCHIVES[name], url=zip_path.as_uri(),
                               md5=md5_of(zip_path) if md5 == "auto" else md5)
    monkeypatch.setitem(dl.ARCHIVES, name, spec)
    return spec


def listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    return d


@pytest.fixture
def out(tmp_path):
    return tmp_path / "data"


class FakeResponse(io.BytesIO):
    """What urlopen returns: a readable with headers; optionally fails after ``fail_after`` bytes."""

    def __init__(self, data, fail_after=None, exc=None, length=None):
        super().__init__(data)
        self.fail_after, self.exc = fail_after, exc
        self.headers = {"Content-Length": str(len(data) if length is None else length)}

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise self.exc
        if self.fail_after is not None:
            n = min(n if n and n > 0 else self.fail_after, self.fail_after - self.tell())
        return super().read(n)


def opener_returning(response_factory):
    def fake(url, timeout=None):
        return response_factory()
    return fake


# ----------------------------------------------------------------------------------------------
# the table of archives

def test_archive_table_has_the_published_md5s():
    expected = {"ml-20m": "cd245b17a1ae2cc31bb14903e1204af3", "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
                "ml-100k": "0e33842e24a9c977be4e0107933c0723"}
    for name, md5 in expected.items():
        assert dl.ARCHIVES[name].md5 == md5
    for name in ("ml-latest", "ml-latest-small"):  # updated upstream: md5 fetched at download time
        assert dl.ARCHIVES[name].md5 is None
    for name, spec in dl.ARCHIVES.items():
        assert spec.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert spec.md5_url == spec.url + ".md5"
        assert spec.folder == name
    assert dl.ARCHIVES["ml-20m"].files[0] == "ratings.csv"
    assert "ratings.dat" in dl.ARCHIVES["ml-1m"].files
    assert "u.data" in dl.ARCHIVES["ml-100k"].files


# ----------------------------------------------------------------------------------------------
# success, short-circuit, force

@pytest.mark.parametrize("progress", [False, True])
def test_success_extracts_and_returns_the_folder(monkeypatch, src, out, progress):
    serve(monkeypatch, "ml-100k", make_zip(src / "ml-100k.zip"))
    folder = dl.download("ml-100k", out, progress=progress)
    assert folder == out / "ml-100k"
    assert (folder / "u.data").read_bytes() == RATINGS
    assert listing(folder) == ["u.data", "u.item", "u.user"]
    assert listing(out) == ["ml-100k"]  # no temporary archive or staging folder left


def test_existing_complete_folder_short_circuits(monkeypatch, out):
    folder = out / "ml-1m"
    folder.mkdir(parents=True)
    for name in dl.ARCHIVES["ml-1m"].files:
        (folder / name).write_text("mine\n")

    def no_network(*args, **kwargs):
        raise AssertionError("must not download")
    monkeypatch.setattr(dl, "_urlopen", no_network)
    assert dl.download("ml-1m", out) == folder
    assert (folder / "ratings.dat").read_text() == "mine\n"


def test_force_replaces_a_complete_folder(monkeypatch, src, out):
    serve(monkeypatch, "ml-100k", make_zip(src / "ml-100k.zip"))
    folder = out / "ml-100k"
    folder.mkdir(parents=True)
    for name in ("u.data", "u.item", "u.user", "stale.txt"):
        (folder / name).write_text("old\n")
    assert dl.download("ml-100k", out, force=True, progress=False) == folder
    assert (folder / "u.data").read_bytes() == RATINGS
    assert not (folder / "stale.txt").exists()
    assert listing(out) == ["ml-100k"]


def test_incomplete_folder_is_kept_aside_and_replaced(monkeypatch, src, out):
    serve(monkeypatch, "ml-100k", make_zip(src / "ml-100k.zip"))
    folder = out / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("partial\n")
    with pytest.warns(UserWarning, match="incomplete"):
        dl.download("ml-100k", out, progress=False)
    assert (folder / "u.data").read_bytes() == RATINGS
    assert (out / "ml-100k.incomplete" / "u.data").read_text() == "partial\n"


def test_over_local_http_server(monkeypatch, src, out):
    zip_path = make_zip(src / "ml-100k.zip")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(src))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        spec = dataclasses.replace(dl.ARCHIVES["ml-100k"], url=f"{base}/ml-100k.zip", md5=md5_of(zip_path))
        monkeypatch.setitem(dl.ARCHIVES, "ml-100k", spec)
        assert (dl.download("ml-100k", out, progress=False) / "u.data").read_bytes() == RATINGS

        monkeypatch.setitem(dl.ARCHIVES, "ml-1m", dataclasses.replace(dl.ARCHIVES["ml-1m"],
                                                                      url=f"{base}/missing.zip"))
        with pytest.raises(DataError, match="HTTP 404") as err:
            dl.download("ml-1m", out, progress=False)
        assert f"{base}/missing.zip" in str(err.value)
    finally:
        server.shutdown()
        server.server_close()
    assert listing(out) == ["ml-100k"]


# ----------------------------------------------------------------------------------------------
# ml-latest*: checksum from <url>.md5

def test_latest_is_verified_against_the_published_md5_file(monkeypatch, src, out):
    zip_path = make_zip(src / "ml-latest-small.zip", "ml-latest-small", dl.ARCHIVES["ml-latest-small"].files)
    serve(monkeypatch, "ml-latest-small", zip_path, md5=None)
    md5_file = src / "ml-latest-small.zip.md5"
    md5_file.write_text("MD5 (ml-latest-small.zip) = " + "0" * 32 + "\n")
    with pytest.raises(DataError, match="checksum mismatch"):
        dl.download("ml-latest-small", out, progress=False)
    assert listing(out) == []
    md5_file.write_text(f"MD5 (ml-latest-small.zip) = {md5_of(zip_path)}\n")
    assert dl.download("ml-latest-small", out, progress=False) == out / "ml-latest-small"


def test_latest_without_md5_file_warns_and_proceeds(monkeypatch, src, out):
    zip_path = make_zip(src / "ml-latest.zip", "ml-latest", dl.ARCHIVES["ml-latest"].files)
    serve(monkeypatch, "ml-latest", zip_path, md5=None)  # no ml-latest.zip.md5 next to it
    with pytest.warns(UserWarning, match=r"ml-latest\.zip\.md5.*NOT checksum-verified"):
        folder = dl.download("ml-latest", out, progress=False)
    assert listing(folder) == sorted(dl.ARCHIVES["ml-latest"].files)


# ----------------------------------------------------------------------------------------------
# failures leave nothing behind

def test_md5_mismatch_raises_and_leaves_nothing(monkeypatch, src, out):
    zip_path = make_zip(src / "ml-100k.zip")
    serve(monkeypatch, "ml-100k", zip_path, md5="0" * 32)
    with pytest.raises(DataError) as err:
        dl.download("ml-100k", out, progress=False)
    message = str(err.value)
    assert "checksum mismatch" in message
    assert "0" * 32 in message and md5_of(zip_path) in message
    assert listing(out) == []


@pytest.mark.parametrize("exc, expected", [(ConnectionResetError("reset by peer"), DataError),
                                           (socket.timeout("timed out"), DataError),
                                           (KeyboardInterrupt(), KeyboardInterrupt)])
def test_interrupted_download_leaves_nothing(monkeypatch, src, out, exc, expected):
    data = make_zip(src / "ml-100k.zip").read_bytes()
    serve(monkeypatch, "ml-100k", src / "ml-100k.zip")
    monkeypatch.setattr(dl, "_urlopen", opener_returning(lambda: FakeResponse(data, len(data) // 2, exc)))
    with pytest.raises(expected) as err:
        dl.download("ml-100k", out, progress=False)
    if expected is DataError:
        assert "failed after" in str(err.value) and "by hand" in str(err.value)
    assert listing(out) == []


def test_truncated_download_is_detected(monkeypatch, src, out):
    data = make_zip(src / "ml-100k.zip").read_bytes()
    serve(monkeypatch, "ml-100k", src / "ml-100k.zip", md5=None)  # no md5: only the length can tell
    monkeypatch.setattr(dl, "_urlopen", opener_returning(lambda: FakeResponse(data[:100], length=len(data))))
    with pytest.raises(DataError, match="cut short"):
        dl.download("ml-100k", out, progress=False)
    assert listing(out) == []


def test_corrupt_zip_raises_and_leaves_nothing(monkeypatch, src, out):
    bad = src / "ml-100k.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip" * 100)
    serve(monkeypatch, "ml-100k", bad)
    with pytest.raises(DataError, match="not a valid zip"):
        dl.download("ml-100k", out, progress=False)
    assert listing(out) == []


def test_zip_without_the_expected_files_raises(monkeypatch, src, out):
    serve(monkeypatch, "ml-100k", make_zip(src / "ml-100k.zip", folder="wrong-folder"))
    with pytest.raises(DataError, match=r"lacks ml-100k/u\.data"):
        dl.download("ml-100k", out, progress=False)
    assert listing(out) == []


def _assert_manual_instructions(message, spec, out):
    assert spec.url in message
    assert "by hand" in message
    assert str(out) in message
    for name in spec.files:
        assert name in message


def test_unreachable_url_gives_manual_instructions(monkeypatch, out):
    url = "http://127.0.0.1:9/ml-100k.zip"  # discard port: nothing listens there
    spec = dataclasses.replace(dl.ARCHIVES["ml-100k"], url=url)
    monkeypatch.setitem(dl.ARCHIVES, "ml-100k", spec)
    with pytest.raises(DataError) as err:
        dl.download("ml-100k", out, timeout=5, progress=False)
    assert "could not download" in str(err.value)
    _assert_manual_instructions(str(err.value), spec, out)
    assert listing(out) == []


@pytest.mark.parametrize("exc, why", [
    (urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution")), "name resolution"),
    (socket.timeout("timed out"), "timed out"),
    (urllib.error.HTTPError("u", 503, "Service Unavailable", {}, None), "HTTP 503"),
])
def test_network_failure_gives_manual_instructions(monkeypatch, out, exc, why):
    def fail(url, timeout=None):
        raise exc
    monkeypatch.setattr(dl, "_urlopen", fail)
    spec = dl.ARCHIVES["ml-20m"]
    with pytest.raises(DataError) as err:
        dl.download("ml-20m", out, progress=False)
    assert why in str(err.value)
    _assert_manual_instructions(str(err.value), spec, out)
    assert listing(out) == []


# ----------------------------------------------------------------------------------------------
# names

def test_netflix_points_to_kaggle(out):
    with pytest.raises(DataError) as err:
        dl.download("netflix", out)
    message = str(err.value)
    assert "Kaggle account" in message
    assert "https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data" in message
    assert "combined_data_1.txt" in message and "combined_data_4.txt" in message
    assert "training_set/mv_*.txt" in message
    assert str(out / "netflix") in message
    assert not out.exists()


def test_unknown_name_lists_valid_names(out):
    with pytest.raises(DataError) as err:
        dl.download("ml-3m", out)
    message = str(err.value)
    assert "'ml-3m'" in message
    for name in ("ml-20m", "ml-latest", "ml-latest-small", "ml-1m", "ml-100k"):
        assert name in message
    assert not out.exists()
