"""Who is writing a run folder right now: the writer's lock.

While ``train`` or ``embed`` writes a run folder in place, the folder holds
``writing.lock``, a small JSON file naming the writer: its process id, host,
the process's start time and when it took the lock. It is written whole (a
temporary file, then a hard link that fails if a lock is already there) and
removed when the writer ends, however it ends short of a kill. Readers use it
to tell a run in progress from an interrupted one:

- no lock, a lock whose process is gone (or whose pid now belongs to another
  process), or a lock that cannot be read: nobody writes the folder;
- a lock of a live process on this host: in progress;
- a lock from another host: in progress as far as this host can tell (its
  process cannot be checked from here); deleting the lock file overrides it.

A run folder may come from someone else, so the lock is untrusted input: it
is read only up to ``MAX_LOCK_BYTES``, must be a JSON object of the expected
types, and its text fields must be plain names and times before any of it
is shown.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from layerscope.engine.errors import UserError
from layerscope.engine.staging import alive

LOCK_FILE = "writing.lock"
MAX_LOCK_BYTES = 4096
COMMANDS = ("train", "embed")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{4}$")


@dataclass(frozen=True)
class Writer:
    """The process a lock names."""

    pid: int
    host: str
    started: str                # when it took the lock, local time with its UTC offset
    command: str                # train or embed
    process_start: int | None   # the process's start in clock ticks after boot (/proc/PID/stat), to spot a reused pid

    @property
    def here(self) -> bool:
        return self.host == this_host()

    @property
    def running(self) -> bool:
        """Whether the writer still runs; a writer on another host counts as running (it cannot be checked)."""
        if not self.here:
            return True
        if not alive(self.pid):
            return False
        now = process_start(self.pid)
        return self.process_start is None or now is None or now == self.process_start

    def describe(self) -> str:
        """``in progress (pid 123 on host h since 2026-01-01T10:00:00+0000, layerscope train)``"""
        return f"in progress (pid {self.pid} on host {self.host} since {self.started}, layerscope {self.command})"


def this_host() -> str:
    return socket.gethostname()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (field 22 of
    ``/proc/PID/stat``); ``None`` where there is no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def read_lock(run_dir: Path) -> Writer | None:
    """The writer ``run_dir``'s lock names; ``None`` when there is no lock or
    it is malformed (too large, not JSON, wrong types, odd text)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_LOCK_BYTES:
            return None
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_LOCK_BYTES + 1))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid, start = data.get("pid"), data.get("process_start")
    host, started, command = data.get("host"), data.get("started"), data.get("command")
    if (type(pid) is not int or not 0 < pid < 2**31 or not (start is None or type(start) is int)
            or not isinstance(host, str) or not _HOST.match(host)
            or not isinstance(started, str) or not _TIME.match(started) or command not in COMMANDS):
        return None
    return Writer(pid, host, started, command, start)


def live_writer(run_dir: Path) -> Writer | None:
    """The writer holding ``run_dir`` now: a lock of a running process, or
    one from another host; ``None`` when nobody holds it."""
    writer = read_lock(run_dir)
    return writer if writer is not None and writer.running else None


def in_progress(run_dir: Path, writer: Writer) -> str:
    """What a reader says of a folder ``writer`` holds, with how to override a lock it cannot check."""
    text = f"{run_dir}: {writer.describe()}"
    if not writer.here:
        text += (f"; a process on another host cannot be checked from {this_host()}: if it no longer runs, "
                 f"delete {Path(run_dir) / LOCK_FILE}")
    return text


def lock_stamp(run_dir: Path) -> tuple:
    """Changes when a lock is taken, released, or its writer ends (for caches of what readers say)."""
    writer = read_lock(run_dir)
    return () if writer is None else (writer.pid, writer.host, writer.started, writer.running)


def _mine(command: str) -> Writer:
    return Writer(os.getpid(), this_host(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), command,
                  process_start(os.getpid()))


@contextmanager
def hold_lock(run_dir: Path, command: str) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block (``command``: train or embed).

    Raises ``UserError`` when another live writer holds it. A stale lock (its
    writer is gone, or it cannot be read) is taken over. Held already by this
    process (``train`` embedding its own run), the block runs under that lock.
    """
    run_dir = Path(run_dir)
    me = _mine(command)
    held = read_lock(run_dir)
    if held is not None and (held.host, held.pid, held.process_start) == (me.host, me.pid, me.process_start):
        yield
        return
    path, tmp = run_dir / LOCK_FILE, run_dir / f".{LOCK_FILE}.{me.pid}.tmp"
    tmp.write_text(json.dumps(asdict(me)) + "\n")
    try:
        try:
            os.link(tmp, path)      # fails if a lock is there: no two writers both take a free folder
        except OSError:             # a lock is there (or the file system has no hard links)
            holder = live_writer(run_dir)
            if holder is not None:
                raise UserError(f"{in_progress(run_dir, holder)}; wait for it to finish") from None
            os.replace(tmp, path)   # a stale lock: its writer is gone
            taken = read_lock(run_dir)
            if taken != me:         # another writer took the stale lock over at the same moment
                raise UserError(f"{in_progress(run_dir, taken) if taken else run_dir}; wait for it to finish") \
                    from None
    finally:
        tmp.unlink(missing_ok=True)
    try:
        yield
    finally:
        if read_lock(run_dir) == me:
            path.unlink(missing_ok=True)
