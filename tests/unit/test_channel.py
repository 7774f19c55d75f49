"""
Tests for L{twisted_rproxy.http.channel} and L{twisted_rproxy.http.exchange}:
the client-facing HTTP/1.1 codec must answer every malformed request with
the right status and close, keep well-formed connections alive and in order,
and enforce its size limits and timeouts, because it is the first thing an
attacker or a broken client talks to.

Everything runs on a L{StringTransport} and a L{MemoryReactorClock}: timeouts
are driven by C{clock.advance}, never by waiting.  Configs are compiled from
nginx text with the built-in modules plus L{ChannelTestModule}, whose
C{test_content NAME;} directive installs one of the small fake content
handlers below.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.integration.harness import RawResponse, parseRawResponses
from tests.unit.sockets import acceptedTCP
from twisted_rproxy.config.model import CompiledConfig
from twisted_rproxy.config.registry import LOCATION, SERVER, DirectiveSpec, spec
from twisted_rproxy.config.slots import flagSlot, stringSlot
from twisted_rproxy.http.channel import HTTPChannel
from twisted_rproxy.interfaces import IContentHandler, IExchange, ILogSink
from twisted_rproxy.module import ProxyModule
from twisted_rproxy.phases import POST_READ
from twisted_rproxy.plugins import builtinModules
from twisted_rproxy.service import ProxyFactory, loadConfig

# ---------------------------------------------------------------------------
# fake content handlers and the module that installs them
# ---------------------------------------------------------------------------


class BodyCollector:
    """
    A request-body consumer that keeps what it is given, so a test can see
    exactly which bytes the codec delivered and how the body ended.
    """

    def __init__(self) -> None:
        """Start with no data and no outcome."""
        self.data: List[bytes] = []
        self.finished = False
        self.failure: Optional[Exception] = None

    def bodyReceived(self, data: bytes) -> None:
        """Keep a piece of the body."""
        self.data.append(data)

    def bodyFinished(self) -> None:
        """Note that the body is complete."""
        self.finished = True

    def bodyFailed(self, reason: Exception) -> None:
        """Note why the body could not complete."""
        self.failure = reason


@implementer(IContentHandler)
class EchoHandler:
    """
    Reads the whole request body, then answers 200 with it: a handler that
    wants the body, as C{proxy_pass} does.
    """

    def handle(self, exchange: Any) -> None:
        """Read the body at once and echo it when complete."""
        handler = self

        class Echo(BodyCollector):
            """Answers once the body is complete."""

            def bodyFinished(self) -> None:
                """Echo the collected body back."""
                BodyCollector.bodyFinished(self)
                handler.respond(exchange, b"".join(self.data))

        exchange.readBody(Echo())

    def respond(self, exchange: Any, body: bytes) -> None:
        """Send C{body} back with a Content-Length."""
        exchange.startResponse(
            200,
            [(b"Content-Type", b"application/octet-stream"),
             (b"Content-Length", b"%d" % len(body))],
        )
        exchange.write(body)
        exchange.finish()


@implementer(IContentHandler)
class HoldHandler:
    """
    Keeps every exchange it is given and does nothing, so the test decides
    when (and whether) the body is read and the response is sent.

    @ivar exchanges: the exchanges handled, oldest first.
    """

    def __init__(self) -> None:
        """Start with no exchanges."""
        self.exchanges: List[Any] = []

    def handle(self, exchange: Any) -> None:
        """Remember C{exchange}."""
        self.exchanges.append(exchange)


@implementer(IContentHandler)
class FailingHandler:
    """
    Raises, as a buggy content handler would; the secret in the message
    must never reach the client.
    """

    def handle(self, exchange: Any) -> None:
        """Fail synchronously."""
        raise RuntimeError("SECRET-DETAIL from a broken handler")


@implementer(IContentHandler)
class LateFailingHandler:
    """
    Returns a Deferred that the test fails later: a handler that breaks
    asynchronously (e.g. in an upstream callback).

    @ivar pending: the Deferreds handed out, oldest first.
    """

    def __init__(self) -> None:
        """Start with nothing pending."""
        self.pending: List[Tuple[Any, Deferred]] = []

    def handle(self, exchange: Any) -> Deferred:
        """@return: a Deferred the test fires."""
        d: Deferred = Deferred()
        self.pending.append((exchange, d))
        return d


class DelayFilter:
    """
    A server-level phase filter that answers with a Deferred the test
    fires, as an asynchronous check (auth, a rate limit's delay) would: the
    location is only chosen once it fires.

    @ivar pending: the Deferreds handed out, oldest first.
    """

    phase = POST_READ

    def __init__(self) -> None:
        """Start with nothing pending."""
        self.pending: List[Deferred] = []

    def requestHeaders(self, exchange: Any) -> Deferred:
        """@return: a Deferred the test fires with C{None} to continue."""
        d: Deferred = Deferred()
        self.pending.append(d)
        return d


@implementer(ILogSink)
class RecordingSink:
    """
    An access-log sink that keeps C{(status, rawURI)} per logged exchange,
    so tests can check what the LOG phase saw (e.g. 408 on a timeout).
    """

    def __init__(self) -> None:
        """Start with an empty log."""
        self.entries: List[Tuple[int, bytes]] = []
        self.exchanges: List[Any] = []

    def log(self, exchange: Any) -> None:
        """Record one finished exchange."""
        self.entries.append((exchange.status, exchange.rawURI))
        self.exchanges.append(exchange)


ECHO = EchoHandler()
HOLD = HoldHandler()
LATE = LateFailingHandler()
SINK = RecordingSink()
DELAY = DelayFilter()
HANDLERS: Dict[str, Any] = {
    "echo": ECHO,
    "hold": HOLD,
    "fail": FailingHandler(),
    "late": LATE,
}


class ChannelTestModule(ProxyModule):
    """
    A feature module for these tests only: C{test_content NAME;} makes one
    of L{HANDLERS} a location's content handler, and every location logs to
    L{SINK}.  Its late order puts it after the access-log module, which
    replaces each location's sinks.
    """

    name = "test_channel"
    order = 10000

    def directives(self) -> List[DirectiveSpec]:
        """@return: C{test_content} and C{test_server_delay}."""
        return [
            spec("test_content", [LOCATION], 1, parse=stringSlot),
            spec("test_server_delay", [SERVER], 1, parse=flagSlot, default=False),
        ]

    def configureServer(self, server: Any, compiler: Any) -> None:
        """With C{test_server_delay on}, delay every request with L{DELAY}."""
        if server.conf.get("test_server_delay"):
            server.requestFilters.append(DELAY)

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """Install the named handler and the recording sink."""
        name = location.conf.get("test_content")
        if name is not None:
            location.contentHandler = HANDLERS[name]
        location.logSinks.append(SINK)


# ---------------------------------------------------------------------------
# configs and the connection harness
# ---------------------------------------------------------------------------

BASE_SERVER = """
        server_name a.test;
        large_client_header_buffers 2 1k;
        client_header_timeout 10s;
        client_body_timeout 20s;
        keepalive_timeout 30s;
        location / { return 200 "ok\\n"; }
        location /host { return 200 "$host $uri $args\\n"; }
        location /echo { test_content echo; }
        location /hold { test_content hold; }
        location /small { client_max_body_size 10; test_content echo; }
        location /small-return { client_max_body_size 10; return 200 "ok\\n"; }
        location /fail { test_content fail; }
        location /late { test_content late; }
        location /short-idle { keepalive_timeout 5s; return 200 "ok\\n"; }
        location /slow-body { client_body_timeout 50s; test_content echo; }
"""


def configText(server: str = BASE_SERVER, extra: str = "") -> str:
    """
    A whole config: the server under test (the default server of its
    listener) and a second server, C{b.test}, with one location only, so
    name-based routing and the no-location 404 can be seen.
    """
    return f"""
events {{ }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:8080;
{server}
{extra}
    }}
    server {{
        listen 127.0.0.1:8080;
        server_name b.test;
        location /only/ {{ return 200 "b\\n"; }}
    }}
}}
"""


_compiled: Dict[str, CompiledConfig] = {}


def compiled(text: str) -> CompiledConfig:
    """
    Compile C{text} once per test run (the result is immutable), with a
    memory reactor so nothing touches the global one.
    """
    found = _compiled.get(text)
    if found is None:
        found = _compiled[text] = loadConfig(
            text=text,
            modules=builtinModules() + [ChannelTestModule()],
            reactor=MemoryReactorClock(),
        )
    return found


class Connection:
    """
    One client connection to an L{HTTPChannel} over a L{StringTransport},
    with helpers to send bytes, read the responses and see whether the
    channel closed it.
    """

    def __init__(self, text: Optional[str] = None) -> None:
        """Connect a channel for the config C{text} (default L{configText})."""
        self.clock = MemoryReactorClock()
        listener = compiled(text or configText()).listeners[0]
        self.channel = HTTPChannel(listener, self.clock)
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50123),
        )
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        """Deliver C{data} as if it arrived from the client."""
        self.channel.dataReceived(data)

    @property
    def output(self) -> bytes:
        """Everything written to the client so far."""
        return self.transport.value()

    def responses(self, heads: Iterable[bool] = ()) -> List[RawResponse]:
        """
        The responses written so far; C{heads} flags those answering HEAD.
        """
        return parseRawResponses(self.output, heads)

    def statuses(self) -> List[int]:
        """The status of each response written so far."""
        return [r.status for r in self.responses()]

    @property
    def closed(self) -> bool:
        """Whether the channel closed (or aborted) the connection."""
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        """Tell the channel the connection has gone, as the reactor would."""
        self.channel.connectionLost(Failure(ConnectionDone()))


def get(path: str = "/", host: bytes = b"a.test", extra: bytes = b"",
        method: bytes = b"GET", version: bytes = b"HTTP/1.1") -> bytes:
    """A request head with a Host header and C{extra} header lines."""
    return b"%s %s %s\r\nHost: %s\r\n%s\r\n" % (
        method, path.encode("ascii"), version, host, extra,
    )


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    """A POST with a Content-Length body."""
    return get(path, method=b"POST",
               extra=b"Content-Length: %d\r\n%s" % (len(body), extra)) + body


def chunked(*pieces: bytes) -> bytes:
    """A chunked body made of C{pieces}, terminated by the last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def resetFakes() -> None:
    """Forget the held exchanges, pending Deferreds and logged exchanges."""
    HOLD.exchanges.clear()
    LATE.pending.clear()
    DELAY.pending.clear()
    SINK.entries.clear()
    SINK.exchanges.clear()


