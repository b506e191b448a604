"""A shaped link between the node and one subscriber, made of two network namespaces joined by a
veth pair, for the adaptation benchmark and tests (root needed).

    link = ShapedLink.create()          # namespaces <tag>n (node side) and <tag>s (subscriber side)
    with link.node_side():              # sockets made in this block live in the node-side namespace
        offer = await participant.subscribe_offer()   # (the node's ICE address: link.node_addr)
    # the subscriber's peer process runs with: ip netns exec <link.sub_ns> ... (address link.sub_addr)
    link.shape(kbit=400)                # tbf on the node's egress (the subscriber's downlink)
    link.shape(kbit=None)               # no rate limit
    link.close()                        # deletes both namespaces (and so the veth pair)

The shaping is tbf (rate, bucket, queue latency: tail drops when the queue is full). netem (delay,
random loss) is used when the kernel has it (``link.netem``). Where it does not (no sch_netem: a
kernel built without CONFIG_NET_SCH_NETEM and no module to load), random loss is made by an
nftables rule in the node-side namespace instead (``numgen random`` drops that share of the UDP
packets leaving on the veth; needs the ``nft`` command, Debian's nftables package, and a kernel
with nf_tables and NFT_NUMGEN): ``link.loss_by`` says which ("netem", "nftables" or None, and
``link.loss_unavailable`` why not). Fixed delay has no such stand-in: tbf only delays what queues
behind the rate limit, nftables cannot hold a packet, and the other delaying qdiscs and the ifb
device are not in such a kernel either; ``delay_ms`` is then not applied.

Addresses exist only inside these namespaces (10.213.x.1 and .2, a /30); the host's own
namespace is never changed. ``node_side`` switches the calling thread's network namespace with
setns(2) and switches back on exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000


def unavailable() -> str | None:
    """Why shaped links cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and shape them with tc"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command (iproute2)"
    return None


def _run(*args: str) -> None:
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")


