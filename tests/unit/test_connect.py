# -*- test-case-name: tests.unit.test_connect -*-
"""
Tests for L{twisted_rproxy.upstream.connect}: a backend connection is
started within C{connectTCP}, fires its Deferred with the connected
protocol, reports a failure on a later reactor turn, stops when cancelled,
and leaves nothing behind once closed.  An instance of the proxy's epoll
reactor, the test's own, is turned by hand a bounded number of times, on
loopback sockets.
"""

from __future__ import annotations

import gc
import platform
import socket
import weakref
from typing import Any, Callable, List

from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionRefusedError,
    NoProtocol,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.harness import freePort
from twisted_rproxy import transport
from twisted_rproxy.reactor import ProxyEPollReactor
from twisted_rproxy.transport import FlushingClient
from twisted_rproxy.upstream.cluster import Peer
from twisted_rproxy.upstream.connect import DirectClient, connectTCP
from twisted_rproxy.upstream.http1 import UpstreamError
from twisted_rproxy.upstream.pool import ConnectionPool


class Recorder(Protocol):
    """Records what happens to the connection."""

    def __init__(self) -> None:
        self.events: List[str] = []
        self.received = b""

    def connectionMade(self) -> None:
        self.events.append("made")

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.events.append("lost")


class CountingFactory(Factory):
    """Builds L{Recorder}s and counts starts and stops."""

    noisy = False
    protocol = Recorder

    def __init__(self) -> None:
        self.starts = self.stops = 0

    def startFactory(self) -> None:
        self.starts += 1

    def stopFactory(self) -> None:
        self.stops += 1


class LoopbackCase(SynchronousTestCase):
    """
    The proxy's own epoll reactor (an instance of the test's own, turned
    by hand) and a listening socket on loopback that nothing accepts from
    unless the test does.
    """

    def setUp(self) -> None:
        self.reactor = ProxyEPollReactor()
        self.addCleanup(self._closeReactor)
        self.listener = socket.socket()
        self.addCleanup(self.listener.close)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.factory = CountingFactory()

    def _closeReactor(self) -> None:
        self.reactor.removeAll()
        for call in self.reactor.getDelayedCalls():
            call.cancel()
        self.reactor.waker.connectionLost(None)
        self.reactor._poller.close()

    def spin(self, until: Callable[[], bool]) -> None:
        """
        Turn the reactor until C{until()} holds, at most 200 times.
        """
        for _ in range(200):
            if until():
                return
            self.reactor.runUntilCurrent()
            self.reactor.doIteration(0.05)
        self.fail("the reactor never got there")

    def outcome(self, d: Deferred) -> List[Any]:
        """
        @return: a list that gets C{d}'s result once it has one.
        """
        results: List[Any] = []
        d.addBoth(results.append)
        return results

    def accept(self) -> socket.socket:
        """
        @return: the next connection the listener holds (it must hold one).
        """
        peer, _ = self.listener.accept()
        self.addCleanup(peer.close)
        return peer


