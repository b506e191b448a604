"""``confsvc serve`` and the CLI as a user runs them: real processes, the embedded Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PW = "mật khẩu thử nghiệm"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(data: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFSVC_") and k != "REDIS_URL"}
    env.update({"CONFSVC_DATA_DIR": str(data), "CONFSVC_PORT": str(port), "CONFSVC_LOG_LEVEL": "WARNING"})
    env.update(extra)
    return env


def cli(data: Path, *args: str, stdin: str | None = None, port: int = 1, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "confsvc", *args], env=_env(data, port, **extra), input=stdin,
        capture_output=True, text=True, timeout=60,
    )


def redis_pids(data: Path) -> list[int]:
    """redis-server processes serving this data folder's socket."""
    sock = str((data / "redis" / "redis.sock").resolve())
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            conf = (data / "redis" / "redis.conf").resolve()
        except OSError:
            continue
        if "redis-server" in cmd and (sock in cmd or str(conf) in cmd):
            try:
                state = next(line for line in (p / "status").read_text().splitlines() if line.startswith("State:"))
            except (OSError, StopIteration):
                continue
            if "zombie" not in state:
                out.append(int(p.name))
    return out


class Serve:
    def __init__(self, data: Path, **extra: str) -> None:
        self.data = data
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "confsvc", "serve"], env=_env(data, self.port, **extra),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("serve exited: " + "".join(self.lines))
            self.lines.append(line)
            if "log in at" in line:
                if "password:" in line:
                    self.lines.append(self.proc.stdout.readline())  # "(shown once ...)"
                return
        raise AssertionError("serve did not start: " + "".join(self.lines))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            self.proc.stdout.close()


