"""Files on disk: content fingerprints, and atomic, durable replacement.

Every writer in nightlake (lake partitions, the lake manifest, the detrend mirror, exports of
``resolve``) replaces a file the same way: write a hidden temp file beside the target, fsync
it, ``os.replace`` it over the target, fsync the directory. A reader sees the old file or the
new one, never a torn one, and a crash leaves the old file and a ``.tmp`` that no ``*.parquet``
glob matches. Every "has this source changed?" question is answered by one rule, too.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compare_fingerprint(recorded: dict[str, Any]) -> tuple[str, str]:
    """Compare a recorded ``{path, size, mtime_ns, sha256}`` with the file as it is now.

    Returns ``(state, why)`` with state ``"ok"``, ``"changed"`` or ``"missing"``. Same size and
    mtime: unchanged, without reading the file. Same size, other mtime: the content hash
    decides (a ``touch`` changes nothing).
    """
    path = Path(recorded.get("path", ""))
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing", "source no longer exists"
    except OSError as exc:
        return "missing", f"cannot stat: {exc.strerror}"
    if stat.st_size != recorded.get("size"):
        return "changed", f"size {recorded.get('size')} -> {stat.st_size}"
    if stat.st_mtime_ns == recorded.get("mtime_ns"):
        return "ok", ""
    if recorded.get("sha256") and file_sha256(path) == recorded["sha256"]:
        return "ok", "touched, content unchanged"
    return "changed", "content changed (sha256)"


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file or directory to disk (no-op where a directory cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path_for(target: Path) -> Path:
    """A hidden temp name beside ``target`` that no ``*.parquet`` glob matches."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_replace(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``target`` durably, else vanishes."""
    target = Path(target)
    with temp_beside(target) as tmp:
        yield tmp
    commit_temp(tmp, target)


@contextmanager
def temp_beside(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target`` (its directory made); removed if the block fails.
    :func:`commit_temp` later makes it durable and moves it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def commit_temp(tmp: Path, target: Path) -> None:
    """fsync ``tmp``, replace ``target`` by it, fsync the directory (``tmp`` is removed if
    that fails)."""
    try:
        fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(target.parent)
