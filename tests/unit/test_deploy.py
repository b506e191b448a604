"""No Docker engine runs here: check the compose file's wiring by reading it."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_is_there_and_its_config_files_exist():
    services = _compose()["services"]
    assert set(services) == {"redis", "coturn", "confsvc", "nginx"}
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                path = ROOT / src
                if src.endswith("certs"):
                    continue  # the operator's certificate, not in the repository
                assert path.exists(), f"{name}: {src} is missing"
    assert (ROOT / services["confsvc"]["build"] / "Dockerfile").exists()


def test_redis_is_durable():
    conf = (ROOT / "deploy/redis.conf").read_text()
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^appendfsync always$", conf, re.M)
    assert "redis-data:/data" in _compose()["services"]["redis"]["volumes"]


def test_turn_secret_and_redis_url_agree_between_services():
    services = _compose()["services"]
    env = services["confsvc"]["environment"]
    coturn_cmd = " ".join(services["coturn"]["command"])
    secret_var = re.search(r"--static-auth-secret=\$\{(\w+)", coturn_cmd).group(1)
    assert env["CONFSVC_TURN_SECRET"] == "${" + secret_var + "}"
    coturn_conf = (ROOT / "deploy/coturn.conf").read_text()
    assert re.search(r"^use-auth-secret$", coturn_conf, re.M)
    assert re.search(r"^realm=", coturn_conf, re.M)
    # confsvc reaches Redis where the redis service publishes it
    port = services["redis"]["ports"][0]  # "127.0.0.1:6379:6379"
    host, hport, _ = port.split(":")
    assert env["REDIS_URL"].startswith(f"redis://{host}:{hport}/")
    assert re.search(r"^port 6379$", (ROOT / "deploy/redis.conf").read_text(), re.M)
    assert all(u.startswith("turn:") for u in env["CONFSVC_TURN_URLS"].split(","))


def test_nginx_terminates_tls_and_passes_websocket_upgrades():
    conf = (ROOT / "deploy/nginx.conf").read_text()
    assert "listen 443 ssl" in conf
    ws = conf[conf.index("location /ws"):]
    ws = ws[: ws.index("}")]
    assert "proxy_set_header Upgrade $http_upgrade" in ws
    assert "proxy_set_header Connection $connection_upgrade" in ws
    env = _compose()["services"]["confsvc"]["environment"]
    assert f"server {env['CONFSVC_HOST']}:{env['CONFSVC_PORT']}" in conf


def test_compose_environment_parses_as_settings():
    from confsvc.config import Settings

    env = {k: str(v) for k, v in _compose()["services"]["confsvc"]["environment"].items()}
    filled = {k: re.sub(r"\$\{(\w+)(:[^}]*)?\}", lambda m: {"PUBLIC_HOST": "giaoban.example.vn", "PUBLIC_IP": "203.0.113.10"}.get(m.group(1), "x" * 24), v) for k, v in env.items()}
    s = Settings.from_env(filled)
    assert s.turn_secret and s.turn_urls and s.redis_url and s.cookie_secure
