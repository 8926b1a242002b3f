"""The ED downloader against a local HTTP server: resume, retry, verification, safe extraction."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from empdg.data.download import (
    CACHE_DIRNAME,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DatasetDownloadError,
    ExistingFileWarning,
    ensure_ed_data,
)

ARCHIVE = "empatheticdialogues.tar.gz"
HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
CSV_TEXT = {
    split: HEADER + f"hit:{i}_conv:{i},1,joyful,,1,{split} row_comma_ {'x' * 2000},,\n"
    for i, split in enumerate(("train", "valid", "test"))
}


def make_archive(extra: dict[str, bytes] | None = None) -> bytes:
    """A gzipped tar shaped like the official one: empatheticdialogues/{split}.csv."""
    members = {f"empatheticdialogues/{s}.csv": t.encode() for s, t in CSV_TEXT.items()}
    members.update(extra or {})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Server(ThreadingHTTPServer):
    payload: bytes = b""
    honour_range = True
    fail_first = 0  # answer 503 to this many requests first
    truncate_first = 0  # then send only half the body for this many requests
    status_override: int | None = None

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{ARCHIVE}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append(dict(self.headers))
        count = len(srv.requests)
        if srv.status_override is not None:
            self.send_error(srv.status_override)
            return
        if count <= srv.fail_first:
            self.send_error(503, "try later")
            return
        payload, start = srv.payload, 0
        range_header = self.headers.get("Range")
        if range_header and srv.honour_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if count <= srv.fail_first + srv.truncate_first:
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@contextmanager
def serve(payload: bytes, **settings: object) -> Iterator[_Server]:
    server = _Server()
    server.payload = payload
    for key, value in settings.items():
        setattr(server, key, value)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def assert_placed(root: Path) -> None:
    for split, text in CSV_TEXT.items():
        assert (root / f"{split}.csv").read_text(encoding="utf-8") == text


def test_download_extracts_and_verifies(tmp_path: Path) -> None:
    payload = make_archive()
    root = tmp_path / "ed"
    with serve(payload) as server:
        got = ensure_ed_data(root, server.url, sha256=hashlib.sha256(payload).hexdigest(),
                             expected_size=len(payload), retries=0, timeout=5)
    assert got == root
    assert_placed(root)
    assert (root / CACHE_DIRNAME / ARCHIVE).read_bytes() == payload
    assert not (root / CACHE_DIRNAME / f"{ARCHIVE}.part").exists()
    assert len(server.requests) == 1


def test_sha256_mismatch_explains_manual_placement(tmp_path: Path) -> None:
    root = tmp_path / "ed"
    with serve(make_archive()) as server, pytest.raises(DatasetDownloadError) as info:
        ensure_ed_data(root, server.url, sha256="0" * 64, retries=0, timeout=5)
    message = str(info.value)
    assert "sha256 mismatch" in message
    assert server.url in message and str(root) in message
    assert "train.csv, valid.csv, test.csv" in message and "data.root=" in message
    assert not (root / "train.csv").exists()
    assert not (root / CACHE_DIRNAME / ARCHIVE).exists()


def test_size_mismatch_is_an_error(tmp_path: Path) -> None:
    payload = make_archive()
    with serve(payload) as server, pytest.raises(DatasetDownloadError, match="size mismatch"):
        ensure_ed_data(tmp_path / "ed", server.url, expected_size=len(payload) + 1, retries=0, timeout=5)


def test_unreachable_url_fails_quickly(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(DatasetDownloadError, match="by hand"):
        ensure_ed_data(tmp_path / "ed", f"http://127.0.0.1:{port}/{ARCHIVE}", retries=1, timeout=2,
                       backoff=0.01)
    assert time.monotonic() - started < 10


def test_not_found_is_not_retried(tmp_path: Path) -> None:
    with serve(b"", status_override=404) as server, pytest.raises(DatasetDownloadError, match="404"):
        ensure_ed_data(tmp_path / "ed", server.url, retries=3, timeout=5, backoff=0.01)
    assert len(server.requests) == 1


def test_partial_file_is_resumed_with_range(tmp_path: Path) -> None:
    payload = make_archive()
    root = tmp_path / "ed"
    (root / CACHE_DIRNAME).mkdir(parents=True)
    (root / CACHE_DIRNAME / f"{ARCHIVE}.part").write_bytes(payload[:100])
    with serve(payload) as server:
        ensure_ed_data(root, server.url, sha256=hashlib.sha256(payload).hexdigest(), retries=0, timeout=5)
    assert [r.get("Range") for r in server.requests] == ["bytes=100-"]
    assert_placed(root)


def test_complete_part_file_answered_416_is_used(tmp_path: Path) -> None:
    payload = make_archive()
    root = tmp_path / "ed"
    (root / CACHE_DIRNAME).mkdir(parents=True)
    (root / CACHE_DIRNAME / f"{ARCHIVE}.part").write_bytes(payload)
    with serve(payload) as server:
        ensure_ed_data(root, server.url, sha256=hashlib.sha256(payload).hexdigest(), retries=0, timeout=5)
    assert [r.get("Range") for r in server.requests] == [f"bytes={len(payload)}-"]
    assert_placed(root)


def test_server_ignoring_range_restarts_from_scratch(tmp_path: Path) -> None:
    payload = make_archive()
    root = tmp_path / "ed"
    (root / CACHE_DIRNAME).mkdir(parents=True)
    (root / CACHE_DIRNAME / f"{ARCHIVE}.part").write_bytes(b"stale junk")
    with serve(payload, honour_range=False) as server:
        ensure_ed_data(root, server.url, sha256=hashlib.sha256(payload).hexdigest(), retries=0, timeout=5)
    assert server.requests[0].get("Range") == "bytes=10-"
    assert_placed(root)


def test_transient_errors_are_retried(tmp_path: Path) -> None:
    payload = make_archive()
    with serve(payload, fail_first=2) as server:
        ensure_ed_data(tmp_path / "ed", server.url, retries=2, timeout=5, backoff=0.01)
    assert len(server.requests) == 3
    assert_placed(tmp_path / "ed")


def test_truncated_body_is_resumed(tmp_path: Path) -> None:
    payload = make_archive()
    with serve(payload, truncate_first=1) as server:
        ensure_ed_data(tmp_path / "ed", server.url, sha256=hashlib.sha256(payload).hexdigest(),
                       retries=1, timeout=5, backoff=0.01)
    ranges = [r.get("Range") for r in server.requests]
    assert ranges == [None, f"bytes={len(payload) // 2}-"]
    assert_placed(tmp_path / "ed")


def test_archive_with_parent_path_member_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "sub" / "ed"
    evil = make_archive({"../evil": b"boom"})
    with serve(evil) as server, pytest.raises(DatasetDownloadError, match="unsafe"):
        ensure_ed_data(root, server.url, retries=0, timeout=5)
    assert not (root / "train.csv").exists()
    assert not any(p.name == "evil" for p in tmp_path.rglob("*"))
    assert not (root / CACHE_DIRNAME / ARCHIVE).exists()  # a bad archive is not kept


def test_existing_root_makes_no_request(tmp_path: Path) -> None:
    root = tmp_path / "ed"
    root.mkdir()
    for split, text in CSV_TEXT.items():
        (root / f"{split}.csv").write_text(text, encoding="utf-8")
    with serve(make_archive()) as server:
        assert ensure_ed_data(root, server.url, retries=0, timeout=5) == root
    assert server.requests == []


def test_present_user_files_are_never_overwritten(tmp_path: Path) -> None:
    """train.csv and test.csv present, valid.csv missing: only valid.csv is added."""
    root = tmp_path / "ed"
    root.mkdir()
    mine = HEADER + "hit:9_conv:9,1,proud,,1,my own edited row,,\n"
    (root / "train.csv").write_text(mine, encoding="utf-8")
    (root / "test.csv").write_text(CSV_TEXT["test"], encoding="utf-8")  # same as the archive's
    with serve(make_archive()) as server, pytest.warns(ExistingFileWarning) as record:
        ensure_ed_data(root, server.url, retries=0, timeout=5)
    assert (root / "train.csv").read_text(encoding="utf-8") == mine
    assert (root / "valid.csv").read_text(encoding="utf-8") == CSV_TEXT["valid"]
    assert (root / "test.csv").read_text(encoding="utf-8") == CSV_TEXT["test"]
    assert len(record) == 1
    message = str(record[0].message)
    assert "train.csv" in message and "test.csv" not in message.split("differ")[0]


def test_identical_present_files_are_kept_silently(tmp_path: Path) -> None:
    root = tmp_path / "ed"
    root.mkdir()
    (root / "train.csv").write_text(CSV_TEXT["train"], encoding="utf-8")
    with serve(make_archive()) as server, warnings.catch_warnings():
        warnings.simplefilter("error")
        ensure_ed_data(root, server.url, retries=0, timeout=5)
    assert_placed(root)


def test_silent_server_fails_within_the_timeout_and_says_how(tmp_path: Path, silent_server) -> None:
    root, url = tmp_path / "ed", silent_server.url()
    started = time.monotonic()
    with pytest.raises(DatasetDownloadError) as info:
        ensure_ed_data(root, url, retries=1, timeout=0.5, backoff=0.01)
    assert time.monotonic() - started < 10
    assert len(silent_server.connections) == 2  # the first attempt and one retry
    message = str(info.value)
    assert url in message
    assert "data.download_timeout=0.5 s" in message and "data.download_retries=1" in message
    assert "by hand" in message and str(root) in message


def test_defaults_bound_a_silent_server_to_under_a_minute() -> None:
    backoff = sum(1.0 * 2**i for i in range(DEFAULT_RETRIES))
    assert DEFAULT_TIMEOUT * (DEFAULT_RETRIES + 1) + backoff < 60


def test_non_positive_timeout_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.download_timeout"):
        ensure_ed_data(tmp_path / "ed", "http://127.0.0.1:9/x.tar.gz", timeout=0)
