"""Fetch the official EmpatheticDialogues archive when ``data.root`` does not hold it yet.

Robust on flaky links (resumable ``.part`` file, retries with backoff), verifiable (size and
sha256), and safe (atomic renames, no tar member may escape the target folder, and a CSV the
user already has is never overwritten).  Every failure ends in a :class:`DatasetDownloadError`
that tells the user how to place the files by hand.

A server that accepts the connection and then stays silent is bounded by ``timeout`` (seconds of
silence per socket operation, not a limit on the whole transfer) and ``retries``: with the
defaults (``data.download_timeout=15``, ``data.download_retries=2``) it fails in under a minute.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path, PurePosixPath

from empdg.data.conversation import SPLITS

logger = logging.getLogger(__name__)

ED_URL = "https://dl.fbaipublicfiles.com/parlai/empatheticdialogues/empatheticdialogues.tar.gz"
CACHE_DIRNAME = ".download"
_CHUNK = 1 << 16
_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}
#: Seconds of silence before one attempt gives up, and extra attempts after the first.
DEFAULT_TIMEOUT = 15.0
DEFAULT_RETRIES = 2


class DatasetDownloadError(RuntimeError):
    """The dataset could not be fetched or unpacked; the message says how to do it by hand."""


class _Retryable(Exception):
    """A transient problem: try again (resuming the partial file)."""


class ExistingFileWarning(UserWarning):
    """A CSV already in ``data.root`` differs from the archive's; the user's file was kept."""


def _is_timeout(err: BaseException) -> bool:
    """True when ``err`` (or what it wraps) is a socket timeout: the server stayed silent."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError):  # socket.timeout is TimeoutError since 3.10
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        else:
            current = current.__cause__ or current.__context__
    return False


def _csv_names() -> list[str]:
    return [f"{split}.csv" for split in SPLITS]


def _has_splits(root: Path) -> bool:
    return all((root / name).is_file() for name in _csv_names())


def _manual_instructions(root: Path, url: str) -> str:
    names = ", ".join(_csv_names())
    return (
        "To install the data by hand: download "
        f"{url} with a browser or `curl -L -O {url}`, extract it (`tar -xzf {Path(url).name}`), "
        f"and put {names} from its empatheticdialogues/ folder into {root}, "
        "or point data.root=/path/to/folder at a folder that already holds them."
    )


def _fail(reason: str, root: Path, url: str) -> DatasetDownloadError:
    message = f"Could not obtain EmpatheticDialogues: {reason}. {_manual_instructions(root, url)}"
    return DatasetDownloadError(message)


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    """One request, appending to ``part`` when the server honours Range, else restarting."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "empdg-downloader"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            # Range past the end: the partial file is probably complete; size/hash checks decide.
            logger.info("server reports %s already complete (%d bytes)", part.name, have)
            return
        if err.code in _RETRYABLE_HTTP:
            raise _Retryable(f"HTTP {err.code} {err.reason}") from err
        raise
    with response:
        if have and response.status == 206:
            if _range_start(response.headers.get("Content-Range", "")) != have:
                part.unlink()
                raise _Retryable("server resumed at an unexpected offset; restarting")
            mode, done = "ab", have
            logger.info("resuming %s at byte %d", part.name, have)
        else:
            if have:
                logger.info("server ignored the Range request; restarting %s", part.name)
            mode, done = "wb", 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else None
        next_log = 0.0
        with part.open(mode) as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if total and done / total >= next_log:
                    logger.info("downloaded %d / %d bytes (%.0f%%)", done, total, 100 * done / total)
                    next_log += 0.1
    if total is not None and done < total:
        raise _Retryable(f"connection closed after {done} of {total} bytes")


def _range_start(content_range: str) -> int | None:
    """First byte of a ``Content-Range: bytes START-END/TOTAL`` header, None if unparsable."""
    unit, _, spec = content_range.strip().partition(" ")
    start = spec.split("-", 1)[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _download(url: str, part: Path, retries: int, timeout: float, backoff: float) -> None:
    """Fetch ``url`` into ``part``, retrying transient failures and resuming what arrived."""
    attempts = max(0, retries) + 1
    for attempt in range(1, attempts + 1):
        try:
            _fetch_once(url, part, timeout)
            return
        except (_Retryable, urllib.error.URLError, OSError, http.client.HTTPException) as err:
            if isinstance(err, urllib.error.HTTPError):
                raise
            if attempt == attempts:
                if _is_timeout(err):
                    raise _Retryable(
                        f"{url} did not answer within data.download_timeout={timeout:g} s on any of "
                        f"{attempts} attempt(s) (data.download_retries={max(0, retries)})"
                    ) from err
                raise _Retryable(f"{err} (after {attempts} attempts)") from err
            delay = backoff * 2 ** (attempt - 1)
            logger.warning("download attempt %d/%d failed (%s); retrying in %.1fs",
                           attempt, attempts, err, delay)
            time.sleep(delay)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, sha256: str | None, expected_size: int | None) -> None:
    """Check size and hash; raise ValueError (and delete the file) on a mismatch."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        path.unlink()
        raise ValueError(f"size mismatch: got {size} bytes, expected {expected_size}")
    digest = _sha256(path)
    logger.info("%s: %d bytes, sha256 %s", path.name, size, digest)
    if sha256 is not None and digest.lower() != sha256.lower():
        path.unlink()
        raise ValueError(f"sha256 mismatch: got {digest}, expected {sha256}")


