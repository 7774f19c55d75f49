# -*- test-case-name: tests.unit.test_upstream -*-
"""
Tests for the upstream building blocks on their own: the smooth weighted
round-robin balancer and passive health of
L{twisted_rproxy.upstream.cluster}, the keepalive pool of
L{twisted_rproxy.upstream.pool}, and the backend HTTP/1.1 codec of
L{twisted_rproxy.upstream.http1}.  Everything runs on a
L{MemoryReactorClock} and L{StringTransport}s: time only moves when a test
advances it.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_rproxy.interfaces import IBalancer
from twisted_rproxy.upstream.cluster import Peer, RoundRobinBalancer, Upstream, splitHostPort
from twisted_rproxy.upstream.http1 import (
    BODY_READ_SIZE,
    HEAD_READ_SIZE,
    UpstreamError,
    UpstreamHTTPProtocol,
)
from twisted_rproxy.upstream.pool import ConnectionPool, _QuietFactory


def peers(*weights: int, **params: Any) -> List[Peer]:
    """
    Peers called a, b, c ... (as their host) with the given weights.
    """
    return [
        Peer(chr(ord("a") + i), 80, weight=w, **params) for i, w in enumerate(weights)
    ]


def names(balancer: RoundRobinBalancer, count: int, excluded: Any = ()) -> str:
    """
    The hosts of C{count} successive picks, as one string ("-" for none).
    """
    out = []
    for _ in range(count):
        peer = balancer.pick(None, excluded)
        out.append("-" if peer is None else peer.host)
    return "".join(out)


# ---------------------------------------------------------------------------
# balancer
# ---------------------------------------------------------------------------


class RoundRobinTests(SynchronousTestCase):
    """
    L{RoundRobinBalancer} picks peers in nginx's smooth weighted order and
    follows its passive health rules, because configs tuned on nginx
    (weights, max_fails, backup) must spread load the same way here.
    """

    def setUp(self) -> None:
        """
        A clock for fail_timeout, starting well after zero as a real one.
        """
        self.clock = MemoryReactorClock()
        self.clock.advance(1000)

    def test_providesIBalancer(self) -> None:
        """
        The balancer is a real L{IBalancer}, so other balancers and the pool
        can rely on the interface.
        """
        verifyObject(IBalancer, RoundRobinBalancer(peers(1), self.clock))

    def test_smoothWeightedOrder(self) -> None:
        """
        Weights 5, 1, 1 give nginx's documented sequence a,a,b,a,c,a,a, and
        it repeats: the heavy peer never gets a long burst.
        """
        balancer = RoundRobinBalancer(peers(5, 1, 1), self.clock)
        self.assertEqual(names(balancer, 14), "aabacaa" * 2)

    def test_equalWeightsAlternate(self) -> None:
        """
        Equal weights are a plain rotation in config order.
        """
        balancer = RoundRobinBalancer(peers(1, 1, 1), self.clock)
        self.assertEqual(names(balancer, 6), "abcabc")

    def test_excludedPeersAreSkipped(self) -> None:
        """
        Peers a request already tried are not picked again for it; when all
        were tried there is nothing left.
        """
        group = peers(1, 1)
        balancer = RoundRobinBalancer(group, self.clock)
        self.assertEqual(names(balancer, 3, excluded=[group[0]]), "bbb")
        self.assertEqual(names(balancer, 1, excluded=group), "-")

    def test_downPeerIsNeverPicked(self) -> None:
        """
        A peer marked C{down} takes no requests.
        """
        group = peers(1, 1)
        group[1].down = True
        self.assertEqual(names(RoundRobinBalancer(group, self.clock), 4), "aaaa")

    def test_maxFailsWithinFailTimeout(self) -> None:
        """
        With C{max_fails=2 fail_timeout=10}, one failure leaves the peer in
        rotation, a second takes it out for 10 seconds of the clock, and
        then it is tried again; a success there clears its failures.
        """
        group = peers(1, 1, maxFails=2, failTimeout=10)
        a, b = group
        balancer = RoundRobinBalancer(group, self.clock)
        self.assertIs(balancer.pick(None), a)
        balancer.release(a, True)
        self.assertEqual(a.fails, 1)
        self.assertIn("a", names(balancer, 4))
        self.assertIs(balancer.pick(None, [b]), a)
        balancer.release(a, True)
        self.assertEqual(names(balancer, 4), "bbbb")
        self.clock.advance(10)
        self.assertEqual(names(balancer, 4), "bbbb")
        self.clock.advance(0.5)
        picked = balancer.pick(None, [b])
        self.assertIs(picked, a)
        balancer.release(a, False)
        self.assertEqual(a.fails, 0)
        self.assertIn("a", names(balancer, 4))

    def test_maxFailsZeroNeverMarksDown(self) -> None:
        """
        C{max_fails=0} turns passive health off: failures are counted but
        never take the peer out.
        """
        group = peers(1, 1, maxFails=0)
        balancer = RoundRobinBalancer(group, self.clock)
        for _ in range(5):
            balancer.release(group[0], True)
        self.assertIn("a", names(balancer, 4))

    def test_failureLowersEffectiveWeight(self) -> None:
        """
        A failure lowers a peer's effective weight by weight/max_fails
        (nginx), and each later pick brings it back by one, so a peer that
        recovers gets its share back gradually.
        """
        group = peers(4, 1, maxFails=4)
        a = group[0]
        balancer = RoundRobinBalancer(group, self.clock)
        balancer.release(a, True)
        self.assertEqual(a.effectiveWeight, 3)
        balancer.pick(None)
        self.assertEqual(a.effectiveWeight, 4)

    def test_singlePeerIsNeverMarkedDown(self) -> None:
        """
        A lone peer stays in use whatever its failures (nginx: there is
        nothing better to try).
        """
        group = peers(1, maxFails=1)
        balancer = RoundRobinBalancer(group, self.clock)
        balancer.release(group[0], True)
        balancer.release(group[0], True)
        self.assertEqual(names(balancer, 2), "aa")

    def test_backupOnlyWhenPrimariesAreDown(self) -> None:
        """
        A backup peer gets nothing while a primary is up; when every
        primary is marked failed it takes the requests, and once the
        primaries' fail_timeout passes they are back.
        """
        group = peers(1, 1, maxFails=1, failTimeout=10)
        backup = Peer("z", 80, backup=True)
        balancer = RoundRobinBalancer(group + [backup], self.clock)
        self.assertEqual(names(balancer, 6), "ababab")
        for peer in group:
            balancer.release(peer, True)
        self.assertEqual(names(balancer, 3), "zzz")
        self.clock.advance(11)
        self.assertEqual(sorted(names(balancer, 2)), ["a", "b"])

    def test_backupAfterPrimariesTried(self) -> None:
        """
        Within one request, once every primary has been tried the backup
        is next (the retry path of proxy_next_upstream).
        """
        group = peers(1, 1)
        backup = Peer("z", 80, backup=True)
        balancer = RoundRobinBalancer(group + [backup], self.clock)
        self.assertIs(balancer.pick(None, group), backup)
        self.assertIsNone(balancer.pick(None, group + [backup]))

    def test_maxConns(self) -> None:
        """
        A peer at C{max_conns} connections in use is skipped.
        """
        group = peers(1, 1, maxConns=1)
        group[0].conns = 1
        self.assertEqual(names(RoundRobinBalancer(group, self.clock), 3), "bbb")

    def test_triesDefault(self) -> None:
        """
        A request may try every peer that is not C{down}, backups included,
        as nginx counts C{proxy_next_upstream_tries 0}.
        """
        group = peers(1, 1, 1)
        group[2].down = True
        group.append(Peer("z", 80, backup=True))
        upstream = Upstream("u", group, RoundRobinBalancer(group, self.clock))
        self.assertEqual(upstream.triesDefault, 3)


class SplitHostPortTests(SynchronousTestCase):
    """
    L{splitHostPort} reads the addresses of C{server} and C{proxy_pass}.
    """

    def test_forms(self) -> None:
        """
        Host, host:port, [v6] and [v6]:port all split, with the default
        port when none is given.
        """
        self.assertEqual(splitHostPort("h", 80), ("h", 80))
        self.assertEqual(splitHostPort("h:81", 80), ("h", 81))
        self.assertEqual(splitHostPort("[::1]", 80), ("::1", 80))
        self.assertEqual(splitHostPort("[::1]:82", 80), ("::1", 82))

    def test_badPort(self) -> None:
        """
        A port that is not a number in range is refused.
        """
        for text in ("h:0", "h:65536", "h:x", "[::1]x"):
            self.assertRaises(ValueError, splitHostPort, text, 80)


# ---------------------------------------------------------------------------
# backend codec
# ---------------------------------------------------------------------------


class RecordingHandler:
    """
    Collects what an L{UpstreamHTTPProtocol} reports, as a ProxyRequest
    would receive it.
    """

    def __init__(self) -> None:
        """Start with nothing reported."""
        self.heads: List[Any] = []
        self.body: List[bytes] = []
        self.done: List[bool] = []
        self.failures: List[Tuple[UpstreamError, bool]] = []

    def responseHead(self, head: Any) -> None:
        """Record the head."""
        self.heads.append(head)

    def responseBody(self, data: bytes) -> None:
        """Record a body piece."""
        self.body.append(data)

    def responseDone(self, reusable: bool) -> None:
        """Record the end and whether the connection may be reused."""
        self.done.append(reusable)

    def responseFailed(self, error: UpstreamError, gotBytes: bool) -> None:
        """Record a failure."""
        self.failures.append((error, gotBytes))


class CodecTests(SynchronousTestCase):
    """
    L{UpstreamHTTPProtocol} frames backend responses exactly and decides
    reuse conservatively, because a wrong guess either truncates a
    response or feeds one response's bytes to the next request.
    """

    def setUp(self) -> None:
        """
        A connected codec on a clock.
        """
        self.clock = MemoryReactorClock()
        self.transport = StringTransport()
        self.protocol = UpstreamHTTPProtocol(Peer("127.0.0.1", 80), self.clock)
        self.protocol.makeConnection(self.transport)
        self.handler = RecordingHandler()

    def send(self, method: bytes = b"GET", timeout: float = 60.0) -> None:
        """Start a request for the handler."""
        self.protocol.startRequest(method, method + b" / HTTP/1.1\r\n\r\n", self.handler, timeout)

    def test_requestHeadIsWritten(self) -> None:
        """
        The head goes out as given, and body pieces follow it.
        """
        self.send(b"POST")
        self.protocol.writeBody(b"abc")
        self.assertEqual(self.transport.value(), b"POST / HTTP/1.1\r\n\r\nabc")

    def test_readSizeWhileAwaitingTheHead(self) -> None:
        """
        Until the head is in, reads are capped at C{headReadSize} (4 KiB
        unless given), so a large body arrives in reads of its own rather
        than being split off the head's read; then full-size reads resume,
        on the next response too.
        """
        self.send()
        self.assertEqual(self.transport.readSize, HEAD_READ_SIZE)
        self.assertEqual(HEAD_READ_SIZE, 4096)
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")
        self.assertEqual(self.transport.readSize, HEAD_READ_SIZE)
        self.protocol.dataReceived(b"\r\nhe")
        self.assertEqual(self.transport.readSize, BODY_READ_SIZE)
        self.assertEqual(BODY_READ_SIZE, 65536)
        self.protocol.dataReceived(b"llo")
        self.protocol.startRequest(b"GET", b"GET / HTTP/1.1\r\n\r\n", self.handler, 60,
                                   headReadSize=8192)
        self.assertEqual(self.transport.readSize, 8192)

    def test_readSizeAfterAnUpgrade(self) -> None:
        """
        A 101's tunnel reads at full size.
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        self.assertEqual(self.transport.readSize, BODY_READ_SIZE)

    def test_contentLength(self) -> None:
        """
        A Content-Length body ends after its length, however it is split,
        and the connection may be reused.
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
        self.protocol.dataReceived(b"llo")
        self.assertEqual(self.handler.heads[0].status, 200)
        self.assertEqual(b"".join(self.handler.body), b"hello")
        self.assertEqual(self.handler.done, [True])

    def test_chunked(self) -> None:
        """
        A chunked body is decoded and ends at the last chunk.
        """
        self.send()
        self.protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        self.assertEqual(self.handler.done, [])
        self.protocol.dataReceived(b"2\r\nde\r\n0\r\n\r\n")
        self.assertEqual(b"".join(self.handler.body), b"abcde")
        self.assertEqual(self.handler.done, [True])

    def test_closeDelimited(self) -> None:
        """
        A body without length runs to the close, which ends it cleanly but
        leaves nothing to reuse.
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.0 200 OK\r\n\r\npart 1 ")
        self.protocol.dataReceived(b"part 2")
        self.assertEqual(self.handler.done, [])
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(b"".join(self.handler.body), b"part 1 part 2")
        self.assertEqual(self.handler.done, [False])

    def test_headResponseHasNoBody(self) -> None:
        """
        The response to HEAD ends with its head whatever its Content-Length
        says.
        """
        self.send(b"HEAD")
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        self.assertEqual(self.handler.done, [True])
        self.assertEqual(self.handler.body, [])

    def test_interimResponsesAreSkipped(self) -> None:
        """
        C{100 Continue} and other 1xx heads are not the response.
        """
        self.send()
        self.protocol.dataReceived(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        )
        self.assertEqual([h.status for h in self.handler.heads], [204])
        self.assertEqual(self.handler.done, [True])

    def test_headSplitAcrossReads(self) -> None:
        """
        A head that arrives in pieces is read once it is whole, and the
        body bytes of the read that completes it are passed on in one
        piece, as are those of a read that held the whole head.
        """
        self.send()
        for piece in (b"HTTP/1.1 200 OK\r\nContent-", b"Length: 10\r\n\r", b"\nhello"):
            self.protocol.dataReceived(piece)
        self.assertEqual([h.status for h in self.handler.heads], [200])
        self.assertEqual(self.handler.body, [b"hello"])
        self.protocol.dataReceived(b"world")
        self.assertEqual(self.handler.body, [b"hello", b"world"])
        self.assertEqual(self.handler.done, [True])
        self.handler = RecordingHandler()
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
        self.assertEqual((self.handler.body, self.handler.done), ([b"abc"], [True]))

    def test_interimThenFinalInLaterRead(self) -> None:
        """
        After an interim head split across reads, the final head and its
        body in the same read are read on.
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 100 Cont")
        self.protocol.dataReceived(
            b"inue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        self.assertEqual([h.status for h in self.handler.heads], [200])
        self.assertEqual((self.handler.body, self.handler.done), ([b"ok"], [True]))

    def test_bytesAfterBodilessResponseAreNotReusable(self) -> None:
        """
        Bytes in the same read after a response that has no body (a 204)
        were not asked for: the connection must not serve another request.
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\nX")
        self.assertEqual(self.handler.done, [False])

    def test_connectionCloseIsNotReusable(self) -> None:
        """
        C{Connection: close}, or HTTP/1.0 without keep-alive, means the
        backend will close: not reusable.
        """
        self.send()
        self.protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.send()
        self.protocol.dataReceived(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.send()
        self.protocol.dataReceived(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(self.handler.done, [False, False, True])

    def test_extraBytesAreNotReusable(self) -> None:
        """
        Bytes beyond the declared length mean the backend and we disagree
        on framing: the connection must not serve another request.
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
        self.assertEqual(b"".join(self.handler.body), b"ok")
        self.assertEqual(self.handler.done, [False])

    def test_garbledStatusLine(self) -> None:
        """
        A head that is not HTTP is an C{invalid_header} failure in nginx's
        words, and the connection is dropped.
        """
        self.send()
        self.protocol.dataReceived(b"NOT HTTP AT ALL\r\n\r\n")
        [(error, gotBytes)] = self.handler.failures
        self.assertEqual(error.kind, "invalid_header")
        self.assertEqual(error.status, 502)
        self.assertEqual(
            str(error),
            "upstream sent no valid HTTP/1.0 header while reading response header from upstream",
        )
        self.assertTrue(gotBytes)
        self.assertTrue(self.transport.disconnecting)

    def test_invalidHeaderLine(self) -> None:
        """
        A broken header line is reported with the parser's reason.
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n")
        [(error, _)] = self.handler.failures
        self.assertEqual(error.kind, "invalid_header")
        self.assertTrue(str(error).startswith("upstream sent invalid header"), str(error))

    def test_prematureClose(self) -> None:
        """
        A close before the head, or inside a framed body, is an C{error}
        with nginx's "prematurely closed" wording and the stage it hit.
        """
        self.send()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        [(error, gotBytes)] = self.handler.failures
        self.assertEqual(error.kind, "error")
        self.assertFalse(gotBytes)
        self.assertEqual(
            str(error),
            "upstream prematurely closed connection while reading response header from upstream",
        )

    def test_closeMidBody(self) -> None:
        """
        A close inside a Content-Length body fails "while reading upstream"
        and says bytes had come (so the request is not silently retried).
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        self.protocol.connectionLost(Failure(ConnectionDone()))
        [(error, gotBytes)] = self.handler.failures
        self.assertTrue(gotBytes)
        self.assertEqual(
            str(error), "upstream prematurely closed connection while reading upstream"
        )

    def test_resetWording(self) -> None:
        """
        A reset is worded as nginx's failed recv(), not as a clean close.
        """
        self.send()
        self.protocol.connectionLost(Failure(ConnectionLost()))
        [(error, _)] = self.handler.failures
        self.assertEqual(
            str(error),
            "recv() failed (104: Connection reset by peer) while reading response header "
            "from upstream",
        )

    def test_readTimeout(self) -> None:
        """
        No byte for C{proxy_read_timeout} seconds of the clock is a
        C{timeout} (504) and aborts the connection; each read restarts the
        wait.
        """
        self.send(timeout=5)
        self.clock.advance(4)
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        self.clock.advance(4)
        self.assertEqual(self.handler.failures, [])
        self.clock.advance(1)
        [(error, _)] = self.handler.failures
        self.assertEqual((error.kind, error.status), ("timeout", 504))
        self.assertEqual(
            str(error), "upstream timed out (110: Connection timed out) while reading upstream"
        )
        self.assertTrue(self.transport.disconnected)

    def test_readTimeoutWaitsForTheBody(self) -> None:
        """
        While the request body is still going out the read timeout does
        not run (a slow uploader is not a slow backend); it starts once
        the body is sent.
        """
        self.protocol.startRequest(b"POST", b"POST / HTTP/1.1\r\n\r\n", self.handler, 5,
                                   sendTimeout=5, bodyFollows=True)
        self.clock.advance(100)
        self.protocol.writeBody(b"late body")
        self.protocol.bodySent()
        self.clock.advance(4.9)
        self.assertEqual(self.handler.failures, [])
        self.clock.advance(0.1)
        [(error, _)] = self.handler.failures
        self.assertEqual(str(error), "upstream timed out (110: Connection timed out) while "
                                     "reading response header from upstream")

    def test_readTimeoutAfterTheBodyOnAReusedConnection(self) -> None:
        """
        On a keepalive connection reused for a request with a body, the
        read timeout starts once the body is sent, as on a new one (the
        previous request's timer, left queued between requests, does not
        stand in for it).
        """
        self.send(timeout=5)
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.handler.done, [True])
        handler = RecordingHandler()
        self.protocol.startRequest(b"POST", b"POST / HTTP/1.1\r\n\r\n", handler, 5,
                                   sendTimeout=5, bodyFollows=True)
        self.clock.advance(1)
        self.protocol.writeBody(b"body")
        self.protocol.bodySent()
        self.clock.advance(4.9)
        self.assertEqual(handler.failures, [])
        self.clock.advance(0.1)
        [(error, _)] = handler.failures
        self.assertEqual(str(error), "upstream timed out (110: Connection timed out) while "
                                     "reading response header from upstream")

    def test_sendTimeout(self) -> None:
        """
        A backend that leaves its socket full for C{proxy_send_timeout}
        while the request goes out is a timeout "while sending request to
        upstream"; draining in time stops the clock.
        """
        self.protocol.startRequest(b"POST", b"POST / HTTP/1.1\r\n\r\n", self.handler, 60,
                                   sendTimeout=3, bodyFollows=True)
        self.protocol.sendBlocked()
        self.clock.advance(2)
        self.protocol.sendUnblocked()
        self.clock.advance(10)
        self.protocol.sendBlocked()
        self.clock.advance(3)
        [(error, _)] = self.handler.failures
        self.assertEqual((error.kind, error.status), ("timeout", 504))
        self.assertEqual(str(error), "upstream timed out (110: Connection timed out) while "
                                     "sending request to upstream")
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noTimeoutWhenIdle(self) -> None:
        """
        A completed response disarms the read timeout: the timer may stay
        scheduled (so the next request only pushes it later, which is
        cheap), but when it fires on an idle keepalive connection nothing
        fails and the connection stays open (idle connections are the
        pool's business).
        """
        self.send(timeout=5)
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.clock.advance(60)
        self.assertEqual(self.handler.failures, [])
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_switchingProtocolsKeepsTrailingBytes(self) -> None:
        """
        Bytes the backend sends in the same read as its 101 head are the
        first bytes of the tunnel, not lost.
        """
        self.send()
        self.protocol.dataReceived(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nhello"
        )
        self.protocol.dataReceived(b" more")
        self.assertEqual(self.handler.heads[0].status, 101)
        self.assertEqual(b"".join(self.handler.body), b"hello more")

    def test_abandonStopsReports(self) -> None:
        """
        After L{UpstreamHTTPProtocol.abandon} the handler hears nothing
        more about the response, and the connection is not reusable.
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12")
        self.protocol.abandon()
        self.protocol.dataReceived(b"345")
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(b"".join(self.handler.body), b"12")
        self.assertEqual((self.handler.done, self.handler.failures), ([], []))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bytesWhileIdleCloseTheConnection(self) -> None:
        """
        A backend talking out of turn on an idle connection is broken: the
        connection is closed so the pool never hands it out.
        """
        self.send()
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_pauseAndResume(self) -> None:
        """
        Flow control from the client side reaches the backend socket.
        """
        self.protocol.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")


# ---------------------------------------------------------------------------
# keepalive pool
# ---------------------------------------------------------------------------


class PoolTests(SynchronousTestCase):
    """
    L{ConnectionPool} caches idle backend connections as nginx's
    C{keepalive N} does, and bounds connecting with
    C{proxy_connect_timeout} on the reactor's clock.
    """

    def setUp(self) -> None:
        """
        A pool on a memory reactor, and an upstream with C{keepalive 2}.
        """
        self.reactor = MemoryReactorClock()
        self.pool = ConnectionPool(self.reactor)
        self.peer = Peer("127.0.0.1", 8081)
        self.upstream = Upstream(
            "u", [self.peer], RoundRobinBalancer([self.peer], self.reactor),
            keepalive=2, keepaliveRequests=3, keepaliveTimeout=30,
        )

    def connect(self, timeout: float = 60) -> Tuple[UpstreamHTTPProtocol, bool, StringTransport]:
        """
        Acquire a connection, completing a new connect if one is made.
        """
        results: List[Any] = []
        self.pool.acquire(self.upstream, self.peer, timeout).addBoth(results.append)
        if not results:
            factory = self.reactor.tcpClients[-1][2]
            wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8081))
            wrapper.makeConnection(StringTransport())
        [result] = results
        if isinstance(result, Failure):
            result.raiseException()
        protocol, reused = result
        return protocol, reused, protocol.transport

    def finishRequest(self, protocol: UpstreamHTTPProtocol) -> None:
        """
        Run one request/response on C{protocol}, counting it.
        """
        handler = RecordingHandler()
        protocol.startRequest(b"GET", b"GET / HTTP/1.1\r\n\r\n", handler, 60)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def test_reuseIdleConnection(self) -> None:
        """
        A released reusable connection is handed out again, marked reused,
        without connecting.
        """
        protocol, reused, _ = self.connect()
        self.assertFalse(reused)
        self.finishRequest(protocol)
        self.pool.release(self.upstream, protocol, True)
        self.assertEqual(self.pool.idleCount(), 1)
        again, reused, _ = self.connect()
        self.assertIs(again, protocol)
        self.assertTrue(reused)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_notReusableIsClosed(self) -> None:
        """
        A connection released as not reusable is closed, never cached.
        """
        protocol, _, transport = self.connect()
        self.pool.release(self.upstream, protocol, False)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.idleCount(), 0)

    def test_withoutKeepaliveNothingIsCached(self) -> None:
        """
        An upstream without C{keepalive} closes every connection after use.
        """
        self.upstream.keepalive = 0
        protocol, _, transport = self.connect()
        self.pool.release(self.upstream, protocol, True)
        self.assertTrue(transport.disconnecting)

    def test_cacheSizeBound(self) -> None:
        """
        At most C{keepalive} idle connections are kept once the reactor
        turn that released them is over; the oldest goes.
        """
        connections = [self.connect() for _ in range(3)]
        for protocol, _, _ in connections:
            self.pool.release(self.upstream, protocol, True)
        self.assertEqual(self.pool.idleCount(), 3)
        self.assertFalse(connections[0][2].disconnecting)
        self.reactor.advance(0)
        self.assertEqual(self.pool.idleCount(), 2)
        self.assertTrue(connections[0][2].disconnecting)
        self.assertFalse(connections[1][2].disconnecting)
        self.assertFalse(connections[2][2].disconnecting)

    def test_requestInTheSameTurnTakesAConnectionOverTheCap(self) -> None:
        """
        A request made in the turn that released more than C{keepalive}
        connections takes one of them (the most recent) and opens none;
        the trim then has nothing over the cap to close.
        """
        connections = [self.connect() for _ in range(3)]
        for protocol, _, _ in connections:
            self.pool.release(self.upstream, protocol, True)
        again, reused, _ = self.connect()
        self.assertIs(again, connections[2][0])
        self.assertTrue(reused)
        self.assertEqual(len(self.reactor.tcpClients), 3)
        self.reactor.advance(0)
        self.assertEqual(self.pool.idleCount(), 2)
        self.assertFalse(any(transport.disconnecting for _, _, transport in connections))

    def test_evictedLeavesNoTimer(self) -> None:
        """
        The connection evicted for a newer one takes its idle timer with
        it: nothing pending still refers to the closed protocol.
        """
        connections = [self.connect() for _ in range(3)]
        for protocol, _, _ in connections:
            self.pool.release(self.upstream, protocol, True)
        self.reactor.advance(0)
        evicted = connections[0][0]
        self.assertIsNone(evicted.idleTimer)
        pending = [c for c in self.reactor.getDelayedCalls() if c.active()]
        self.assertEqual(len(pending), 2)
        self.assertNotIn(evicted, [a for c in pending for a in c.args])

    def test_reusedThenClosedLeavesNoTimer(self) -> None:
        """
        A connection taken from the cache and then released as not
        reusable is closed with its idle timer cancelled.
        """
        protocol, _, transport = self.connect()
        self.pool.release(self.upstream, protocol, True)
        again, reused, _ = self.connect()
        self.assertIs(again, protocol)
        self.assertTrue(reused)
        self.pool.release(self.upstream, protocol, False)
        self.assertTrue(transport.disconnecting)
        self.assertEqual([c for c in self.reactor.getDelayedCalls() if c.active()], [])

    def test_idleTimeout(self) -> None:
        """
        An idle connection is closed after C{keepalive_timeout}.
        """
        protocol, _, transport = self.connect()
        self.pool.release(self.upstream, protocol, True)
        self.reactor.advance(29)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.idleCount(), 0)

    def test_idleTimeoutFromLastRelease(self) -> None:
        """
        A connection reused and released again is closed
        C{keepalive_timeout} after the last release, with one timer.
        """
        protocol, _, transport = self.connect()
        self.pool.release(self.upstream, protocol, True)
        self.reactor.advance(10)
        again, reused, _ = self.connect()
        self.assertIs(again, protocol)
        self.assertTrue(reused)
        self.reactor.advance(5)
        self.pool.release(self.upstream, protocol, True)
        self.assertEqual(len([c for c in self.reactor.getDelayedCalls() if c.active()]), 1)
        self.reactor.advance(29)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.pool.idleCount(), 1)
        self.reactor.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.idleCount(), 0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_idleTimerFiresWhileInUse(self) -> None:
        """
        A connection in use when its old idle timer comes due is left
        alone, and gets a full C{keepalive_timeout} after its next release.
        """
        protocol, _, transport = self.connect()
        self.pool.release(self.upstream, protocol, True)
        self.connect()
        self.reactor.advance(45)
        self.assertFalse(transport.disconnecting)
        self.pool.release(self.upstream, protocol, True)
        self.reactor.advance(29)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_closedWhileIdleIsForgotten(self) -> None:
        """
        A cached connection the backend closes leaves the cache at once.
        """
        protocol, _, _ = self.connect()
        self.pool.release(self.upstream, protocol, True)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.pool.idleCount(), 0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        _, reused, _ = self.connect()
        self.assertFalse(reused)

    def test_keepaliveRequests(self) -> None:
        """
        After C{keepalive_requests} requests a connection is closed instead
        of cached.
        """
        protocol, _, transport = self.connect()
        for _ in range(3):
            self.finishRequest(protocol)
        self.pool.release(self.upstream, protocol, True)
        self.assertTrue(transport.disconnecting)

    def test_connectTimeout(self) -> None:
        """
        A connect still pending after C{proxy_connect_timeout} seconds of
        the clock fails as a timeout, in nginx's words.
        """
        results: List[Any] = []
        self.pool.acquire(self.upstream, self.peer, 3).addBoth(results.append)
        self.reactor.advance(2.9)
        self.assertEqual(results, [])
        self.reactor.advance(0.1)
        [failure] = results
        error = failure.value
        self.assertIsInstance(error, UpstreamError)
        self.assertEqual(
            (error.kind, str(error)),
            ("timeout", "upstream timed out (110: Connection timed out) while connecting to upstream"),
        )
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_connectRefused(self) -> None:
        """
        A refused connect is an C{error} with nginx's connect() wording.
        """
        results: List[Any] = []
        self.pool.acquire(self.upstream, self.peer, 3).addBoth(results.append)
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[-1]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        [failure] = results
        self.assertEqual(
            str(failure.value),
            "connect() failed (111: Connection refused) while connecting to upstream",
        )
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_unixPeer(self) -> None:
        """
        A C{unix:} peer connects to its socket path.
        """
        peer = Peer(None, 0, "/tmp/backend.sock")
        self.pool.acquire(self.upstream, peer, 3)
        self.assertEqual(self.reactor.unixClients[-1][0], "/tmp/backend.sock")

    def test_closeAll(self) -> None:
        """
        Shutting down closes every idle connection and leaves no timers.
        """
        protocol, _, transport = self.connect()
        self.pool.release(self.upstream, protocol, True)
        self.pool.closeAll()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class KeepaliveTimeTests(SynchronousTestCase):
    """
    C{keepalive_time}: a backend connection older than this is closed when
    released instead of being kept idle, as nginx does.
    """

    def test_oldConnectionNotKept(self) -> None:
        """
        Released before C{keepalive_time}, a connection is pooled; released
        after it, the connection is closed.
        """
        from twisted.internet.testing import MemoryReactorClock, StringTransport

        from twisted_rproxy.upstream.cluster import Peer, RoundRobinBalancer, Upstream
        from twisted_rproxy.upstream.http1 import UpstreamHTTPProtocol
        from twisted_rproxy.upstream.pool import ConnectionPool

        clock = MemoryReactorClock()
        peer = Peer("127.0.0.1", 9)
        upstream = Upstream("u", [peer], RoundRobinBalancer([peer], clock),
                            keepalive=4, keepaliveTime=100.0)
        pool = ConnectionPool(clock)
        young = UpstreamHTTPProtocol(peer, clock)
        young.makeConnection(StringTransport())
        clock.advance(50)
        pool.release(upstream, young, True)
        self.assertIs(pool.takeIdle(upstream, peer), young)
        clock.advance(60)  # now 110 s old
        pool.release(upstream, young, True)
        self.assertIsNone(pool.takeIdle(upstream, peer))
        self.assertTrue(young.transport.disconnecting)


class QuietFactoryTests(SynchronousTestCase):
    """
    The factory that hands a prepared protocol to an endpoint.
    """

    def test_handsItOverOnce(self) -> None:
        """
        The protocol is handed over once and not kept: the connector keeps
        the factory, and a kept protocol (which keeps its transport, which
        keeps the connector) would make a cycle of every closed backend
        connection.
        """
        protocol = object()
        factory = _QuietFactory(protocol)  # type: ignore[arg-type]
        self.assertIs(factory.buildProtocol(None), protocol)
        self.assertIsNone(factory.buildProtocol(None))
        self.assertNotIn(protocol, vars(factory).values())
