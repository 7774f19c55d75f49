# -*- test-case-name: tests.unit.test_proxy_request -*-
"""
Tests for L{twisted_rproxy.upstream.proxyrequest} (with the C{proxy_*}
directives of L{twisted_rproxy.modules.proxy} that configure it and the
request body store of L{twisted_rproxy.upstream.body}): one request's trip
to the backend and back.

Each test compiles a real config on a L{MemoryReactorClock}, talks to the
client side through a L{StringTransport}, and plays the backend by
completing the connections the proxy asks the reactor for, so timeouts are
clock advances and every byte on both wires can be checked.
"""

from __future__ import annotations

import gc
import platform
import shutil
import tempfile
from typing import Any, List, Optional, Sequence, Tuple
from unittest import SkipTest

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_rproxy.config.registry import LOCATION, spec
from twisted_rproxy.config.slots import flagSlot
from twisted_rproxy.http.tunnel import BYTE_TUNNEL, Tunnel
from twisted_rproxy.interfaces import IUpgradedPair, IUpgradeHandler
from twisted_rproxy.module import ProxyModule
from twisted_rproxy.plugins import loadModules

from twisted_rproxy.service import ProxyFactory, loadConfig
from twisted_rproxy.upstream.body import RequestBody
from twisted_rproxy.upstream.proxyrequest import ProxyRequest

BACKEND = "127.0.0.1:8081"
"""Where the configs proxy to (nothing really listens: the test plays it)."""

SECOND = "127.0.0.1:8082"
"""A second backend address, for retries between peers."""


class Backend:
    """
    One backend connection the proxy opened, played by the test.

    @ivar protocol: the endpoint's wrapper around the proxy's codec; feed
        the backend's bytes to it.
    @ivar transport: what the proxy wrote to the backend.
    """

    def __init__(self, protocol: Any, transport: StringTransport, address: Tuple[str, int]):
        """Wrap one completed connection to C{address}."""
        self.protocol = protocol
        self.transport = transport
        self.address = address

    def respond(self, data: bytes) -> None:
        """The backend sends C{data}."""
        self.protocol.dataReceived(data)

    def close(self, reset: bool = False) -> None:
        """The backend closes (or resets) the connection."""
        self.transport.disconnecting = True
        reason = ConnectionLost() if reset else ConnectionDone()
        self.protocol.connectionLost(Failure(reason))

    @property
    def received(self) -> bytes:
        """Everything the proxy sent on this connection."""
        return self.transport.value()

    @property
    def closed(self) -> bool:
        """Whether the proxy closed (or aborted) this connection."""
        return bool(self.transport.disconnecting or self.transport.disconnected)


class ProxyTestCase(SynchronousTestCase):
    """
    Builds a proxy from a config's C{server} body and gives access to its
    client side, its backend connections and its error log lines.
    """

    def makeProxy(self, server: str, http: str = "", extraModules: Sequence[Any] = ()) -> None:
        """
        Compile a config whose only server listens on 127.0.0.1:8080 with
        C{server} inside it (and C{http} in the http block), with the
        installed modules plus C{extraModules}.
        """
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1000)
        text = (
            "events {}\nhttp {\n access_log off;\n" + http
            + "\n server {\n  listen 127.0.0.1:8080;\n" + server + "\n }\n}\n"
        )
        modules = list(loadModules()) + list(extraModules) if extraModules else None
        prefix = tempfile.mkdtemp(prefix="rproxy-unit-")
        self.addCleanup(shutil.rmtree, prefix, True)
        self.config = loadConfig(text=text, reactor=self.reactor, prefix=prefix, modules=modules)
        self.factory = ProxyFactory(self.config.listeners[0], self.reactor)
        self.events: List[dict] = []
        self.patch(ProxyRequest, "log", Logger(observer=self.events.append))
        self.connected = 0

    def client(self) -> Tuple[Any, StringTransport]:
        """
        A new client connection: its channel and transport.
        """
        channel = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50000),
        )
        channel.makeConnection(transport)
        return channel, transport

    def get(self, path: str = "/", headers: bytes = b"", method: bytes = b"GET",
            body: bytes = b"") -> Tuple[Any, StringTransport]:
        """
        Send one request on a new client connection.
        """
        channel, transport = self.client()
        channel.dataReceived(
            method + b" " + path.encode("ascii") + b" HTTP/1.1\r\nHost: example.test\r\n"
            + headers + b"\r\n" + body
        )
        return channel, transport

    def pendingConnects(self) -> int:
        """How many backend connects were asked for and not completed yet."""
        return len(self.reactor.tcpClients) - self.connected

    def backend(self) -> Backend:
        """
        Complete the oldest pending backend connect.
        """
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[self.connected]
        self.connected += 1
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        return Backend(protocol, transport, (host, port))

    def refuse(self) -> None:
        """
        Fail the oldest pending backend connect with "connection refused".
        """
        _host, _port, factory, _timeout, _bind = self.reactor.tcpClients[self.connected]
        self.connected += 1
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))

    def errors(self) -> List[str]:
        """The proxy's log lines so far, formatted."""
        return [formatEvent(e) for e in self.events]

    def assertLogged(self, fragment: str) -> str:
        """Assert one log line contains C{fragment}; return it."""
        for line in self.errors():
            if fragment in line:
                return line
        self.fail(f"no log line with {fragment!r} in {self.errors()!r}")

    def status(self, transport: StringTransport) -> Optional[int]:
        """The status of the first response on a client transport."""
        data = transport.value()
        if not data.startswith(b"HTTP/1.1 "):
            return None
        return int(data[9:12])

    def body(self, transport: StringTransport) -> bytes:
        """What follows the first response head on a client transport."""
        return transport.value().partition(b"\r\n\r\n")[2]


SIMPLE = f"location / {{ proxy_pass http://{BACKEND}; }}"
"""The plainest proxy location."""

KEEPALIVE_HTTP = f"upstream u {{ server {BACKEND}; keepalive 4; }}"
"""An upstream with keepalive connections."""