@pytest.fixture(autouse=True)
def _resetFakes() -> None:
    """Start every pytest-style test with the fakes empty."""
    resetFakes()


class ChannelTestCase(SynchronousTestCase):
    """
    A test case that starts with the fakes empty under trial too, where
    pytest's autouse fixture does not run.
    """

    def setUp(self) -> None:
        """Empty the shared fakes."""
        resetFakes()


# ---------------------------------------------------------------------------
# malformed requests: status, error page, and the connection closes
# ---------------------------------------------------------------------------

LONG = b"a" * 1100
MALFORMED = [
    ("content-length-and-chunked",
     b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"hello"), 400),
    ("bad-chunk-size",
     b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nhello\r\n0\r\n\r\n", 400),
    ("obs-fold", get(extra=b"X-Folded: a\r\n  b\r\n"), 400),
    ("space-before-colon", get(extra=b"X-Spaced : a\r\n"), 400),
    ("invalid-header-name", get(extra=b"X@Bad: a\r\n"), 400),
    ("differing-content-lengths",
     b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
     b"Content-Length: 6\r\n\r\nhello!", 400),
    ("missing-host-http11", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("request-line-too-long", get("/" + "a" * 1100), 414),
    ("header-line-too-long", get(extra=b"X-Big: " + LONG + b"\r\n"), 431),
    ("header-section-too-large",
     get(extra=b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 900) for i in range(3))), 431),
    ("content-length-over-max-body", post("/small", b"x" * 11), 413),
    ("chunked-over-max-body",
     b"POST /small HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
     + chunked(b"x" * 6, b"y" * 6), 413),
    ("unknown-transfer-coding",
     b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     + chunked(b"hello"), 501),
    ("http-2.0-request-line", get(version=b"HTTP/2.0"), 505),
    ("host-with-slash", get(host=b"a/b"), 400),
    ("host-with-double-dot", get(host=b"a..test"), 400),
    ("absolute-form-unknown-scheme", get("ftp://a.test/"), 400),
    ("absolute-form-userinfo", get("http://user@a.test/"), 400),
    ("absolute-form-unclosed-ip-literal", get("http://[::1/"), 400),
    ("absolute-form-fragment", get("http://a.test#top"), 400),
    ("absolute-form-bad-port", get("http://a.test:8o/"), 400),
    ("absolute-form-empty-host", get("http:///host"), 400),
]