def _wait_gone(data: Path, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while redis_pids(data) and time.monotonic() < deadline:
        time.sleep(0.05)
    return redis_pids(data)


def test_first_start_serves_the_demo_directory_and_prints_the_admin_password(tmp_path):
    data = tmp_path / "data"
    s = Serve(data)
    try:
        assert "183 sites" in s.output
        assert "log in at" in s.output and "password:" in s.output
        status, body = s.get("/healthz")
        assert status == 200 and '"redis": "ok"' in body and '"durable": true' in body
        assert s.get("/login")[0] == 200
        assert len(redis_pids(data)) == 1
        assert (data / "redis" / "appendonly.aof").exists() or (data / "redis" / "appendonlydir").exists()
    finally:
        assert s.stop() == 0
    assert _wait_gone(data) == []
    # second start: no new admin password, same data
    s2 = Serve(data)
    try:
        assert "password:" not in s2.output
    finally:
        s2.stop()
    assert _wait_gone(data) == []


def test_account_persists_across_restarts_of_serve_and_redis(tmp_path):
    data = tmp_path / "data"
    s = Serve(data, CONFSVC_ADMIN_PASSWORD=PW)
    try:
        # the CLI uses the running serve's Redis
        r = cli(data, "users", "add", "tochuc", "--role", "organizer", "--password-stdin", stdin="một mật khẩu dài\n")
        assert r.returncode == 0, r.stderr
        redis_pid = redis_pids(data)[0]
    finally:
        s.stop()
    assert _wait_gone(data) == []
    # serve is down: the CLI starts the embedded Redis itself, and stops it again
    listed = cli(data, "users", "list")
    assert listed.returncode == 0, listed.stderr
    assert "tochuc\torganizer" in listed.stdout and "admin\tadmin" in listed.stdout
    assert _wait_gone(data) == []
    s2 = Serve(data)
    try:
        assert redis_pids(data)[0] != redis_pid  # a new redis-server read the AOF
        assert "tochuc\torganizer" in cli(data, "users", "list").stdout
    finally:
        s2.stop()
    assert _wait_gone(data) == []


def test_killed_serve_leaves_no_redis_and_restarts(tmp_path):
    data = tmp_path / "data"
    s = Serve(data, CONFSVC_ADMIN_PASSWORD=PW)
    assert len(redis_pids(data)) == 1
    s.stop(signal.SIGKILL)
    assert _wait_gone(data) == []  # PR_SET_PDEATHSIG: Redis dies with its parent
    s2 = Serve(data)
    try:
        assert s2.get("/healthz")[0] == 200
    finally:
        s2.stop()


def test_a_stale_redis_on_the_socket_is_replaced(tmp_path):
    from confsvc.store.embedded import find_redis_server

    data = tmp_path / "data"
    (data / "redis").mkdir(parents=True)
    sock = data / "redis" / "redis.sock"
    stale = subprocess.Popen([find_redis_server(), "--port", "0", "--unixsocket", str(sock), "--save", ""],
                             stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        s = Serve(data, CONFSVC_ADMIN_PASSWORD=PW)
        try:
            assert stale.wait(10) is not None  # the stale server was shut down
            assert s.get("/healthz")[0] == 200
        finally:
            s.stop()
    finally:
        if stale.poll() is None:
            stale.kill()


def test_second_serve_on_the_same_data_folder_is_refused(tmp_path):
    data = tmp_path / "data"
    s = Serve(data, CONFSVC_ADMIN_PASSWORD=PW)
    try:
        r = cli(data, "serve", port=_free_port())
        assert r.returncode == 2
        assert "in use by another confsvc process" in r.stderr
    finally:
        s.stop()


def test_bad_settings_are_one_line_and_exit_2(tmp_path):
    for env, text in ((("CONFSVC_PORT", "abc"), "CONFSVC_PORT: 'abc' is not a whole number"),
                      (("CONFSVC_TIMEZONE", "Asia/Nowhere"), "unknown time zone")):
        r = subprocess.run([sys.executable, "-m", "confsvc", "serve"], env={**_env(tmp_path, 1), env[0]: env[1]},
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2
        assert text in r.stderr and r.stderr.strip().count("\n") == 0


def test_unreachable_redis_url_is_refused_clearly(tmp_path):
    r = cli(tmp_path, "serve", port=_free_port(), REDIS_URL="redis://127.0.0.1:1/0")
    assert r.returncode == 3
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in r.stderr


def test_sites_import_is_all_or_nothing(tmp_path):
    data = tmp_path / "data"
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name,kind,parent\nP,Tỉnh X,province,\nD,,district,P\nC,Xã C,commune,Q\n", encoding="utf-8")
    first = cli(data, "sites", "export")  # loads nothing: no serve has run, the store is empty
    assert first.returncode == 0
    s = Serve(data, CONFSVC_ADMIN_PASSWORD=PW)
    s.stop()
    r = cli(data, "sites", "import", str(bad))
    assert r.returncode == 2
    assert "line 3: missing name" in r.stderr and "line 4: unknown parent 'Q'" in r.stderr
    assert "nothing was imported" in r.stderr
    export = cli(data, "sites", "export").stdout
    assert export.count("\n") == 184 and "YB-MCC" in export  # unchanged
    good = tmp_path / "good.csv"
    good.write_text("code,name,kind,parent\nP,Tỉnh X,province,\nD,Huyện D,district,P\nC,Xã C,commune,D\n", encoding="utf-8")
    ok = cli(data, "sites", "import", str(good))
    assert ok.returncode == 0, ok.stderr
    assert cli(data, "sites", "export").stdout.splitlines()[1:] == ["P,Tỉnh X,province,", "D,Huyện D,district,P", "C,Xã C,commune,D"]
    link = cli(data, "sites", "link", "C")
    assert link.returncode == 0 and "/s/" in link.stdout
    missing = cli(data, "sites", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_tokens_create_prints_a_working_token(tmp_path):
    data = tmp_path / "data"
    s = Serve(data, CONFSVC_ADMIN_PASSWORD=PW)
    try:
        r = cli(data, "tokens", "create", "admin")
        assert r.returncode == 0
        token = r.stdout.strip()
        req = urllib.request.Request(f"http://127.0.0.1:{s.port}/api/sites", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert b'"count": 183' in resp.read()
        assert cli(data, "tokens", "create", "nobody").returncode == 2
    finally:
        s.stop()


def test_cli_bad_input_exits_2(tmp_path):
    r = cli(tmp_path, "users", "add", "x", "--role", "emperor", "--password-stdin", stdin="long enough pw\n")
    assert r.returncode == 2
    r = cli(tmp_path, "users", "add", "Bad Name", "--role", "chair", "--password-stdin", stdin="long enough pw\n")
    assert r.returncode == 2 and "username" in r.stderr
    r = cli(tmp_path, "users", "add", "ok", "--role", "chair", "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and "at least 10" in r.stderr
    assert cli(tmp_path, "no-such-command").returncode == 2
