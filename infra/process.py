"""Start and stop long-running local servers as detached processes tracked by pid files.

Each server runs in its own session (process group) with its output in a log file, so it
outlives the command that started it and can be stopped, with every child, by one signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ManagedProcess:
    """A server process known by the pid file it leaves behind."""

    name: str
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """The recorded pid if that process is still alive, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def spawn(self, argv: list[str], *, env: dict[str, str] | None = None) -> int:
        """Start ``argv`` in a new session with output to the log file; returns its pid.

        posix_spawn, not Popen: the server outlives this command, and an abandoned Popen
        object would warn that its child is still running.
        """
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv}\n".encode())
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        _keep_descriptors_home()
        try:
            pid = os.posix_spawnp(
                argv[0],
                argv,
                {**os.environ, **(env or {})},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, null_fd, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ],
                setsid=True,
            )
        finally:
            os.close(log_fd)
            os.close(null_fd)
        self.pid_file.write_text(f"{pid}\n")
        return pid

    def exited(self) -> bool:
        """True when the process we spawned is gone (it crashed or was stopped)."""
        return self.pid() is None

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM the process group, wait, then SIGKILL. Returns True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _group_alive(pid):
                time.sleep(0.05)
        _alive(pid)  # reaps it if it is this process's own child, so no zombie lingers
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this very process still answers kill(0); reap it if it is ours.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not _is_zombie(pid)
    return waited == 0


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Members may all be zombies awaiting their parent: treat that as gone.
    return any(
        not _is_zombie(int(entry.name))
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _pgid_of(int(entry.name)) == pgid
    )


def _pgid_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _keep_descriptors_home() -> None:
    """Mark every descriptor above stderr close-on-exec before a server is spawned.

    posix_spawn passes on every inheritable descriptor, and a command started by another
    (``flock LOCK make test``) holds some: a server would keep them open for its whole life, a
    lock file's among them, and nobody could take that lock again until the server stopped.
    Python opens its own descriptors close-on-exec; this covers the ones it was given.
    """
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []:
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                os.set_inheritable(fd, False)