KEEPALIVE = """location / {
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    %s
    proxy_pass http://u;
}"""
"""The keepalive recipe; C{%s} takes extra directives."""


class RequestBuildingTests(ProxyTestCase):
    """
    The request sent upstream is built as nginx builds it, except that
    hop-by-hop headers are dropped as RFC 9110 requires.
    """

    def test_defaultRequest(self) -> None:
        """
        By default: HTTP/1.0, Host from the proxy_pass address, Connection:
        close, then the client's headers in order.
        """
        self.makeProxy(SIMPLE)
        self.get("/a?b=c", b"X-One: 1\r\nUser-Agent: t\r\n")
        self.assertEqual(
            self.backend().received,
            b"GET /a?b=c HTTP/1.0\r\nHost: 127.0.0.1:8081\r\nConnection: close\r\n"
            b"X-One: 1\r\nUser-Agent: t\r\n\r\n",
        )

    def test_hopByHopHeadersDropped(self) -> None:
        """
        Headers named by the client's Connection header, Proxy-Connection
        and the other hop-by-hop headers are not forwarded; the rest are.
        """
        self.makeProxy(SIMPLE)
        self.get("/", b"Connection: keep-alive, X-Foo\r\nX-Foo: f\r\nProxy-Connection: k\r\n"
                      b"Keep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Kept: k\r\n")
        sent = self.backend().received.lower()
        for name in (b"x-foo", b"proxy-connection", b"keep-alive", b"te:", b"upgrade"):
            self.assertNotIn(name, sent)
        self.assertIn(b"x-kept: k\r\n", sent)

    def test_fixedProxyVariablesWrittenAtLoad(self) -> None:
        """
        With a C{proxy_pass} URL without variables, C{$proxy_host} and
        C{$proxy_port} are known at load: header values made only of them
        and text (the default C{Host} among them) become pre-encoded lines
        of the plan, while a value with any other variable is still
        evaluated per request.
        """
        from twisted_rproxy.modules.proxy import PLAN_STATIC, PLAN_VALUE

        self.makeProxy(
            'location / { proxy_set_header X-Target "$proxy_host/$proxy_port";'
            ' proxy_set_header X-Mixed "$proxy_host $http_x_in";'
            f" proxy_pass http://{BACKEND}; }}"
        )
        channel, _ = self.get("/", b"X-In: one\r\n")
        received = self.backend().received
        self.assertIn(b"\r\nX-Target: 127.0.0.1:8081/8081\r\n", received)
        self.assertIn(b"\r\nX-Mixed: 127.0.0.1:8081 one\r\n", received)
        self.assertIn(b"\r\nHost: 127.0.0.1:8081\r\n", received)
        plan = channel._exchange.location.contentHandler.settings.headerPlan
        self.assertEqual(
            [(kind, first) for kind, first, _second in plan if kind == PLAN_VALUE],
            [(PLAN_VALUE, b"X-Mixed: ")],
        )
        self.assertIn(b"X-Target: 127.0.0.1:8081/8081\r\n",
                      b"".join(first for kind, first, _ in plan if kind == PLAN_STATIC))

    def test_fixedValueNeedsTheProxyModulesOwnGetters(self) -> None:
        """
        A variable that only shares C{$proxy_host}'s name (another module's
        getter) is never folded in at load.
        """
        from twisted_rproxy.modules.proxy import _fixedValue, proxyHostVariable
        from twisted_rproxy.variables import ComplexValue, VariableTable, simple

        fixed = {"proxy_host": "h:1", "proxy_port": "1"}
        own = ComplexValue("a-$proxy_host", VariableTable([simple("proxy_host", proxyHostVariable)]))
        other = ComplexValue("a-$proxy_host", VariableTable([simple("proxy_host", lambda e: "x")]))
        self.assertEqual(_fixedValue(own, fixed), "a-h:1")
        self.assertIsNone(_fixedValue(other, fixed))
        self.assertIsNone(_fixedValue(own, {}))

    def test_uriReplacement(self) -> None:
        """
        A URI part in proxy_pass replaces the matched location prefix.
        """
        self.makeProxy(f"location /api/ {{ proxy_pass http://{BACKEND}/v2/; }}")
        self.get("/api/users?id=1")
        self.assertTrue(self.backend().received.startswith(b"GET /v2/users?id=1 HTTP/1.0\r\n"))

    def test_variableLiteralAddress(self) -> None:
        """
        A C{proxy_pass} URL built from variables may name a literal IP
        address and port (no resolver needed, as in nginx), with its URI
        part replacing the request's.
        """
        self.makeProxy("location / { proxy_pass http://$http_x_target/fixed$is_args$args; }")
        self.get("/anything?q=1", b"X-Target: 127.0.0.1:8083\r\n")
        backend = self.backend()
        self.assertEqual(backend.address, ("127.0.0.1", 8083))
        self.assertTrue(backend.received.startswith(
            b"GET /fixed?q=1 HTTP/1.0\r\nHost: 127.0.0.1:8083\r\n"))

    def test_variableUpstreamName(self) -> None:
        """
        A variable URL naming an C{upstream} block uses that group.
        """
        self.makeProxy("location / { proxy_pass http://$http_x_target; }",
                       f"upstream u {{ server {SECOND}; }}")
        self.get("/x", b"X-Target: u\r\n")
        backend = self.backend()
        self.assertEqual(backend.address, ("127.0.0.1", 8082))
        self.assertIn(b"Host: u\r\n", backend.received)

    def test_variableHostNameNeedsResolver(self) -> None:
        """
        A host name from a variable needs a resolver, which there is not:
        502, with nginx's log line.
        """
        self.makeProxy("location / { proxy_pass http://$http_x_target:8080; }")
        _, client = self.get("/x", b"X-Target: backend.example\r\n")
        self.assertEqual(self.pendingConnects(), 0)
        self.assertEqual(self.status(client), 502)
        self.assertLogged("no resolver defined to resolve backend.example")

    def test_unixTarget(self) -> None:
        """
        C{proxy_pass http://unix:/path:/uri} connects to the socket, sends
        the URI part and C{Host: localhost}, as nginx does.
        """
        self.makeProxy("location /app/ { proxy_pass http://unix:/tmp/b.sock:/in/; }")
        self.get("/app/x")
        path, factory = self.reactor.unixClients[0][:2]
        self.assertEqual(path, "/tmp/b.sock")
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.value().startswith(
            b"GET /in/x HTTP/1.0\r\nHost: localhost\r\n"))


