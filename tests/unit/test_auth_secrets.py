import base64
import hashlib
import hmac

import pytest

from confsvc.auth import passwords, tokens
from confsvc.auth.turn import ice_servers, turn_credentials


def test_password_hash_verifies_only_the_right_password():
    h = passwords.hash_password("đúng mật khẩu 123")
    assert h.startswith("$argon2id$")
    assert passwords.verify_password(h, "đúng mật khẩu 123")
    assert not passwords.verify_password(h, "sai mật khẩu 123")
    assert not passwords.verify_password("garbage", "x")
    assert passwords.hash_password("đúng mật khẩu 123") != h  # salted


def test_password_strength():
    with pytest.raises(passwords.WeakPassword):
        passwords.check_strength("short")
    with pytest.raises(passwords.WeakPassword):
        passwords.check_strength(" padded password ")
    passwords.check_strength("long enough pw")


def test_tokens_are_random_and_stored_as_digest():
    a, b = tokens.new_token(), tokens.new_token()
    assert a != b and len(a) >= 40
    assert tokens.digest(a) == hashlib.sha256(a.encode()).hexdigest()
    assert tokens.derive("k", "site", "X", "n1") == tokens.derive("k", "site", "X", "n1")
    assert tokens.derive("k", "site", "X", "n1") != tokens.derive("k", "site", "X", "n2")
    assert tokens.derive("k", "site", "X", "n1") != tokens.derive("k2", "site", "X", "n1")


def test_turn_credentials_follow_the_rest_api_scheme():
    user, cred = turn_credentials("secret", "YB-MCC", 3600, now=1_000_000)
    assert user == "1003600:YB-MCC"
    expected = base64.b64encode(hmac.new(b"secret", user.encode(), hashlib.sha1).digest()).decode()
    assert cred == expected
    servers = ice_servers(("stun:s:3478",), ("turn:t:3478",), "secret", 600, "YB")
    assert servers[0] == {"urls": ["stun:s:3478"]}
    assert servers[1]["urls"] == ["turn:t:3478"] and ":YB" in servers[1]["username"]
    assert ice_servers((), ("turn:t:3478",), None, 600, "YB") == []
