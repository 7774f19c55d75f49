"""
HTTP/2 towards clients over real sockets: curl (ALPN over TLS, and h2c
prior knowledge), h2load with many concurrent streams, and a Python C{h2}
client for what curl cannot show (malformed requests, a stream whose
window stays shut, the GOAWAY of a graceful stop), all proxied to the
HTTP/1.1 test backend.  Then one differential run through nginx.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from typing import Any, Callable, Dict, Tuple

import pytest
from h2.errors import ErrorCodes

from tests.integration.certs import CertificateAuthority
from tests.integration.h2client import H2Client
from tests.integration.harness import Backend, freePort, proxyConfig

CURL = shutil.which("curl")
H2LOAD = shutil.which("h2load")



@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Tuple[str, str]:
    """
    A certificate and key for C{localhost}, made for this run.
    """
    ca = CertificateAuthority(tmp_path_factory.mktemp("h2certs"))
    cert, key = ca.issue(["localhost"])
    return str(cert), str(key)


def _pattern(size: int) -> bytes:
    """
    What the backend's C{/pattern?size=N} sends: byte I is C{I % 251}.
    """
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def _config(
    backend: Backend,
    plain: int,
    tls: int,
    certs: Tuple[str, str],
    extra: str = "",
    location: str = "",
) -> str:
    """
    One server: C{plain} with C{http2 on} (h2c by prior knowledge, or
    HTTP/1.1) and C{tls} with C{listen ... ssl http2}.
    """
    return proxyConfig(
        plain,
        f"""
        listen 127.0.0.1:{tls} ssl http2;
        http2 on;
        ssl_certificate {certs[0]};
        ssl_certificate_key {certs[1]};
{extra}
        location / {{
            proxy_pass http://{backend.address};
            proxy_set_header X-Host $host;
            proxy_set_header X-Http-Host $http_host;
            proxy_set_header X-Protocol $server_protocol;
            proxy_set_header X-Request $request;
            proxy_set_header X-Cookie $http_cookie;
{location}
        }}
