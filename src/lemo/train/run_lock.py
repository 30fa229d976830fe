"""The lock a run holds on its --output-dir for its whole life, so two runs never write into one folder.

Without it, two runs started at once (a scheduler retrying a job whose first attempt is still alive) both passed
the "already holds a run" check, and one deleted the other's in-progress checkpoint as "left by an interrupted
save". The lock is `OUTPUT_DIR/lemo.lock`, a JSON record of the holder (PID, host, start time) that the holder
also keeps `flock`ed: the kernel drops that when the process dies however it dies, so a lock left by a killed run
is told apart from a live one even when its PID has been reused. The record names the holder in the refusal, and
covers file systems where `flock` does nothing across machines: a lock recorded by another host is never taken
over, since its process cannot be checked from here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: the record alone decides
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = "lemo.lock"


class RunLockedError(ValueError):
    """The output folder is locked by another run (a ValueError, so the CLI prints it as a usage error)."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since: str  # local time, ISO 8601 to the second

    @staticmethod
    def me() -> Holder:
        return Holder(os.getpid(), socket.gethostname(), datetime.now().isoformat(timespec="seconds"))

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host}, since {self.since.replace('T', ' ')}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user's counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only the existence and permission checks
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # Windows raises plain OSError for a missing process
        return False
    return True


def read_holder(lock_file: Path) -> Holder | None:
    """The holder recorded in a lock file; None when it is absent, empty or not a lemo lock record."""
    try:
        data = json.loads(lock_file.read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def held_by_another(run_dir: Path) -> Holder | None:
    """The live holder of `run_dir`'s lock when that is not this process; None when free or ours."""
    holder = read_holder(Path(run_dir) / LOCK_NAME)
    if holder is None or (holder.pid == os.getpid() and holder.host == socket.gethostname()):
        return None
    if holder.host == socket.gethostname() and not pid_alive(holder.pid):
        return None
    return holder


class RunLock:
    """`OUTPUT_DIR/lemo.lock` held from `acquire()` to `release()` (or the process's death)."""

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise RunLockedError naming the live holder and what to do. The folder must exist."""
        for _ in range(20):  # retried only when the holder removed the file between our open and our flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not self._flock(fd):
                os.close(fd)
                raise self._refusal(read_holder(self.path), "it is still running")
            if not self._same_file(fd):
                os.close(fd)
                continue
            try:
                self._take(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return
        raise RunLockedError(
            f"could not lock {self.path}: other runs keep creating and removing it; try again."
        )

    def release(self) -> None:
        """Remove the lock file, then drop the flock (in that order, so no one locks a file about to vanish)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self._same_file(self._fd):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def _take(self, fd: int) -> None:
        previous = read_holder(self.path)
        me = Holder.me()
        if previous is not None and previous.host != me.host:
            raise self._refusal(
                previous, f"lemo cannot check a process on host {previous.host} from {me.host}"
            )
        if previous is not None and previous.pid != me.pid and pid_alive(previous.pid) and fcntl is None:
            raise self._refusal(previous, "it is still running")
        if previous is not None:
            log.warning(
                "taking over the lock on %s left by %s: that process ended without releasing it, so its run "
                "stopped unfinished (--resume continues from its last checkpoint).",
                self.path.parent, previous.describe(),
            )  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(me)).encode() + b"\n", 0)
        os.fsync(fd)

    @staticmethod
    def _flock(fd: int) -> bool:
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _same_file(self, fd: int) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def _refusal(self, holder: Holder | None, why: str) -> RunLockedError:
        who = holder.describe() if holder is not None else "another process (its PID is not recorded yet)"
        return RunLockedError(
            f"--output-dir {self.path.parent} is in use by another lemo run: {who}; {why}. Wait for it to "
            "finish (or stop it), or choose another --output-dir. If that run is certainly over, delete "
            f"{self.path} and start again (add --resume to continue from its last checkpoint)."
        )