class ResponseRelayTests(ProxyTestCase):
    """
    Responses are relayed as they arrive, with flow control in both
    directions.
    """

    def test_streamsPiecesAsTheyArrive(self) -> None:
        """
        Each piece of a chunked backend body reaches the client before the
        next one exists.
        """
        self.makeProxy(SIMPLE)
        _, client = self.get("/sse")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                        b"Content-Type: text/event-stream\r\n\r\n9\r\ndata: 0\n\n\r\n")
        self.assertIn(b"data: 0\n\n", client.value())
        self.assertNotIn(b"data: 1", client.value())
        backend.respond(b"9\r\ndata: 1\n\n\r\n0\r\n\r\n")
        self.assertIn(b"data: 1\n\n", client.value())
        self.assertTrue(client.value().endswith(b"0\r\n\r\n"))

    def test_unbufferedPausesBackendAtOnce(self) -> None:
        """
        With C{proxy_buffering off} a client that stops reading pauses
        reading from the backend immediately, and resuming resumes it.
        """
        self.makeProxy(f"location / {{ proxy_buffering off; proxy_pass http://{BACKEND}; }}")
        channel, _ = self.get("/big")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nxx")
        channel.pauseProducing()
        self.assertEqual(backend.transport.producerState, "paused")
        channel.resumeProducing()
        self.assertEqual(backend.transport.producerState, "producing")

    def test_bufferedPausesAfterBudget(self) -> None:
        """
        With buffering on the proxy keeps reading up to its buffers' size
        (proxy_buffers + proxy_buffer_size) after the client stalls, then
        pauses the backend.
        """
        self.makeProxy(f"""location / {{
            proxy_buffers 2 4k; proxy_buffer_size 4k;
            proxy_pass http://{BACKEND};
        }}""")
        channel, _ = self.get("/big")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        channel.pauseProducing()
        backend.respond(b"x" * 8000)
        self.assertEqual(backend.transport.producerState, "producing")
        backend.respond(b"x" * 5000)
        self.assertEqual(backend.transport.producerState, "paused")
        channel.resumeProducing()
        self.assertEqual(backend.transport.producerState, "producing")

    def test_accelBufferingNo(self) -> None:
        """
        A backend's C{X-Accel-Buffering: no} turns buffering off for its
        response (and is not relayed), as in nginx.
        """
        self.makeProxy(SIMPLE)
        channel, client = self.get("/events")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 200 OK\r\nX-Accel-Buffering: no\r\n"
                        b"Content-Length: 100000\r\n\r\nxx")
        channel.pauseProducing()
        self.assertEqual(backend.transport.producerState, "paused")
        self.assertNotIn(b"X-Accel", client.value())

    def test_backendConnectionHeadersNotRelayed(self) -> None:
        """
        The backend's hop-by-hop headers, and those its Connection header
        names, stay between it and the proxy.
        """
        self.makeProxy(SIMPLE)
        _, client = self.get("/")
        self.backend().respond(
            b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: s\r\n"
            b"Keep-Alive: timeout=5\r\nX-Public: p\r\nContent-Length: 0\r\n\r\n"
        )
        head = client.value().lower()
        self.assertNotIn(b"x-secret", head)
        self.assertNotIn(b"keep-alive:", head)
        self.assertIn(b"x-public: p", head)

    def test_connectionTokensRememberedPerValue(self) -> None:
        """
        The token set of a C{Connection} value is remembered, so the same
        value on a later response (or request) drops the same headers, and
        a different value is worked out afresh.
        """
        from twisted_rproxy.upstream import proxyrequest

        self.makeProxy(SIMPLE)
        for secret in (b"X-Secret", b"X-Secret", b"X-Other"):
            _, client = self.get("/", b"Connection: " + secret + b"\r\n" + secret + b": c\r\n")
            backend = self.backend()
            self.assertNotIn(secret.lower(), backend.received.lower())
            backend.respond(
                b"HTTP/1.1 200 OK\r\nConnection: close, " + secret + b"\r\n"
                + secret + b": s\r\nX-Public: p\r\nContent-Length: 0\r\n\r\n"
            )
            head = client.value().lower()
            self.assertNotIn(secret.lower(), head)
            self.assertIn(b"x-public: p", head)
        self.assertEqual(
            proxyrequest._TOKEN_SETS[b"close, X-Other"], frozenset({b"close", b"x-other"})
        )

    def test_connectionTokenCacheIsBounded(self) -> None:
        """
        Values that keep changing (a client making them up) do not grow the
        remembered sets past their bound, and are still honoured.
        """
        from twisted_rproxy.upstream import proxyrequest

        self.patch(proxyrequest, "_TOKEN_SETS", {})
        self.patch(proxyrequest, "_TOKEN_SETS_MAX", 2)
        for n in range(4):
            self.assertEqual(
                proxyrequest._headerTokens([b"X-%d, Close" % n]), frozenset({b"x-%d" % n, b"close"})
            )
        self.assertEqual(len(proxyrequest._TOKEN_SETS), 2)

    def test_clientGoneAbortsBackend(self) -> None:
        """
        A client that leaves mid-response takes its backend connection
        with it (proxy_ignore_client_abort off).
        """
        self.makeProxy(SIMPLE)
        channel, _ = self.get("/")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12")
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(backend.closed)

    def test_ignoreClientAbort(self) -> None:
        """
        With C{proxy_ignore_client_abort on} a client that leaves does not
        cut the backend off: its response is read to the end and dropped,
        and the connection goes back to the pool.
        """
        self.makeProxy(KEEPALIVE % "proxy_ignore_client_abort on;", KEEPALIVE_HTTP)
        channel, client = self.get("/slow")
        backend = self.backend()
        channel.connectionLost(Failure(ConnectionDone()))
        backend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        backend.respond(b"cd")
        self.assertFalse(backend.closed)
        self.assertEqual(client.value(), b"")
        self.assertEqual(self.config.stateOf("upstream")["pool"].idleCount(), 1)

    def test_clientGoneWhileConnectingCancels(self) -> None:
        """
        A client that leaves before the backend connect completes cancels
        it, leaving no timer behind.
        """
        self.makeProxy(SIMPLE)
        channel, _ = self.get("/")
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            [c for c in self.reactor.getDelayedCalls() if c.active()], []
        )


