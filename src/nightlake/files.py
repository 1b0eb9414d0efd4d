"""Files on disk: content fingerprints, and atomic, durable replacement.

Every writer in nightlake (lake partitions, the lake manifest, the detrend mirror, exports of
``resolve``) replaces a file the same way: write a hidden temp file beside the target, fsync
it, ``os.replace`` it over the target, fsync the directory. A reader sees the old file or the
new one, never a torn one. Every "has this source changed?" question is answered by one rule
(:func:`compare_fingerprint`; :func:`file_stamp` for "was this rewritten?" without reading).

Temp names follow one scheme, so a writer killed mid-write leaves something recognisable::

    .<target name>.nightlake-tmp-<pid>-<random>.tmp     a new version being written
    .<target name>.nightlake-old-<pid>-<random>.tmp     the old version, moved aside a moment

Each write first sweeps the temps of its own target whose owner process is gone
(:func:`sweep_temps`); a crash therefore leaves nothing behind past the next write.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_wait(seconds: float) -> float:
    """``--lock-timeout`` as filelock takes it: UsageError for a negative one, which filelock
    would take as "wait forever"."""
    from nightlake.errors import UsageError

    if not seconds >= 0:
        raise UsageError(f"--lock-timeout must be 0 or more seconds, not {seconds:g}")
    return seconds


def compare_fingerprint(recorded: dict[str, Any]) -> tuple[str, str]:
    """Compare a recorded ``{path, size, mtime_ns[, inode], sha256}`` with the file as it is
    now.

    Returns ``(state, why)`` with state ``"ok"``, ``"changed"`` or ``"missing"``. Same size and
    mtime (and inode, when one was recorded): unchanged, without reading the file. Otherwise,
    at the same size, the content hash decides (a ``touch`` changes nothing). The inode tells
    apart a file replaced by a rename within one mtime tick at the same size.
    """
    path = Path(recorded.get("path", ""))
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing", "source no longer exists"
    except OSError as exc:
        return "missing", f"cannot stat: {exc.strerror}"
    if st.st_size != recorded.get("size"):
        return "changed", f"size {recorded.get('size')} -> {st.st_size}"
    if st.st_mtime_ns == recorded.get("mtime_ns") and recorded.get("inode", st.st_ino) == st.st_ino:
        return "ok", ""
    if recorded.get("sha256") and file_sha256(path) == recorded["sha256"]:
        return "ok", "touched, content unchanged"
    return "changed", "content changed (sha256)"


def file_stamp(
    path: str | os.PathLike[str], *, opened: bool = False
) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of ``path``, None when it is gone: what tells a rewrite apart
    (atomic writes change the inode even within one mtime tick). ``opened``: taken from the
    file opened (non-blocking), not a bare stat: on NFS an open revalidates what the client
    caches (close-to-open consistency)."""
    try:
        if opened:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
        else:
            st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file or directory to disk. A file that cannot be flushed raises: its data may
    not be on disk, so it must not replace anything. A directory that cannot be opened or
    flushed is passed over (some file systems refuse both)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if os.path.isdir(path):
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise
    finally:
        os.close(fd)


TEMP_MARK = ".nightlake-tmp-"
ASIDE_MARK = ".nightlake-old-"
#: ``.<name><mark><pid>-<random>.tmp``, and the names of earlier versions (``.<name>.<pid>.tmp``,
#: ``.<name>.nightlake-tmp-<pid>``), so their leftovers are swept too. The ``.tmp`` ending
#: keeps every temp out of ``*.parquet`` / ``*.csv`` globs.
_TEMP_NAME = re.compile(
    r"^\.(?P<name>.+?)(?:(?P<mark>\.nightlake-(?:tmp|old)-)(?P<pid>\d+)(?:-[0-9a-f]+)?(?:\.tmp)?"
    r"|\.(?P<oldpid>\d+)\.tmp)$"
)


def temp_path_for(target: Path, *, mark: str = TEMP_MARK) -> Path:
    """A hidden temp name beside ``target`` naming its owner process; no ``*.parquet`` or
    ``*.csv`` glob matches it, and two writers never share one."""
    return target.with_name(f".{target.name}{mark}{os.getpid()}-{secrets.token_hex(4)}.tmp")


def temp_owner(path: Path) -> tuple[str, str, int] | None:
    """``(target name, mark, owner pid)`` of a temp name of :func:`temp_path_for` (or of an
    earlier version's), else None."""
    match = _TEMP_NAME.match(path.name)
    if match is None:
        return None
    if match["oldpid"] is not None:
        return match["name"], TEMP_MARK, int(match["oldpid"])
    return match["name"], match["mark"], int(match["pid"])


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where /proc tells; else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(fields[fields.rindex(")") + 2 :].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def owner_alive(pid: int, written_at: float | None = None) -> bool:
    """Whether process ``pid`` may still be writing a temp last written at ``written_at``.

    A pid that no longer exists, a zombie, or a pid whose process started after the temp was
    written (the number was reused by another process) cannot be its owner.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2 :].startswith("Z"):
            return False
    except (OSError, ValueError):
        pass
    if written_at is not None:
        started = _process_start(pid)
        # /proc's boot time has whole seconds: allow for that before calling it a reuse
        if started is not None and started > written_at + 2.0:
            return False
    return True


def remove_path(path: Path) -> None:
    """Remove a file, symlink or directory tree; gone already is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temps beside ``target`` left by writers that are gone; return them.

    A moved-aside old version whose target is missing (its writer died between the two
    renames) is put back instead: the target then holds its old state again.
    """
    target = Path(target)
    return _sweep(target.parent if str(target.parent) else Path("."), target.name)


def sweep_directory(directory: Path) -> list[Path]:
    """:func:`sweep_temps` for every target in ``directory`` (not below it)."""
    return _sweep(directory, None)


def _sweep(directory: Path, name: str | None) -> list[Path]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    swept = []
    for entry in entries:
        owner = temp_owner(Path(entry.name))
        if owner is None or (name is not None and owner[0] != name):
            continue
        path = directory / entry.name
        try:
            written_at = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if owner_alive(owner[2], written_at):
            continue
        target = directory / owner[0]
        if owner[1] == ASIDE_MARK and not (target.exists() or target.is_symlink()):
            os.replace(path, target)
        else:
            remove_path(path)
        swept.append(path)
    return swept


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
    sweep_temps(target)
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


def replace_path(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` (a file or a directory) to ``target``. A file replaces a file in one
    rename; a directory (or a change of kind) needs the old target moved aside first, put
    back if the rename fails, and removed after."""
    replace_directly = tmp.is_file() and not (target.is_dir() and not target.is_symlink())
    if replace_directly or not (target.exists() or target.is_symlink()):
        os.replace(tmp, target)
        return
    old = temp_path_for(target, mark=ASIDE_MARK)
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        os.replace(old, target)
        raise
    remove_path(old)