@pytest.mark.parametrize(
    "request_, status", [pytest.param(r, s, id=i) for i, r, s in MALFORMED]
)
def testMalformedRequest(request_: bytes, status: int) -> None:
    """
    Each class of malformed request gets its status with an nginx-style
    error page (never a traceback), C{Connection: close}, and the channel
    closes the connection: after a framing error the rest of the stream
    cannot be trusted.
    """
    conn = Connection()
    conn.send(request_)
    [response] = conn.responses()
    assert response.status == status, conn.output
    assert response.header("Connection") == "close"
    assert b"<h1>%d " % status in response.body
    assert b"Traceback" not in conn.output and b"SECRET" not in conn.output
    assert conn.closed


@pytest.mark.parametrize(
    "request_, status", [pytest.param(r, s, id=i) for i, r, s in MALFORMED]
)
def testMalformedRequestByteByByte(request_: bytes, status: int) -> None:
    """
    The same requests split into single bytes get the same answer: nothing
    in the codec may depend on how TCP segments the stream.
    """
    conn = Connection()
    for i in range(len(request_)):
        if conn.closed:
            break
        conn.send(request_[i : i + 1])
    assert conn.statuses() == [status]
    assert conn.closed


@pytest.mark.parametrize(
    "request_, status",
    [
        pytest.param(get("/" + "a" * 1100).split(b"\r\n")[0], 414, id="request-line"),
        pytest.param(get(extra=b"X-Big: " + LONG)[:-2], 431, id="header-line"),
    ],
)
def testLimitsOnIncompleteHead(request_: bytes, status: int) -> None:
    """
    A head that is still incomplete but already over a limit is refused at
    once, so a client cannot make the proxy buffer an endless line.
    """
    conn = Connection()
    conn.send(request_)
    assert conn.statuses() == [status]
    assert conn.closed


def testLimitsFollowLargeClientHeaderBuffers() -> None:
    """
    With C{large_client_header_buffers 2 1k} a 1000-byte request line and a
    1000-byte header line are still fine: the limits are the configured
    ones, not the 8k default, and not smaller.
    """
    conn = Connection()
    conn.send(get("/host?" + "q" * 990) + get(extra=b"X-Big: " + b"v" * 990 + b"\r\n"))
    assert conn.statuses() == [200, 200]
    assert not conn.closed


def testDefaultLimitsAllowLargerHeads() -> None:
    """
    Without C{large_client_header_buffers} the nginx default (4 8k) applies,
    so the 1100-byte lines refused above are accepted.
    """
    conn = Connection(configText(BASE_SERVER.replace("large_client_header_buffers 2 1k;", "")))
    conn.send(get("/" + "a" * 1100) + get(extra=b"X-Big: " + LONG + b"\r\n"))
    assert conn.statuses() == [200, 200]