class FailureTests(ProxyTestCase):
    """
    Backend failures become nginx's answers (502/504, or a cut connection
    once the head is out) and nginx's error log lines.
    """

    def test_connectRefused(self) -> None:
        """
        A refused connect is a 502, logged as nginx does.
        """
        self.makeProxy(SIMPLE)
        _, client = self.get("/down")
        self.refuse()
        self.assertEqual(self.status(client), 502)
        line = self.assertLogged("connect() failed (111: Connection refused)")
        self.assertIn(
            'while connecting to upstream, client: 127.0.0.1, server: , '
            'request: "GET /down HTTP/1.1", upstream: "http://127.0.0.1:8081/down", '
            'host: "example.test"', line)

    def test_connectTimeout(self) -> None:
        """
        A connect still pending past C{proxy_connect_timeout} on the clock
        is a 504.
        """
        self.makeProxy(f"location / {{ proxy_connect_timeout 5s; proxy_pass http://{BACKEND}; }}")
        _, client = self.get("/")
        self.reactor.advance(4.9)
        self.assertEqual(client.value(), b"")
        self.reactor.advance(0.2)
        self.assertEqual(self.status(client), 504)
        self.assertLogged(
            "upstream timed out (110: Connection timed out) while connecting to upstream")

    def test_readTimeout(self) -> None:
        """
        A backend silent past C{proxy_read_timeout} is a 504, and its
        connection is dropped.
        """
        self.makeProxy(f"location / {{ proxy_read_timeout 7s; proxy_pass http://{BACKEND}; }}")
        _, client = self.get("/stall")
        backend = self.backend()
        self.reactor.advance(6.9)
        self.assertEqual(client.value(), b"")
        self.reactor.advance(0.2)
        self.assertEqual(self.status(client), 504)
        self.assertTrue(backend.closed)
        self.assertLogged("upstream timed out (110: Connection timed out) while reading "
                          "response header from upstream")

    def test_garbledStatusLine(self) -> None:
        """
        A response that is not HTTP is a 502.
        """
        self.makeProxy(SIMPLE)
        _, client = self.get("/")
        self.backend().respond(b"NOT HTTP AT ALL\r\n\r\n")
        self.assertEqual(self.status(client), 502)
        self.assertLogged("upstream sent no valid HTTP/1.0 header while reading response "
                          "header from upstream")

    def test_closeMidBodyCutsClient(self) -> None:
        """
        A backend closing inside the body closes the client connection
        (the head is out: no status can say it any more).
        """
        self.makeProxy(SIMPLE)
        _, client = self.get("/")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        backend.close()
        self.assertEqual(self.status(client), 200)
        self.assertTrue(client.value().endswith(b"12345"))
        self.assertTrue(client.disconnecting)
        self.assertLogged("upstream prematurely closed connection while reading upstream")


