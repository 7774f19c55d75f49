"""
The WebSocket relay end to end: an Autobahn client -> C{python -m
twisted_rproxy} (docs/proxy.md's example: the seeds' WebSocket location
plus C{proxy_websocket_relay on}) -> an Autobahn echo server, all real processes on real sockets
(tests/integration/wspeers.py).  Nothing asserts a duration: each wait is a
process exit or a line polled with a deadline.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.integration.harness import (
    REPO_ROOT,
    RproxyRunner,
    StartupError,
    _readText,
    _spawn,
    _subprocessEnv,
    _terminate,
    freePort,
)
from tests.integration.test_docs import EXAMPLES, DocsRunner, block, configText, fill

DEADLINE = 60.0
"""How long a client scenario may take before the test fails."""

class EchoServer:
    """
    The Autobahn echo server as a subprocess.
    """

    def __init__(self, *options: str) -> None:
        """Start it (with C{options}) and wait for its C{LISTENING} line."""
        self.directory = Path(tempfile.mkdtemp(prefix="rproxy-wsecho-"))
        self.stdout = self.directory / "stdout.log"
        self.process = _spawn(
            [sys.executable, "-m", "tests.integration.wspeers", "echo", *options], REPO_ROOT,
            self.stdout, self.directory / "stderr.log", env=_subprocessEnv(),
            deathSignal=signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            match = re.search(r"LISTENING (\d+)", _readText(self.stdout))
            if match:
                self.port = int(match.group(1))
                return
            time.sleep(0.02)
        self.cleanup()
        raise StartupError("echo server did not start")

    def lines(self, kind: str) -> str:
        """The lines starting with C{kind} printed so far."""
        return "".join(line for line in _readText(self.stdout).splitlines(True)
                       if line.startswith(kind))

    def closes(self) -> str:
        """The C{CLOSED} lines printed so far."""
        return self.lines("CLOSED")

    def cleanup(self) -> None:
        """Stop it and remove its directory."""
        _terminate(self.process, signal.SIGTERM, timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    """One echo server per module."""
    server = EchoServer()
    try:
        yield server
    finally:
        server.cleanup()


def relayConfig(echo: EchoServer, relay: bool = True, extra: str = "") -> str:
    """
    docs/proxy.md's C{websocket-relay} example (the seeds' WebSocket
    location plus C{proxy_websocket_relay on}) in front of the echo
    server; without C{relay} the seeds' location as nginx has it (the byte
    tunnel); C{extra} directives go into the location.
    """
    text = fill(block("proxy.md", "websocket-relay").text,
                {"port": str(freePort()), "backend": str(echo.port)})
    if not relay:
        text = text.replace("proxy_websocket_relay on;", "")
    return text.replace("proxy_pass ", extra + "\n            proxy_pass ")


@pytest.fixture
def proxy(echo: EchoServer, rproxyRunner: Callable[..., RproxyRunner]) -> RproxyRunner:
    """
    twisted_rproxy running docs/proxy.md's C{websocket-relay} example, so
    the page's config is the one shown to work.
    """
    return rproxyRunner(relayConfig(echo))


@pytest.fixture(params=["relay", "tunnel"])
def anyProxy(request: pytest.FixtureRequest, echo: EchoServer,
             rproxyRunner: Callable[..., RproxyRunner]) -> RproxyRunner:
    """
    The relay, then the byte tunnel (the same location without
    C{proxy_websocket_relay}); C{.mode} says which.
    """
    runner = rproxyRunner(relayConfig(echo, request.param == "relay"))
    runner.mode = request.param  # type: ignore[attr-defined]
    return runner


def runClient(port: int, scenario: str, path: str = "/ws") -> dict:
    """
    Run one client scenario through the proxy on C{port}.

    @return: the client's JSON report.
    """
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.wspeers", "client",
         f"ws://127.0.0.1:{port}{path}", scenario],
        cwd=str(REPO_ROOT), env=_subprocessEnv(), capture_output=True, timeout=DEADLINE)
    lines = [line for line in result.stdout.decode().splitlines() if line.startswith("{")]
    assert lines, result.stderr.decode()[-3000:]
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def waitFor(predicate: Callable[[], object], what: str) -> None:
    """Poll C{predicate} until true, or fail after the deadline."""
    deadline = time.monotonic() + 15
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def testEchoThroughRelay(echo: EchoServer, proxy: RproxyRunner) -> None:
    """
    Text and binary messages of 1 byte to 1 MiB, sent in 4 KiB fragments,
    come back identical; the backend's subprotocol reaches the client; the
    client's close 4000 with its reason reaches the backend, whose reply
    (the same code and reason) comes back.
    """
    report = runClient(proxy.port, "echo")
    assert report["protocol"] == "chat"
    assert report["mismatches"] == []
    assert report["echoed"] == report["sent"] == 16
    assert report["close"] == [True, 4000, "client bye"]
    waitFor(lambda: "CLOSED 4000 client bye" in echo.closes(), "the backend's close line")
    # The client sent the 1 MiB messages in 256 fragments; the relay
    # reassembled them and sent each message in one frame (the byte tunnel
    # would have passed the fragments through).
    frames = echo.lines("FRAMES").split()
    assert f"FRAMES {1 << 20} 1".split() == frames[frames.index(str(1 << 20)) - 1:][:3]
    assert set(frames[2::3]) == {"1"}


def testServerCloseCodeReachesClient(echo: EchoServer, proxy: RproxyRunner) -> None:
    """
    The backend's close 4001 with its reason reaches the client, and the
    client's reply (Autobahn's 1000) reaches the backend.
    """
    before = echo.lines("REPLY").count("\n")
    report = runClient(proxy.port, "server-close")
    assert report["protocol"] == "chat"
    assert report["close"] == [True, 4001, "server bye"]
    waitFor(lambda: echo.lines("REPLY").count("\n") > before, "the backend's reply line")
    assert echo.lines("REPLY").splitlines()[before:] == ["REPLY 1000 "]


def testMessagesUpTo16MiB(echo: EchoServer, anyProxy: RproxyRunner) -> None:
    """
    Through the relay and through the byte tunnel, text and binary
    messages of 1 byte to 16 MiB (sent in 4 KiB fragments) come back
    identical.  The relay reassembles each message into one frame; the
    tunnel passes the client's fragments through as they are.
    """
    before = len(echo.lines("FRAMES").splitlines())
    report = runClient(anyProxy.port, "big")
    assert report["mismatches"] == []
    assert report["echoed"] == report["sent"] == 10
    assert report["close"] == [True, 4000, "client bye"]
    counts = {int(line.split()[2]) for line in echo.lines("FRAMES").splitlines()[before:]
              if line.split()[1] == str(16 << 20)}
    if anyProxy.mode == "relay":  # type: ignore[attr-defined]
        assert counts == {1}
    else:
        # Autobahn's 4 KiB pieces (and its empty final frame), as sent.
        assert counts and min(counts) >= (16 << 20) // 4096, counts


def testFragmentsThroughTunnel(echo: EchoServer, anyProxy: RproxyRunner) -> None:
    """
    The 1 B - 1 MiB echo (fragmented messages both ways, subprotocol, close
    code and reason) also works through the byte tunnel.
    """
    report = runClient(anyProxy.port, "echo")
    assert (report["protocol"], report["mismatches"]) == ("chat", [])
    assert report["echoed"] == report["sent"] == 16
    assert report["close"] == [True, 4000, "client bye"]


def testBackendDiesMidConnection(echo: EchoServer, anyProxy: RproxyRunner) -> None:
    """
    A backend that drops its TCP connection without a close frame: the
    relay closes the client with 1011 and logs it; the byte tunnel can
    only close the client's TCP connection (1006 to the client: no close
    frame).
    """
    report = runClient(anyProxy.port, "backend-dies")
    if anyProxy.mode == "relay":  # type: ignore[attr-defined]
        assert report["close"] == [True, 1011, "upstream went away"]
        waitFor(lambda: "upstream closed the WebSocket without a close frame"
                in anyProxy.errorLog, "the error log line")
        assert "[error]" in next(line for line in anyProxy.errorLog.splitlines()
                                 if "without a close frame" in line)
    else:
        assert report["close"][:2] == [False, 1006]


def testMaxMessageSize(echo: EchoServer, rproxyRunner: Callable[..., RproxyRunner]) -> None:
    """
    With C{proxy_websocket_max_message_size 1m}, a 1 MiB message is
    echoed and a 1 MiB + 1 byte one closes the client with 1009, and the
    backend with 1009 too.
    """
    runner = rproxyRunner(relayConfig(echo, extra="proxy_websocket_max_message_size 1m;"))
    report = runClient(runner.port, "too-big-%d" % (1 << 20))
    assert report["close"][1] != 1009
    before = echo.closes().count("\n")
    report = runClient(runner.port, "too-big-%d" % ((1 << 20) + 1))
    assert report["close"][:2] == [True, 1009]
    waitFor(lambda: echo.closes().count("\n") > before, "the backend's close line")
    assert echo.closes().splitlines()[before:] == ["CLOSED 1009 message too big"]


def testGracefulShutdownSends1001(echo: EchoServer, proxy: RproxyRunner) -> None:
    """
    SIGQUIT (nginx's graceful quit) closes a relayed client with 1001 and
    the proxy exits 0 once its connections are done, well before the
    stop's 30 s deadline would have aborted them.
    """
    client = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.wspeers", "client",
         f"ws://127.0.0.1:{proxy.port}/ws", "hold"],
        cwd=str(REPO_ROOT), env=_subprocessEnv(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == b"OPEN"
        proxy.process.send_signal(signal.SIGQUIT)
        out, err = client.communicate(timeout=DEADLINE)
    finally:
        if client.poll() is None:
            client.kill()
    report = json.loads(out.decode().splitlines()[-1])
    assert report["close"] == [True, 1001, "proxy shutting down"], err.decode()[-2000:]
    started = time.monotonic()
    assert proxy.process.wait(timeout=DEADLINE) == 0
    assert time.monotonic() - started < 25, "the stop waited for its deadline"


def testFilterExamplesEndToEnd(echo: EchoServer, rproxyRunner: Callable[..., RproxyRunner]
                               ) -> None:
    """
    docs/plugins-websocket.md's block with its example plugin found on
    PYTHONPATH: a burst of 200 messages (over C{x_ws_max_rate 20 1s}) is
    closed with 1008 after at most 20 echoes; 5 messages are all echoed and
    closed normally; each connection's counts reach the error log.
    """
    port = freePort()
    text = fill(configText(block("plugins-websocket.md", "ws-filters")),
                {"port": str(port), "backend": str(echo.port)})
    runner = DocsRunner(text, [EXAMPLES], addresses=[("127.0.0.1", port)])
    try:
        runner.start()
        over = runClient(port, "burst-200")
        assert over["close"] == [True, 1008, "message rate exceeded"], (over, runner.errorLog[-3000:])
        assert over["echoed"] <= 20
        under = runClient(port, "burst-5")
        assert (under["echoed"], under["close"]) == (5, [True, 1000, None])
        waitFor(lambda: "5 messages (10 bytes) from the client" in runner.errorLog,
                "the second connection's log line")
        lines = [line for line in runner.errorLog.splitlines() if "websocket /ws" in line]
        assert len(lines) == 2 and all("[info]" in line for line in lines)
        assert lines[0].split("closed: ")[1].startswith("20 messages")
        assert lines[1].endswith("5 messages (10 bytes) from the client,"
                                 " 5 messages (10 bytes) from the backend")
    finally:
        runner.cleanup()


def testThousandConnections(echo: EchoServer, anyProxy: RproxyRunner) -> None:
    """
    1,000 WebSocket connections open at once through the proxy (relay,
    then byte tunnel; opened with at most 50 handshakes in progress, so a
    loaded machine slows that phase rather than failing it); each then
    sends 20 numbered messages without
    waiting, and every echo comes back, none lost or out of order, and
    every connection closes cleanly.  The proxy's RSS growth with the
    1,000 connections open and idle is printed per connection (information:
    the report quotes it; only a generous bound is asserted).
    """
    import resource

    from tests.integration.test_proxy import rssKiB

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    total, count = 1000, 20
    before = rssKiB(anyProxy.process.pid)
    client = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.wspeers", "many",
         f"ws://127.0.0.1:{anyProxy.port}/ws", str(total), str(count)],
        cwd=str(REPO_ROOT), env=_subprocessEnv(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert client.stdout is not None and client.stdin is not None
        opened = client.stdout.readline()
        assert opened.strip() == f"OPEN {total}".encode(), (opened, anyProxy.errorLog[-2000:])
        idle = rssKiB(anyProxy.process.pid)
        client.stdin.write(b"go\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=240)
    finally:
        if client.poll() is None:
            client.kill()
    report = json.loads(out.decode().splitlines()[-1])
    perConnection = (idle - before) / total
    print(f"{anyProxy.mode}: RSS {before} KiB -> {idle} KiB with {total} idle connections,"  # type: ignore[attr-defined]
          f" {perConnection:.1f} KiB each; {total * count} echoes in"
          f" {report['seconds']:.2f} s")
    assert report == {**report, "total": total, "echoed": total * count, "wrong": 0,
                      "closed": total, "clean": total}, (report, err.decode()[-3000:])
    assert perConnection < 200


HANDSHAKES = {
    "upgrade": (b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Protocol: other, chat\r\n"),
    # Autobahn refuses a version it does not speak: the refusal must
    # reach the client as the backend's own response.
    "bad-version": (b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 99\r\n"),
    # No Upgrade: the map sends Connection: close, no 101.
    "plain": b"",
}
"""The handshakes compared between nginx and twisted_rproxy."""

COMPARED = ("upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol",
            "sec-websocket-version", "sec-websocket-extensions")


def handshake(port: int, extra: bytes) -> tuple:
    """
    Send one handshake on a raw socket and read the response head.

    @return: the status and the L{COMPARED} headers (lower-cased values
        for the tokens), then the socket is closed.
    """
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n" + extra + b"\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in COMPARED:
            value = value.strip()
            headers[name.strip().lower()] = (value if name.lower().startswith("sec-websocket-a")
                                             else value.lower())
    return int(lines[0].split()[1]), headers


def testDifferentialAgainstNginx(echo: EchoServer, nginxRunner: Callable[..., object],
                                 rproxyRunner: Callable[..., RproxyRunner]) -> None:
    """
    The seeds' WebSocket location (C{proxy_http_version 1.1}, Upgrade and
    Connection passed with the C{$connection_upgrade} map) run by nginx,
    by twisted_rproxy as is (byte tunnel) and with C{proxy_websocket_relay
    on}: each handshake (a good one with a subprotocol offer, a refused
    version, a plain GET) gets the same status and WebSocket headers, and
    the 1 B - 1 MiB fragmented echo gives the same report through all
    three.
    """
    tunnelText = relayConfig(echo, relay=False)
    runners = {
        "nginx": nginxRunner(tunnelText),
        "tunnel": rproxyRunner(tunnelText.replace(
            str(listenPort(tunnelText)), str(freePort()))),
        "relay": rproxyRunner(relayConfig(echo)),
    }
    results = {}
    for name, runner in runners.items():
        port = runner.port  # type: ignore[attr-defined]
        shakes = {kind: handshake(port, extra) for kind, extra in HANDSHAKES.items()}
        results[name] = (shakes, runClient(port, "echo"))
    nginxShakes, nginxEcho = results["nginx"]
    assert nginxShakes["upgrade"][0] == 101
    assert nginxShakes["upgrade"][1]["sec-websocket-protocol"] == "chat"
    assert nginxShakes["bad-version"][0] >= 400
    assert nginxEcho["mismatches"] == [] and nginxEcho["echoed"] == 16
    for name in ("tunnel", "relay"):
        assert results[name] == results["nginx"], name


def listenPort(text: str) -> int:
    """The port of a config's first C{listen 127.0.0.1:PORT}."""
    return int(re.search(r"listen 127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]


def upgradeRaw(s: socket.socket) -> None:
    """Send the seeds' upgrade request for C{/ws} on C{s}; read and check its 101 head."""
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n" + HANDSHAKES["upgrade"] + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ")


def maskedText(payload: bytes) -> bytes:
    """One masked text frame (as a client must send), payload under 126 bytes."""
    import os

    key = os.urandom(4)
    return (bytes([0x81, 0x80 | len(payload)]) + key
            + bytes(b ^ key[i % 4] for i, b in enumerate(payload)))


def testStalledClientBoundsProxyMemory(echo: EchoServer, anyProxy: RproxyRunner) -> None:
    """
    A client that stops reading while the backend floods it with 200 MiB
    (64 KiB messages sent as fast as the backend's socket takes them):
    through the relay and through the byte tunnel, the proxy pauses the
    backend, so its RSS stays within a bound far below the flood and the
    backend never gets to finish; once the client reads again every byte
    arrives.
    """
    import socket

    from tests.integration.test_proxy import rssKiB

    messages = 3200
    pid = anyProxy.process.pid
    before = rssKiB(pid)
    flooded = echo.lines("FLOODED").count("\n")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(DEADLINE)
    s.connect(("127.0.0.1", anyProxy.port))
    try:
        upgradeRaw(s)
        s.sendall(maskedText(b"flood-%d" % messages))
        # Not reading: sample the proxy's memory for a few seconds, time
        # in which an unpaused backend would have sent all 200 MiB.
        peak = before
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            peak = max(peak, rssKiB(pid))
            time.sleep(0.05)
        assert echo.lines("FLOODED").count("\n") == flooded, "the backend was never paused"
        growth = (peak - before) / 1024
        print(f"{anyProxy.mode}: proxy RSS grew {growth:.1f} MiB while the client"  # type: ignore[attr-defined]
              f" read nothing of a {messages // 16} MiB flood")
        assert growth < 48
        received = 0
        wanted = messages * (65536 + 10)  # a 64 KiB frame has a 10-byte header
        while received < wanted:
            chunk = s.recv(1 << 20)
            assert chunk, "the connection closed before the flood was through"
            received += len(chunk)
        assert received == wanted
        waitFor(lambda: echo.lines("FLOODED").count("\n") > flooded, "the backend to finish")
    finally:
        s.close()


@pytest.mark.parametrize("side", ["client", "backend", "both"])
def testDeflateOnOneSide(side: str, echo: EchoServer,
                         rproxyRunner: Callable[..., RproxyRunner]) -> None:
    """
    With C{proxy_websocket_deflate on}, permessage-deflate is negotiated
    with each side apart: a client offering it to a backend that refuses
    it compresses with the proxy only; a client offering nothing to a
    backend that accepts it leaves only the backend side compressed; both
    compress when both agree.  The 1 B - 1 MiB fragmented echo is exact in
    every case.
    """
    backend = echo if side == "client" else EchoServer("deflate")
    try:
        runner = rproxyRunner(relayConfig(backend, extra="proxy_websocket_deflate on;"))
        before = backend.lines("EXT").count("\n")
        report = runClient(runner.port, "deflate:echo" if side != "backend" else "echo")
        assert (report["mismatches"], report["echoed"]) == ([], 16)
        assert report["close"] == [True, 4000, "client bye"]
        assert report["extensions"] == ([] if side == "backend" else ["permessage-deflate"])
        waitFor(lambda: backend.lines("EXT").count("\n") > before, "the backend's EXT line")
        assert backend.lines("EXT").splitlines()[before:] == [
            "EXT -" if side == "client" else "EXT permessage-deflate"]
    finally:
        if backend is not echo:
            backend.cleanup()


@pytest.mark.parametrize("method", ["ip_hash", "round-robin"])
def testUpstreamPeerChoice(method: str, rproxyRunner: Callable[..., RproxyRunner]) -> None:
    """
    Relayed WebSocket connections go through the upstream group's peer
    choice: with C{ip_hash} all six connections from 127.0.0.1 reach the
    same one of two echo servers; with round-robin they alternate.
    """
    servers = [EchoServer(), EchoServer()]
    try:
        text = relayConfig(servers[0]).replace(
            f"proxy_pass http://127.0.0.1:{servers[0].port};", "proxy_pass http://pair;")
        group = "\n".join(f"        server 127.0.0.1:{s.port};" for s in servers)
        balancing = "ip_hash;" if method == "ip_hash" else ""
        text = text.replace("    server {", f"    upstream pair {{\n        {balancing}\n{group}\n"
                            "    }\n\n    server {", 1)
        runner = rproxyRunner(text)
        for _ in range(6):
            report = runClient(runner.port, "burst-2")
            assert (report["echoed"], report["close"]) == (2, [True, 1000, None])
        counts = sorted(s.lines("EXT").count("\n") for s in servers)
        assert counts == ([0, 6] if method == "ip_hash" else [3, 3])
    finally:
        for server in servers:
            server.cleanup()


def _mask(payload: bytes, key: bytes) -> bytes:
    """C{payload} XORed with the 4-byte C{key} repeated (RFC 6455 5.3)."""
    size = len(payload)
    keys = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(size, "big")


def maskedBinary(payload: bytes) -> bytes:
    """One masked binary frame with a 64-bit length (what any size may use)."""
    import os
    import struct

    key = os.urandom(4)
    return b"\x82\xff" + struct.pack(">Q", len(payload)) + key + _mask(payload, key)


def readFrames(s: Any, count: int) -> Iterator[tuple]:
    """
    Read C{count} frames a client sent (masked) from the socket C{s}.

    @return: C{(opcode, payload)} of each, unmasked, as they arrive.
    """
    import struct

    buffer = bytearray()

    def need(n: int) -> bytes:
        while len(buffer) < n:
            chunk = s.recv(1 << 20)
            assert chunk, "the connection closed mid-frame"
            buffer.extend(chunk)
        data = bytes(buffer[:n])
        del buffer[:n]
        return data

    for _ in range(count):
        first, second = need(2)
        assert second & 0x80, "a frame towards a server must be masked"
        size = second & 0x7F
        if size == 126:
            size = struct.unpack(">H", need(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", need(8))[0]
        key = need(4)
        yield first & 0x0F, _mask(need(size), key)


class StalledBackend:
    """
    A WebSocket backend on a raw socket with a 64 KiB receive buffer: it
    answers one upgrade with its 101, then reads nothing until L{read} is
    called, and parses what it reads as frames.
    """

    def __init__(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1."""
        import socket

        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(DEADLINE)
        self.port = self.listener.getsockname()[1]
        self.connection: Any = None

    def accept(self) -> None:
        """Take the proxy's connection and answer its upgrade."""
        import base64
        import hashlib

        self.connection, _ = self.listener.accept()
        self.connection.settimeout(DEADLINE)
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.connection.recv(1)
        key = re.search(rb"(?i)sec-websocket-key: *(\S+)", head).group(1)  # type: ignore[union-attr]
        accept = base64.b64encode(hashlib.sha1(
            key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        self.connection.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                                + b"\r\n\r\n")

    def read(self, count: int) -> Iterator[tuple]:
        """Start reading: the first C{count} frames, as L{readFrames}."""
        return readFrames(self.connection, count)

    def close(self) -> None:
        """Close both sockets."""
        if self.connection is not None:
            self.connection.close()
        self.listener.close()


@pytest.mark.parametrize("mode", ["relay", "tunnel"])
def testStalledBackendBoundsProxyMemory(mode: str,
                                        rproxyRunner: Callable[..., RproxyRunner]) -> None:
    """
    A backend that stops reading while the client floods it with 200 MiB
    (3,200 numbered 64 KiB binary messages): through the relay and through
    the byte tunnel, the proxy stops reading from the client, so the
    client cannot get its flood out and the proxy's RSS stays within 30
    MiB of where it was; once the backend reads again every message
    arrives, whole and in order.
    """
    import socket
    import struct
    import threading

    from tests.integration.test_proxy import rssKiB

    messages = 3200
    backend = StalledBackend()
    try:
        runner = rproxyRunner(relayConfig(backend, mode == "relay"))  # type: ignore[arg-type]
        pid = runner.process.pid
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        s.settimeout(DEADLINE * 2)
        s.connect(("127.0.0.1", runner.port))
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n" + HANDSHAKES["upgrade"] + b"\r\n")
        backend.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        before = rssKiB(pid)
        sent = [0]
        failure: list = []

        def flood() -> None:
            try:
                for i in range(messages):
                    s.sendall(maskedBinary(struct.pack(">I", i) * 16384))
                    sent[0] = i + 1
            except Exception as e:  # reported by the main thread
                failure.append(e)

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        # The backend reads nothing: sample the proxy's memory for a few
        # seconds, time in which an unpaused proxy would have taken all
        # 200 MiB from the client.
        peak = before
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            peak = max(peak, rssKiB(pid))
            time.sleep(0.05)
        stalledAt = sent[0]
        assert failure == []
        assert sender.is_alive() and stalledAt < messages // 4, (
            f"the client got {stalledAt} of {messages} messages out: the proxy kept reading")
        growth = (peak - before) / 1024
        print(f"{mode}: proxy RSS grew {growth:.1f} MiB while the backend read nothing of a"
              f" {messages // 16} MiB flood; the client got {stalledAt} messages out")
        assert growth < 30
        wrong = [i for i, (opcode, payload) in enumerate(backend.read(messages))
                 if (opcode, payload) != (2, struct.pack(">I", i) * 16384)]
        sender.join(DEADLINE)
        assert not sender.is_alive() and failure == [] and sent[0] == messages
        assert wrong == []
        s.close()
    finally:
        backend.close()


def readServerFrame(s: Any) -> tuple:
    """
    One unmasked frame (as a server sends) of under 126 bytes from C{s}.

    @return: C{(opcode, payload)}, or C{None} when the connection closed.
    """
    head = s.recv(2)
    if not head:
        return None  # type: ignore[return-value]
    while len(head) < 2:
        head += s.recv(2 - len(head))
    payload = b""
    while len(payload) < head[1] & 0x7F:
        payload += s.recv((head[1] & 0x7F) - len(payload))
    return head[0] & 0x0F, payload


def testGracefulShutdownKeepsTunnelUntilDeadline(
        echo: EchoServer, rproxyRunner: Callable[..., RproxyRunner]) -> None:
    """
    SIGQUIT with C{worker_shutdown_timeout 3s}: a byte-tunnelled
    WebSocket is left alone (a tunnel cannot know where a frame ends, so
    it sends no 1001): once the proxy has stopped listening, messages are
    still echoed through it; at the deadline its TCP connection is closed
    with no close frame, and the proxy exits 0.
    """
    import socket

    from tests.integration.harness import portAccepts, waitUntil

    # docs/proxy.md's example, as shown there.
    runner = rproxyRunner(fill(block("proxy.md", "tunnel-shutdown").text,
                               {"port": str(freePort()), "backend": str(echo.port)}))
    s = socket.create_connection(("127.0.0.1", runner.port), timeout=DEADLINE)
    try:
        upgradeRaw(s)
        runner.process.send_signal(signal.SIGQUIT)
        quitAt = time.monotonic()
        waitUntil(lambda: not portAccepts(runner.port), "the proxy to stop listening")
        for i in range(3):
            s.sendall(maskedText(b"after quit %d" % i))
            assert readServerFrame(s) == (1, b"after quit %d" % i)
        assert runner.process.poll() is None
        try:
            rest = s.recv(1024)
        except ConnectionResetError:
            rest = b""
        closedAfter = time.monotonic() - quitAt
    finally:
        s.close()
    assert rest == b"", "the tunnel added bytes (a close frame?) to the stream"
    assert closedAfter >= 3, f"closed {closedAfter:.2f} s after SIGQUIT, before the deadline"
    assert runner.process.wait(timeout=DEADLINE) == 0


@pytest.fixture(scope="module")
def wssEchoes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """
    Two Autobahn wss echo servers with certificates from a CA made for the
    run: C{good} for C{backend.internal}, C{wrong} for C{wrong.internal};
    C{ca} is the CA certificate's path.
    """
    from tests.integration.certs import CertificateAuthority

    ca = CertificateAuthority(tmp_path_factory.mktemp("wss-certs"))
    servers = {}
    try:
        for name in ("good", "wrong"):
            cert, key = ca.issue([f"{'backend' if name == 'good' else 'wrong'}.internal"])
            servers[name] = EchoServer(f"tls:{cert}:{key}")
        yield {"ca": str(ca.certPath), **servers}
    finally:
        for server in servers.values():
            server.cleanup()


def wssConfig(wssEchoes: dict, backend: str, relay: bool) -> str:
    """
    docs/upstream-tls.md's C{websocket-tls} location in front of the
    C{backend} echo server, trusting this run's CA; without C{relay}, the
    same location as a byte tunnel.
    """
    text = fill(configText(block("upstream-tls.md", "websocket-tls")),
                {"port": str(freePort()), "backend": str(wssEchoes[backend].port)})
    text = text.replace("test-ca/ca.pem", wssEchoes["ca"])
    return text if relay else text.replace("proxy_websocket_relay         on;", "")


@pytest.mark.parametrize("mode", ["relay", "tunnel"])
def testTLSBackend(mode: str, wssEchoes: dict,
                   rproxyRunner: Callable[..., RproxyRunner]) -> None:
    """
    C{proxy_pass https://} with C{proxy_ssl_verify on} to a wss echo
    server: the 1 B - 1 MiB fragmented echo, subprotocol and close code
    come through the relay and the byte tunnel alike; the backend with a
    certificate for the wrong name never gets the upgrade, which is
    answered 502, and the error log says why.
    """
    good = rproxyRunner(wssConfig(wssEchoes, "good", mode == "relay"))
    seen = len(wssEchoes["good"].lines("FRAMES").splitlines())
    report = runClient(good.port, "echo")
    assert (report["protocol"], report["mismatches"]) == ("chat", [])
    assert report["echoed"] == report["sent"] == 16
    assert report["close"] == [True, 4000, "client bye"]
    counts = {int(line.split()[2])
              for line in wssEchoes["good"].lines("FRAMES").splitlines()[seen:]
              if line.split()[1] == str(1 << 20)}
    # The relay sends each 1 MiB message in one frame; the tunnel passes
    # Autobahn's 4 KiB fragments (and its empty final frame) through.
    assert counts == ({1} if mode == "relay" else {(1 << 20) // 4096 + 1})

    wrong = rproxyRunner(wssConfig(wssEchoes, "wrong", mode == "relay"))
    before = wssEchoes["wrong"].lines("EXT").count("\n")
    status, _ = handshake(wrong.port, HANDSHAKES["upgrade"])
    assert status == 502
    waitFor(lambda: "does not match" in wrong.errorLog, "the verification error")
    assert "backend.internal" in next(line for line in wrong.errorLog.splitlines()
                                      if "does not match" in line)
    assert wssEchoes["wrong"].lines("EXT").count("\n") == before