class ConnectTests(LoopbackCase):
    """
    L{connectTCP} on a real reactor.
    """

    def test_connects(self) -> None:
        """
        The Deferred fires with the factory's protocol once it is connected,
        over a flushing transport; closing it tells the protocol and stops
        the factory.
        """
        results = self.outcome(connectTCP(self.reactor, "127.0.0.1", self.port, self.factory))
        self.assertEqual(self.factory.starts, 1)
        self.spin(lambda: bool(results))
        protocol = results[0]
        self.assertIsInstance(protocol, Recorder)
        self.assertEqual(protocol.events, ["made"])
        self.assertIsInstance(protocol.transport, DirectClient)
        self.assertIsInstance(protocol.transport, FlushingClient)
        self.assertEqual(protocol.transport.getPeer().port, self.port)
        peer = self.accept()
        protocol.transport.write(b"ping")
        self.spin(lambda: not protocol.transport.dataBuffer and not protocol.transport._tempDataLen)
        self.assertEqual(peer.recv(10), b"ping")
        peer.sendall(b"pong")
        self.spin(lambda: protocol.received == b"pong")
        protocol.transport.loseConnection()
        self.spin(lambda: "lost" in protocol.events)
        self.assertEqual(protocol.events, ["made", "lost"])
        self.assertEqual(self.factory.stops, 1)

    def test_noProtocol(self) -> None:
        """
        A factory that builds no protocol fails the Deferred with
        C{NoProtocol}, as an endpoint does, and the connection is closed.
        """
        self.factory.buildProtocol = lambda addr: None  # type: ignore[method-assign]
        results = self.outcome(connectTCP(self.reactor, "127.0.0.1", self.port, self.factory))
        self.spin(lambda: bool(results))
        results[0].trap(NoProtocol)
        peer = self.accept()
        peer.settimeout(5)
        self.spin(lambda: self.factory.stops == 1)
        self.assertEqual(peer.recv(1), b"")

    def test_ipv6(self) -> None:
        """
        An IPv6 literal gets an IPv6 socket and address.
        """
        listener = socket.socket(socket.AF_INET6)
        self.addCleanup(listener.close)
        try:
            listener.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback here")
        listener.listen(1)
        port = listener.getsockname()[1]
        results = self.outcome(connectTCP(self.reactor, "::1", port, self.factory))
        self.spin(lambda: bool(results))
        protocol = results[0]
        self.assertEqual(protocol.transport.socket.family, socket.AF_INET6)
        self.assertEqual((protocol.transport.getPeer().host, protocol.transport.getPeer().port),
                         ("::1", port))
        protocol.transport.loseConnection()

    def test_connectDuringARead(self) -> None:
        """
        A connection started while another connection's read is being
        delivered (a proxied request opening its backend connection) has
        the reactor watch for its outcome at once, rather than wait for
        that read's flush, which would never arm it.
        """
        queue = transport._QUEUE
        queue.reading = True
        try:
            results = self.outcome(
                connectTCP(self.reactor, "127.0.0.1", self.port, self.factory))
        finally:
            queue.reading = False
        self.assertEqual(queue.pending, [])
        self.spin(lambda: bool(results))
        self.assertEqual(results[0].events, ["made"])

    def test_connectStartsAtOnce(self) -> None:
        """
        The SYN leaves within C{connectTCP}: the listener has the connection
        before the reactor has turned (Twisted's own client waits a turn).
        """
        connectTCP(self.reactor, "127.0.0.1", self.port, self.factory)
        self.accept()

    def test_refused(self) -> None:
        """
        A refused connection fails with Twisted's C{ConnectionRefusedError}.
        """
        port = freePort()  # nothing listens there: refused
        results = self.outcome(connectTCP(self.reactor, "127.0.0.1", port, self.factory))
        self.assertEqual(results, [])
        self.spin(lambda: bool(results))
        results[0].trap(ConnectionRefusedError)
        self.assertEqual(self.factory.stops, 1)

    def test_immediateFailureReportedLater(self) -> None:
        """
        A connect that fails within the C{connect} call itself (here
        C{ENETUNREACH} or C{EACCES}: a TCP connection to the broadcast
        address) still fails the Deferred only after C{connectTCP} has
        returned, as Twisted's clients do.
        """
        results = self.outcome(connectTCP(self.reactor, "255.255.255.255", 80, self.factory))
        self.assertEqual(results, [])
        self.spin(lambda: bool(results))
        results[0].trap(ConnectError)
        self.assertEqual(self.factory.stops, 1)

    def test_cancel(self) -> None:
        """
        Cancelling before the connection is made fails the Deferred as an
        endpoint does, closes the socket and builds no protocol.
        """
        d = connectTCP(self.reactor, "127.0.0.1", self.port, self.factory)
        results = self.outcome(d)
        d.cancel()
        self.assertEqual(len(results), 1)
        results[0].trap(ConnectingCancelledError)
        self.assertEqual(results[0].value.address.port, self.port)
        self.assertEqual(self.factory.stops, 1)
        self.assertEqual(self.reactor.getReaders() + self.reactor.getWriters(),
                         [self.reactor.waker])
        for _ in range(3):  # nothing is left to fire
            self.reactor.runUntilCurrent()
            self.reactor.doIteration(0)
        self.assertEqual(len(results), 1)

    def test_closedConnectionFreedByRefcount(self) -> None:
        """
        A closed connection's transport and protocol are freed as soon as
        the last reference goes, not by the garbage collector: no
        reference cycle between the client, its connector and the
        Deferred.
        """
        if platform.python_implementation() != "CPython":
            self.skipTest("reference counting is CPython's")
        results = self.outcome(connectTCP(self.reactor, "127.0.0.1", self.port, self.factory))
        self.spin(lambda: bool(results))
        protocol = results.pop()
        transport = weakref.ref(protocol.transport)
        protocol.transport.loseConnection()
        events = protocol.events
        self.spin(lambda: "lost" in events)
        gc.disable()
        self.addCleanup(gc.enable)
        gone = weakref.ref(protocol)
        del protocol
        self.assertIsNone(gone())
        self.assertIsNone(transport())

    def test_refusedLeavesNoCycle(self) -> None:
        """
        A refused connection leaves no cycle for the collector: its client,
        connector and Failure (with its traceback's frames) go with their
        last reference.  Twisted's endpoint and connector kept them until a
        collection.
        """
        if platform.python_implementation() != "CPython":
            self.skipTest("reference counting is CPython's")
        port = freePort()  # nothing listens there: refused
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        gc.set_debug(gc.DEBUG_SAVEALL)
        self.addCleanup(gc.set_debug, 0)
        self.addCleanup(gc.garbage.clear)
        results = self.outcome(connectTCP(self.reactor, "127.0.0.1", port, self.factory))
        self.spin(lambda held=results: bool(held))  # no closure over the name
        results[0].trap(ConnectionRefusedError)
        del results
        gc.collect()
        left = {type(o).__name__ for o in gc.garbage}
        self.assertFalse(left & {"DirectClient", "OneConnection", "Failure", "Deferred"}, left)


class PoolTests(LoopbackCase):
    """
    L{ConnectionPool.connect} takes the direct way on a real reactor.
    """

    def setUp(self) -> None:
        super().setUp()
        self.pool = ConnectionPool(self.reactor)

    def test_connectsDirectly(self) -> None:
        """
        A new plain connection is a L{DirectClient}, not reused.
        """
        results = self.outcome(self.pool.connect(Peer("127.0.0.1", self.port), 5))
        self.spin(lambda: bool(results))
        protocol, reused = results[0]
        self.assertFalse(reused)
        self.assertIsInstance(protocol.transport, DirectClient)
        self.assertTrue(protocol.connected)
        protocol.transport.loseConnection()

    def test_refusedInNginxWords(self) -> None:
        """
        A refused connection fails with nginx's error-log message.
        """
        port = freePort()  # nothing listens there: refused
        results = self.outcome(self.pool.connect(Peer("127.0.0.1", port), 5))
        self.spin(lambda: bool(results))
        results[0].trap(UpstreamError)
        self.assertEqual(results[0].value.message, "connect() failed (111: Connection refused)")
        self.assertEqual(self.reactor.getDelayedCalls(), [])