def _safe_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Reject archives with absolute or ``..`` paths or links; return the split CSV members."""
    found: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
            raise ValueError(f"unsafe path in archive: {member.name!r}")
        if member.islnk() or member.issym() or member.isdev():
            raise ValueError(f"unexpected link or device in archive: {member.name!r}")
        if member.isfile() and name.name in _csv_names() and len(name.parts) <= 2:
            found.setdefault(name.name, member)
    missing = sorted(set(_csv_names()) - set(found))
    if missing:
        raise ValueError(f"archive lacks {', '.join(missing)}")
    return found


def _same_content(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and _sha256(a) == _sha256(b)


def _place_if_absent(src: Path, dst: Path) -> bool:
    """Move ``src`` to ``dst`` unless ``dst`` exists; never replaces a file (True if placed).

    ``os.link`` fails when the target exists, so a file the user creates meanwhile is not
    clobbered either; file systems without hard links fall back to check-then-rename.
    """
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    except OSError:
        if dst.exists():
            return False
        os.replace(src, dst)
        return True
    src.unlink()
    return True


def _extract(archive: Path, root: Path, workdir: Path) -> None:
    """Unpack the three CSVs into a temp folder, then add to ``root`` only the ones it lacks.

    The user's own files are never overwritten (``data.root`` may hold a train.csv they made or
    edited): a present CSV that differs from the archive's is kept, with a warning naming it.
    """
    tmp = Path(tempfile.mkdtemp(prefix="extract-", dir=workdir))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(tar)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=list(members.values()), filter="data")
                else:  # Python without extraction filters; members were checked above
                    tar.extractall(tmp, members=list(members.values()))
        except (tarfile.TarError, EOFError, OSError, ValueError):
            archive.unlink(missing_ok=True)  # a bad archive must not be reused next time
            raise
        differing: list[str] = []
        for name, member in members.items():
            extracted, target = tmp / member.name, root / name
            if _place_if_absent(extracted, target):
                logger.info("placed %s from the archive", target)
            elif not _same_content(extracted, target):
                differing.append(name)
        if differing:
            warnings.warn(
                f"{root}: kept your own {', '.join(differing)}, which differ(s) from the official archive "
                f"({archive}); only the missing files were added. Move them away and rerun to use the "
                "official files.",
                ExistingFileWarning,
                stacklevel=3,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_ed_data(
    root: Path,
    url: str = ED_URL,
    sha256: str | None = None,
    expected_size: int | None = None,
    retries: int = DEFAULT_RETRIES,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    backoff: float = 1.0,
) -> Path:
    """Return ``root`` holding train/valid/test.csv, downloading the archive if needed.

    ``timeout``: seconds a silent server may take per socket operation (``data.download_timeout``);
    ``retries``: attempts after the first (``data.download_retries``). CSVs already in ``root``
    are kept as they are; only the missing ones are added.
    """
    root = Path(root)
    if not timeout or timeout <= 0:
        raise ValueError(f"data.download_timeout must be a positive number of seconds, got {timeout!r}")
    if _has_splits(root):
        return root
    present = [name for name in _csv_names() if (root / name).exists()]
    if present:
        missing = [name for name in _csv_names() if name not in present]
        logger.info("%s already holds %s; fetching the archive only for %s (existing files are kept)",
                    root, ", ".join(present), ", ".join(missing))
    workdir = root / CACHE_DIRNAME
    archive = workdir / (Path(url).name or "empatheticdialogues.tar.gz")
    part = archive.with_name(archive.name + ".part")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        if not archive.is_file():
            logger.info("downloading %s to %s", url, archive)
            _download(url, part, retries, timeout, backoff)
            _verify(part, sha256, expected_size)
            os.replace(part, archive)
        else:
            logger.info("using the archive already at %s", archive)
            _verify(archive, sha256, expected_size)
        _extract(archive, root, workdir)
    except (_Retryable, urllib.error.URLError, OSError, ValueError, tarfile.TarError, EOFError) as err:
        raise _fail(str(err), root, url) from err
    if not _has_splits(root):
        raise _fail(f"the archive did not yield {', '.join(_csv_names())}", root, url)
    logger.info("EmpatheticDialogues is ready in %s", root)
    return root
