"""The aiortc hook points: present on the pinned aiortc, and a moved one is reported loudly."""

import ast
import pathlib

import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport

from confsvc.media import hooks

MEDIA = pathlib.Path(__file__).resolve().parents[3] / "confsvc" / "media"


def test_every_hook_point_is_in_place():
    assert hooks.problems() == []
    hooks.check()


def test_a_moved_internal_fails_loudly(monkeypatch):
    async def _handle_rtp_data(self, data, arrival_time, extra):  # a changed signature
        return None

    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", _handle_rtp_data)
    found = hooks.problems()
    assert any("_handle_rtp_data" in p for p in found)
    with pytest.raises(hooks.HookError, match="_handle_rtp_data"):
        hooks.check()


def test_a_removed_internal_fails_loudly(monkeypatch):
    monkeypatch.delattr(RTCDtlsTransport, "_handle_rtcp_data")
    assert any("_handle_rtcp_data" in p for p in hooks.problems())


def test_another_aiortc_version_fails_loudly(monkeypatch):
    import aiortc

    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    assert any("pinned" in p for p in hooks.problems())


def test_media_imports_only_aiortc_and_config():
    allowed_confsvc = {"confsvc.config", "confsvc.media"}
    for path in MEDIA.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("confsvc"):
                    assert any(name == a or name.startswith(a + ".") for a in allowed_confsvc), (path.name, name)


def test_only_hooks_touches_aiortc_privates():
    """Reaching into aiortc internals happens in hooks.py only (forwarder/room use its helpers)."""
    for path in MEDIA.glob("*.py"):
        if path.name == "hooks.py":
            continue
        text = path.read_text()
        for needle in ("_RTCPeerConnection__", "._connection", "._nominated", "._tx_srtp", "._handle_rtp_data",
                       "._transport", "_binding", "._ssrc"):
            assert needle not in text, (path.name, needle)


def test_a_changed_libsrtp_protect_fails_loudly(monkeypatch):
    """The C fan-out calls pylibsrtp's srtp_protect through a pointer: a libsrtp whose
    srtp_protect takes other arguments (libsrtp 3 does) must be caught before a packet is sent."""
    monkeypatch.setattr(hooks, "SRTP_PROTECT_TYPE", "srtp_err_status_t(*)(struct srtp_ctx_t_ *, "
                        "const uint8_t *, size_t, uint8_t *, size_t *, size_t)")
    assert any("srtp_protect" in p for p in hooks.problems())


def test_a_larger_srtp_trailer_than_the_c_buffer_fails_loudly(monkeypatch):
    import pylibsrtp

    if hooks.FANOUT is None:
        pytest.fail("the C fan-out is not built")
    monkeypatch.setattr(pylibsrtp, "SRTP_MAX_TRAILER_LEN", hooks.FANOUT.TRAILER_ROOM + 1)
    assert any("trailer" in p for p in hooks.problems())


class _Conn:  # the parts of an aioice Connection the direct path touches
    def __init__(self):
        import asyncio

        self._queue = asyncio.Queue()
        self.queued = []

    def data_received(self, data, component):
        self.queued.append(data)
        self._queue.put_nowait((data, component))


class _Dtls:
    def __init__(self, rx):
        self._rx_srtp = rx
        self.transport = type("Ice", (), {})()
        self.transport._connection = _Conn()


def _srtp_pair():
    import os

    from pylibsrtp import Policy, Session

    key = os.urandom(30)
    tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    rx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND))
    return tx, rx


def test_direct_path_hands_srtp_media_over_and_queues_the_rest():
    import struct

    tx, rx = _srtp_pair()
    dtls = _Dtls(None)
    got = []

    async def never(*a):
        raise AssertionError("aiortc's path is not used here")

    rejected = []
    hooks.tap_transport(dtls, never, never, direct_rtp=lambda data, ms: got.append((data, ms)),
                        on_rejected=lambda: rejected.append(1))
    conn = dtls.transport._connection
    rtp = struct.pack("!BBHII", 0x80, 96, 1, 3000, 0x1234) + b"media"
    sealed = tx.protect(rtp)
    conn.data_received(sealed, 1)  # before DTLS is done: no SRTP context yet, aiortc's queue
    assert got == [] and conn.queued == [sealed]
    conn._queue.get_nowait()
    dtls._rx_srtp = rx
    rtp2 = struct.pack("!BBHII", 0x80, 96, 2, 3000, 0x1234) + b"media"
    conn.data_received(tx.protect(rtp2), 1)
    assert [g[0] for g in got] == [rtp2] and abs(got[0][1] / 1000 - 2208988800 - __import__("time").time()) < 5
    rtcp = tx.protect_rtcp(struct.pack("!BBHI", 0x80, 200, 6, 0x1234) + b"\0" * 20)
    dtls_record = bytes((22, 254, 253)) + b"\0" * 20
    conn.data_received(rtcp, 1)
    conn.data_received(dtls_record, 1)
    assert conn.queued[1:] == [rtcp, dtls_record] and len(got) == 1
    rtp3 = tx.protect(struct.pack("!BBHII", 0x80, 96, 3, 3000, 0x1234) + b"media")
    conn.data_received(rtp3, 1)  # behind queued datagrams: stays in order, on aiortc's path
    assert conn.queued[-1] == rtp3 and len(got) == 1
    while not conn._queue.empty():
        conn._queue.get_nowait()
    conn.data_received(b"\x80\x60" + b"\0" * 30, 1)  # does not unprotect: dropped, as aiortc does, and counted
    assert rejected == [1] and len(got) == 1
    conn.data_received(tx.protect(struct.pack("!BBHII", 0x80, 96, 4, 3000, 0x1234) + b"media"), 1)
    assert len(got) == 2 and len(conn.queued) == 4 and rejected == [1]
