"""Small file-system helpers: atomic outputs, hashing, the user cache folder."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ExportError

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

__all__ = ["NO_SPACE_ERRNOS", "OUTPUT_MARKER", "atomic_dir", "check_output_folder", "written_by_edgelm", "atomic_write_text", "write_json", "sha256_file", "cache_dir"]


def cache_dir() -> Path:
    """The user's cache folder for edgelm (``$EDGELM_CACHE`` or XDG cache)."""
    env = os.environ.get("EDGELM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgelm"


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


#: A folder edgelm made holds one of these: a model folder its manifest, any other output
#: (a report folder) this marker. ``--force`` replaces only such a folder.
OUTPUT_MARKER = ".edgelm-output"
_OWNER_FILES = ("edgelm.json", OUTPUT_MARKER)

_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100


def written_by_edgelm(folder: Path) -> bool:
    """True if ``folder`` is a real folder (not a link) that holds edgelm's manifest or marker."""
    folder = Path(folder)
    return folder.is_dir() and not folder.is_symlink() and any((folder / f).is_file() for f in _OWNER_FILES)


def check_output_folder(target: Path, force: bool) -> None:
    """Refuse ``target`` unless it does not exist, or ``force`` and edgelm wrote it."""
    target = Path(target)
    if not (target.exists() or target.is_symlink()):
        return
    if not force:
        raise ExportError(f"output folder {target} already exists (pass --force to replace it)")
    if not written_by_edgelm(target):
        raise ExportError(f"refusing to replace {target}: edgelm did not write it (it holds no edgelm.json or "
                          f"{OUTPUT_MARKER}); remove it yourself or choose another output folder")


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux's renameat2 (glibc 2.28+) through ctypes; False where the system or the file
    system has no such call (then the caller falls back), OSError for any other failure."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _commit(tmp: Path, target: Path, force: bool) -> None:
    """Move the finished ``tmp`` to ``target``. The checks happen at the rename itself, so a
    folder that appeared at ``target`` meanwhile is never silently replaced: renameat2's
    RENAME_NOREPLACE refuses it, and with ``force`` RENAME_EXCHANGE swaps the two folders in
    one step (there is never a moment with no folder at ``target``), after which the
    folder swapped out is checked and swapped back if edgelm did not write it."""
    if not (target.exists() or target.is_symlink()):
        try:
            if _renameat2(tmp, target, _RENAME_NOREPLACE):
                return
        except FileExistsError:
            pass  # appeared meanwhile: decide below
        else:
            with _FallbackLock(target):
                if not (target.exists() or target.is_symlink()):
                    os.rename(tmp, target)
                    return
    if not force:
        raise ExportError(f"{target} appeared while this job ran; it was left alone and nothing was written")
    check_output_folder(target, force)
    if _renameat2(tmp, target, _RENAME_EXCHANGE):
        if not written_by_edgelm(tmp):  # replaced by someone else between the check and the swap
            _renameat2(tmp, target, _RENAME_EXCHANGE)
            raise ExportError(f"refusing to replace {target}: it changed while this job ran")
        shutil.rmtree(tmp, ignore_errors=True)  # the old folder, now under the temporary name
        return
    with _FallbackLock(target):
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)


class _FallbackLock:
    """Where renameat2 is missing: an flock beside the target, so two edgelm jobs never
    interleave their check and rename (it cannot stop other programs; renameat2 does).
    The lock file is removed on release, while still held; a job that locked a file
    removed meanwhile sees that its inode is no longer the path's and locks anew."""

    def __init__(self, target: Path) -> None:
        self.path = target.with_name(f".{target.name}.lock")

    def __enter__(self) -> None:
        import fcntl

        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                self.fd = fd
                return
            os.close(fd)  # the holder before us removed it: lock the path's current file

    def __exit__(self, *exc: object) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)


@contextlib.contextmanager
def atomic_dir(target: Path, *, force: bool = False, marker: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; move it to ``target`` on success.

    On any exception (including KeyboardInterrupt) the temporary folder is removed, so
    an interrupted or failed job never leaves a half-written ``target``. An existing
    ``target`` is refused unless ``force``, and even then unless edgelm wrote it (a model
    folder's manifest or ``OUTPUT_MARKER``, which ``marker=True`` writes into the new
    folder); it is replaced only once the new folder is complete, at the rename.
    """
    target = Path(target).absolute()
    check_output_folder(target, force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create {target.parent}: {e.strerror}") from e
    _remove_stale_partials(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    try:
        if marker:
            (tmp / OUTPUT_MARKER).write_text("written by edgelm; edgelm --force may replace this folder\n")
        yield tmp
        _commit(tmp, target, force)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in NO_SPACE_ERRNOS:
            raise ExportError(f"no space left on the device while writing {target}") from e
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(target: Path) -> None:
    """Remove ``.NAME.partial-PID-*`` and ``.NAME.old-PID`` folders left by a killed process
    (SIGKILL, power loss): only edgelm makes names of that shape, and only for a dead PID."""
    for kind in ("partial", "old"):
        prefix = f".{target.name}.{kind}-"
        for p in target.parent.glob(prefix + "*"):
            pid_text = p.name[len(prefix):].split("-", 1)[0]
            if p.is_dir() and not p.is_symlink() and pid_text.isdigit() and not _pid_alive(int(pid_text)):
                if kind == "old" and not (target.exists() or target.is_symlink()) and written_by_edgelm(p):
                    os.rename(p, target)  # killed between the fallback's two renames: put it back
                else:
                    shutil.rmtree(p, ignore_errors=True)
