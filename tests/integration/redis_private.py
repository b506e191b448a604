"""A private redis-server (unix socket, AOF with appendfsync always) that a test may kill -9 and restart."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis as syncredis

from confsvc.store.embedded import find_redis_server


class PrivateRedis:
    def __init__(self, appendfsync: str = "always") -> None:
        # a short folder: unix socket paths are limited to about 100 bytes
        self.dir = Path(tempfile.mkdtemp(prefix="att-redis-"))
        self.sock = self.dir / "r.sock"
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                find_redis_server(),
                "--port", "0",
                "--unixsocket", str(self.sock),
                "--dir", str(self.dir),
                "--appendonly", "yes",
                "--appendfsync", self.appendfsync,
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if syncredis.Redis(unix_socket_path=str(self.sock)).ping():
                    return
            except (syncredis.ConnectionError, syncredis.BusyLoadingError, FileNotFoundError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the private redis-server did not start")
            time.sleep(0.02)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