class ContentLengthOverLimitTests(ChannelTestCase):
    """
    C{client_max_body_size} against a declared Content-Length is checked
    before any of the body is read, as nginx does: the client is told at
    once instead of uploading a body that will be refused.
    """

    def test_answeredBeforeBody(self) -> None:
        """
        The 413 is sent as soon as the head arrives, with no C{100
        Continue} even though the client asked for one, and the connection
        closes without waiting for the body.
        """
        conn = Connection()
        conn.send(get("/small", method=b"POST",
                      extra=b"Content-Length: 100\r\nExpect: 100-continue\r\n"))
        self.assertEqual(conn.statuses(), [413])
        self.assertNotIn(b"100 Continue", conn.output)
        self.assertTrue(conn.closed)

    def test_returnLocation(self) -> None:
        """
        The limit applies even where the location answers by itself with
        C{return}, because it is checked when the location is chosen.
        """
        conn = Connection()
        conn.send(post("/small-return", b"x" * 11))
        self.assertEqual(conn.statuses(), [413])

    def test_atTheLimit(self) -> None:
        """A body of exactly C{client_max_body_size} bytes is accepted."""
        conn = Connection()
        conn.send(post("/small", b"x" * 10))
        [response] = conn.responses()
        self.assertEqual((response.status, response.body), (200, b"x" * 10))

    def test_chunkedAtTheLimit(self) -> None:
        """A chunked body of exactly the limit is accepted too."""
        conn = Connection()
        conn.send(b"POST /small HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked(b"x" * 4, b"y" * 6))
        [response] = conn.responses()
        self.assertEqual((response.status, response.body), (200, b"xxxxyyyyyy"))

    def test_chunkedOverLimitAfterDelayedRouting(self) -> None:
        """
        When a server-level filter delays routing, the location's limit
        still holds for a chunked body, both for the part that arrived
        while routing waited and for the part that follows.
        """
        head = b"POST /small HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        text = configText(extra="test_server_delay on;")
        for before, after in [(b"x" * 12, b""), (b"x" * 6, b"y" * 6)]:
            conn = Connection(text)
            conn.send(head + b"%x\r\n%s\r\n" % (len(before), before))
            DELAY.pending.pop().callback(None)
            if after:
                conn.send(b"%x\r\n%s\r\n" % (len(after), after))
            self.assertEqual(conn.statuses(), [413], (before, after))
            self.assertTrue(conn.closed)

    def test_chunkedOverLimitFailsBody(self) -> None:
        """
        When a chunked body passes the limit, the handler reading it is told
        the body failed, so it can abandon its upstream request.
        """
        conn = Connection()
        conn.send(b"POST /hold HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        [exchange] = HOLD.exchanges
        collector = BodyCollector()
        exchange.readBody(collector)
        conn.send(b"%x\r\n%s" % (2 * 1024 * 1024, b"z" * 1024))
        self.assertEqual(b"".join(collector.data), b"z" * 1024)
        conn.send(b"z" * (1024 * 1024))
        self.assertIsNotNone(collector.failure)
        self.assertEqual(conn.statuses(), [413])
        self.assertTrue(conn.closed)


# ---------------------------------------------------------------------------
# keep-alive, pipelining and connection closing
# ---------------------------------------------------------------------------


class KeepAliveTests(ChannelTestCase):
    """
    Connection reuse as RFC 9112 section 9.3 and nginx define it.
    """

    def test_twoRequests(self) -> None:
        """
        Two requests, sent one after the other, are both answered on the
        same connection, each with C{Connection: keep-alive}.
        """
        conn = Connection()
        conn.send(get("/"))
        conn.send(get("/host?x=1"))
        responses = conn.responses()
        self.assertEqual([r.status for r in responses], [200, 200])
        self.assertEqual([r.header("Connection") for r in responses],
                         ["keep-alive", "keep-alive"])
        self.assertEqual(responses[1].body, b"a.test /host x=1\n")
        self.assertFalse(conn.closed)

    def test_idleOnlyBetweenRequests(self) -> None:
        """
        A graceful shutdown may close a connection only between requests:
        not one that has yet to send its first (its client wants an
        answer), nor one with a request in progress.
        """
        conn = Connection()
        self.assertFalse(conn.channel.isIdle())
        conn.send(get("/")[:10])
        self.assertFalse(conn.channel.isIdle())
        conn.send(get("/")[10:])
        self.assertEqual([r.status for r in conn.responses()], [200])
        self.assertTrue(conn.channel.isIdle())

    def test_http10Closes(self) -> None:
        """
        An HTTP/1.0 request without C{Connection: keep-alive} is answered
        with C{Connection: close} and the connection closes.
        """
        conn = Connection()
        conn.send(get("/", version=b"HTTP/1.0"))
        [response] = conn.responses()
        self.assertEqual(response.header("Connection"), "close")
        self.assertTrue(conn.closed)

    def test_http10WithoutHost(self) -> None:
        """HTTP/1.0 does not need a Host header: the default server answers."""
        conn = Connection()
        conn.send(b"GET /host HTTP/1.0\r\n\r\n")
        [response] = conn.responses()
        # $host falls back to the server's name, as in nginx.
        self.assertEqual((response.status, response.body), (200, b"a.test /host \n"))

    def test_http10KeepAlive(self) -> None:
        """An HTTP/1.0 client that asks for keep-alive gets it."""
        conn = Connection()
        conn.send(get("/", version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\n"))
        [response] = conn.responses()
        self.assertEqual(response.header("Connection"), "keep-alive")
        self.assertFalse(conn.closed)

    def test_connectionClose(self) -> None:
        """
        C{Connection: close} from the client closes after the response, and
        a request pipelined behind it is not answered.
        """
        conn = Connection()
        conn.send(get("/", extra=b"Connection: close\r\n") + get("/"))
        [response] = conn.responses()
        self.assertEqual(response.header("Connection"), "close")
        self.assertTrue(conn.closed)

    def test_keepaliveRequests(self) -> None:
        """
        With C{keepalive_requests 2} the second response says C{Connection:
        close} and the connection closes; a third request is not answered.
        """
        conn = Connection(configText(extra="keepalive_requests 2;"))
        conn.send(get("/") + get("/") + get("/"))
        responses = conn.responses()
        self.assertEqual([r.header("Connection") for r in responses],
                         ["keep-alive", "close"])
        self.assertTrue(conn.closed)

    def test_keepaliveTimeoutZero(self) -> None:
        """C{keepalive_timeout 0} turns keep-alive off."""
        conn = Connection(configText(BASE_SERVER.replace("keepalive_timeout 30s;",
                                                         "keepalive_timeout 0;")))
        conn.send(get("/"))
        self.assertEqual(conn.responses()[0].header("Connection"), "close")
        self.assertTrue(conn.closed)


class PipeliningTests(ChannelTestCase):
    """
    Requests sent back to back before any answer (RFC 9112 section 9.3.2)
    are answered one at a time, in order.
    """

    def test_threeInOneWrite(self) -> None:
        """
        Three requests in one write, the middle one with a body read by its
        handler, get three responses in order.
        """
        conn = Connection()
        conn.send(get("/host?n=1") + post("/echo", b"hello") + get("/host?n=3"))
        responses = conn.responses()
        self.assertEqual([r.body for r in responses],
                         [b"a.test /host n=1\n", b"hello", b"a.test /host n=3\n"])
        self.assertFalse(conn.closed)

    def test_bodyAndNextRequestInTheHeadsRead(self) -> None:
        """
        A read that starts with a whole head, then its body and the next
        requests, is framed exactly (the path that reads the head straight
        from the read), with a length or chunked body.
        """
        conn = Connection()
        conn.send(post("/echo", b"hello") + get("/host?n=2")
                  + b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked(b"wor", b"ld") + get("/host?n=4"))
        self.assertEqual([r.body for r in conn.responses()],
                         [b"hello", b"a.test /host n=2\n", b"world", b"a.test /host n=4\n"])
        self.assertFalse(conn.closed)

    def test_bodyInLaterReads(self) -> None:
        """
        A head read whole with part of its body, the rest coming later.
        """
        conn = Connection()
        conn.send(post("/echo", b"hello world")[:-6])
        conn.send(b" world")
        self.assertEqual([r.body for r in conn.responses()], [b"hello world"])

    def test_chunkedBodyInPipeline(self) -> None:
        """A chunked body in the middle of a pipeline is framed exactly."""
        conn = Connection()
        conn.send(get("/host?n=1")
                  + b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked(b"hel", b"lo") + get("/host?n=3"))
        self.assertEqual([r.body for r in conn.responses()],
                         [b"a.test /host n=1\n", b"hello", b"a.test /host n=3\n"])

    def test_laterRequestsWait(self) -> None:
        """
        While the first response is pending, the pipelined second request
        is not started; it runs once the first response finishes.
        """
        conn = Connection()
        conn.send(get("/hold") + get("/hold?second"))
        [first] = HOLD.exchanges
        first.sendLocalReply(200, b"first\n")
        second = HOLD.exchanges[1]
        self.assertEqual(second.rawURI, b"/hold?second")
        second.sendLocalReply(200, b"second\n")
        self.assertEqual([r.body for r in conn.responses()], [b"first\n", b"second\n"])

    def test_bodyAfterEarlyResponseDiscarded(self) -> None:
        """
        A POST answered by C{return} before its body is read has the body
        read and thrown away, and the next pipelined request still works.
        """
        conn = Connection()
        conn.send(post("/", b"GET /evil HTTP/1.1\r\n\r\n") + get("/host?next"))
        self.assertEqual([r.body for r in conn.responses()],
                         [b"ok\n", b"a.test /host next\n"])
        self.assertFalse(conn.closed)

    def test_bodyArrivingLaterDiscarded(self) -> None:
        """
        The same when the body arrives after the response was sent, in
        pieces, with the next request right behind it.
        """
        conn = Connection()
        conn.send(get("/", method=b"POST", extra=b"Content-Length: 10\r\n"))
        self.assertEqual(conn.statuses(), [200])
        conn.send(b"01234")
        conn.send(b"56789" + get("/host?next"))
        self.assertEqual([r.body for r in conn.responses()],
                         [b"ok\n", b"a.test /host next\n"])

    def test_chunkedBodyAfterEarlyResponseDiscarded(self) -> None:
        """A chunked body after an early response is decoded and dropped."""
        conn = Connection()
        conn.send(b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked(b"abc", b"def") + get("/host?next"))
        self.assertEqual(conn.statuses(), [200, 200])

    def test_manyPipelinedBehindSlowResponse(self) -> None:
        """
        More pipelined bytes than the channel holds pause reading, but do
        not cost the connection: once the slow response ends, every queued
        request is answered and the connection stays open.
        """
        conn = Connection()
        conn.send(get("/hold"))
        conn.send(get("/host?" + "p" * 900) * 100)
        self.assertEqual(conn.transport.producerState, "paused")
        HOLD.exchanges[0].sendLocalReply(200, b"slow\n")
        responses = conn.responses()
        self.assertEqual(len(responses), 101)
        self.assertEqual(responses[0].header("Connection"), "keep-alive")
        self.assertFalse(conn.closed)
        self.assertEqual(conn.transport.producerState, "producing")


class ResponseFramingTests(ChannelTestCase):
    """
    How responses are framed: HEAD, chunked output, HTTP/1.0 clients.
    """

    def test_headHasNoBody(self) -> None:
        """
        HEAD gets the headers GET would get, Content-Length included, and
        no body; the next request on the connection is read correctly.
        """
        conn = Connection()
        conn.send(get("/", method=b"HEAD") + get("/host?after"))
        responses = conn.responses(heads=[True, False])
        self.assertEqual(responses[0].header("Content-Length"), "3")
        self.assertEqual(responses[0].body, b"")
        self.assertEqual(responses[1].body, b"a.test /host after\n")

    def test_headOfHandlerResponse(self) -> None:
        """
        A handler that writes a body for HEAD anyway has it dropped, and
        no chunked framing is sent either.
        """
        conn = Connection()
        conn.send(get("/hold", method=b"HEAD"))
        [exchange] = HOLD.exchanges
        exchange.startResponse(200, [])
        exchange.write(b"not for HEAD")
        exchange.finish()
        self.assertNotIn(b"not for HEAD", conn.output)
        self.assertNotIn(b"chunked", conn.output.lower())
        self.assertTrue(conn.output.endswith(b"\r\n\r\n"))

    def test_headErrorPage(self) -> None:
        """An error answer to HEAD has no page body either."""
        conn = Connection()
        conn.send(get("/nowhere", host=b"b.test", method=b"HEAD"))
        self.assertTrue(conn.output.endswith(b"\r\n\r\n"))
        self.assertEqual(conn.responses(heads=[True])[0].status, 404)

    def test_chunkedWithoutLength(self) -> None:
        """
        A body of unknown length goes to an HTTP/1.1 client chunked, and
        the connection stays usable.
        """
        conn = Connection()
        conn.send(get("/hold"))
        [exchange] = HOLD.exchanges
        exchange.startResponse(200, [])
        exchange.write(b"abc")
        exchange.write(b"defg")
        exchange.finish()
        [response] = conn.responses()
        self.assertTrue(response.chunked)
        self.assertEqual(response.body, b"abcdefg")
        self.assertFalse(conn.closed)

    def test_lowersFromTheHandler(self) -> None:
        """
        The lowercased names a content handler passes with its headers
        (as the proxy does with the parser's) frame the head as the names
        themselves would: a Content-Length means no chunked framing, and a
        Server of its own replaces ours.
        """
        conn = Connection()
        conn.send(get("/hold"))
        [exchange] = HOLD.exchanges
        exchange.startResponse(
            200, [(b"Content-LENGTH", b"3"), (b"SERVER", b"backend")], None,
            [b"content-length", b"server"],
        )
        exchange.write(b"abc")
        exchange.finish()
        [response] = conn.responses()
        self.assertFalse(response.chunked)
        self.assertEqual(response.body, b"abc")
        self.assertEqual(conn.output.lower().count(b"\r\nserver:"), 1)
        self.assertIn(b"\r\nSERVER: backend\r\n", conn.output)
        self.assertEqual(conn.output.lower().count(b"\r\ndate:"), 1)

    def test_lowersNotUsedAfterAResponseFilter(self) -> None:
        """
        Once a response filter has run, the handler's names may no longer
        match the headers: the codec lowers the headers it is given, so a
        Date that C{add_header} adds replaces ours.
        """
        text = configText(extra='location /hold-date { add_header Date "then"; test_content hold; }')
        conn = Connection(text)
        conn.send(get("/hold-date"))
        [exchange] = HOLD.exchanges
        exchange.startResponse(200, [(b"Content-Length", b"0")], None, [b"content-length"])
        exchange.finish()
        self.assertEqual(conn.output.lower().count(b"\r\ndate:"), 1)
        self.assertIn(b"\r\nDate: then\r\n", conn.output)

    def test_http10WithoutLengthCloses(self) -> None:
        """
        An HTTP/1.0 client cannot take chunked, so a body of unknown length
        is delimited by closing, even if keep-alive was asked for.
        """
        conn = Connection()
        conn.send(get("/hold", version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\n"))
        [exchange] = HOLD.exchanges
        exchange.startResponse(200, [])
        exchange.write(b"abc")
        exchange.finish()
        self.assertNotIn(b"chunked", conn.output.lower())
        self.assertTrue(conn.output.endswith(b"\r\n\r\nabc"))
        self.assertTrue(conn.closed)


class ExpectContinueTests(ChannelTestCase):
    """
    C{Expect: 100-continue} (RFC 9110 section 10.1.1): the interim answer is
    sent only when a handler actually wants the body.
    """

    EXPECT = b"Content-Length: 5\r\nExpect: 100-continue\r\n"

    def test_sentWhenHandlerReads(self) -> None:
        """
        C{100 Continue} is written when the handler asks for the body, not
        before, and then the final response follows the body.
        """
        conn = Connection()
        conn.send(get("/hold", method=b"POST", extra=self.EXPECT))
        self.assertEqual(conn.output, b"")
        [exchange] = HOLD.exchanges
        collector = BodyCollector()
        exchange.readBody(collector)
        self.assertEqual(conn.output, b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.send(b"hello")
        self.assertEqual((b"".join(collector.data), collector.finished), (b"hello", True))
        exchange.sendLocalReply(200, b"done\n")
        self.assertEqual([r.status for r in conn.responses()], [100, 200])

    def test_sentOnce(self) -> None:
        """Reading the body twice does not send a second interim response."""
        conn = Connection()
        conn.send(get("/hold", method=b"POST", extra=self.EXPECT))
        [exchange] = HOLD.exchanges
        exchange.readBody(BodyCollector())
        exchange.readBody(BodyCollector())
        self.assertEqual(conn.output.count(b"100 Continue"), 1)

    def test_echoHandler(self) -> None:
        """A handler that reads at once gets the body after C{100 Continue}."""
        conn = Connection()
        conn.send(get("/echo", method=b"POST", extra=self.EXPECT))
        conn.send(b"hello")
        responses = conn.responses()
        self.assertEqual([r.status for r in responses], [100, 200])
        self.assertEqual(responses[1].body, b"hello")

    def test_notSentWhenBodyAlreadyHere(self) -> None:
        """A client that sent the body anyway gets no interim response."""
        conn = Connection()
        conn.send(get("/echo", method=b"POST", extra=self.EXPECT) + b"hello")
        self.assertEqual(conn.statuses(), [200])

    def test_notSentForEarlyResponse(self) -> None:
        """
        A location that answers without reading the body sends no C{100
        Continue}.  The client may then never send the body, so the body
        cannot be waited for (that would hang) nor guessed at (its bytes
        could be a next request): the connection closes after the answer.
        """
        conn = Connection()
        conn.send(get("/", method=b"POST", extra=self.EXPECT))
        [response] = conn.responses()
        self.assertEqual(response.status, 200)
        self.assertNotIn(b"100 Continue", conn.output)
        self.assertEqual(response.header("Connection"), "close")
        self.assertTrue(conn.closed)

    def test_notSentToHTTP10(self) -> None:
        """HTTP/1.0 clients do not know 1xx responses: none is sent."""
        conn = Connection()
        conn.send(get("/echo", method=b"POST", version=b"HTTP/1.0", extra=self.EXPECT))
        conn.send(b"hello")
        self.assertEqual(conn.statuses(), [200])


# ---------------------------------------------------------------------------
# timeouts, driven by the clock
# ---------------------------------------------------------------------------


class TimeoutTests(ChannelTestCase):
    """
    C{client_header_timeout}, C{client_body_timeout} and
    C{keepalive_timeout} close connections that stall.
    """

    def test_headerTimeout(self) -> None:
        """
        A head that is still incomplete C{client_header_timeout} after the
        connection opened gets the connection closed, with no response.
        """
        conn = Connection()
        conn.send(b"GET / HTTP/1.1\r\nHo")
        conn.clock.advance(9.9)
        self.assertFalse(conn.closed)
        conn.clock.advance(0.1)
        self.assertTrue(conn.closed)
        self.assertEqual(conn.output, b"")

    def test_headerTimeoutNotResetByTrickle(self) -> None:
        """
        Sending the head a byte at a time does not extend the header
        timeout (a slowloris client), on the first request or a later one.
        """
        for prefix in (b"", get("/")):
            conn = Connection()
            conn.send(prefix)
            for byte in b"GET / HTTP/1.1\r\n":
                conn.send(bytes([byte]))
                conn.clock.advance(1)
                if conn.closed:
                    break
            self.assertTrue(conn.closed, prefix)

    def test_keepaliveTimeout(self) -> None:
        """
        An idle keep-alive connection closes after C{keepalive_timeout}
        without anything being written.
        """
        conn = Connection()
        conn.send(get("/"))
        before = conn.output
        conn.clock.advance(29)
        self.assertFalse(conn.closed)
        conn.clock.advance(1)
        self.assertTrue(conn.closed)
        self.assertEqual(conn.output, before)

    def test_keepaliveTimeoutOfLocation(self) -> None:
        """
        C{keepalive_timeout} set in a location applies after a request to
        that location, as in nginx.
        """
        conn = Connection()
        conn.send(get("/short-idle"))
        conn.clock.advance(5)
        self.assertTrue(conn.closed)

    def test_keepaliveThenHeaderTimeout(self) -> None:
        """
        Once a next request has started arriving, the (shorter) header
        timeout applies to it from its first byte.
        """
        conn = Connection()
        conn.send(get("/"))
        conn.clock.advance(25)
        conn.send(b"GET /")
        conn.clock.advance(9.9)
        self.assertFalse(conn.closed)
        conn.clock.advance(0.1)
        self.assertTrue(conn.closed)

    def test_bodyTimeout(self) -> None:
        """
        A body that stalls for C{client_body_timeout} closes the
        connection; the handler is told the body failed, and the access log
        records 408 as nginx does.
        """
        conn = Connection()
        conn.send(get("/hold", method=b"POST", extra=b"Content-Length: 10\r\n") + b"abc")
        [exchange] = HOLD.exchanges
        collector = BodyCollector()
        exchange.readBody(collector)
        conn.clock.advance(19)
        conn.send(b"def")  # progress restarts the timer
        conn.clock.advance(19)
        self.assertFalse(conn.closed)
        conn.clock.advance(1)
        self.assertTrue(conn.closed)
        conn.lose()
        self.assertIsNotNone(collector.failure)
        self.assertEqual(SINK.entries, [(408, b"/hold")])

    def test_bodyTimeoutOfLocation(self) -> None:
        """
        C{client_body_timeout} set in a location applies to bodies sent to
        it, as in nginx.
        """
        conn = Connection()
        conn.send(get("/slow-body", method=b"POST", extra=b"Content-Length: 10\r\n") + b"a")
        conn.clock.advance(49)
        conn.send(b"b")
        conn.clock.advance(49)
        self.assertFalse(conn.closed)
        conn.clock.advance(1)
        self.assertTrue(conn.closed)

    def test_noTimerAfterClose(self) -> None:
        """A closed connection leaves no timer behind in the reactor."""
        conn = Connection()
        conn.send(get("/", extra=b"Connection: close\r\n"))
        conn.lose()
        self.assertEqual(conn.clock.getDelayedCalls(), [])

    def test_clientGoneLogged499(self) -> None:
        """
        A client that leaves before its response is logged with 499, and
        the handler's close callbacks run so upstream work is abandoned.
        """
        conn = Connection()
        conn.send(get("/hold"))
        [exchange] = HOLD.exchanges
        called: List[bool] = []
        exchange.notifyClientClosed(lambda: called.append(True))
        conn.lose()
        self.assertEqual(called, [True])
        self.assertEqual(SINK.entries, [(499, b"/hold")])


# ---------------------------------------------------------------------------
# routing: absolute-form, Host, 404
# ---------------------------------------------------------------------------


class RoutingTests(ChannelTestCase):
    """
    What the codec and exchange make of the request target and Host before
    a location runs.
    """

    def test_absoluteForm(self) -> None:
        """
        An absolute-form target (RFC 9112 section 3.2.2) chooses the server
        by its authority, which wins over the Host header, and the location
        by its path.
        """
        conn = Connection()
        conn.send(get("http://B.test:8080/only/x?q=1", host=b"a.test")
                  + get("http://a.test/host?q=2", host=b"b.test"))
        self.assertEqual([r.body for r in conn.responses()],
                         [b"b\n", b"a.test /host q=2\n"])

    def test_absoluteFormNoPath(self) -> None:
        """
        An absolute-form target without a path means C{/}, also when a
        query follows the authority directly (nginx reads
        C{http://host?q} as C{/?q}).
        """
        conn = Connection()
        conn.send(get("http://a.test", host=b"b.test") + get("HTTP://A.test?q=1"))
        self.assertEqual(conn.statuses(), [200, 200])
        self.assertEqual(
            [(e.host, e.path, e.args, e.originTarget) for e in SINK.exchanges],
            [("a.test", "/", "", b"/"), ("a.test", "/", "q=1", b"/?q=1")],
        )

    def test_absoluteFormPortAndLiteral(self) -> None:
        """
        The authority may carry a port (even an empty one) or be an IP
        literal; the port is not part of the host.
        """
        conn = Connection()
        conn.send(get("http://a.test:/host") + get("http://[::1]:8080/host?x"))
        self.assertEqual([r.body for r in conn.responses()],
                         [b"a.test /host \n", b"[::1] /host x\n"])

    def test_hostChoosesServer(self) -> None:
        """The Host header chooses the virtual server, port and case aside."""
        conn = Connection()
        conn.send(get("/only/", host=b"B.Test:8080"))
        self.assertEqual(conn.responses()[0].body, b"b\n")

    def test_unknownHostDefaultServer(self) -> None:
        """An unknown Host goes to the listener's default server."""
        conn = Connection()
        conn.send(get("/host", host=b"other.test"))
        self.assertEqual(conn.responses()[0].body, b"other.test /host \n")

    def test_noLocation404(self) -> None:
        """
        A path no location matches gets nginx's 404 page, and the
        connection stays open (a 404 is not a protocol error).
        """
        conn = Connection()
        conn.send(get("/elsewhere", host=b"b.test"))
        [response] = conn.responses()
        self.assertEqual(response.status, 404)
        self.assertIn(b"<h1>404 Not Found</h1>", response.body)
        self.assertEqual(response.header("Content-Type"), "text/html")
        self.assertEqual(response.header("Connection"), "keep-alive")
        self.assertFalse(conn.closed)


# ---------------------------------------------------------------------------
# handler failures
# ---------------------------------------------------------------------------


class HandlerFailureTests(ChannelTestCase):
    """
    A broken content handler costs the client one 500 page, never a
    traceback or a hung connection.
    """

    def assertCleanServerError(self, conn: Connection) -> None:
        """
        The client got exactly one 500 page, with nothing of the exception
        in it, and the connection closed (as nginx closes after a 500).
        """
        [response] = conn.responses()
        self.assertEqual(response.status, 500)
        self.assertIn(b"<h1>500 Internal Server Error</h1>", response.body)
        self.assertNotIn(b"Traceback", conn.output)
        self.assertNotIn(b"SECRET", conn.output)
        self.assertNotIn(b"RuntimeError", conn.output)
        self.assertEqual(response.header("Connection"), "close")
        self.assertTrue(conn.closed)

    def test_synchronousException(self) -> None:
        """A handler that raises gets a 500 page."""
        conn = Connection()
        conn.send(get("/fail"))
        self.assertCleanServerError(conn)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_deferredFailure(self) -> None:
        """A handler whose Deferred fails later gets a 500 page too."""
        conn = Connection()
        conn.send(get("/late"))
        LATE.pending[0][1].errback(RuntimeError("SECRET-DETAIL later"))
        self.assertCleanServerError(conn)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_failureAfterHead(self) -> None:
        """
        A handler that fails after the head went out cannot change the
        status: the connection is dropped so the client sees a truncated
        response, not a complete-looking one.
        """
        conn = Connection()
        conn.send(get("/late"))
        [(exchange, d)] = LATE.pending
        exchange.startResponse(200, [(b"Content-Length", b"100")])
        exchange.write(b"partial")
        d.errback(RuntimeError("SECRET-DETAIL after the head"))
        self.assertTrue(conn.closed)
        self.assertNotIn(b"SECRET", conn.output)
        self.assertFalse(conn.responses()[0].complete)
        self.flushLoggedErrors(RuntimeError)


def testExchangeProvidesInterface() -> None:
    """The exchange the codec builds provides L{IExchange} fully."""
    conn = Connection()
    conn.send(get("/hold"))
    [exchange] = HOLD.exchanges
    assert verifyObject(IExchange, exchange)


class SendTimeoutTests(ChannelTestCase):
    """
    C{send_timeout}: a client that stops reading a response (so the
    transport pauses the channel) for that long is disconnected; one that
    catches up in time is not.
    """

    def _stalledResponse(self) -> Connection:
        conn = Connection(configText(BASE_SERVER.replace(
            "keepalive_timeout 30s;", "keepalive_timeout 30s; send_timeout 7s;")))
        conn.send(get("/hold"))
        exchange = HOLD.exchanges[-1]
        exchange.startResponse(200, [(b"Content-Length", b"10")])
        exchange.write(b"12345")
        conn.channel.pauseProducing()  # the client's socket buffer is full
        return conn

    def test_stalledClientDropped(self) -> None:
        """
        Paused for C{send_timeout} with the response unfinished: aborted.
        """
        conn = self._stalledResponse()
        conn.clock.advance(6.9)
        self.assertFalse(conn.closed)
        conn.clock.advance(0.2)
        self.assertTrue(conn.closed)

    def test_resumedInTimeKept(self) -> None:
        """
        A client that drains before the timeout keeps its connection, and
        the timer does not fire later.
        """
        conn = self._stalledResponse()
        conn.clock.advance(5)
        conn.channel.resumeProducing()
        conn.clock.advance(30)
        HOLD.exchanges[-1].write(b"67890")
        HOLD.exchanges[-1].finish()
        self.assertEqual(conn.responses()[0].body, b"1234567890")


class NoDelayTests(SynchronousTestCase):
    """
    C{tcp_nodelay} (on unless turned off, as in nginx) decides whether an
    accepted TCP connection gets C{TCP_NODELAY}, from its listener's
    default server.
    """

    def accepted(self, extra: str) -> socket.socket:
        """
        Connect a channel of C{extra}'s config to a transport whose socket
        is a real accepted TCP socket.

        @return: that socket.
        """
        ours = acceptedTCP(self)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50010),
        )
        transport.socket = ours  # type: ignore[attr-defined]
        factory = ProxyFactory(compiled(configText(extra=extra)).listeners[0], MemoryReactorClock())
        factory.buildProtocol(None).makeConnection(transport)
        return ours

    def test_onByDefault(self) -> None:
        """Without the directive, Nagle's algorithm is off."""
        sock = self.accepted("")
        self.assertNotEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)

    def test_off(self) -> None:
        """C{tcp_nodelay off;} leaves the socket as accepted."""
        sock = self.accepted("tcp_nodelay off;")
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)

    def test_onceBehindTheSelector(self) -> None:
        """
        On a listener that may speak HTTP/2, the protocol selector sets it
        before the first byte, and the HTTP/1 channel it then chooses does
        not set it a second time.
        """
        calls: List[Tuple[int, int, int]] = []

        class RecordingSocket:
            family = socket.AF_INET

            def setsockopt(self, level: int, option: int, value: int) -> None:
                calls.append((level, option, value))

        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50011),
        )
        transport.socket = RecordingSocket()  # type: ignore[attr-defined]
        text = ("events { }\nhttp {\n access_log off;\n server {\n"
                "  listen 127.0.0.1:8080 http2;\n  return 200 \"ok\\n\";\n }\n}\n")
        factory = ProxyFactory(compiled(text).listeners[0], MemoryReactorClock())
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        self.assertEqual(calls, [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertIsInstance(protocol.chosen, HTTPChannel)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"), transport.value())
        self.assertEqual(calls, [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


class IdleFootprintTests(SynchronousTestCase):
    """
    What each connection keeps is small and shared where it can be: the
    factory's set of open channels forgets closed ones, connections share
    one local-address object, and keepalive deadlines share one reactor
    call.
    """

    def connect(self, factory: ProxyFactory, clock: MemoryReactorClock, port: int) -> Any:
        channel = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        channel.makeConnection(StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "127.0.0.1", port),
        ))
        return channel

    def test_closedChannelsLeaveTheFactory(self) -> None:
        """A channel leaves C{factory.channels} when its connection is lost."""
        clock = MemoryReactorClock()
        factory = ProxyFactory(compiled(configText()).listeners[0], clock)
        first = self.connect(factory, clock, 50001)
        second = self.connect(factory, clock, 50002)
        self.assertEqual(factory.channels, {first, second})
        first.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(factory.channels, {second})
        self.assertEqual(factory.openChannels(), [second])

    def test_sharedLocalAddress(self) -> None:
        """
        Connections to the same local address share one address object,
        while each keeps its own peer.
        """
        clock = MemoryReactorClock()
        factory = ProxyFactory(compiled(configText()).listeners[0], clock)
        first = self.connect(factory, clock, 50003)
        second = self.connect(factory, clock, 50004)
        self.assertIs(first.serverAddress, second.serverAddress)
        self.assertEqual(first.serverAddress, IPv4Address("TCP", "127.0.0.1", 8080))
        self.assertEqual((first.clientAddress.port, second.clientAddress.port), (50003, 50004))

    def test_oneTimerForIdleConnections(self) -> None:
        """
        Idle keepalive connections wait on one reactor call between them,
        and each still times out after its own keepalive_timeout.
        """
        clock = MemoryReactorClock()
        factory = ProxyFactory(compiled(configText()).listeners[0], clock)
        channels = [self.connect(factory, clock, 50010 + i) for i in range(5)]
        for channel in channels:
            channel.dataReceived(get("/"))
            clock.advance(1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        timeout = channels[0].listener.defaultServer.conf.get("keepalive_timeout")
        clock.advance(timeout - 5)
        self.assertEqual([c.transport.disconnecting for c in channels],
                         [True, False, False, False, False])
        clock.advance(4)
        self.assertTrue(all(c.transport.disconnecting for c in channels))

    def test_wholeHeadsLeaveOneHeapEntry(self) -> None:
        """
        Keepalive requests that arrive whole never switch to the header
        timeout, so the connection keeps one entry in the timer heap
        however many it sends, and still times out when idle after them.
        """
        from twisted_rproxy.http.timers import timersFor

        clock = MemoryReactorClock()
        factory = ProxyFactory(compiled(configText()).listeners[0], clock)
        channel = self.connect(factory, clock, 50100)
        for _ in range(200):
            channel.dataReceived(get("/"))
            clock.advance(0.5)
        self.assertEqual(len(timersFor(clock)._heap), 1)
        self.assertFalse(channel.transport.disconnecting)
        timeout = channel.listener.defaultServer.conf.get("keepalive_timeout")
        clock.advance(timeout - 0.5)
        self.assertTrue(channel.transport.disconnecting)

    def test_partialHeadAfterKeepaliveGetsHeaderTimeout(self) -> None:
        """
        The first bytes of a next request switch the connection from
        keepalive_timeout to client_header_timeout, counted from them.
        """
        clock = MemoryReactorClock()
        factory = ProxyFactory(compiled(configText()).listeners[0], clock)
        channel = self.connect(factory, clock, 50101)
        channel.dataReceived(get("/"))
        clock.advance(1)
        channel.dataReceived(b"GET / HT")
        conf = channel.listener.defaultServer.conf
        header = conf.get("client_header_timeout")
        self.assertLess(header, conf.get("keepalive_timeout"))
        clock.advance(header - 0.001)
        self.assertFalse(channel.transport.disconnecting)
        clock.advance(0.001)
        self.assertTrue(channel.transport.disconnecting)
