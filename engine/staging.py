"""Building a run folder beside its place, so that a reader sees a complete
run or none, and a kill at any point leaves nothing a command cannot fix.

A new run is built in a hidden ``.NAME.PID.partial`` beside ``out/NAME`` and
renamed into place when complete (``new_run_folder``). A complete run that
is written again (``embed --run`` on it) is rebuilt in such a folder too,
starting as a hard-linked copy, and swapped with the old one in a single
rename (``rebuilt_run_folder``): until then the old run is what readers see,
and a failure (a bad layer, a full disk, a kill) leaves it as it was.

Whatever a killed process leaves behind, hidden folders and ``.tmp`` files
named by its process id, is removed by the next writer (``sweep``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from layerscope.engine.errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<kind>partial|old|tmp)$")


def check_run_name(name: str) -> str:
    """A run name is one plain path component: letters, digits, ``_ . + -``."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise UserError(f"run name {name!r} is not allowed: use letters, digits and _ . + - "
                        "(one folder name, at most 128 characters, not starting with . or -)")
    return name


def check_out(out: Path) -> Path:
    """``--out``: a folder of runs, or a path where one can be made."""
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out} is a file, not a folder of runs")
    return Path(out)


def alive(pid: int) -> bool:
    """Whether process ``pid`` (on this host) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(folder: Path, depth: int = 2) -> None:
    """Remove what killed writers left in ``folder`` and its subfolders (to
    ``depth``): ``.tmp`` files and hidden build folders whose process is gone.
    A ``.NAME.PID.old`` (a swap cut between its two renames) goes back to
    ``NAME`` when that is missing."""
    if not folder.is_dir():
        return
    for entry in list(folder.iterdir()):
        found = _LEFTOVER.match(entry.name)
        if found and not alive(int(found["pid"])):
            if found["kind"] == "old" and not (folder / found["name"]).exists():
                os.rename(entry, folder / found["name"])
            elif entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        elif depth > 1 and entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."):
            sweep(entry, depth - 1)


@contextmanager
def new_run_folder(out: Path, name: str) -> Iterator[Path]:
    """A hidden folder beside ``out/name`` to build a new run in; renamed to
    ``out/name`` when the block ends, removed if it raises."""
    check_run_name(name)
    out = check_out(out)
    final = out / name
    if final.exists():
        raise UserError(f"run folder {final} already exists; pick another --name")
    sweep(out, depth=1)
    staging = out / f".{name}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if final.exists():
            raise UserError(f"run folder {final} appeared while this run was written; it is kept as it was")
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def rebuilt_run_folder(run_dir: Path) -> Iterator[Path]:
    """A hidden copy of the complete run ``run_dir`` to write it again in;
    swapped with ``run_dir`` when the block ends, removed if it raises.

    The copy hard-links every file: the writers replace files (a temporary
    name, then ``os.replace``) and never change one in place, so nothing
    written to the copy reaches the old run."""
    run_dir = Path(run_dir)
    sweep(run_dir.parent, depth=1)
    sweep(run_dir)
    staging = run_dir.with_name(f".{run_dir.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        # symlinks=True copies a link as a link: a planted one is never followed out of the run.
        shutil.copytree(run_dir, staging, copy_function=_link, symlinks=True)
        yield staging
        _swap(staging, run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)      # the old run after a swap, the copy after a failure


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:         # a file system without hard links
        shutil.copy2(source, target)


def _swap(new: Path, old: Path) -> None:
    """Put ``new`` at ``old``'s name and ``old`` at ``new``'s: in one atomic
    ``renameat2(RENAME_EXCHANGE)`` on Linux (Python's os module has no
    binding for it), else in two renames that ``sweep`` completes if a kill
    falls between them."""
    if _exchange(new, old):
        return
    aside = old.with_name(f".{old.name}.{os.getpid()}.old")
    os.rename(old, aside)
    os.rename(new, old)
    os.rename(aside, new)


def _exchange(a: Path, b: Path) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False        # the file system or kernel cannot exchange: two renames instead
    raise OSError(ctypes.get_errno(), f"cannot swap {a} and {b}: {os.strerror(ctypes.get_errno())}")
