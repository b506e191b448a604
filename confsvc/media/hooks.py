"""Every place where confsvc reaches into aiortc's (and aioice's, asyncio's) internals.

aiortc is pinned (pyproject: ``aiortc==1.16.*``). :func:`check` verifies, by inspection, that each
internal this module relies on is still there and still used the way we expect; the media plane
calls it once at import time and ``tests/unit/media/test_hooks.py`` calls it too, so an aiortc
upgrade that moves them fails loudly instead of silently forwarding nothing.

The hooks:

- ``restrict_ice``: an aioice ``Connection`` gathers host candidates only on the given addresses
  (aioice never offers 127.0.0.1, DESIGN §7), keeping STUN/TURN gathering as is.
- ``tap_transport``: the DTLS transport hands decrypted RTP and RTCP bytes to confsvc instead of
  parsing and routing them to aiortc's receivers (no jitter buffer, no decoder, ever). With
  ``direct_rtp``, SRTP media goes from aioice's datagram callback straight to confsvc, skipping
  aioice's receive queue and the DTLS transport's receive task.
- ``capture_send`` / ``capture_receive``: aiortc's senders and receivers are never started; their
  negotiated parameters are handed to confsvc instead (no encoder, no decoder thread, no per-
  sender RTP/RTCP tasks with wrong sender reports).
- ``Sink``: SRTP-protect with the transport's session and write straight to the nominated ICE
  pair's socket, bypassing the asyncio/ICE send layers.
- ``srtp_pointers``: the libsrtp context of a pylibsrtp Session and the address of the
  ``srtp_protect`` it was built with, for the C fan-out (``confsvc/media/_fanout.c``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aioice.ice
import aioice.turn
import aiortc
import pylibsrtp
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcicetransport import RTCIceGatherer
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

try:  # the compiled fan-out (setup.py); optional: forwarder.py falls back to Python without it
    from confsvc.media import _fanout as FANOUT
except ImportError:  # pragma: no cover - depends on the build
    FANOUT = None  # type: ignore[assignment]

PINNED = "1.16."
# what confsvc/media/_fanout.c calls: libsrtp 2's srtp_protect(ctx, rtp, &len), in place
SRTP_PROTECT_TYPE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"


class HookError(RuntimeError):
    """aiortc's internals are not where confsvc.media.hooks expects them."""


