# -*- test-case-name: tests.unit.test_retries -*-
"""
Tests for the retry limits of L{twisted_rproxy.upstream.proxyrequest} on a
clock: a read timeout moves on to the next peer (only after the timeout),
C{proxy_next_upstream_timeout} stops new tries once that much time has
passed since the first, and C{$upstream_*} list every try.  The backend
is played by the test, as in L{tests.unit.test_proxy_request}.
"""

from __future__ import annotations

from tests.unit.test_proxy_request import BACKEND, SECOND, ProxyTestCase

THIRD = "127.0.0.1:8083"
"""A third backend address."""

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

GROUP = f"upstream u {{ server {BACKEND}; server {SECOND}; server {THIRD}; }}"

LOCATION = """location / {
    proxy_read_timeout 6s;
    %s
    add_header X-Status $upstream_status always;
    add_header X-Addr $upstream_addr always;
    proxy_pass http://u;
}"""


class ReadTimeoutRetryTests(ProxyTestCase):
    """
    A peer that accepts and never answers.
    """

    def test_nextPeerOnlyAfterTheTimeout(self) -> None:
        """
        Nothing goes to the next peer before C{proxy_read_timeout} runs
        out; then the silent peer's connection is dropped, the request goes
        to the next one, and the client gets its answer with both tries in
        C{$upstream_status} and C{$upstream_addr}.
        """
        self.makeProxy(LOCATION % "", GROUP)
        _, client = self.get("/")
        silent = self.backend()
        self.reactor.advance(5.9)
        self.assertEqual(self.pendingConnects(), 0)
        self.assertEqual(client.value(), b"")
        self.reactor.advance(0.2)
        self.assertTrue(silent.closed)
        answering = self.backend()
        self.assertEqual(answering.address, ("127.0.0.1", 8082))
        answering.respond(OK)
        self.assertEqual(self.status(client), 200)
        response = client.value()
        self.assertIn(b"X-Status: 504, 200\r\n", response)
        self.assertIn(b"X-Addr: 127.0.0.1:8081, 127.0.0.1:8082\r\n", response)
        self.assertLogged("upstream timed out (110: Connection timed out) while reading "
                          "response header from upstream")

    def test_timeoutNotInNextUpstreamIs504(self) -> None:
        """
        With C{proxy_next_upstream error} a read timeout is final: 504,
        and no other peer is asked.
        """
        self.makeProxy(LOCATION % "proxy_next_upstream error;", GROUP)
        _, client = self.get("/")
        self.backend()
        self.reactor.advance(6.1)
        self.assertEqual(self.pendingConnects(), 0)
        self.assertEqual(self.status(client), 504)
        self.assertIn(b"X-Status: 504\r\n", client.value())


class NextUpstreamTimeoutTests(ProxyTestCase):
    """
    C{proxy_next_upstream_timeout T}: no new try once T has passed since
    the request's first.
    """

    def test_stopsTriesAfterTheTimeout(self) -> None:
        """
        With 6s read timeouts and a 10s limit, the first timeout (at 6s)
        still moves on, the second (at 12s) does not: 504, and the third
        peer is never asked.
        """
        self.makeProxy(LOCATION % "proxy_next_upstream_timeout 10s;", GROUP)
        _, client = self.get("/")
        self.backend()
        self.reactor.advance(6.1)
        self.assertEqual(self.pendingConnects(), 1)
        self.backend()
        self.reactor.advance(6.1)
        self.assertEqual(self.pendingConnects(), 0)
        self.assertEqual(self.status(client), 504)
        self.assertIn(b"X-Status: 504, 504\r\n", client.value())

    def test_withinTheTimeoutEveryPeerIsTried(self) -> None:
        """
        The same failures within a longer limit reach the third peer.
        """
        self.makeProxy(LOCATION % "proxy_next_upstream_timeout 13s;", GROUP)
        _, client = self.get("/")
        self.backend()
        self.reactor.advance(6.1)
        self.backend()
        self.reactor.advance(6.1)
        third = self.backend()
        self.assertEqual(third.address, ("127.0.0.1", 8083))
        third.respond(OK)
        self.assertEqual(self.status(client), 200)
        self.assertIn(b"X-Status: 504, 504, 200\r\n", client.value())

    def test_connectTimeoutUsesItUp(self) -> None:
        """
        The limit counts from the first try, whatever failed: after a
        connect timeout as long as the limit, the next peer is not asked.
        """
        self.makeProxy("""location / {
            proxy_connect_timeout 5s;
            proxy_next_upstream_timeout 5s;
            proxy_pass http://u;
        }""", GROUP)
        _, client = self.get("/")
        self.reactor.advance(5.1)
        self.assertEqual(self.pendingConnects(), 1)  # only the first connect
        self.assertEqual(self.status(client), 504)

    def test_zeroMeansNoLimit(self) -> None:
        """
        The default (0) never stops retries, however long they took.
        """
        self.makeProxy(LOCATION % "proxy_next_upstream_timeout 0;", GROUP)
        _, client = self.get("/")
        self.backend()
        self.reactor.advance(600)
        self.backend()
        self.reactor.advance(600)
        self.backend().respond(OK)
        self.assertEqual(self.status(client), 200)
