"""
The client-facing codec over real sockets: malformed requests sent raw to a
real C{python -m twisted_rproxy} process get the right status and a closed
connection, and the same bytes sent to nginx get an error too.  Where
nginx's exact status differs, the table records nginx's and says why, so
the divergence is deliberate and visible rather than accidental.

Also over real sockets: keep-alive and pipelining end to end (through
C{proxy_pass} to the recording backend), and garbage of every kind never
gets a Python traceback back, nor leaves one in the proxy's logs.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Iterator, List, Optional

import pytest

from tests.integration.harness import (
    Backend,
    NginxRunner,
    RawResponse,
    RproxyRunner,
    ServerRunner,
    StartupError,
    freePort,
    parseRawResponses,
    proxyConfig,
)

CLOSE_WAIT = 15.0
"""How long a test waits for the server to close a connection it should
close; only an upper bound on a wait for an event, never a measured time."""

SERVER_BODY = """
        large_client_header_buffers 2 1k;
        location / {{ return 200 "ok\\n"; }}
        location /echo {{ proxy_pass http://{backend}; }}
        location /small {{ client_max_body_size 10; proxy_pass http://{backend}; }}
"""
"""One server for every row: C{return} where the body does not matter,
C{proxy_pass} where the body must really be read (chunk errors, the chunked
413), and the small header buffers the size rows are about."""


def _config(backend: Backend) -> str:
    """The config text both servers run, on a fresh port."""
    return proxyConfig(freePort(), SERVER_BODY.format(backend=backend.address))


def _started(runner: ServerRunner) -> ServerRunner:
    """Start C{runner}, failing the test with its logs if it cannot."""
    try:
        return runner.start()
    except StartupError as exc:
        runner.cleanup()
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def rproxy(backend: Backend) -> Iterator[RproxyRunner]:
    """One proxy process for the module: every row uses a new connection."""
    runner = RproxyRunner(_config(backend))
    _started(runner)
    try:
        yield runner
    finally:
        runner.cleanup()


@pytest.fixture(scope="module")
def nginx(backend: Backend, nginxBinary: str) -> Iterator[NginxRunner]:
    """The reference nginx on the same config text."""
    runner = NginxRunner(_config(backend), binary=nginxBinary)
    _started(runner)
    try:
        yield runner
    finally:
        runner.cleanup()


@dataclass
class Outcome:
    """
    What one connection showed: the bytes received and whether the server
    closed the connection (EOF or reset) before the wait ended.
    """

    data: bytes
    closed: bool

    def responses(self) -> List[RawResponse]:
        """The responses in C{data}, interim ones included."""
        return parseRawResponses(self.data)

    def finalStatuses(self) -> List[int]:
        """The status of each final (non-1xx) response."""
        return [r.status for r in self.responses() if r.status >= 200]


def _complete(data: bytes) -> bool:
    """Whether C{data} holds at least one complete final response."""
    try:
        responses = parseRawResponses(data)
    except ValueError:
        return False
    return any(r.status >= 200 and r.complete for r in responses)


def converse(port: int, data: bytes, waitForClose: bool = True,
             timeout: float = CLOSE_WAIT) -> Outcome:
    """
    Send C{data} on a new connection and read.  With C{waitForClose}, read
    until the server closes (or C{timeout} passes, which then shows as
    C{closed=False}); without it, stop at the first complete final response,
    for a server that keeps the connection open (nginx's lingering close).
    """
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return Outcome(received, False)
            except ConnectionResetError:
                return Outcome(received, True)
            if not chunk:
                return Outcome(received, True)
            received += chunk
            if not waitForClose and _complete(received):
                return Outcome(received, False)


def _head(path: str = "/", method: str = "GET", extra: str = "",
          host: Optional[str] = "localhost", version: str = "HTTP/1.1") -> bytes:
    """A request head with the given header lines (each ending in CRLF)."""
    hostLine = f"Host: {host}\r\n" if host is not None else ""
    return f"{method} {path} {version}\r\n{hostLine}{extra}\r\n".encode("latin-1")


def _chunked(*pieces: bytes) -> bytes:
    """A chunked body of C{pieces} and the last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@dataclass
class Row:
    """
    One malformed request, the status twisted_rproxy must answer, the
    status nginx 1.22 answers, and why they differ when they do.
    """

    id: str
    request: bytes
    status: int
    nginxStatus: int
    why: str = ""


LONG = "a" * 1100
ROWS = [
    Row("content-length-and-chunked",
        _head("/echo", "POST", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
        + _chunked(b"hello"), 400, 400),
    Row("bad-chunk-size",
        _head("/echo", "POST", "Transfer-Encoding: chunked\r\n") + b"zz\r\nhello\r\n0\r\n\r\n",
        400, 400),
    Row("obs-fold", _head(extra="X-Folded: a\r\n  b\r\n"), 400, 400),
    Row("space-before-colon", _head(extra="X-Spaced : a\r\n"), 400, 400),
    Row("invalid-header-name", _head(extra="X@Bad: a\r\n"), 400, 200,
        "nginx's ignore_invalid_headers (on by default) drops the line and "
        "serves the request; we refuse it, as RFC 9112 lets a server do"),
    Row("differing-content-lengths",
        _head("/echo", "POST", "Content-Length: 5\r\nContent-Length: 6\r\n") + b"hello!",
        400, 400),
    Row("missing-host-http11", _head(host=None), 400, 400),
    Row("request-line-too-long", _head("/" + LONG), 414, 414),
    Row("header-line-too-long", _head(extra=f"X-Big: {LONG}\r\n"), 431, 400,
        "nginx says 400 (its internal 494, 'Request Header Or Cookie Too "
        "Large') where RFC 6585's 431 is the status meant for it"),
    Row("header-section-too-large",
        _head(extra="".join(f"X-H{i}: {'b' * 900}\r\n" for i in range(5))), 431, 400,
        "as above, nginx's 494 shown as 400"),
    Row("header-section-over-2k",
        _head(extra="".join(f"X-H{i}: {'b' * 900}\r\n" for i in range(3))), 431, 200,
        "we cap the section at number * size (2k); nginx also fits lines in "
        "its first client_header_buffer_size buffer, so ~2.7k still passes"),
    Row("content-length-over-max-body",
        _head("/small", "POST", "Content-Length: 100\r\nExpect: 100-continue\r\n"),
        413, 413),
    Row("chunked-over-max-body",
        _head("/small", "POST", "Transfer-Encoding: chunked\r\n")
        + _chunked(b"x" * 6, b"y" * 6), 413, 413),
    Row("unknown-transfer-coding",
        _head("/echo", "POST", "Transfer-Encoding: gzip, chunked\r\n") + _chunked(b"hello"),
        501, 501),
    Row("http-2.0-request-line", _head(version="HTTP/2.0"), 505, 505),
    Row("host-with-slash", _head(host="a/b"), 400, 400),
    Row("host-with-double-dot", _head(host="a..b"), 400, 400),
    Row("absolute-form-with-userinfo", _head("http://user@localhost/"), 400, 400),
    Row("absolute-form-unclosed-ip-literal", _head("http://[::1/"), 400, 400),
    Row("nul-in-header-value", _head(extra="X-A: a\x00b\r\n"), 400, 400),
    Row("tls-hello-on-plain-port",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
        400, 400),
]
PARAMS = [pytest.param(row, id=row.id) for row in ROWS]


def _assertErrorPage(outcome: Outcome, status: int) -> RawResponse:
    """
    The connection carried exactly one final response, with C{status} and
    an HTML error page, and nothing that looks like a Python traceback.
    """
    assert b"Traceback" not in outcome.data and b'File "' not in outcome.data
    responses = [r for r in outcome.responses() if r.status >= 200]
    assert [r.status for r in responses] == [status], outcome.data[:300]
    [response] = responses
    assert b"<h1>%d " % status in response.body
    return response


@pytest.mark.parametrize("row", PARAMS)
def testMalformedRequest(row: Row, rproxy: RproxyRunner) -> None:
    """
    twisted_rproxy answers each malformed request with its status and an
    error page, says C{Connection: close}, and really closes: the bytes
    after a framing error cannot be trusted.  A declared body over the
    limit is refused before it is sent: no C{100 Continue}, no waiting.
    """
    outcome = converse(rproxy.port, row.request)
    response = _assertErrorPage(outcome, row.status)
    assert response.header("Connection") == "close"
    assert outcome.closed, f"{row.id}: connection left open"
    assert b"100 Continue" not in outcome.data


@pytest.mark.parametrize("row", PARAMS)
def testNginxOnMalformedRequest(row: Row, nginx: NginxRunner) -> None:
    """
    nginx, given the same bytes, answers with the status the table records:
    the same as ours unless C{why} says otherwise, and an error in every
    case but the ones where nginx knowingly accepts the request.
    """
    outcome = converse(nginx.port, row.request, waitForClose=False)
    statuses = outcome.finalStatuses()
    assert statuses == [row.nginxStatus], outcome.data[:300]
    assert (row.nginxStatus == row.status) == (not row.why), (
        "a row whose statuses differ must say why, and only such a row")
    if row.nginxStatus >= 400:
        [response] = [r for r in outcome.responses() if r.status >= 200]
        assert response.header("Connection") == "close"


def testPipelinedThenClose(rproxy: RproxyRunner, nginx: NginxRunner) -> None:
    """
    Three pipelined requests in one write (the middle one's body proxied to
    the backend) are answered in order on one connection, which the last
    request's C{Connection: close} then closes; nginx does the same.
    """
    data = (_head("/") + _head("/echo", "POST", "Content-Length: 5\r\n") + b"hello"
            + _head("/", extra="Connection: close\r\n"))
    results = {}
    for runner in (rproxy, nginx):
        outcome = converse(runner.port, data)
        responses = outcome.responses()
        assert outcome.closed, runner.label
        results[runner.label] = (
            [r.status for r in responses],
            [(r.header("Connection") or "").lower() for r in responses],
            responses[0].body, responses[2].body,
        )
        assert json.loads(responses[1].body)["body"] == "hello", runner.label
    assert results["rproxy"] == results["nginx"] == (
        [200, 200, 200], ["keep-alive", "keep-alive", "close"], b"ok\n", b"ok\n")


def testKeepAliveAcrossWrites(rproxy: RproxyRunner) -> None:
    """
    A connection stays usable across requests sent one at a time, each
    answered before the next is written.
    """
    with socket.create_connection(("127.0.0.1", rproxy.port), timeout=CLOSE_WAIT) as sock:
        for _ in range(3):
            sock.sendall(_head("/"))
            received = b""
            while not _complete(received):
                chunk = sock.recv(65536)
                assert chunk, "closed between keep-alive requests"
                received += chunk
            [response] = parseRawResponses(received)
            assert (response.status, response.body) == (200, b"ok\n")
            assert response.header("Connection") == "keep-alive"


GARBAGE = [
    b"\x00" * 64 + b"\r\n\r\n",
    b"\xff\xfe\xfd GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: ,\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"ffffffffffffffffffffff\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;" + b"e" * 9000 + b"\r\nhello\r\n0\r\n\r\n",
    b"GET /%00/../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /%zz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET http://[::1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET http://localhost:99999999/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: \xc3\x28\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [\r\n\r\n",
    b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"G" * 5000,
]


@pytest.mark.parametrize("data", GARBAGE, ids=[f"garbage-{i}" for i in range(len(GARBAGE))])
def testNoTracebackToClient(data: bytes, rproxy: RproxyRunner) -> None:
    """
    Whatever a client sends, what it gets back is HTTP (or nothing), never
    a Python traceback, and the proxy goes on serving.
    """
    outcome = converse(rproxy.port, data, waitForClose=False)
    assert b"Traceback" not in outcome.data and b'File "' not in outcome.data
    if outcome.data:
        for response in outcome.responses():
            assert response.version == "HTTP/1.1"
    again = converse(rproxy.port, _head("/", extra="Connection: close\r\n"))
    assert again.finalStatuses() == [200]


def testNoUnhandledErrorsLogged(rproxy: RproxyRunner) -> None:
    """
    After the whole module's abuse (this runs last in the module), the
    proxy's error log and stderr hold no traceback: every bad input was
    refused by the codec, none escaped as an unhandled exception.
    """
    converse(rproxy.port, _head("/", extra="Connection: close\r\n"))
    for text in (rproxy.errorLog, rproxy.stderr):
        assert "Traceback" not in text and "Unhandled Error" not in text, text[-3000:]