def _src(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def problems() -> list[str]:
    """What is wrong, one line each; empty when every hook point is in place."""
    out: list[str] = []
    if not aiortc.__version__.startswith(PINNED):
        out.append(f"aiortc {aiortc.__version__} is not the pinned {PINNED}x")

    # DTLS transport: the receive pump calls these two coroutines with these arguments
    recv_next = _src(RTCDtlsTransport._recv_next)
    for needle in (
        "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
        "await self._handle_rtcp_data(data)",
        "self._rx_srtp.unprotect(data)",
    ):
        if needle not in recv_next:
            out.append(f"RTCDtlsTransport._recv_next no longer does {needle!r}")
    for name, params in (("_handle_rtp_data", ["self", "data", "arrival_time_ms"]),
                         ("_handle_rtcp_data", ["self", "data"])):
        fn = getattr(RTCDtlsTransport, name, None)
        if fn is None or not inspect.iscoroutinefunction(fn):
            out.append(f"RTCDtlsTransport.{name} is missing or not a coroutine function")
        elif list(inspect.signature(fn).parameters) != params:
            out.append(f"RTCDtlsTransport.{name} signature changed")
    setup = _src(RTCDtlsTransport._setup_srtp)
    if "self._tx_srtp = Session(" not in setup or "allow_repeat_tx = True" not in setup:
        out.append("RTCDtlsTransport._setup_srtp no longer sets _tx_srtp (with allow_repeat_tx)")
    if "self._ssrc = random32()" not in _src(RTCRtpSender.__init__):
        out.append("RTCRtpSender no longer keeps its SSRC in _ssrc")
    if "self._transport = transport" not in _src(RTCDtlsTransport.__init__):
        out.append("RTCDtlsTransport no longer keeps its ICE transport in _transport")
    if not hasattr(State, "CONNECTED"):
        out.append("aiortc.rtcdtlstransport.State.CONNECTED is gone")

    # peer connection: senders/receivers are started by these calls in __connect
    connect = _src(getattr(RTCPeerConnection, "_RTCPeerConnection__connect", None))
    for needle in ("await transceiver.sender.send(", "await transceiver.receiver.receive("):
        if needle not in connect:
            out.append(f"RTCPeerConnection.__connect no longer does {needle!r}")
    if "self.__started" not in _src(RTCRtpSender.stop):
        out.append("RTCRtpSender.stop no longer skips a sender that never started")
    if "self.__started" not in _src(RTCRtpReceiver.stop):
        out.append("RTCRtpReceiver.stop no longer skips a receiver that never started")
    if "self._connection = Connection(" not in _src(RTCIceGatherer.__init__):
        out.append("RTCIceGatherer no longer keeps its aioice Connection in _connection")

    # aioice: candidate gathering and the nominated pair
    conn_init = _src(aioice.ice.Connection.__init__)
    for attr in ("_local_candidates_start", "_local_candidates_end", "_local_candidates",
                 "_components", "_nominated"):
        if f"self.{attr}" not in conn_init:
            out.append(f"aioice Connection has no {attr}")
    params = list(inspect.signature(aioice.ice.Connection.get_component_candidates).parameters)
    if params[:3] != ["self", "component", "addresses"]:
        out.append("aioice Connection.get_component_candidates signature changed")
    if "get_host_addresses(" not in _src(aioice.ice.Connection.gather_candidates):
        out.append("aioice Connection.gather_candidates no longer uses get_host_addresses")
    if "active_pair.protocol.send_data(data, active_pair.remote_addr)" not in _src(aioice.ice.Connection.sendto):
        out.append("aioice Connection.sendto no longer sends on the nominated pair's protocol")
    if "self.transport.sendto(" not in _src(aioice.ice.StunProtocol.send_data):
        out.append("aioice StunProtocol.send_data no longer writes to its datagram transport")
    if not callable(getattr(aioice.turn.TurnTransport, "sendto", None)) or \
            inspect.iscoroutinefunction(aioice.turn.TurnTransport.sendto):
        out.append("aioice TurnTransport.sendto is no longer a plain method")
    session_init = _src(pylibsrtp.Session.__init__)
    if "self._srtp = " not in session_init or not hasattr(_srtp_lib, "srtp_protect"):
        out.append("pylibsrtp.Session no longer keeps its srtp_t in _srtp")
    else:
        protect_type = _srtp_ffi.typeof(_srtp_ffi.addressof(_srtp_lib, "srtp_protect")).cname
        if protect_type != SRTP_PROTECT_TYPE:
            out.append(f"libsrtp's srtp_protect is now {protect_type!r}, not {SRTP_PROTECT_TYPE!r}")
    if FANOUT is not None and pylibsrtp.SRTP_MAX_TRAILER_LEN > FANOUT.TRAILER_ROOM:
        out.append(f"libsrtp's trailer ({pylibsrtp.SRTP_MAX_TRAILER_LEN} bytes) exceeds the C fan-out's room")
    if "self._queue" not in conn_init or \
            "self._queue.put_nowait((data, component))" not in _src(aioice.ice.Connection.data_received):
        out.append("aioice Connection.data_received no longer queues datagrams on _queue")
    if "self.receiver.data_received(data, self.local_candidate.component)" not in \
            _src(aioice.ice.StunProtocol.datagram_received):
        out.append("aioice StunProtocol no longer hands datagrams to its Connection's data_received")
    if "self._rx_srtp" not in _src(RTCDtlsTransport._setup_srtp):
        out.append("RTCDtlsTransport._setup_srtp no longer sets _rx_srtp")
    if "self._protocols" not in conn_init:
        out.append("aioice Connection has no _protocols")
    if "self.max_size" not in _src(asyncio.selector_events._SelectorDatagramTransport._read_ready):
        out.append("asyncio datagram transports no longer read max_size bytes")
    if "self._sock = sock" not in _src(asyncio.selector_events._SelectorTransport.__init__):
        out.append("asyncio selector transports no longer keep their socket in _sock")
    return out


def check() -> None:
    found = problems()
    if found:
        raise HookError("confsvc.media cannot run on this aiortc: " + "; ".join(found))


# -- ICE addresses -------------------------------------------------------------------------------


def _connections(pc: RTCPeerConnection) -> list[aioice.ice.Connection]:
    conns: list[aioice.ice.Connection] = []
    for t in pc.getTransceivers():
        for dtls in (t.sender.transport, t.receiver.transport):
            c = dtls.transport.iceGatherer._connection
            if c not in conns:
                conns.append(c)
    if pc.sctp is not None:
        c = pc.sctp.transport.transport.iceGatherer._connection
        if c not in conns:
            conns.append(c)
    return conns


def restrict_ice(pc: RTCPeerConnection, addresses: Iterable[str]) -> None:
    """Make every ICE connection of ``pc`` gather host candidates on ``addresses`` only.

    Call after the transceivers exist (addTransceiver, or setRemoteDescription for an answerer)
    and before setLocalDescription (which gathers)."""
    addrs = list(addresses)
    for conn in _connections(pc):
        _restrict_connection(conn, addrs)


def _restrict_connection(conn: aioice.ice.Connection, addresses: list[str]) -> None:
    async def gather_candidates() -> None:
        if not conn._local_candidates_start:
            conn._local_candidates_start = True
            for component in sorted(conn._components):
                conn._local_candidates += await conn.get_component_candidates(
                    component=component, addresses=addresses
                )
            conn._local_candidates_end = True

    conn.gather_candidates = gather_candidates  # type: ignore[method-assign]


RECV_SIZE = 4096  # larger than any WebRTC datagram (path MTU), far below asyncio's 256 KiB


def tune_receive(pc: RTCPeerConnection) -> int:
    """Make the ICE sockets' asyncio transports read into RECV_SIZE buffers instead of 256 KiB
    ones (asyncio allocates max_size bytes per recvfrom; measured ~40 us per datagram). Call after
    setLocalDescription (which gathers). Returns how many transports were tuned."""
    n = 0
    for conn in _connections(pc):
        for protocol in conn._protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None and hasattr(transport, "max_size"):
                transport.max_size = RECV_SIZE
                n += 1
    return n


# -- the transport tap ---------------------------------------------------------------------------


def dtls_transport(pc: RTCPeerConnection) -> RTCDtlsTransport:
    """The (bundled) DTLS transport of a peer connection with at least one transceiver."""
    return pc.getTransceivers()[0].receiver.transport


def tap_transport(
    dtls: RTCDtlsTransport,
    on_rtp: Callable[[bytes, int], Awaitable[None]],
    on_rtcp: Callable[[bytes], Awaitable[None]],
    direct_rtp: Callable[[bytes, int], None] | None = None,
    on_rejected: Callable[[], None] = lambda: None,
) -> None:
    """Decrypted RTP goes to ``on_rtp(data, arrival_time_ms)`` and RTCP to ``on_rtcp(data)``,
    instead of aiortc's parser and router. Both must never raise (an exception would stop the
    transport's receive loop).

    With ``direct_rtp`` (a plain function, same arguments, must never raise either), an SRTP media
    datagram is unprotected and handed to it from aioice's datagram callback itself, when nothing
    is waiting in aioice's receive queue: no queue put, future, task wake-up and extra event-loop
    turn per packet. DTLS, STUN, RTCP and anything behind a queued datagram take aiortc's path,
    so the order of packets is kept. A media datagram that does not unprotect (forged, corrupt,
    replayed) is dropped, as aiortc drops it, and ``on_rejected()`` counts it."""

    async def _handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        await on_rtp(data, arrival_time_ms)

    dtls._handle_rtp_data = _handle_rtp_data  # type: ignore[method-assign]
    dtls._handle_rtcp_data = on_rtcp  # type: ignore[method-assign]
    if direct_rtp is not None:
        _direct_srtp(dtls, direct_rtp, on_rejected)


NTP_EPOCH_MS = 2208988800 * 1000  # aiortc's arrival times are milliseconds since 1900 (clock.current_ms)


def _direct_srtp(dtls: RTCDtlsTransport, direct_rtp: Callable[[bytes, int], None],
                 on_rejected: Callable[[], None]) -> None:
    conn = dtls.transport._connection
    queue = conn._queue
    queued = conn.data_received
    srtp_error = pylibsrtp.Error
    now = time.time

    def data_received(data: bytes, component: int) -> None:
        rx = dtls._rx_srtp
        # SRTP (first byte 128-191, RFC 7983) and not RTCP (second byte 192-208, as aiortc tells)
        if rx is not None and len(data) > 1 and 127 < data[0] < 192 and not 191 < data[1] < 209 \
                and not queue.qsize():
            try:
                plain = rx.unprotect(data)
            except srtp_error:  # aiortc drops these too
                on_rejected()
                return
            direct_rtp(plain, int(now() * 1000) + NTP_EPOCH_MS)
            return
        queued(data, component)

    conn.data_received = data_received  # type: ignore[method-assign]


def capture_send(sender: RTCRtpSender, on_params: Callable[[Any], None]) -> None:
    """The sender is never started (no track, encoder, RTP or RTCP task); its negotiated
    RTCRtpSendParameters go to ``on_params``."""

    async def send(parameters: Any) -> None:
        on_params(parameters)

    sender.send = send  # type: ignore[method-assign]


def capture_receive(receiver: RTCRtpReceiver, on_params: Callable[[Any], None]) -> None:
    """The receiver is never started (no jitter buffer, no decoder thread, no RTCP task); its
    negotiated RTCRtpReceiveParameters go to ``on_params``."""

    async def receive(parameters: Any) -> None:
        on_params(parameters)

    receiver.receive = receive  # type: ignore[method-assign]


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC aiortc put in the offer for this sender (the slot writes with it)."""
    return sender._ssrc


def is_connected(dtls: RTCDtlsTransport) -> bool:
    return dtls._state == State.CONNECTED


def fast_protect(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """``session.protect`` without pylibsrtp's per-call allocations (its own buffer and length
    cell, bound once). Raises pylibsrtp.Error or ValueError like the original."""
    srtp = session._srtp[0]
    cdata = _srtp_ffi.new("char[]", 1500)
    buf = _srtp_ffi.buffer(cdata)
    len_p = _srtp_ffi.new("int *")
    protect = _srtp_lib.srtp_protect
    limit = 1500 - pylibsrtp.SRTP_MAX_TRAILER_LEN

    def protect_rtp(data: bytes) -> bytes:
        n = len(data)
        if n > limit:
            raise ValueError("packet is too long")
        buf[0:n] = data
        len_p[0] = n
        rc = protect(srtp, cdata, len_p)
        if rc:
            raise pylibsrtp.Error(f"srtp_protect failed ({rc})")
        return buf[0 : len_p[0]]

    # keep the cffi objects alive with the closure
    protect_rtp.__dict__["_keep"] = (session, cdata, len_p)
    return protect_rtp


def srtp_pointers(session: pylibsrtp.Session) -> tuple[int, int]:
    """(address of the session's srtp_t, address of the srtp_protect that made it) for the C
    fan-out. The caller keeps ``session`` alive as long as it uses them."""
    ctx = int(_srtp_ffi.cast("uintptr_t", session._srtp[0]))
    protect = int(_srtp_ffi.cast("uintptr_t", _srtp_ffi.addressof(_srtp_lib, "srtp_protect")))
    return ctx, protect


class Sink:
    """Where a transport's outgoing packets go: its SRTP session and the nominated pair's socket.

    ``protect``, ``protect_rtcp`` and ``send(data)`` are plain attributes so that the hot path can
    bind them to locals. For a host or server-reflexive pair, ``send`` writes straight to the UDP
    socket; with ``connect=True`` the socket is first connect()ed to the nominated remote address
    (the kernel then skips a route lookup per packet; after nomination the peer only ever talks
    from that address, and aioice's own sends keep working). For a TURN-relayed pair it goes
    through aioice's TurnTransport. ``None`` from :meth:`of` means not (or no longer) connected.

    ``sock`` and ``addr`` say the same for the C fan-out: the UDP socket (None for a TURN relay)
    and the destination (None when the socket is connected to it)."""

    __slots__ = ("protect", "protect_rtcp", "send", "route", "session", "connected", "sock", "addr")

    def __init__(self, session: Any, send: Callable[[bytes], Any], route: tuple[Any, ...], connected: bool,
                 sock: Any = None, addr: tuple[Any, ...] | None = None) -> None:
        self.session = session
        self.protect = fast_protect(session)
        self.protect_rtcp = session.protect_rtcp
        self.send = send
        self.route = route
        self.connected = connected
        self.sock = sock
        self.addr = addr

    @classmethod
    def udp(cls, session: Any, sock: Any, addr: tuple[Any, ...], connected: bool,
            route: tuple[Any, ...] | None = None) -> Sink:
        """A sink writing to UDP socket ``sock``: connected to ``addr`` already, or sending to it.
        ``route`` (default: session, socket, address) is what :meth:`of` compares to reuse a sink."""
        route = route or (session, sock, addr)
        if connected:
            return cls(session, sock.send, route, True, sock, None)
        sendto = sock.sendto
        return cls(session, lambda data: sendto(data, addr), route, False, sock, addr)

    @classmethod
    def of(cls, dtls: RTCDtlsTransport, connect: bool = False, previous: Sink | None = None) -> Sink | None:
        if dtls._state != State.CONNECTED or dtls._tx_srtp is None:
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return None
        transport = getattr(pair.protocol, "transport", None)
        if transport is None or transport.is_closing():
            return None
        addr = pair.remote_addr
        route = (dtls._tx_srtp, transport, addr)
        if previous is not None and previous.route == route:
            return previous
        sock = getattr(transport, "_sock", None)
        if sock is None:  # TURN relay: aioice's TurnTransport.sendto is synchronous
            sendto = transport.sendto
            return cls(dtls._tx_srtp, lambda data: sendto(data, addr), route, False)
        if connect:
            try:
                try:
                    peer = sock.getpeername()
                except OSError:  # not connected yet
                    peer = None
                if peer != addr:
                    sock.connect(addr)
                return cls.udp(dtls._tx_srtp, sock, addr, True, route)
            except OSError:
                pass
        return cls.udp(dtls._tx_srtp, sock, addr, False, route)

    def send_rtcp(self, data: bytes) -> bool:
        try:
            self.send(self.protect_rtcp(data))
            return True
        except Exception:  # noqa: BLE001 - OSError, or a libsrtp error
            return False