""",
    )


@pytest.fixture
def proxy(backend: Backend, rproxyRunner: Callable[..., Any], certs: Tuple[str, str]) -> Dict[str, Any]:
    """
    A running proxy with both listeners.
    """
    plain, tls = freePort(), freePort()
    runner = rproxyRunner(_config(backend, plain, tls, certs))
    return {"plain": plain, "tls": tls, "runner": runner}


def _curl(*args: str) -> Tuple[Dict[str, str], bytes, str]:
    """
    Run curl; @return: its C{-w} values, the body and the header text.
    """
    if CURL is None:
        pytest.skip("curl is not installed")
    out = subprocess.run(
        [CURL, "-sS", "--max-time", "20", "-D", "-", "-o", "/dev/stdout",  # type: ignore[list-item]
         "-w", "\n%{http_version} %{http_code}"] + list(args),
        capture_output=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    data, _sep, tail = out.stdout.rpartition(b"\n")
    version, code = tail.decode().split()
    head, _sep, body = data.partition(b"\r\n\r\n")
    return {"version": version, "code": code}, body, head.decode("latin-1")


def _echoHeaders(body: bytes) -> Dict[str, str]:
    return {name.lower(): value for name, value in json.loads(body)["headers"]}


def testCurlOverTLSNegotiatesH2(proxy: Dict[str, Any]) -> None:
    """
    curl --http2 over TLS gets h2 by ALPN; the backend gets an HTTP/1.x
    request with Host from :authority and $server_protocol HTTP/2.0.
    """
    info, body, head = _curl("--http2", "-k", f"https://localhost:{proxy['tls']}/tls?a=1")
    assert info == {"version": "2", "code": "200"}
    assert head.startswith("HTTP/2 200")
    assert "\r\nserver: twisted_rproxy" in head
    seen = json.loads(body)
    assert seen["uri"] == "/tls?a=1"
    headers = _echoHeaders(body)
    assert headers["x-host"] == "localhost"
    assert headers["x-http-host"] == f"localhost:{proxy['tls']}"
    assert headers["x-protocol"] == "HTTP/2.0"
    assert headers["x-request"] == "GET /tls?a=1 HTTP/2.0"


def testCurlPriorKnowledgeAndPost(proxy: Dict[str, Any]) -> None:
    """
    h2c by prior knowledge on the plain listener, with a request body.
    """
    info, body, _head = _curl(
        "--http2-prior-knowledge", "--data-binary", "x" * 100000,
        f"http://127.0.0.1:{proxy['plain']}/post",
    )
    assert info == {"version": "2", "code": "200"}
    seen = json.loads(body)
    assert seen["method"] == "POST"
    assert seen["body_len"] == 100000 and seen["body"] == "x" * 100000


def testHTTP1StillServedOnBothListeners(proxy: Dict[str, Any]) -> None:
    """
    A client that does not ask for h2 gets HTTP/1.1 on both sockets.
    """
    info, body, _head = _curl("--http1.1", f"http://127.0.0.1:{proxy['plain']}/one")
    assert info == {"version": "1.1", "code": "200"}
    assert _echoHeaders(body)["x-protocol"] == "HTTP/1.1"
    info, body, _head = _curl("--http1.1", "-k", f"https://localhost:{proxy['tls']}/two")
    assert info == {"version": "1.1", "code": "200"}


def testNoH2WithoutHttp2OnTLS(
    backend: Backend, rproxyRunner: Callable[..., Any], certs: Tuple[str, str]
) -> None:
    """
    A TLS listener without C{http2} (and no C{http2 on}) answers curl
    --http2 with HTTP/1.1: ALPN does not pick h2 there.
    """
    plain, tls = freePort(), freePort()
    rproxyRunner(proxyConfig(plain, f"""
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {certs[0]};
        ssl_certificate_key {certs[1]};
        location / {{ proxy_pass http://{backend.address}; }}
"""))
    info, _body, _head = _curl("--http2", "-k", f"https://localhost:{tls}/")
    assert info == {"version": "1.1", "code": "200"}


def testListenFlagOnPlainSocket(backend: Backend, rproxyRunner: Callable[..., Any]) -> None:
    """
    C{listen ... http2} without TLS (and no C{http2 on}): h2c by prior
    knowledge, and HTTP/1.1 still, on the same socket; a socket without
    the flag stays HTTP/1.1 only.
    """
    flagged, plain = freePort(), freePort()
    rproxyRunner(proxyConfig(plain, f"""
        listen 127.0.0.1:{flagged} http2;
        location / {{ proxy_pass http://{backend.address}; }}
"""))
    info, _body, _head = _curl("--http2-prior-knowledge", f"http://127.0.0.1:{flagged}/")
    assert info == {"version": "2", "code": "200"}
    info, _body, _head = _curl("--http1.1", f"http://127.0.0.1:{flagged}/")
    assert info == {"version": "1.1", "code": "200"}
    out = subprocess.run(
        [CURL, "-sS", "--max-time", "10", "--http2-prior-knowledge",  # type: ignore[list-item]
         f"http://127.0.0.1:{plain}/"], capture_output=True, timeout=60,
    )
    assert out.returncode != 0  # the preface is no HTTP/1.1 request


@pytest.mark.skipif(H2LOAD is None, reason="h2load (nghttp2-client) is not installed")
def testH2LoadManyConcurrentStreams(proxy: Dict[str, Any]) -> None:
    """
    h2load: 2000 requests over 4 connections with 32 streams each in
    flight, every one 2xx with its whole 1000-byte body.
    """
    out = subprocess.run(
        [H2LOAD, "-n", "2000", "-c", "4", "-m", "32",  # type: ignore[list-item]
         f"https://localhost:{proxy['tls']}/pattern?size=1000"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Application protocol: h2" in text
    assert "2000 succeeded, 0 failed, 0 errored, 0 timeout" in text, text
    assert "status codes: 2000 2xx" in text, text
    match = re.search(r"traffic: .* total, .* headers .*, [\d.]+\w* \((\d+)\) data", text)
    assert match is not None, text
    assert int(match.group(1)) == 2000 * 1000


def testConcurrentStreamsCorrectBodies(proxy: Dict[str, Any]) -> None:
    """
    Forty streams at once on one connection, each a different size: every
    body arrives whole and in order.
    """
    client = H2Client(proxy["plain"])
    try:
        sizes = {client.request(f"/pattern?size={1000 + i * 7919}"): 1000 + i * 7919
                 for i in range(40)}
        for streamId, size in sizes.items():
            stream = client.finished(streamId)
            assert stream.status == 200
            assert bytes(stream.body) == _pattern(size)
    finally:
        client.close()


def testStreamsOverTLS(proxy: Dict[str, Any]) -> None:
    """
    The same over TLS (h2 chosen by ALPN): concurrent streams with bodies
    both ways, $http2 "h2".
    """
    client = H2Client(proxy["tls"], tls=True)
    try:
        gets = [client.request(f"/pattern?size={50000 + i}") for i in range(10)]
        post = client.request("/up", method="POST", body=b"z" * 200000)
        for i, streamId in enumerate(gets):
            assert bytes(client.finished(streamId).body) == _pattern(50000 + i)
        seen = json.loads(bytes(client.finished(post).body))
        assert seen["body_len"] == 200000
        assert _echoHeaders(bytes(client.finished(post).body))["x-protocol"] == "HTTP/2.0"
    finally:
        client.close()


def testAuthorityBecomesHostAndCookiesJoin(proxy: Dict[str, Any]) -> None:
    """
    :authority reaches the backend as Host ($host without the port), and
    cookie crumbs are joined with "; " for the HTTP/1.1 hop.
    """
    client = H2Client(proxy["plain"])
    try:
        streamId = client.request(
            "/who", authority="Example.TEST:8080",
            headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"x-one", b"1")],
        )
        stream = client.finished(streamId)
        assert stream.status == 200
        headers = _echoHeaders(bytes(stream.body))
        assert headers["x-host"] == "example.test"
        assert headers["x-http-host"] == "Example.TEST:8080"
        assert headers["x-cookie"] == "a=1; b=2"
        assert headers["cookie"] == "a=1; b=2"
        assert headers["x-one"] == "1"
    finally:
        client.close()


def testLargePostThroughWindows(proxy: Dict[str, Any]) -> None:
    """
    A body far larger than the stream window (64 KiB) goes through as the
    proxy acknowledges it; with and without content-length.
    """
    body = _pattern(700000)
    client = H2Client(proxy["plain"])
    try:
        for headers in ([(b"content-length", b"700000")], []):
            streamId = client.request("/upload", method="POST", headers=headers, body=body)
            stream = client.finished(streamId)
            assert stream.status == 200, stream.headers
            seen = json.loads(bytes(stream.body))
            assert seen["body_len"] == 700000
            assert seen["body"].encode("latin-1") == body
    finally:
        client.close()


_BASE = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]

MALFORMED = {
    "uppercase name": _BASE + [(b"X-Upper", b"1")],
    "connection header": _BASE + [(b"connection", b"keep-alive")],
    "transfer-encoding": _BASE + [(b"transfer-encoding", b"chunked")],
    "te gzip": _BASE + [(b"te", b"gzip")],
    "no :path": _BASE[:3],
    "duplicate :method": _BASE + [(b":method", b"GET")],
    "pseudo after regular": [(b"x-a", b"1")] + _BASE,
    "unknown pseudo": _BASE + [(b":protocol", b"websocket")],
    "response pseudo": _BASE + [(b":status", b"200")],
    "newline in value": _BASE + [(b"x-a", b"a\nb")],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def testMalformedRequestResetsOnlyItsStream(proxy: Dict[str, Any], case: str) -> None:
    """
    A malformed head is a stream error (RST_STREAM PROTOCOL_ERROR), and the
    connection goes on serving.
    """
    client = H2Client(proxy["plain"])
    try:
        bad = client.request("/", raw=MALFORMED[case])
        stream = client.finished(bad)
        assert stream.reset == ErrorCodes.PROTOCOL_ERROR
        good = client.finished(client.request("/after"))
        assert good.status == 200
        assert client.terminated is None
    finally:
        client.close()


def testContentLengthMismatchResetsStream(proxy: Dict[str, Any]) -> None:
    """
    Fewer DATA bytes than content-length: RST_STREAM PROTOCOL_ERROR.
    """
    client = H2Client(proxy["plain"])
    try:
        streamId = client.request(
            "/short", method="POST", headers=[(b"content-length", b"10")], body=b"12345"
        )
        assert client.finished(streamId).reset == ErrorCodes.PROTOCOL_ERROR
        assert client.finished(client.request("/after")).status == 200
    finally:
        client.close()


def testConnectRefused(proxy: Dict[str, Any]) -> None:
    """
    CONNECT (and so any tunnel over HTTP/2) is answered 405.
    """
    client = H2Client(proxy["plain"])
    try:
        streamId = client.request(
            "", raw=[(b":method", b"CONNECT"), (b":authority", b"example.test:443")]
        )
        assert client.finished(streamId).status == 405
    finally:
        client.close()


def testProtocolViolationIsGoaway(proxy: Dict[str, Any]) -> None:
    """
    A frame h2 cannot accept (DATA on stream 0 here) is a connection
    error: GOAWAY PROTOCOL_ERROR, then the connection closes.
    """
    client = H2Client(proxy["plain"])
    try:
        # A DATA frame header (length 1, type 0, no flags, stream 0).
        client.sock.sendall(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
        client.until(lambda: client.terminated is not None)
        assert client.terminated.error_code == ErrorCodes.PROTOCOL_ERROR  # type: ignore[union-attr]
    finally:
        client.close()


def _release(backend: Backend, key: str) -> None:
    with urllib.request.urlopen(f"{backend.url}/trigger?key={key}", timeout=10) as r:
        assert r.status == 200


def _waitHolding(backend: Backend, key: str) -> None:
    """
    Wait until the backend holds request C{key} (polled: the backend says
    so, the proxy is not involved).
    """
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{backend.url}/holding?key={key}", timeout=10):
                return
        except Exception:
            time.sleep(0.02)
    raise AssertionError(f"{key} never reached the backend")


def testMaxConcurrentStreamsRefusesTheExtraStream(
    backend: Backend, rproxyRunner: Callable[..., Any], certs: Tuple[str, str]
) -> None:
    """
    With C{http2_max_concurrent_streams 2} the setting is advertised and a
    third stream opened anyway (before the client saw the setting) is
    refused with REFUSED_STREAM while the two finish.
    """
    plain, tls = freePort(), freePort()
    rproxyRunner(_config(backend, plain, tls, certs, extra="http2_max_concurrent_streams 2;"))
    client = H2Client(plain)
    try:
        first = client.request("/hold?key=mcs1", send=False)
        second = client.request("/hold?key=mcs2", send=False)
        third = client.request("/hold?key=mcs3", send=False)
        client.flush()
        assert client.finished(third).reset == ErrorCodes.REFUSED_STREAM
        assert client.conn.remote_settings.max_concurrent_streams == 2
        _waitHolding(backend, "mcs1")
        _waitHolding(backend, "mcs2")
        _release(backend, "mcs1")
        _release(backend, "mcs2")
        assert bytes(client.finished(first).body) == b"released mcs1\n"
        assert bytes(client.finished(second).body) == b"released mcs2\n"
    finally:
        client.close()


def testSlowStreamDoesNotStallFastOne(proxy: Dict[str, Any]) -> None:
    """
    A stream whose client never opens its window gets exactly that window
    and waits; a second stream on the same connection meanwhile completes
    in full; opening the first window then lets the first finish.
    """
    size = 2 * 1024 * 1024
    client = H2Client(proxy["plain"])
    try:
        slow = client.request(f"/pattern?size={size}", send=False)
        client.noAck.add(slow)
        client.flush()
        slowStream = client.streams[slow]
        window = 65535  # the client's initial stream window
        client.until(lambda: len(slowStream.body) == window)
        fast = client.finished(client.request("/pattern?size=500000"))
        assert fast.status == 200 and bytes(fast.body) == _pattern(500000)
        # The fast stream ended while the slow one still had its window shut.
        assert len(slowStream.body) == window and not slowStream.ended
        client.acknowledge(slow)
        done = client.finished(slow)
        assert bytes(done.body) == _pattern(size)
    finally:
        client.close()


def testGracefulStopSendsGoawayAndFinishesStream(
    backend: Backend, rproxyRunner: Callable[..., Any], certs: Tuple[str, str]
) -> None:
    """
    SIGQUIT: GOAWAY (NO_ERROR, naming the open stream) reaches the client
    at once, the in-flight stream still completes, then the proxy exits 0.
    """
    plain, tls = freePort(), freePort()
    runner = rproxyRunner(_config(backend, plain, tls, certs))
    client = H2Client(plain)
    try:
        streamId = client.request("/hold?key=goaway")
        _waitHolding(backend, "goaway")
        runner.process.send_signal(signal.SIGQUIT)
        client.until(lambda: client.terminated is not None)
        assert client.terminated.error_code == ErrorCodes.NO_ERROR  # type: ignore[union-attr]
        assert client.terminated.last_stream_id == streamId  # type: ignore[union-attr]
        assert not client.streams[streamId].ended
        _release(backend, "goaway")
        stream = client.finished(streamId)
        assert stream.status == 200 and bytes(stream.body) == b"released goaway\n"
        client.until(lambda: client.closed)
        assert runner.process.wait(timeout=20) == 0
    finally:
        client.close()


def _differentialConfig(backend: Backend, port: int, certs: Tuple[str, str]) -> str:
    return proxyConfig(
        freePort(),
        f"""
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {certs[0]};
        ssl_certificate_key {certs[1]};
        location / {{ proxy_pass http://{backend.address}; }}
        location = /local {{ return 201 "made here\\n"; }}
        location /notfound {{ return 404; }}
        location /vars {{ return 200 "$server_protocol|$request|$http2|$host|$scheme\n"; }}
""",
    )


def testDifferentialAgainstNginx(
    backend: Backend,
    rproxyRunner: Callable[..., Any],
    nginxRunner: Callable[..., Any],
    certs: Tuple[str, str],
) -> None:
    """
    The same C{listen ... ssl http2} config through nginx and through the
    proxy, with curl --http2: same protocol, status, headers that matter,
    and body.
    """
    ports = {"nginx": freePort(), "rproxy": freePort()}
    nginxRunner(_differentialConfig(backend, ports["nginx"], certs))
    rproxyRunner(_differentialConfig(backend, ports["rproxy"], certs))
    for path, args in (
        ("/echo?q=1", ()),
        ("/local", ()),
        ("/vars?a=b", ()),
        ("/notfound", ()),
        ("/status/404", ()),
        ("/pattern?size=100000", ()),
        ("/post", ("--data-binary", "abc" * 1000)),
        ("/echo", ("-I",)),
    ):
        got: Dict[str, Any] = {}
        for name, port in ports.items():
            info, body, head = _curl("--http2", "-k", *args, f"https://localhost:{port}{path}")
            if "-I" in args:
                body = b""  # curl wrote the head where the body would go
            lines = head.split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            if body.startswith(b"{"):
                document = json.loads(body)
                document.pop("connection")
                document.pop("requests_on_connection")
                body = json.dumps(document).encode()
            wanted = ["content-type", "content-length", "location"]
            if b"<hr><center>" in body:
                # An error page: it names its server, so only its kind counts.
                body = b"<error page>"
                wanted.remove("content-length")
            got[name] = (info, lines[0], {k: headers.get(k) for k in wanted}, body)
        assert got["rproxy"] == got["nginx"], path


class CountingBackend:
    """
    A backend that answers one request with C{size} bytes of the
    C{/pattern} body, written with blocking sends from a thread, counting
    what the proxy has taken so far; C{blocked} is set once a send has
    waited a while (the proxy stopped reading), the safety net being the
    test's own deadline.
    """

    def __init__(self, size: int) -> None:
        import socket
        import threading

        self.size = size
        self.sent = 0
        self.blocked = threading.Event()
        self.done = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import socket

        conn, _address = self._listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % self.size)
            piece = 65536
            base = bytes(range(251)) * (piece // 251 + 2)
            conn.settimeout(0.5)
            while self.sent < self.size:
                start = self.sent % 251
                data = memoryview(base[start:start + min(piece, self.size - self.sent)])
                while data:
                    try:
                        n = conn.send(data)
                    except socket.timeout:
                        self.blocked.set()
                        conn.settimeout(60)
                        continue
                    data = data[n:]
                    self.sent += n
            self.done.set()

    def close(self) -> None:
        self._listener.close()


def testHeldStreamKeepsMemoryBoundedAndPausesBackend(
    backend: Backend, rproxyRunner: Callable[..., Any]
) -> None:
    """
    Through the real proxy: a stream for a 50 MiB response whose client
    never opens its window, while a second stream on the connection
    completes.  The backend of the held stream is paused (it cannot write
    more than socket buffers and the stream's 64 KiB), the proxy's RSS
    does not grow by the response (< 30 MiB), and once the client reads,
    the whole body arrives intact.
    """
    from tests.integration.harness import waitUntil
    from tests.integration.test_proxy import rssKiB

    size = 50 * 1024 * 1024
    counting = CountingBackend(size)
    plain = freePort()
    runner = rproxyRunner(proxyConfig(plain, f"""
        http2 on;
        location /held {{
            proxy_pass http://127.0.0.1:{counting.port};
        }}
        location / {{
            proxy_pass http://{backend.address};
        }}
"""))
    pid = runner.process.pid
    client = H2Client(plain)
    try:
        # Warm up the code paths, so their first use is not counted.
        warm = client.finished(client.request("/pattern?size=500000"))
        assert warm.status == 200
        baseline = rssKiB(pid)
        held = client.request("/held", send=False)
        client.noAck.add(held)
        client.flush()
        heldStream = client.streams[held]
        client.until(lambda: len(heldStream.body) == 65535)
        fast = client.finished(client.request("/pattern?size=500000"))
        assert fast.status == 200 and bytes(fast.body) == _pattern(500000)
        waitUntil(counting.blocked.is_set, "the held stream's backend to be paused", 60)
        assert len(heldStream.body) == 65535 and not heldStream.ended
        assert counting.sent < 30 * 1024 * 1024, counting.sent
        grown = rssKiB(pid) - baseline
        assert grown < 30 * 1024, f"RSS grew by {grown} KiB"
        client.acknowledge(held)
        done = client.finished(held)
        assert done.status == 200
        assert len(done.body) == size and bytes(done.body) == _pattern(size)
        assert counting.done.is_set() or counting.sent == size
    finally:
        client.close()
        counting.close()