class RetryTests(ProxyTestCase):
    """
    C{proxy_next_upstream}: which failures move a request to the next
    peer, and which requests may be replayed.
    """

    UPSTREAM = f"upstream u {{ server {BACKEND}; server {SECOND}; }}"

    def test_refusedMovesOn(self) -> None:
        """
        A refused connect (even for a POST, which never got sent) goes on
        to the next peer, body and all.
        """
        self.makeProxy("location / { proxy_pass http://u; }", self.UPSTREAM)
        _, client = self.get("/", b"Content-Length: 4\r\n", b"POST", b"data")
        self.refuse()
        backend = self.backend()
        self.assertEqual(backend.address, ("127.0.0.1", 8082))
        self.assertTrue(backend.received.endswith(b"\r\n\r\ndata"))
        backend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.status(client), 200)

    def test_postNotReplayedAfterSending(self) -> None:
        """
        A POST that reached a peer which then reset is not replayed: 502.
        """
        self.makeProxy("location / { proxy_pass http://u; }", self.UPSTREAM)
        _, client = self.get("/", b"Content-Length: 4\r\n", b"POST", b"data")
        self.backend().close(reset=True)
        self.assertEqual(self.pendingConnects(), 0)
        self.assertEqual(self.status(client), 502)
        self.assertLogged("recv() failed (104: Connection reset by peer) while reading "
                          "response header from upstream")

    def test_postReplayedWhenNonIdempotent(self) -> None:
        """
        With C{non_idempotent} the POST goes to the next peer.
        """
        self.makeProxy("""location / {
            proxy_next_upstream error timeout non_idempotent; proxy_pass http://u;
        }""", self.UPSTREAM)
        _, client = self.get("/", b"Content-Length: 4\r\n", b"POST", b"data")
        self.backend().close(reset=True)
        second = self.backend()
        self.assertTrue(second.received.endswith(b"data"))

    def test_getReplayedAfterReset(self) -> None:
        """
        An idempotent request is retried after a reset.
        """
        self.makeProxy("location / { proxy_pass http://u; }", self.UPSTREAM)
        _, client = self.get("/")
        self.backend().close(reset=True)
        self.backend().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.body(client), b"ok")

    def test_httpStatusRetryDiscardsFirstBody(self) -> None:
        """
        With C{http_502} a 502 moves on to the next peer, and nothing of the
        first response (even bytes arriving later) reaches the client.
        """
        self.makeProxy("location / { proxy_next_upstream error http_502; proxy_pass http://u; }",
                       self.UPSTREAM)
        _, client = self.get("/")
        first = self.backend()
        first.respond(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 10\r\n\r\nfirst")
        self.assertTrue(first.closed)
        first.respond(b"-late")
        self.backend().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
        self.assertEqual(self.status(client), 200)
        self.assertEqual(self.body(client), b"second")

    def test_triesLimit(self) -> None:
        """
        C{proxy_next_upstream_tries 1} allows no second peer.
        """
        self.makeProxy("location / { proxy_next_upstream_tries 1; proxy_pass http://u; }",
                       self.UPSTREAM)
        _, client = self.get("/")
        self.refuse()
        self.assertEqual(self.pendingConnects(), 0)
        self.assertEqual(self.status(client), 502)

    def test_noLiveUpstreams(self) -> None:
        """
        Once every peer is marked failed, a request gets a 502 at once,
        logged as nginx's "no live upstreams" line naming the group.
        """
        self.makeProxy("location / { proxy_pass http://u; }", self.UPSTREAM)
        _, first = self.get("/1")
        self.refuse()
        self.refuse()
        self.assertEqual(self.status(first), 502)
        _, client = self.get("/2")
        self.assertEqual(self.pendingConnects(), 0)
        self.assertEqual(self.status(client), 502)
        line = self.assertLogged("no live upstreams while connecting to upstream")
        self.assertIn('request: "GET /2 HTTP/1.1", upstream: "http://u/2"', line)

    def test_notFoundIsNotAPeerFailure(self) -> None:
        """
        Retrying on C{http_404} does not count the 404 against the peer's
        health (nginx treats 403 and 404 as answers, not failures).
        """
        self.makeProxy("location / { proxy_next_upstream http_404; proxy_pass http://u; }",
                       self.UPSTREAM)
        self.get("/")
        first = self.backend()
        first.respond(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        self.backend().respond(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        upstream = self.config.stateOf("upstream")["upstreams"]["u"]
        self.assertEqual([p.fails for p in upstream.peers], [0, 0])


class KeepaliveTests(ProxyTestCase):
    """
    Reuse of backend connections through the keepalive pool.
    """

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def test_reused(self) -> None:
        """
        The second request goes out on the first one's connection.
        """
        self.makeProxy(KEEPALIVE % "", KEEPALIVE_HTTP)
        self.get("/1")
        backend = self.backend()
        backend.respond(self.OK)
        _, client = self.get("/2")
        self.assertEqual(self.pendingConnects(), 0)
        self.assertIn(b"GET /2 HTTP/1.1\r\n", backend.received)
        self.assertNotIn(b"Connection:", backend.received)
        backend.respond(self.OK)
        self.assertEqual(self.body(client), b"ok")

    def test_connectionCloseNotReused(self) -> None:
        """
        A backend's C{Connection: close} response ends its connection.
        """
        self.makeProxy(KEEPALIVE % "", KEEPALIVE_HTTP)
        self.get("/1")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(backend.closed)
        self.get("/2")
        self.assertEqual(self.pendingConnects(), 1)

    def test_staleConnectionRetried(self) -> None:
        """
        A reused connection that closes before any response byte (the
        backend's idle close racing our reuse) is retried on a new
        connection, transparently for a GET, even with one peer.
        """
        self.makeProxy(KEEPALIVE % "", KEEPALIVE_HTTP)
        self.get("/1")
        backend = self.backend()
        backend.respond(self.OK)
        _, client = self.get("/2")
        backend.close()
        fresh = self.backend()
        self.assertTrue(fresh.received.startswith(b"GET /2 HTTP/1.1\r\n"))
        fresh.respond(self.OK)
        self.assertEqual(self.status(client), 200)

    def test_stalePostNotReplayed(self) -> None:
        """
        The same for a POST is a 502 (nginx: it may have been processed).
        """
        self.makeProxy(KEEPALIVE % "", KEEPALIVE_HTTP)
        self.get("/1")
        backend = self.backend()
        backend.respond(self.OK)
        _, client = self.get("/2", b"Content-Length: 1\r\n", b"POST", b"x")
        backend.close()
        self.assertEqual(self.pendingConnects(), 0)
        self.assertEqual(self.status(client), 502)

    def test_earlyAnswerWhileBodyUnsentNotReused(self) -> None:
        """
        A backend answering before the streamed request body is complete
        leaves its connection unusable (the rest of the body would be read
        as the next request).
        """
        self.makeProxy(KEEPALIVE % "proxy_request_buffering off;", KEEPALIVE_HTTP)
        self.get("/", b"Content-Length: 10\r\n", b"POST", b"12345")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(backend.closed)


class ReferenceCycleTests(ProxyTestCase):
    """
    A finished request leaves no reference cycle behind, so CPython frees
    its exchange and upstream request as soon as the last reference goes,
    not at a later run of the garbage collector (which, for 10,000
    requests, kept megabytes of them and spent time walking them).
    """

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def setUp(self) -> None:
        if platform.python_implementation() != "CPython":
            raise SkipTest("only CPython frees objects by reference counting")
        if gc.isenabled():
            gc.disable()
            self.addCleanup(gc.enable)
        gc.collect()

    def garbageTypes(self) -> List[str]:
        """The names of the types the collector would have to free now."""
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            return sorted({type(o).__name__ for o in gc.garbage})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()

    def test_keepaliveRequests(self) -> None:
        """
        Requests proxied over a kept-alive client and backend connection
        (the exchange registered a client-closed callback of its upstream
        request, which holds the exchange) leave no cycle.
        """
        self.makeProxy(KEEPALIVE % "", KEEPALIVE_HTTP)
        channel, client = self.get("/1")
        backend = self.backend()
        backend.respond(self.OK)
        for path in (b"/2", b"/3"):
            channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: example.test\r\n\r\n")
            backend.respond(self.OK)
        self.assertEqual(client.value().count(b"HTTP/1.1 200 OK"), 3)
        garbage = self.garbageTypes()
        for name in ("Exchange", "ProxyRequest", "Attempt"):
            self.assertNotIn(name, garbage)

    def test_closedTunnel(self) -> None:
        """
        A byte tunnel closed from either side leaves no cycle: its channel
        drops it, and it drops its close callback (a bound method of the
        upstream request, which holds the exchange, whose channel holds
        the tunnel).
        """
        self.makeProxy(UpgradeTests.CONFIG, UpgradeTests.MAP)
        self.garbageTypes()  # what compiling the config left
        for backendFirst in (True, False):
            channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
            backend = self.backend()
            backend.respond(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\n\r\nhello")
            self.assertTrue(client.value().endswith(b"hello"))
            if backendFirst:
                backend.close()
                self.assertTrue(client.disconnecting)
            # A real transport forgets its producer when the connection goes.
            client.unregisterProducer()
            channel.connectionLost(Failure(ConnectionDone()))
            if not backendFirst:
                self.assertTrue(backend.closed)
                backend.close()
            del channel, client, backend
            garbage = self.garbageTypes()
            found = set(garbage) & {"Exchange", "ProxyRequest", "Tunnel", "HTTPChannel"}
            self.assertEqual(found, set(), f"backend first: {backendFirst}")


class RequestBodyTests(ProxyTestCase):
    """
    Request bodies: buffered (and replayable) by default, streamed with
    C{proxy_request_buffering off}.
    """

    def test_chunkedBufferedSentWithLength(self) -> None:
        """
        A chunked body is read whole, then sent with a Content-Length.
        """
        self.makeProxy(SIMPLE)
        channel, _ = self.get("/", b"Transfer-Encoding: chunked\r\n", b"POST",
                              b"5\r\nhello\r\n")
        self.assertEqual(self.pendingConnects(), 0)
        channel.dataReceived(b"6\r\n world\r\n0\r\n\r\n")
        sent = self.backend().received
        self.assertIn(b"Content-Length: 11\r\n", sent)
        self.assertNotIn(b"Transfer-Encoding", sent)
        self.assertTrue(sent.endswith(b"\r\n\r\nhello world"))

    def test_unbufferedChunkedStreamsChunked(self) -> None:
        """
        With request buffering off and HTTP/1.1, a chunked body goes up
        chunked, each piece as it comes, before the client has finished.
        """
        self.makeProxy(f"""location / {{
            proxy_request_buffering off; proxy_http_version 1.1;
            proxy_pass http://{BACKEND};
        }}""")
        channel, _ = self.get("/", b"Transfer-Encoding: chunked\r\n", b"POST",
                              b"5\r\nhello\r\n")
        backend = self.backend()
        self.assertIn(b"Transfer-Encoding: chunked\r\n", backend.received)
        self.assertNotIn(b"Content-Length", backend.received)
        self.assertTrue(backend.received.endswith(b"\r\n\r\n5\r\nhello\r\n"))
        channel.dataReceived(b"6\r\n world\r\n0\r\n\r\n")
        self.assertTrue(backend.received.endswith(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))

    def test_unbufferedChunkedOverHTTP10IsBuffered(self) -> None:
        """
        HTTP/1.0 upstream has no chunked encoding, so a chunked body is
        buffered whatever C{proxy_request_buffering} says (nginx's
        documented exception) and sent with a Content-Length.
        """
        self.makeProxy(f"""location / {{
            proxy_request_buffering off; proxy_pass http://{BACKEND};
        }}""")
        channel, _ = self.get("/", b"Transfer-Encoding: chunked\r\n", b"POST",
                              b"5\r\nhello\r\n")
        self.assertEqual(self.pendingConnects(), 0)
        channel.dataReceived(b"0\r\n\r\n")
        sent = self.backend().received
        self.assertIn(b"Content-Length: 5\r\n", sent)
        self.assertTrue(sent.endswith(b"\r\n\r\nhello"))

    def test_unbufferedLengthStreams(self) -> None:
        """
        With request buffering off, a Content-Length body streams as is.
        """
        self.makeProxy(f"""location / {{
            proxy_request_buffering off; proxy_pass http://{BACKEND};
        }}""")
        channel, _ = self.get("/", b"Content-Length: 10\r\n", b"POST", b"12345")
        backend = self.backend()
        self.assertIn(b"Content-Length: 10\r\n", backend.received)
        self.assertTrue(backend.received.endswith(b"\r\n\r\n12345"))
        channel.dataReceived(b"67890")
        self.assertTrue(backend.received.endswith(b"1234567890"))

    def test_slowStreamedBodyIsNotAReadTimeout(self) -> None:
        """
        A client streaming its body slower than C{proxy_read_timeout} is
        not cut off: the read timeout starts once the body is sent.
        """
        self.makeProxy(f"""location / {{
            proxy_request_buffering off; proxy_read_timeout 10s;
            proxy_pass http://{BACKEND};
        }}""")
        channel, client = self.get("/", b"Content-Length: 10\r\n", b"POST", b"12345")
        self.backend()
        self.reactor.advance(50)
        channel.dataReceived(b"67890")
        self.assertEqual(client.value(), b"")
        self.reactor.advance(10)
        self.assertEqual(self.status(client), 504)

    def test_backendNotReadingBodyIsASendTimeout(self) -> None:
        """
        A backend that stops reading the body for C{proxy_send_timeout} is
        a 504 "while sending request to upstream".
        """
        self.makeProxy(f"""location / {{
            proxy_request_buffering off; proxy_send_timeout 5s;
            proxy_pass http://{BACKEND};
        }}""")
        _, client = self.get("/", b"Content-Length: 10\r\n", b"POST", b"12345")
        backend = self.backend()
        backend.transport.producer.pauseProducing()
        self.reactor.advance(5)
        self.assertEqual(self.status(client), 504)
        self.assertLogged("upstream timed out (110: Connection timed out) while sending "
                          "request to upstream")

    def test_bigBodySpillsToFile(self) -> None:
        """
        A body over C{client_body_buffer_size} is kept in a temporary file
        (with nginx's warning) and sent whole.
        """
        self.makeProxy(f"""client_body_buffer_size 1k; location / {{
            proxy_pass http://{BACKEND};
        }}""")
        body = bytes(range(256)) * 40
        self.get("/", b"Content-Length: %d\r\n" % len(body), b"PUT", body)
        self.assertLogged("a client request body is buffered to a temporary file")
        self.assertTrue(self.backend().received.endswith(b"\r\n\r\n" + body))

    def test_bodySenderFollowsBackpressure(self) -> None:
        """
        A buffered body is written only as fast as the backend socket
        drains: a full socket pauses it, a drained one resumes it.
        """
        self.makeProxy(f"""client_body_buffer_size 1k; location / {{
            proxy_pass http://{BACKEND};
        }}""")
        body = b"y" * 300000
        channel, _ = self.get("/", b"Content-Length: %d\r\n" % len(body), b"PUT", b"")
        channel.dataReceived(body)
        host, port, factory, _t, _b = self.reactor.tcpClients[0]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport()

        # A StringTransport never pauses its producer by itself: pause it
        # on the first write after registration, as a full socket would.
        writes: List[int] = []
        original = transport.write

        def write(data: bytes) -> None:
            original(data)
            writes.append(len(data))
            if transport.producer is not None and len(writes) == 2:
                transport.producer.pauseProducing()

        transport.write = write  # type: ignore[method-assign]
        protocol.makeConnection(transport)
        sentBefore = len(transport.value())
        self.assertLess(sentBefore, len(body))
        transport.producer.resumeProducing()
        self.assertTrue(transport.value().endswith(body))


class RequestBodyStoreTests(SynchronousTestCase):
    """
    L{RequestBody} keeps a body for sending and re-sending.
    """

    def test_memoryThenFile(self) -> None:
        """
        Under the limit the body stays in memory; past it, all of it moves
        to a file, and either way it replays whole, more than once.
        """
        body = RequestBody(10)
        body.append(b"12345")
        self.assertFalse(body.inFile)
        body.append(b"678901")
        self.assertTrue(body.inFile)
        body.append(b"xyz")
        for _ in range(2):
            self.assertEqual(b"".join(body.pieces()), b"12345678901xyz")
        self.assertEqual(body.length, 14)
        body.close()


class InterceptTests(ProxyTestCase):
    """
    C{proxy_intercept_errors} hands backend errors to C{error_page}.
    """

    CONFIG = f"""location / {{
        %s
        error_page 404 /custom404;
        proxy_pass http://{BACKEND};
    }}
    location = /custom404 {{ return 404 "custom\\n"; }}"""

    def test_intercepted(self) -> None:
        """
        The backend's 404 is replaced by the error page, and the rest of its
        body (arriving later) never reaches the client.
        """
        self.makeProxy(self.CONFIG % "proxy_intercept_errors on;")
        _, client = self.get("/missing")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 404 Not Found\r\nContent-Length: 20\r\n\r\nbackend")
        backend.respond(b" 404 body...")
        self.assertEqual(self.status(client), 404)
        self.assertEqual(self.body(client), b"custom\n")
        self.assertTrue(backend.closed)

    def test_passedThrough(self) -> None:
        """
        Without interception the backend's own 404 body passes.
        """
        self.makeProxy(self.CONFIG % "")
        _, client = self.get("/missing")
        self.backend().respond(b"HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\nbackend")
        self.assertEqual(self.body(client), b"backend")

    def test_noErrorPageNoInterception(self) -> None:
        """
        A status with no error_page passes even with interception on.
        """
        self.makeProxy(self.CONFIG % "proxy_intercept_errors on;")
        _, client = self.get("/x")
        self.backend().respond(b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops")
        self.assertEqual((self.status(client), self.body(client)), (500, b"oops"))


class RedirectTests(ProxyTestCase):
    """
    C{proxy_redirect} rewrites the backend's C{Location} and C{Refresh}
    only where the URL starts, as nginx does.
    """

    def redirected(self, directives: str, name: bytes, value: bytes) -> bytes:
        """
        Proxy C{/one/x} to C{/two/x} on the backend with C{directives},
        have the backend answer 302 with header C{name: value}, and return
        what the client got for that header.
        """
        self.makeProxy(f"location /one/ {{ {directives} proxy_pass http://{BACKEND}/two/; }}")
        _, client = self.get("/one/x")
        self.backend().respond(
            b"HTTP/1.1 302 Found\r\n" + name + b": " + value + b"\r\nContent-Length: 0\r\n\r\n")
        head = client.value().partition(b"\r\n\r\n")[0]
        for line in head.split(b"\r\n")[1:]:
            key, _, got = line.partition(b": ")
            if key.lower() == name.lower():
                return got
        self.fail(f"no {name!r} header in {head!r}")

    def test_defaultRewritesTheProxiedPrefix(self) -> None:
        """
        By default the C{proxy_pass} URL becomes the location's prefix, and
        the result is made absolute again (C{absolute_redirect on}).
        """
        got = self.redirected("", b"Location", f"http://{BACKEND}/two/y".encode())
        self.assertEqual(got, b"http://example.test:8080/one/y")

    def test_prefixElsewhereIsLeftAlone(self) -> None:
        """
        A Location that only mentions the backend's URL further on (a
        login page's C{next=} parameter) is passed unchanged.
        """
        value = f"https://sso.test/login?url=http://{BACKEND}/two/y".encode()
        self.assertEqual(self.redirected("", b"Location", value), value)

    def test_explicitRule(self) -> None:
        """
        C{proxy_redirect FROM TO} replaces FROM at the start by TO.
        """
        got = self.redirected(f"proxy_redirect http://{BACKEND}/ https://public.test/;",
                              b"Location", f"http://{BACKEND}/two/y".encode())
        self.assertEqual(got, b"https://public.test/two/y")

    def test_off(self) -> None:
        """
        C{proxy_redirect off} passes the backend's Location as it is.
        """
        value = f"http://{BACKEND}/two/y".encode()
        self.assertEqual(self.redirected("proxy_redirect off;", b"Location", value), value)

    def test_refreshAfterUrl(self) -> None:
        """
        In C{Refresh} the URL after C{url=} is rewritten (and, unlike
        C{Location}, not made absolute).
        """
        got = self.redirected("", b"Refresh", f"5; URL=http://{BACKEND}/two/y".encode())
        self.assertEqual(got, b"5; URL=/one/y")

    def test_refreshWithoutUrl(self) -> None:
        """
        A C{Refresh} with no C{url=} is passed unchanged.
        """
        self.assertEqual(self.redirected("", b"Refresh", b"5"), b"5")


@implementer(IUpgradeHandler)
class ShoutingUpgrade:
    """
    A team's upgrade handler: a byte tunnel that upper-cases what the
    backend sends, and records the pairs it made.
    """

    def __init__(self) -> None:
        self.pairs: List[Any] = []

    def startUpgrade(self, exchange: Any, upstream: Any, headers: list, onClose: Any) -> Any:
        """Start a byte tunnel, then wrap its backend-to-client side."""
        pair = BYTE_TUNNEL.startUpgrade(exchange, upstream, headers, onClose)
        shouting = ShoutingPair(pair)
        self.pairs.append(shouting)
        return shouting


@implementer(IUpgradedPair)
class ShoutingPair:
    """
    Upper-cases the backend's bytes; the rest is the wrapped tunnel's.
    """

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel

    def write(self, data: bytes) -> None:
        """Backend bytes, shouted."""
        self.tunnel.write(data.upper())

    def fromClient(self, data: bytes) -> None:
        """Client bytes, unchanged."""
        self.tunnel.fromClient(data)

    def loseConnection(self) -> None:
        """The backend closed."""
        self.tunnel.loseConnection()

    def clientLost(self) -> None:
        """The client closed."""
        self.tunnel.clientLost()


class ShoutModule(ProxyModule):
    """
    Declares C{x_shout on|off;} and sets L{ShoutingUpgrade} as the upgrade
    handler where it is on, as a WebSocket relay plugin would.
    """

    name = "test_shout"

    def __init__(self) -> None:
        self.handler = ShoutingUpgrade()

    def directives(self) -> Any:
        """@return: C{x_shout}."""
        return [spec("x_shout", [LOCATION], 1, parse=flagSlot, default=False)]

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """Install the handler where C{x_shout on}."""
        if location.conf.get("x_shout"):
            location.upgradeHandler = self.handler


class UpgradeTests(ProxyTestCase):
    """
    A 101 joins the client and backend connections byte for byte.
    """

    CONFIG = f"""location / {{
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_pass http://{BACKEND};
    }}"""
    MAP = """map $http_upgrade $connection_upgrade { default upgrade; '' close; }"""

    def test_tunnel(self) -> None:
        """
        The Upgrade request goes up with its headers, the 101 comes down
        with Upgrade and Connection, and then bytes flow both ways,
        including those that came with the 101.
        """
        self.makeProxy(self.CONFIG, self.MAP)
        channel, client = self.get(
            "/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
        backend = self.backend()
        self.assertIn(b"Upgrade: websocket\r\nConnection: upgrade\r\n", backend.received)
        backend.respond(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\nfirst")
        head, _, rest = client.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "))
        self.assertIn(b"Upgrade: websocket", head)
        self.assertIn(b"Connection: Upgrade", head)
        self.assertEqual(rest, b"first")
        channel.dataReceived(b"to backend")
        self.assertTrue(backend.received.endswith(b"to backend"))
        backend.respond(b" more")
        self.assertTrue(client.value().endswith(b"first more"))
        backend.close()
        self.assertTrue(client.disconnecting)

    def test_idleTunnelTimesOut(self) -> None:
        """
        A tunnel closes after C{proxy_read_timeout} without traffic; bytes
        in either direction restart the wait, as in nginx.
        """
        self.makeProxy(self.CONFIG.replace("proxy_http_version", "proxy_read_timeout 60s; "
                                           "proxy_http_version"), self.MAP)
        channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\n")
        self.reactor.advance(59)
        channel.dataReceived(b"from client")
        self.reactor.advance(59)
        backend.respond(b"from backend")
        self.reactor.advance(59)
        self.assertFalse(client.disconnecting)
        self.assertFalse(backend.closed)
        self.reactor.advance(1)
        self.assertTrue(client.disconnecting)
        self.assertTrue(backend.closed)

    def test_withoutRecipeNoUpgradeSent(self) -> None:
        """
        Without the recipe the Upgrade header is not forwarded.
        """
        self.makeProxy(f"location / {{ proxy_pass http://{BACKEND}; }}")
        self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
        sent = self.backend().received
        self.assertNotIn(b"Upgrade", sent)
        self.assertIn(b"Connection: close\r\n", sent)

    def test_moduleUpgradeHandlerTakesOver(self) -> None:
        """
        A module's upgrade handler on the location receives both
        connections after the 101, with the client's bytes (those sent
        with the request first) and the backend's.
        """
        module = ShoutModule()
        self.makeProxy(self.CONFIG.replace("proxy_pass", "x_shout on; proxy_pass"), self.MAP,
                       extraModules=[module])
        channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
                                   body=b"early")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\nhello")
        [pair] = module.handler.pairs
        verifyObject(IUpgradeHandler, module.handler)
        verifyObject(IUpgradedPair, pair)
        self.assertTrue(client.value().endswith(b"\r\n\r\nHELLO"))
        self.assertTrue(backend.received.endswith(b"\r\n\r\nearly"))
        channel.dataReceived(b" later")
        self.assertTrue(backend.received.endswith(b"early later"))
        backend.close()
        self.assertTrue(client.disconnecting)

    def test_byteTunnelIsTheDefault(self) -> None:
        """
        Without a module's handler the location has none, and the byte
        tunnel (which provides the interfaces) joins the connections.
        """
        self.makeProxy(self.CONFIG, self.MAP)
        verifyObject(IUpgradeHandler, BYTE_TUNNEL)
        channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
        self.backend().respond(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\n\r\nhello")
        self.assertIsNone(channel._exchange.location.upgradeHandler)
        self.assertTrue(client.value().endswith(b"hello"))

    def test_unaskedSwitchIs502(self) -> None:
        """
        A 101 to a request that asked for no upgrade is a broken backend.
        """
        self.makeProxy(self.CONFIG, self.MAP)
        _, client = self.get("/")
        self.backend().respond(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        self.assertEqual(self.status(client), 502)
