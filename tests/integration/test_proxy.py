# -*- test-case-name: tests.integration.test_proxy -*-
"""
The proxy path end to end: twisted_rproxy as a real process in front of the
recording twisted.web backend (tests/integration/backend.py), over real
sockets.  These pin down what the unit tests cannot see on their own:
streaming and backpressure through two kernels' socket buffers, keepalive
reuse as the backend witnesses it, failure answers and their error-log
lines, request bodies, retries, Upgrade tunnels and UNIX sockets.

Nothing here asserts a duration: every wait polls an event with a deadline,
and "arrived before the stream ended" is proved by a backend route that
cannot end the stream until the test says so.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.integration.harness import (
    Backend,
    RproxyRunner,
    freePort,
    parseRawResponses,
    proxyConfig,
    request,
)

DEADLINE = 15.0
"""How long any single awaited event may take before the test fails."""

PATTERN_PERIOD = 251
"""The period of the backend's /pattern body (byte I is I % 251)."""

_PATTERN = bytes(range(PATTERN_PERIOD)) * ((1 << 20) // PATTERN_PERIOD + 2)
"""Enough of the pattern to compare any received piece against."""

UPGRADE_MAP = """
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }"""
"""The map from nginx's WebSocket proxying documentation."""

RunnerFactory = Callable[..., RproxyRunner]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def startProxy(
    rproxyRunner: RunnerFactory, server: str, httpExtra: str = "", mainExtra: str = ""
) -> RproxyRunner:
    """
    Run twisted_rproxy with C{server} inside its one C{server} block, on a
    fresh port, and return it once it accepts connections.
    """
    return rproxyRunner(proxyConfig(freePort(), server, httpExtra, mainExtra))


def waitFor(predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """
    Poll C{predicate} until it is true, failing the test with C{what} if
    the deadline passes first (an event, never a fixed sleep).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def waitForLog(runner: RproxyRunner, pattern: str) -> str:
    """
    Wait until the proxy's error log has a line matching C{pattern} (the
    log is written as events happen, so it may lag the response) and
    return that line.
    """
    found: List[str] = []

    def present() -> bool:
        """Whether a matching line is there yet (kept in C{found})."""
        for line in runner.errorLog.splitlines():
            if re.search(pattern, line):
                found.append(line)
                return True
        return False

    deadline = time.monotonic() + DEADLINE
    while not present():
        if time.monotonic() >= deadline:
            pytest.fail(f"no error log line matching {pattern!r}:\n{runner.errorLog}")
        time.sleep(0.02)
    return found[0]


def rssKiB(pid: int) -> int:
    """
    A process's resident set size in KiB, from /proc/PID/status.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class RawClient:
    """
    A blocking HTTP/1.1 client on a raw socket, for what http.client hides:
    reading a response piece by piece while it is still open, a tiny
    receive buffer, Upgrade, and seeing a connection cut short.
    """

    def __init__(
        self, port: int = 0, unixPath: Optional[str] = None, receiveBuffer: int = 0
    ) -> None:
        """
        Connect to 127.0.0.1:C{port} (or the UNIX socket C{unixPath}),
        with C{SO_RCVBUF} set first when C{receiveBuffer} is given.
        """
        family = socket.AF_UNIX if unixPath else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if receiveBuffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(unixPath if unixPath else ("127.0.0.1", port))
        self.buffer = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def get(self, path: str, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        """Send a GET for C{path} with Host: localhost and C{headers}."""
        lines = [f"GET {path} HTTP/1.1", "Host: localhost"]
        lines += [f"{name}: {value}" for name, value in headers]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def receiveSome(self, size: int = 65536) -> bytes:
        """One recv(); marks the client closed (and returns b"") at EOF."""
        try:
            data = self.sock.recv(size)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
        return data

    def readUntil(self, marker: bytes) -> bytes:
        """
        Read until C{marker} is buffered; return everything up to and
        including it and keep the rest.
        """
        deadline = time.monotonic() + DEADLINE
        while marker not in self.buffer:
            if self.closed or time.monotonic() >= deadline:
                pytest.fail(f"no {marker!r} before close or deadline; got {self.buffer[-500:]!r}")
            self.buffer += self.receiveSome()
        index = self.buffer.index(marker) + len(marker)
        found, self.buffer = self.buffer[:index], self.buffer[index:]
        return found

    def readHead(self) -> Tuple[int, List[Tuple[str, str]]]:
        """Read a response head: its status and headers."""
        head = self.readUntil(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.lower(), value.strip()))
        return status, headers

    def readExactly(self, size: int) -> bytes:
        """Read exactly C{size} bytes (failing at EOF or the deadline)."""
        deadline = time.monotonic() + DEADLINE
        while len(self.buffer) < size:
            if self.closed or time.monotonic() >= deadline:
                pytest.fail(f"wanted {size} bytes, got {len(self.buffer)} before close")
            self.buffer += self.receiveSome()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def readToClose(self) -> bytes:
        """Read until the server closes the connection."""
        deadline = time.monotonic() + DEADLINE
        while not self.closed:
            if time.monotonic() >= deadline:
                pytest.fail("connection still open at the deadline")
            self.buffer += self.receiveSome()
        data, self.buffer = self.buffer, b""
        return data

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def header(headers: List[Tuple[str, str]], name: str) -> Optional[str]:
    """The first value of C{name} (lower case) in a L{RawClient} head."""
    for key, value in headers:
        if key == name:
            return value
    return None


def upstreamHeaders(echo: dict) -> List[str]:
    """The lower-cased names of the headers the backend received."""
    return [name.lower() for name, _value in echo["headers"]]


@pytest.fixture(scope="module")
def backendPair() -> Iterator[Tuple[Backend, Backend]]:
    """
    Two backends called C{a} and C{b}, for retries between peers (routes
    like C{/reset?only=a} fail on one of them only).
    """
    first = Backend(name="a").start()
    try:
        second = Backend(name="b").start()
        try:
            yield first, second
        finally:
            second.cleanup()
    finally:
        first.cleanup()


# ---------------------------------------------------------------------------
# 1. streaming
# ---------------------------------------------------------------------------


def testUnbufferedEventStreamArrivesEventByEvent(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    With C{proxy_buffering off} each server-sent event reaches the client
    as the backend writes it: the client reads event 0 while the backend
    is still waiting for a trigger before it may send event 1, so the
    stream provably has not ended; each trigger then releases exactly the
    next event.
    """
    proxy = startProxy(rproxyRunner, f"""
        location / {{
            proxy_buffering off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://{backend.address};
        }}""")
    key = f"unbuffered-{os.getpid()}-{time.monotonic_ns()}"
    client = RawClient(proxy.port)
    try:
        client.get(f"/sse-gated?key={key}&n=3")
        status, headers = client.readHead()
        assert status == 200
        assert header(headers, "content-type") == "text/event-stream"
        assert b"data: 0\n\n" in client.readUntil(b"data: 0\n\n")
        assert b"data: 1" not in client.buffer
        for i in (1, 2):
            triggered = request(backend.port, path=f"/trigger?key={key}")
            assert triggered.status == 200, "the stream ended before it was triggered"
            assert b"data: %d\n\n" % i in client.readUntil(b"data: %d\n\n" % i)
        # The last event ends the stream: the closing chunk follows.
        client.readUntil(b"0\r\n\r\n")
    finally:
        client.close()


# ---------------------------------------------------------------------------
# 2. bounded memory with a slow client
# ---------------------------------------------------------------------------

HUNDRED_MB = 100 * 1024 * 1024


@pytest.mark.parametrize("buffering", ["on", "off"])
def testSlowClientKeepsProxyMemoryBounded(
    buffering: str, backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    A 100 MB response to a client with a tiny receive buffer that reads in
    bursts makes the proxy pause the backend rather than hold the body:
    its RSS, sampled from /proc while the body streams, grows by far less
    than the response; and every byte arrives, in order.
    """
    proxy = startProxy(rproxyRunner, f"""
        location / {{
            proxy_buffering {buffering};
            proxy_pass http://{backend.address};
        }}""")
    assert proxy.process is not None
    pid = proxy.process.pid
    # Warm up, so the baseline includes the code paths and allocator
    # arenas one response needs.
    warm = request(proxy.port, path="/pattern?size=1048576")
    assert len(warm.body) == 1048576
    baseline = rssKiB(pid)
    peak = baseline
    client = RawClient(proxy.port, receiveBuffer=4096)
    try:
        client.get("/pattern?size=%d" % HUNDRED_MB)
        status, headers = client.readHead()
        assert status == 200
        assert header(headers, "content-length") == str(HUNDRED_MB)
        offset = 0
        pending, client.buffer = client.buffer, b""
        while offset < HUNDRED_MB:
            burst = 0
            while burst < 256 * 1024 and offset + len(pending) < HUNDRED_MB:
                data = pending or client.receiveSome()
                pending = b""
                if not data:
                    pytest.fail(f"connection closed after {offset} bytes")
                start = offset % PATTERN_PERIOD
                assert data == _PATTERN[start:start + len(data)], f"wrong bytes at {offset}"
                offset += len(data)
                burst += len(data)
            if pending:
                continue
            peak = max(peak, rssKiB(pid))
            if offset >= HUNDRED_MB:
                break
            time.sleep(0.002)  # a client busy elsewhere between bursts
    finally:
        client.close()
    assert offset == HUNDRED_MB
    grown = peak - baseline
    assert grown < 30 * 1024, f"proxy RSS grew by {grown} KiB for a 100 MB response"


# ---------------------------------------------------------------------------
# 3. keepalive to backends
# ---------------------------------------------------------------------------

KEEPALIVE_LOCATION = """
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://u;
        }"""
"""The documented recipe for upstream keepalive."""


def testKeepaliveReusesOneBackendConnection(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    With C{keepalive 4} and the HTTP/1.1 recipe, 20 sequential requests
    (each on its own client connection) share one backend connection, as
    the backend's connection ids and request counters show.
    """
    proxy = startProxy(
        rproxyRunner, KEEPALIVE_LOCATION,
        httpExtra=f"upstream u {{ server {backend.address}; keepalive 4; }}",
    )
    echoes = [request(proxy.port, path=f"/ka/{i}").json() for i in range(20)]
    assert {e["connection"] for e in echoes} == {echoes[0]["connection"]}
    assert [e["requests_on_connection"] for e in echoes] == list(range(1, 21))
    assert all(e["version"] == "HTTP/1.1" for e in echoes)
    assert all("connection" not in upstreamHeaders(e) for e in echoes)


def testWithoutKeepaliveEveryRequestConnects(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    The same recipe without C{keepalive} in the upstream opens a new
    backend connection per request, as nginx does.
    """
    proxy = startProxy(
        rproxyRunner, KEEPALIVE_LOCATION,
        httpExtra=f"upstream u {{ server {backend.address}; }}",
    )
    echoes = [request(proxy.port, path=f"/nka/{i}").json() for i in range(5)]
    assert len({e["connection"] for e in echoes}) == 5
    assert all(e["requests_on_connection"] == 1 for e in echoes)


def testBackendConnectionCloseIsNotReused(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    A response with C{Connection: close} ends that backend connection's
    use: the next request opens a new one (it would fail or hang on the
    closed one otherwise).
    """
    proxy = startProxy(
        rproxyRunner, KEEPALIVE_LOCATION,
        httpExtra=f"upstream u {{ server {backend.address}; keepalive 4; }}",
    )
    first = request(proxy.port, path="/before").json()
    closing = request(proxy.port, path="/keepalive-close")
    assert (closing.status, closing.body) == (200, b"closing\n")
    after = request(proxy.port, path="/after").json()
    assert after["connection"] != first["connection"]
    assert after["requests_on_connection"] == 1


def testStaleKeepaliveConnectionIsRetried(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    A cached connection the backend closes just as the proxy reuses it
    (here: the backend closes unanswered any request but a connection's
    first) is retried on a fresh connection for a GET; the client never
    sees the failure.
    """
    proxy = startProxy(
        rproxyRunner, KEEPALIVE_LOCATION,
        httpExtra=f"upstream u {{ server {backend.address}; keepalive 4; }}",
    )
    first = request(proxy.port, path="/warm").json()
    retried = request(proxy.port, path="/close-if-reused")
    assert retried.status == 200
    echo = retried.json()
    assert echo["connection"] != first["connection"]
    assert echo["requests_on_connection"] == 1


# ---------------------------------------------------------------------------
# 4. 502 and 504
# ---------------------------------------------------------------------------


def testDeadBackendIs502(deadPort: int, rproxyRunner: RunnerFactory) -> None:
    """
    A refused connection answers 502 and logs nginx's line for it.
    """
    proxy = startProxy(rproxyRunner, f"location / {{ proxy_pass http://127.0.0.1:{deadPort}; }}")
    response = request(proxy.port, path="/down")
    assert response.status == 502
    line = waitForLog(proxy, r"connect\(\) failed \(111: Connection refused\)")
    assert "[error]" in line
    assert "while connecting to upstream" in line
    assert f'upstream: "http://127.0.0.1:{deadPort}/down"' in line
    assert 'request: "GET /down HTTP/1.1"' in line


def testReadTimeoutIs504(backend: Backend, rproxyRunner: RunnerFactory) -> None:
    """
    A backend that never answers, past C{proxy_read_timeout}, is a 504
    with nginx's timeout line.
    """
    proxy = startProxy(rproxyRunner, f"""
        location / {{ proxy_read_timeout 1s; proxy_pass http://{backend.address}; }}""")
    response = request(proxy.port, path="/stall")
    assert response.status == 504
    line = waitForLog(proxy, r"upstream timed out \(110: Connection timed out\)")
    assert "while reading response header from upstream" in line


def testBackendClosingMidBodyCutsTheClientOff(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    When the backend dies after the head went out, the client cannot be
    told with a status any more: the proxy closes its connection with the
    body short, so the client knows the response is broken.
    """
    proxy = startProxy(rproxyRunner, f"location / {{ proxy_pass http://{backend.address}; }}")
    client = RawClient(proxy.port)
    try:
        client.get("/truncate?size=1000&send=100")
        data = client.readToClose()
    finally:
        client.close()
    response = parseRawResponses(data)[0]
    assert response.status == 200
    assert response.header("Content-Length") == "1000"
    assert not response.complete
    assert response.body == b"y" * 100
    line = waitForLog(proxy, r"upstream prematurely closed connection")
    assert "while reading upstream" in line


def testGarbledStatusLineIs502(backend: Backend, rproxyRunner: RunnerFactory) -> None:
    """
    A response that does not start with an HTTP status line is a 502 (a
    deliberate difference from nginx, which relays it as HTTP/0.9), logged
    with nginx's wording.
    """
    proxy = startProxy(rproxyRunner, f"location / {{ proxy_pass http://{backend.address}; }}")
    response = request(proxy.port, path="/garbage")
    assert response.status == 502
    line = waitForLog(proxy, r"upstream sent no valid HTTP/1\.0 header")
    assert "while reading response header from upstream" in line


# ---------------------------------------------------------------------------
# 5. request bodies
# ---------------------------------------------------------------------------


def testPostWithContentLength(backend: Backend, rproxyRunner: RunnerFactory) -> None:
    """
    A Content-Length body arrives intact with its length.
    """
    proxy = startProxy(rproxyRunner, f"location / {{ proxy_pass http://{backend.address}; }}")
    body = b"a=1&b=2&c=" + bytes(range(32, 127))
    echo = request(proxy.port, "POST", "/form", body=body).json()
    assert echo["method"] == "POST"
    assert echo["body"].encode("latin-1") == body
    headers = dict((n.lower(), v) for n, v in echo["headers"])
    assert headers["content-length"] == str(len(body))


def testChunkedBodyIsSentWithContentLength(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    A chunked request body is read whole, then sent upstream de-chunked
    with a Content-Length, as nginx does with request buffering on.
    """
    proxy = startProxy(rproxyRunner, f"location / {{ proxy_pass http://{backend.address}; }}")
    chunks = [b"hello ", b"chunked ", b"world"]
    echo = request(proxy.port, "POST", "/upload", body=chunks).json()
    assert echo["body"] == "hello chunked world"
    headers = dict((n.lower(), v) for n, v in echo["headers"])
    assert headers["content-length"] == "19"
    assert "transfer-encoding" not in headers


def testLargeBodySpillsToTempFileIntact(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    A body bigger than C{client_body_buffer_size} is buffered to a
    temporary file (nginx's warning says so) and reaches the backend
    byte for byte, both with Content-Length and chunked.
    """
    proxy = startProxy(rproxyRunner, f"""
        client_body_buffer_size 16k;
        client_max_body_size 10m;
        location / {{ proxy_pass http://{backend.address}; }}""",
        mainExtra="error_log logs/error.log warn;")
    body = bytes(range(256)) * 4096  # 1 MiB
    echo = request(proxy.port, "PUT", "/large", body=body).json()
    assert echo["body_len"] == len(body)
    assert echo["body"].encode("latin-1") == body
    waitForLog(proxy, r"\[warn\].*a client request body is buffered to a temporary file")
    chunks = [body[i:i + 100000] for i in range(0, len(body), 100000)]
    echo = request(proxy.port, "POST", "/large-chunked", body=chunks).json()
    assert echo["body"].encode("latin-1") == body
    headers = dict((n.lower(), v) for n, v in echo["headers"])
    assert headers["content-length"] == str(len(body))


def testUnbufferedChunkedBodyStreamsChunked(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    With C{proxy_request_buffering off} and HTTP/1.1 upstream, a chunked
    body is streamed on chunked (no Content-Length is known yet), and
    arrives intact.
    """
    proxy = startProxy(rproxyRunner, f"""
        location / {{
            proxy_request_buffering off;
            proxy_http_version 1.1;
            proxy_pass http://{backend.address};
        }}""")
    chunks = [b"stream ", b"me ", b"upstream"] + [b"z" * 50000] * 4
    echo = request(proxy.port, "POST", "/stream", body=chunks).json()
    assert echo["body"].encode("latin-1") == b"".join(chunks)
    headers = dict((n.lower(), v) for n, v in echo["headers"])
    assert headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in headers


# ---------------------------------------------------------------------------
# 6. proxy_next_upstream
# ---------------------------------------------------------------------------


def testDeadPeerIsSkipped(
    backend: Backend, deadPort: int, rproxyRunner: RunnerFactory
) -> None:
    """
    With a dead and a live peer every GET succeeds: a refused connect
    moves on to the next peer, and the dead one is then left alone.
    """
    proxy = startProxy(
        rproxyRunner, "location / { proxy_pass http://u; }",
        httpExtra=f"upstream u {{ server 127.0.0.1:{deadPort}; server {backend.address}; }}",
    )
    for i in range(6):
        assert request(proxy.port, path=f"/n/{i}").status == 200
    for i in range(3):
        assert request(proxy.port, "POST", f"/p/{i}", body=b"data").json()["body"] == "data"
    waitForLog(proxy, r"connect\(\) failed \(111: Connection refused\) while connecting")


def testPostNotRetriedAfterReset(
    backendPair: Tuple[Backend, Backend], rproxyRunner: RunnerFactory
) -> None:
    """
    A POST sent to a peer that resets is not replayed on the next peer
    (it may have had an effect): the client gets a 502.
    """
    first, second = backendPair
    proxy = startProxy(
        rproxyRunner, "location / { proxy_pass http://u; }",
        httpExtra=f"upstream u {{ server {first.address}; server {second.address}; }}",
    )
    response = request(proxy.port, "POST", "/reset?only=a", body=b"once")
    assert response.status == 502
    waitForLog(proxy, r"(Connection reset by peer|prematurely closed).*"
                      r"while reading response header from upstream")


def testPostRetriedWhenNonIdempotent(
    backendPair: Tuple[Backend, Backend], rproxyRunner: RunnerFactory
) -> None:
    """
    With C{non_idempotent} the same POST goes on to the next peer, body
    and all.
    """
    first, second = backendPair
    proxy = startProxy(
        rproxyRunner, """location / {
            proxy_next_upstream error timeout non_idempotent;
            proxy_pass http://u;
        }""",
        httpExtra=f"upstream u {{ server {first.address}; server {second.address}; }}",
    )
    response = request(proxy.port, "POST", "/reset?only=a", body=b"twice")
    assert response.status == 200
    echo = response.json()
    assert (echo["name"], echo["body"]) == ("b", "twice")


def testGetRetriedAfterReset(
    backendPair: Tuple[Backend, Backend], rproxyRunner: RunnerFactory
) -> None:
    """
    An idempotent request that meets a reset is retried on the next peer.
    """
    first, second = backendPair
    proxy = startProxy(
        rproxyRunner, "location / { proxy_pass http://u; }",
        httpExtra=f"upstream u {{ server {first.address}; server {second.address}; }}",
    )
    response = request(proxy.port, "GET", "/reset?only=a")
    assert response.status == 200
    assert response.json()["name"] == "b"


# ---------------------------------------------------------------------------
# 7. Upgrade
# ---------------------------------------------------------------------------


def testUpgradeTunnelsBytes(backend: Backend, rproxyRunner: RunnerFactory) -> None:
    """
    With the documented WebSocket recipe an Upgrade request reaches the
    backend with its Upgrade and C{Connection: upgrade}; the client sees
    the 101, then bytes flow both ways through the tunnel.
    """
    proxy = startProxy(rproxyRunner, f"""
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_pass http://{backend.address};
        }}""", httpExtra=UPGRADE_MAP)
    client = RawClient(proxy.port)
    try:
        client.get("/upgrade", (("Upgrade", "websocket"), ("Connection", "Upgrade")))
        status, headers = client.readHead()
        assert status == 101
        assert header(headers, "upgrade") == "websocket"
        assert (header(headers, "connection") or "").lower() == "upgrade"
        assert header(headers, "x-echo-connection") == "upgrade"
        for message in (b"hello through the tunnel", b"\x00\x01\xff binary", b"x" * 200000):
            client.send(message)
            assert client.readExactly(len(message)) == message
    finally:
        client.close()


def testNoUpgradeWithoutTheRecipe(backend: Backend, rproxyRunner: RunnerFactory) -> None:
    """
    Without C{proxy_set_header Upgrade} the client's Upgrade header is a
    hop-by-hop header like any other: the backend never sees it and
    answers an ordinary request.
    """
    proxy = startProxy(rproxyRunner, f"""
        location / {{ proxy_http_version 1.1; proxy_pass http://{backend.address}; }}""")
    response = request(
        proxy.port, path="/upgrade",
        headers=(("Upgrade", "websocket"), ("Connection", "Upgrade")),
    )
    assert response.status == 200
    names = upstreamHeaders(response.json())
    assert "upgrade" not in names
    assert dict(response.json()["headers"]).get("Connection") == "close"


# ---------------------------------------------------------------------------
# 8. proxy_intercept_errors
# ---------------------------------------------------------------------------

INTERCEPT = """
        location / {{
            {intercept}
            error_page 404 /custom404;
            proxy_pass http://{backend};
        }}
        location = /custom404 {{ return 404 "custom\\n"; }}"""


def testInterceptedErrorServesErrorPage(backend: Backend, rproxyRunner: RunnerFactory) -> None:
    """
    C{proxy_intercept_errors on} hands a backend 404 to C{error_page}.
    """
    proxy = startProxy(rproxyRunner, INTERCEPT.format(
        intercept="proxy_intercept_errors on;", backend=backend.address))
    response = request(proxy.port, path="/status/404")
    assert (response.status, response.body) == (404, b"custom\n")
    # The connection to the client stays usable after the interception.
    assert request(proxy.port, path="/ok").status == 200


def testWithoutInterceptBackendErrorPasses(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    Without interception the backend's own 404 body reaches the client.
    """
    proxy = startProxy(rproxyRunner, INTERCEPT.format(intercept="", backend=backend.address))
    response = request(proxy.port, path="/status/404")
    assert (response.status, response.body) == (404, b"status 404\n")


# ---------------------------------------------------------------------------
# 9. UNIX sockets
# ---------------------------------------------------------------------------


def testUnixSocketsBothSides(rproxyRunner: RunnerFactory) -> None:
    """
    C{proxy_pass http://unix:/path:/uri} reaches a backend listening on a
    UNIX socket (with the URI part replacing the location prefix), and
    C{listen unix:/path} serves clients on one.
    """
    directory = Path(tempfile.mkdtemp(prefix="rproxy-unix-"))
    try:
        _checkUnixSockets(rproxyRunner, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _checkUnixSockets(rproxyRunner: RunnerFactory, directory: Path) -> None:
    """
    The body of L{testUnixSocketsBothSides}, with its sockets in
    C{directory}.
    """
    backendPath = str(directory / "backend.sock")
    proxyPath = str(directory / "proxy.sock")
    with Backend(name="unix", unixPath=backendPath):
        waitFor(lambda: os.path.exists(backendPath), "the backend's UNIX socket")
        proxy = startProxy(rproxyRunner, f"""
            listen unix:{proxyPath};
            location /app/ {{ proxy_pass http://unix:{backendPath}:/inner/; }}""")
        echo = request(proxy.port, path="/app/x?y=1").json()
        assert (echo["name"], echo["uri"]) == ("unix", "/inner/x?y=1")
        assert dict(echo["headers"])["Host"] == "localhost"
        waitFor(lambda: os.path.exists(proxyPath), "the proxy's UNIX socket")
        client = RawClient(unixPath=proxyPath)
        try:
            client.send(b"GET /app/over-unix HTTP/1.1\r\nHost: localhost\r\n"
                        b"Connection: close\r\n\r\n")
            response = parseRawResponses(client.readToClose())[0]
        finally:
            client.close()
        assert response.status == 200
        assert b'"uri": "/inner/over-unix"' in response.body


# ---------------------------------------------------------------------------
# 10. hop-by-hop headers
# ---------------------------------------------------------------------------


def testHopByHopHeadersAreNotForwarded(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    RFC 9110 7.6.1: headers the client's Connection header names, and
    Proxy-Connection, stop at the proxy (nginx forwards them; see
    KNOWN_DIFFERENCES in test_differential.py); end-to-end ones pass.
    """
    proxy = startProxy(rproxyRunner, f"location / {{ proxy_pass http://{backend.address}; }}")
    echo = request(proxy.port, path="/hop", headers=(
        ("Connection", "keep-alive, X-Foo, x-bar"), ("X-Foo", "foo"), ("X-Bar", "bar"),
        ("Proxy-Connection", "keep-alive"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
        ("X-Kept", "kept"),
    )).json()
    names = upstreamHeaders(echo)
    for name in ("x-foo", "x-bar", "proxy-connection", "keep-alive", "te"):
        assert name not in names
    assert dict(echo["headers"])["X-Kept"] == "kept"
    assert dict(echo["headers"])["Connection"] == "close"


# ---------------------------------------------------------------------------
# 11. a stalled backend request holds up nobody else
# ---------------------------------------------------------------------------


def uniqueKey(label: str) -> str:
    """A gate key no other test (or earlier run on this backend) uses."""
    return f"{label}-{os.getpid()}-{time.monotonic_ns()}"


def backendHolding(backend: Backend, key: str) -> bool:
    """Whether the backend is still holding the C{/hold?key=KEY} request."""
    return request(backend.port, path=f"/holding?key={key}").status == 200


def nothingReceived(client: RawClient) -> bool:
    """
    Whether the proxy has sent C{client} nothing at all so far (no
    status line, no close), checked without blocking.
    """
    readable, _, _ = select.select([client.sock], [], [], 0)
    return not readable and not client.buffer


STALL_SERVER = """
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://u;
        }
        location /hold {
            proxy_read_timeout %s;
            proxy_pass http://u;
        }"""
"""Stalled and ordinary requests to one upstream (with a keepalive pool),
so a request stuck on a backend connection must not hold the pool, the
listener or the reactor for anyone else."""


def testStalledRequestDoesNotDelayOthers(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    While client A's request is stuck on the backend (which has provably
    received it and answers nothing until the test says so), client B's
    requests to the same proxy and the same upstream are answered 200
    with their own bodies, and A is still waiting with nothing sent to
    it; once the backend is released, A gets its own answer.  A proxy
    that serialised requests per upstream, per pool or per process would
    fail B (it would wait until the release, which never comes first).
    """
    proxy = startProxy(
        rproxyRunner, STALL_SERVER % "60s",
        httpExtra=f"upstream u {{ server {backend.address}; keepalive 1; }}",
    )
    key = uniqueKey("stalled")
    stalled = RawClient(proxy.port)
    try:
        stalled.get(f"/hold?key={key}")
        waitFor(lambda: backendHolding(backend, key), "the held request to reach the backend")
        for i in range(5):
            other = request(proxy.port, path=f"/other/{i}", timeout=DEADLINE)
            assert other.status == 200
            assert other.json()["uri"] == f"/other/{i}"
        assert backendHolding(backend, key), "the stalled request ended early"
        assert nothingReceived(stalled), "the stalled client got something before the release"
        assert request(backend.port, path=f"/trigger?key={key}").status == 200
        status, headers = stalled.readHead()
        assert status == 200
        length = int(header(headers, "content-length") or "0")
        assert stalled.readExactly(length) == f"released {key}\n".encode()
    finally:
        stalled.close()


def testStalledRequestTimesOutWithoutHarmingOthers(
    backend: Backend, rproxyRunner: RunnerFactory
) -> None:
    """
    The same stall under a 1s C{proxy_read_timeout}: other clients'
    requests succeed (whether they finish before or after the timeout
    fires does not matter to what is asserted), A gets its 504 with
    nginx's timeout line, and the proxy gives up the backend connection
    (the backend sees the held request go away).
    """
    proxy = startProxy(
        rproxyRunner, STALL_SERVER % "1s",
        httpExtra=f"upstream u {{ server {backend.address}; keepalive 1; }}",
    )
    key = uniqueKey("timeout")
    stalled = RawClient(proxy.port)
    try:
        stalled.get(f"/hold?key={key}")
        waitFor(lambda: backendHolding(backend, key), "the held request to reach the backend")
        for i in range(5):
            other = request(proxy.port, path=f"/other/{i}", timeout=DEADLINE)
            assert (other.status, other.json()["uri"]) == (200, f"/other/{i}")
        status, _headers = stalled.readHead()
        assert status == 504
    finally:
        stalled.close()
    line = waitForLog(proxy, r"upstream timed out \(110: Connection timed out\)")
    assert "/hold?key=" in line
    waitFor(lambda: not backendHolding(backend, key), "the proxy to drop the backend connection")


# ---------------------------------------------------------------------------
# 12. no descriptor leaks
# ---------------------------------------------------------------------------

FD_KEEPALIVE = 2
"""The upstream pool's size in the leak test: at most this many idle
backend connections may legitimately stay open after the storm."""

FD_ROUNDS = 50
"""How many requests of each failing kind the leak test makes."""

_TCP_LISTEN = "0A"
"""/proc/net/tcp's state code for a listening socket."""


def tcpSockets() -> Dict[str, Tuple[int, int, str]]:
    """
    Every TCP socket the kernel knows, by inode: C{(local port, remote
    port, state code)} from /proc/net/tcp and /proc/net/tcp6.
    """
    sockets: Dict[str, Tuple[int, int, str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            localPort = int(fields[1].rsplit(":", 1)[1], 16)
            remotePort = int(fields[2].rsplit(":", 1)[1], 16)
            sockets[fields[9]] = (localPort, remotePort, fields[3])
    return sockets


def openDescriptors(pid: int) -> Dict[int, str]:
    """
    A process's open descriptors, C{{fd: what it refers to}}, read from
    /proc/PID/fd; a TCP socket is described by its ports and state so a
    failure says what leaked.
    """
    sockets = tcpSockets()
    described: Dict[int, str] = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue  # closed while we were listing
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match and match.group(1) in sockets:
            local, remote, state = sockets[match.group(1)]
            target = f"tcp {local}->{remote} state {state}"
        described[int(name)] = target
    return described


def heldConnections(pid: int, port: int, local: bool) -> int:
    """
    How many connected TCP sockets process C{pid} holds whose local
    (C{local=True}: accepted client connections of a listener on C{port})
    or remote (C{local=False}: connections to a backend on C{port}) port
    is C{port}.
    """
    count = 0
    for target in openDescriptors(pid).values():
        match = re.fullmatch(r"tcp (\d+)->(\d+) state (\w+)", target)
        if not match or match.group(3) == _TCP_LISTEN:
            continue
        if int(match.group(1 if local else 2)) == port:
            count += 1
    return count


def descriptorsBesidesPool(pid: int, backendPort: int) -> int:
    """
    The number of C{pid}'s open descriptors that are not connections to
    the backend: what must come back exactly to its baseline, since only
    the idle keepalive pool may differ.
    """
    return len(openDescriptors(pid)) - heldConnections(pid, backendPort, local=False)


def abortMidBody(port: int) -> None:
    """
    Ask for a 64 MiB body, read its head and the first piece, then close
    the socket while the rest is still on its way.
    """
    client = RawClient(port)
    try:
        client.get("/big?size=%d" % (64 * 1024 * 1024,))
        status, _headers = client.readHead()
        assert status == 200
        client.readExactly(1)
    finally:
        client.close()


def abortMidStream(port: int) -> None:
    """
    Open an unbuffered event stream that would run for minutes, read its
    first event, and close the socket.
    """
    client = RawClient(port)
    try:
        client.get("/sse?n=100000&interval=0.05")
        status, _headers = client.readHead()
        assert status == 200
        client.readUntil(b"data: 0\n\n")
    finally:
        client.close()


def abortWhileWaiting(port: int, backend: Backend) -> None:
    """
    Send a request the backend holds unanswered, wait until the backend
    has it, and close the socket before any response head exists.
    """
    key = uniqueKey("abort")
    client = RawClient(port)
    try:
        client.get(f"/hold?key={key}")
        waitFor(lambda: backendHolding(backend, key), "the held request to reach the backend")
    finally:
        client.close()


def testNoDescriptorLeakOnFailures(
    backend: Backend, deadPort: int, rproxyRunner: RunnerFactory
) -> None:
    """
    A storm of failing exchanges leaves the proxy with exactly the open
    descriptors it had before, read from /proc/PID/fd: 50 each of 502 (a
    dead port), 504 (a 1s read timeout, 25 at a time) and client aborts
    (mid-body with buffering on, mid-stream with buffering off, and while
    the backend has not answered yet).  Every kind runs once as a
    warm-up first, so log files and other lazily made descriptors are in
    the baseline.  The only allowed difference is idle keepalive
    connections to the backend, at most the pool's size (2); apart from
    those the count must be equal, and no client connection may remain.
    """
    proxy = startProxy(rproxyRunner, f"""
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /dead {{ proxy_pass http://127.0.0.1:{deadPort}; }}
        location /stall {{ proxy_read_timeout 1s; proxy_pass http://u; }}
        location /sse {{ proxy_buffering off; proxy_pass http://u; }}
        location / {{ proxy_pass http://u; }}""",
        httpExtra=f"upstream u {{ server {backend.address}; keepalive {FD_KEEPALIVE}; }}",
    )
    assert proxy.process is not None
    pid = proxy.process.pid

    def storm(rounds: int) -> None:
        """Run C{rounds} exchanges of every failing kind."""
        for _ in range(rounds):
            assert request(proxy.port, path="/dead").status == 502
        with ThreadPoolExecutor(max_workers=25) as pool:
            statuses = list(pool.map(
                lambda i: request(proxy.port, path=f"/stall?i={i}", timeout=DEADLINE).status,
                range(rounds),
            ))
        assert statuses == [504] * rounds
        for _ in range(rounds):
            abortMidBody(proxy.port)
            abortMidStream(proxy.port)
            abortWhileWaiting(proxy.port, backend)

    def settled() -> bool:
        """No client connection is held any more (closes have landed)."""
        return heldConnections(pid, proxy.port, local=True) == 0

    assert request(proxy.port, path="/warm").status == 200
    storm(1)
    waitFor(settled, "the warm-up's client connections to close")
    baseline = descriptorsBesidesPool(pid, backend.port)
    before = openDescriptors(pid)

    storm(FD_ROUNDS)

    def returned() -> bool:
        """Back to the baseline, with no more than the pool's idle connections."""
        return (
            settled()
            and descriptorsBesidesPool(pid, backend.port) == baseline
            and heldConnections(pid, backend.port, local=False) <= FD_KEEPALIVE
        )

    deadline = time.monotonic() + DEADLINE
    while not returned():
        if time.monotonic() >= deadline:
            pytest.fail(
                f"descriptors did not return to the baseline ({baseline} besides the pool)\n"
                f"before: {sorted(before.items())}\nafter: {sorted(openDescriptors(pid).items())}"
            )
        time.sleep(0.05)
    # The proxy is still healthy after all that.
    assert request(proxy.port, path="/after").json()["uri"] == "/after"


# ---------------------------------------------------------------------------
# 13. server_tokens
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", ["default", "on", "off"])
def testServerTokens(
    tokens: str, backend: Backend, deadPort: int, rproxyRunner: RunnerFactory
) -> None:
    """
    C{server_tokens on}, the default, puts the version into the Server
    header of every response (the proxy's own, a proxied one whose
    backend Server header is replaced, and error pages) and into the
    footer of the built-in 404 and 502 pages, as nginx does with its own
    name; C{server_tokens off} leaves the bare name in both places and
    the version nowhere.
    """
    from twisted_rproxy._version import __version__

    directive = "" if tokens == "default" else f"server_tokens {tokens};"
    proxy = startProxy(rproxyRunner, f"""
        {directive}
        location = /own {{ return 200 "own\\n"; }}
        location = /missing {{ return 404; }}
        location /down {{ proxy_pass http://127.0.0.1:{deadPort}; }}
        location / {{ proxy_pass http://{backend.address}; }}""")
    versioned = f"twisted_rproxy/{__version__}"
    software = "twisted_rproxy" if tokens == "off" else versioned
    for path, status in (("/own", 200), ("/proxied", 200), ("/missing", 404), ("/down", 502)):
        response = request(proxy.port, path=path)
        assert (path, response.status) == (path, status)
        assert (path, response.headerValues("Server")) == (path, [software])
        if status >= 400:
            page = response.body.decode("ascii")
            assert f"<hr><center>{software}</center>" in page, page
            if tokens == "off":
                assert __version__ not in page, page
