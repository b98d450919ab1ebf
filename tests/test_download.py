"""Downloads against a local HTTP server on 127.0.0.1: sha256 before use, no partial files, retry with backoff."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ddrm.data import registry
from ddrm.data.registry import DatasetSpec, download, fetch
from ddrm.errors import DataError

PAYLOAD = b"0 1 2 3\n1 2 3\n" * 1000
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        Handler.hits[self.path] += 1
        n = Handler.hits[self.path]
        if self.path == "/flaky" and n == 1:
            self.send_error(500, "try again")
            return
        body = PAYLOAD
        if self.path == "/corrupt":
            body = PAYLOAD[:-1] + b"X"
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.path == "/truncated" and n == 1:
            self.wfile.write(body[: len(body) // 2])  # the connection drops mid-transfer
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    Handler.hits = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_good_download_lands_under_final_name(server, tmp_path):
    dest = tmp_path / "d" / "train.txt"
    download(f"{server}/good", dest, DIGEST, backoff=0.01, quiet=True)
    assert dest.read_bytes() == PAYLOAD and not _leftovers(dest.parent)


@pytest.mark.parametrize("path", ["/flaky", "/truncated"])
def test_retry_with_backoff_recovers(server, tmp_path, path):
    dest = tmp_path / "train.txt"
    download(f"{server}{path}", dest, DIGEST, retries=3, backoff=0.01, quiet=True)
    assert dest.read_bytes() == PAYLOAD and Handler.hits[path] == 2
    assert not _leftovers(tmp_path)


def test_corrupted_download_is_detected_and_removed(server, tmp_path):
    dest = tmp_path / "train.txt"
    with pytest.raises(DataError, match="sha256 mismatch"):
        download(f"{server}/corrupt", dest, DIGEST, retries=3, backoff=0.01, quiet=True)
    assert Handler.hits["/corrupt"] == 3
    assert not dest.exists() and not _leftovers(tmp_path)


def test_backoff_doubles(server, tmp_path, monkeypatch):
    sleeps = []
    monkeypatch.setattr(registry.time, "sleep", sleeps.append)
    with pytest.raises(DataError):
        download(f"{server}/corrupt", tmp_path / "x", DIGEST, retries=4, backoff=0.5, quiet=True)
    assert sleeps == [0.5, 1.0, 2.0]


def test_unreachable_server_is_one_sentence(tmp_path):
    with pytest.raises(DataError, match="could not download"):
        download("http://127.0.0.1:9/nothing", tmp_path / "x", DIGEST, retries=2, backoff=0.01, quiet=True)
    assert not list(tmp_path.iterdir())


def test_fetch_named_dataset_from_local_mirror(server, tmp_path, monkeypatch):
    spec = DatasetSpec("mirror-test", files={"train.txt": DIGEST, "test.txt": DIGEST},
                       urls={"train.txt": f"{server}/good", "test.txt": f"{server}/flaky"}, source="local test")
    monkeypatch.setitem(registry.REGISTRY, "mirror-test", spec)
    folder = fetch("mirror-test", tmp_path, quiet=True)
    assert (folder / "train.txt").read_bytes() == PAYLOAD and (folder / "test.txt").read_bytes() == PAYLOAD
    # a second fetch uses the verified files without downloading again
    before = sum(Handler.hits.values())
    fetch("mirror-test", tmp_path, quiet=True)
    assert sum(Handler.hits.values()) == before
