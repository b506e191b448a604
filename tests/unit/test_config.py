from pathlib import Path

import pytest

from confsvc.config import ConfigError, Settings


def test_defaults():
    s = Settings.from_env({})
    assert (s.host, s.port, s.timezone, s.redis_url, s.lobby_minutes) == ("127.0.0.1", 8080, "Asia/Ho_Chi_Minh", None, 60)
    assert s.base_url == "http://127.0.0.1:8080"
    assert str(s.zone) == "Asia/Ho_Chi_Minh"


def test_environment_values_are_converted():
    s = Settings.from_env(
        {
            "CONFSVC_PORT": "9000",
            "CONFSVC_DATA_DIR": "/tmp/x",
            "REDIS_URL": "redis://127.0.0.1:6379/2",
            "CONFSVC_ICE_ADDRESSES": "127.0.0.1, 10.1.2.3",
            "CONFSVC_TURN_URLS": "turn:turn.example.vn:3478?transport=udp",
            "CONFSVC_TURN_SECRET": "s3cret",
            "CONFSVC_COOKIE_SECURE": "yes",
            "CONFSVC_PUBLIC_URL": "https://giaoban.yenbai.gov.vn",
        }
    )
    assert s.port == 9000 and s.data_dir == Path("/tmp/x")
    assert s.ice_addresses == ("127.0.0.1", "10.1.2.3")
    assert s.turn_urls == ("turn:turn.example.vn:3478?transport=udp",)
    assert s.cookie_secure is True
    assert s.base_url == "https://giaoban.yenbai.gov.vn"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONFSVC_PORT": "abc"}, "CONFSVC_PORT: 'abc' is not a whole number"),
        ({"CONFSVC_PORT": "70000"}, "CONFSVC_PORT: 70000 is not a port"),
        ({"CONFSVC_TIMEZONE": "Mars/Olympus"}, "CONFSVC_TIMEZONE: unknown time zone 'Mars/Olympus'"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"CONFSVC_ICE_ADDRESSES": "not-an-ip"}, "CONFSVC_ICE_ADDRESSES: 'not-an-ip' is not an IP address"),
        ({"CONFSVC_TURN_URLS": "turn:x:3478"}, "CONFSVC_TURN_SECRET: required"),
        ({"CONFSVC_STUN_URLS": "http://stun"}, "must start with stun:"),
        ({"CONFSVC_COOKIE_SECURE": "maybe"}, "CONFSVC_COOKIE_SECURE"),
        ({"CONFSVC_LANGUAGE": "fr"}, "CONFSVC_LANGUAGE"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_toml_file_and_env_precedence(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[confsvc]\nport = 8181\nice_addresses = ["127.0.0.1"]\ntimezone = "Asia/Bangkok"\n')
    s = Settings.from_env({"CONFSVC_CONFIG": str(f), "CONFSVC_TIMEZONE": "Asia/Ho_Chi_Minh"})
    assert s.port == 8181
    assert s.timezone == "Asia/Ho_Chi_Minh"


def test_toml_unknown_key_and_missing_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("colour = 'red'\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        Settings.from_env({"CONFSVC_CONFIG": str(f)})
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_env({"CONFSVC_CONFIG": str(tmp_path / "nope.toml")})