def _setns_fd(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


_home_fd: int | None = None


class ShapedLink:
    def __init__(self, tag: str, octet: int, delay_ms: int) -> None:
        self.node_ns = f"{tag}n"
        self.sub_ns = f"{tag}s"
        self.node_dev = f"{tag}a"
        self.sub_dev = f"{tag}b"
        self.node_addr = f"10.213.{octet}.1"
        self.sub_addr = f"10.213.{octet}.2"
        self.delay_ms = delay_ms
        self.rate_kbit: int | None = None
        self.loss = 0.0
        self.netem = False
        self.loss_by: str | None = None
        self.loss_unavailable: str | None = None

    @classmethod
    def create(cls, delay_ms: int = 10) -> ShapedLink:
        why = unavailable()
        if why:
            raise RuntimeError(why)
        tag = f"cs{os.getpid() % 10000}{random.randint(0, 99)}"
        link = cls(tag, random.randint(1, 250), delay_ms)
        try:
            _run("ip", "netns", "add", link.node_ns)
            _run("ip", "netns", "add", link.sub_ns)
            for ns in (link.node_ns, link.sub_ns):
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", link.node_ns, "link", "add", link.node_dev, "type", "veth", "peer", "name", link.sub_dev,
                 "netns", link.sub_ns)
            _run("ip", "-n", link.node_ns, "addr", "add", f"{link.node_addr}/30", "dev", link.node_dev)
            _run("ip", "-n", link.sub_ns, "addr", "add", f"{link.sub_addr}/30", "dev", link.sub_dev)
            _run("ip", "-n", link.node_ns, "link", "set", link.node_dev, "up")
            _run("ip", "-n", link.sub_ns, "link", "set", link.sub_dev, "up")
            for ns, dev in ((link.node_ns, link.node_dev), (link.sub_ns, link.sub_dev)):
                # one segment per packet: tbf counts what the wire would carry
                subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off",
                                "gro", "off"], capture_output=True)
            r = subprocess.run(["ip", "netns", "exec", link.node_ns, "tc", "qdisc", "add", "dev", link.node_dev,
                                "root", "handle", "1:", "netem", "delay", f"{delay_ms}ms"], capture_output=True)
            link.netem = r.returncode == 0
            if link.netem:
                link.loss_by = "netem"
            else:
                link.loss_unavailable = link._nft_setup(r.stderr.decode(errors="replace").strip())
                link.loss_by = "nftables" if link.loss_unavailable is None else None
            parent = ["parent", "1:", "handle", "2:"] if link.netem else ["root", "handle", "2:"]
            _run("ip", "netns", "exec", link.node_ns, "tc", "qdisc", "add", "dev", link.node_dev, *parent,
                 "tbf", "rate", "1gbit", "burst", "256kb", "latency", "50ms")
        except Exception:
            link.close()
            raise
        return link

    def shape(self, kbit: int | None, loss: float = 0.0, latency_ms: int = 150) -> None:
        """The subscriber's downlink: ``kbit`` (None: unlimited) with a queue of ``latency_ms``, and
        netem ``loss`` percent (only where the kernel has netem)."""
        ns, dev = self.node_ns, self.node_dev
        if self.netem:
            netem = ["netem", "delay", f"{self.delay_ms}ms"] + (["loss", f"{loss}%"] if loss else [])
            _run("ip", "netns", "exec", ns, "tc", "qdisc", "change", "dev", dev, "root", "handle", "1:", *netem)
        elif self.loss_by == "nftables":
            _run("ip", "netns", "exec", ns, "nft", "flush", "chain", "inet", "confsvc_link", "out")
            if loss:
                # numgen random mod 10000 < N: N hundredths of a percent of the UDP packets out
                _run("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "confsvc_link", "out", "oifname", dev,
                     "meta", "l4proto", "udp", "numgen", "random", "mod", "10000", "<", str(round(loss * 100)),
                     "counter", "drop")
        elif loss:
            raise RuntimeError(f"no random loss on the link: {self.loss_unavailable}")
        if kbit is None:
            tbf = ["tbf", "rate", "1gbit", "burst", "256kb", "latency", "50ms"]
        else:
            burst = max(3000, kbit * 1000 // 8 // 50)  # 20 ms worth, at least two full packets
            tbf = ["tbf", "rate", f"{kbit}kbit", "burst", str(burst), "latency", f"{latency_ms}ms"]
        parent = ["parent", "1:", "handle", "2:"] if self.netem else ["root", "handle", "2:"]
        _run("ip", "netns", "exec", ns, "tc", "qdisc", "change", "dev", dev, *parent, *tbf)
        self.rate_kbit, self.loss = kbit, loss

    def _nft_setup(self, netem_error: str) -> str | None:
        """An nftables table in the node-side namespace for random loss; None, or why not."""
        why_netem = f"tc netem is missing ({netem_error or 'sch_netem'})"
        if shutil.which("nft") is None:
            return f"{why_netem} and so is the nft command (Debian package nftables)"
        r = subprocess.run(["ip", "netns", "exec", self.node_ns, "nft", "-f", "-"], capture_output=True, text=True,
                           input="table inet confsvc_link {\n chain out {\n"
                                 "  type filter hook output priority 0; policy accept;\n }\n}\n")
        if r.returncode != 0:
            return f"{why_netem} and nftables cannot filter here: {r.stderr.strip()}"
        probe = subprocess.run(["ip", "netns", "exec", self.node_ns, "nft", "add", "rule", "inet", "confsvc_link", "out",
                                "numgen", "random", "mod", "100", "<", "0", "drop"], capture_output=True, text=True)
        if probe.returncode != 0:
            return f"{why_netem} and nftables has no numgen here (NFT_NUMGEN): {probe.stderr.strip()}"
        subprocess.run(["ip", "netns", "exec", self.node_ns, "nft", "flush", "chain", "inet", "confsvc_link", "out"],
                       capture_output=True)
        return None

    def dropped(self) -> int:
        """Packets the random-loss rule dropped so far (nftables only; netem: -1)."""
        if self.loss_by != "nftables":
            return -1
        r = subprocess.run(["ip", "netns", "exec", self.node_ns, "nft", "list", "chain", "inet", "confsvc_link", "out"],
                           capture_output=True, text=True)
        m = re.search(r"counter packets (\d+)", r.stdout)
        return int(m.group(1)) if m else 0

    def stats(self) -> str:
        r = subprocess.run(["ip", "netns", "exec", self.node_ns, "tc", "-s", "qdisc", "show", "dev", self.node_dev],
                           capture_output=True, text=True)
        return r.stdout

    @contextlib.contextmanager
    def node_side(self) -> Iterator[None]:
        """Sockets made by this thread inside the block belong to the node-side namespace."""
        global _home_fd
        if _home_fd is None:
            _home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(f"/var/run/netns/{self.node_ns}", os.O_RDONLY)
        try:
            _setns_fd(fd)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            _setns_fd(_home_fd)

    def peer_command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.sub_ns, *argv]

    def close(self) -> None:
        for ns in (self.sub_ns, self.node_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

