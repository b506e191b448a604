"""The compiled fan-out (confsvc/media/_fanout.c): built, used, byte for byte the Python path's
output, and careful with the sockets it holds."""

import os
import random
import socket

import pytest
from media_helpers import UdpCapture, decode
from test_media_forwarder import Rig, assert_continuous

from confsvc.media import forwarder, hooks
from confsvc.media.counters import Counters
from confsvc.media.forwarder import Slot
from tests.procinfo import open_sockets

pytestmark = pytest.mark.skipif(not forwarder.C_FANOUT and os.environ.get("CONFSVC_ALLOW_NO_C") == "1",
                                reason="built without the C fan-out on purpose")


@pytest.fixture(autouse=True)
def _close_captures():
    yield
    UdpCapture.close_all()


def test_the_extension_is_built_and_its_libsrtp_hook_holds():
    assert forwarder.C_FANOUT, "confsvc/media/_fanout.c is not built (pip install -e . builds it)"
    assert hooks.problems() == []
    ctx, protect = hooks.srtp_pointers(UdpCapture().session)
    assert ctx and protect


def test_the_common_case_goes_through_c():
    r = Rig()
    sinks = [UdpCapture() for _ in range(3)]
    slots = [r.slot(sink=s) for s in sinks]
    r.frame(0xA, key=True)
    for s in slots:
        s.retarget(r.A, now=r.clock.t)  # the cached keyframe is replayed (Python path)
    for _ in range(10):
        r.frame(0xA)
    for sink, slot in zip(sinks, slots, strict=True):
        out = [decode(d) for d in sink.sent]
        assert len(out) == 33 and sink.c_packets == 30  # every live packet after the replay
        assert_continuous(out)
        assert slot.packets == 33 and slot.octets == sum(len(o["payload"]) for o in out)
    assert r.c.rtp_out == 99 and r.c.send_errors == 0


def _scenario(c_path: bool, monkeypatch) -> list[list[bytes]]:
    """Switches (VP8 picture-id rewrite: handed back to Python), a temporal cap, padding, audio,
    a late packet: the plaintext each of two subscribers receives."""
    if not c_path:
        monkeypatch.setattr(forwarder, "_c_fanout", None)
    random.seed(7)
    r = Rig()
    sinks = [UdpCapture(), UdpCapture()]
    stage, other = r.slot(sink=sinks[0]), r.slot(sink=sinks[1])
    audio = r.slot("audio0", "audio", UdpCapture())
    sinks.append(audio.send.__self__)
    r.frame(0xA, key=True)
    r.frame(0xB, key=True)
    stage.retarget(r.A, now=r.clock.t)
    other.retarget(r.B, now=r.clock.t)
    audio.retarget(r.M, now=r.clock.t)
    for i in range(4):
        r.frame(0xA, tid=i % 3)
        r.frame(0xB)
        r.audio()
    other.max_tid = 0
    for i in range(6):
        r.frame(0xA, tid=i % 3)
    stage.retarget(r.B, now=r.clock.t)  # B's cached run; then its numbering is rewritten
    late = r.frame(0xB, send=False)
    r.frame(0xB)
    r.ing.handle(late[1])  # late, out of order: Python's epoch lookup
    for _ in range(3):
        r.frame(0xB, key=True)
        r.audio()
    out = [list(s.sent) for s in sinks]
    c_packets = sum(s.c_packets for s in sinks)
    assert c_packets > 40 if c_path else c_packets == 0
    return out


def _no_send_time(data: bytes) -> bytes:
    """The packet with its abs-send-time value zeroed (the ingress stamps it from the wall clock).
    The slot's extension bytes are 0xBEDE, length, the MID element (4 bytes), then the shared one."""
    assert data[12:14] == b"\xbe\xde"
    if data[20] == 0x32:
        return data[:21] + b"\0\0\0" + data[24:]
    return data


def test_c_and_python_paths_send_the_same_bytes(monkeypatch):
    via_c = [[_no_send_time(d) for d in x] for x in _scenario(True, monkeypatch)]
    UdpCapture.close_all()
    via_python = [[_no_send_time(d) for d in x] for x in _scenario(False, monkeypatch)]
    assert [len(x) for x in via_c] == [len(x) for x in via_python]
    assert via_c == via_python


def test_binding_holds_one_socket_of_its_own_until_unbound():
    base = open_sockets()
    sink = UdpCapture()
    assert open_sockets() == base + 2
    s = Slot(None, "stage", "video", "0", 0x51, 100, 90000, counters=Counters())
    s.bind(sink)
    assert s.egress_bound and open_sockets() == base + 3
    s.bind(sink)  # rebinding replaces its own copy
    assert open_sockets() == base + 3
    s.bind(None)
    assert not s.egress_bound and open_sockets() == base + 2
    s.bind(sink)
    del s  # a slot dropped while bound closes its copy too
    assert open_sockets() == base + 2


def test_a_transport_closing_its_socket_never_sends_elsewhere():
    """The slot writes to its dup: after aiortc closes the original socket and the number is
    reused by another socket, nothing reaches the new one."""
    r = Rig()
    sink = UdpCapture()
    s = r.slot(sink=sink)
    r.frame(0xA, key=True)
    s.retarget(r.A, now=r.clock.t)
    fd = sink.sock.fileno()
    sink.sock.close()
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        spy.bind(("127.0.0.1", 0))
        spy.setblocking(False)
        assert other.fileno() == fd  # the number is taken again
        other.connect(spy.getsockname())
        r.frame(0xA)
        with pytest.raises(BlockingIOError):
            spy.recv(2048)
        assert sink.c_packets == 0 and len(sink.sent) == 6  # still delivered through the dup
    finally:
        other.close()
        spy.close()
        s.bind(None)


def test_bad_calls_and_oversize_packets_are_errors_not_crashes():
    fan = forwarder._c_fanout
    sink = UdpCapture()
    s = Slot(None, "stage", "video", "0", 0x51, 100, 90000, counters=Counters())
    s.bind(sink)
    try:
        assert fan([s], 0, 1, 2, 0, b"x" * 1600, 1600) == (0, 1, None)
        assert fan([s], 0x80, 1, 2, 0, b"\0\0\0\0" + b"x" * 100, 100) == (1, 0, None)
        assert len(sink.sent) == 1 and decode(sink.sent[0])["marker"] == 1
        with pytest.raises(TypeError):
            fan((s,), 0, 1, 2, 0, b"", 0)
        with pytest.raises(TypeError):
            fan([s], 0, 1, 2, 0, "text", 0)
        with pytest.raises(ValueError):
            s.prefix = b"\xbe\xde\x00"  # not a multiple of 4
        with pytest.raises(ValueError):
            s.egress_bind(sink.sock.fileno(), ("not an address", 1), 1, 1, None)
        assert s.egress_bound  # a refused rebind kept the working binding
        assert fan([object(), s], 0, 1, 2, 0, b"y", 1)[2] is not None  # a non-slot goes back to Python
    finally:
        s.bind(None)
