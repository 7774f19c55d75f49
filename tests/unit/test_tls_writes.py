"""
Tests for L{twisted_rproxy.tls.EndOfReadWrites}, the TLS write buffer
that is flushed when the reads that filled it are done, and for the hooks
in L{twisted_rproxy.transport} and L{twisted_rproxy.reactor} that say when
that is.  The transports sit on real socket pairs; timers are a L{Clock}.
"""

from __future__ import annotations

import socket
from typing import Callable, List, Optional

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.test_transport import RecordingReactor, Relay, connected, received
from twisted_rproxy.reactor import ProxyEPollReactor
from twisted_rproxy.tls import EndOfReadWrites, ServerTLSFactory
from twisted_rproxy.transport import FlushingServer, endEventBatch, flushAfterReads, startEventBatch


class RecordedWrites:
    """
    The write an L{EndOfReadWrites} flushes into (TLS's, in the proxy):
    recorded, then passed to C{forward} if given.
    """

    def __init__(self, forward: Optional[Callable[[bytes], object]] = None) -> None:
        self.calls: List[bytes] = []
        self.forward = forward

    def __call__(self, data: bytes) -> None:
        self.calls.append(data)
        if self.forward is not None:
            self.forward(data)


class EndOfReadWritesTests(SynchronousTestCase):
    """
    A source connection's reads are written, by a relay, into an
    L{EndOfReadWrites} whose flushes go onto a target connection.
    """

    def setUp(self) -> None:
        self.reactor = RecordingReactor()
        self.source, self.relay, self.sourcePeer = connected(self.reactor, 1)
        self.target, _, self.targetPeer = connected(self.reactor, 2)
        for sock in (self.sourcePeer, self.targetPeer, self.source.socket, self.target.socket):
            self.addCleanup(sock.close)
        self.clock = Clock()
        self.writes = RecordedWrites(self.target.write)
        self.buffer = EndOfReadWrites(self.writes, self.clock)
        self.relay.targets = [self.buffer, self.buffer]

    def test_outsideReadsATimerFlushes(self) -> None:
        """
        Writes made outside any read (a timer, a test) are gathered and
        flushed on the next reactor turn, as Twisted's buffer does.
        """
        self.buffer.write(b"a")
        self.buffer.write(b"b")
        self.assertEqual((self.writes.calls, len(self.clock.getDelayedCalls())), ([], 1))
        self.clock.advance(0)
        self.assertEqual(self.writes.calls, [b"ab"])

    def test_aReadFlushesWhenItReturns(self) -> None:
        """
        Without a reactor batch, what a read wrote is flushed in one write
        when the read returns, without a timer, and the bytes it writes to
        the socket go out in the same pass (the reactor is not armed).
        """
        self.sourcePeer.sendall(b"hi")
        self.source.doRead()
        self.assertEqual(self.writes.calls, [b"HIHI"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.reactor.writers, [])
        self.assertEqual(received(self.targetPeer), b"HIHI")

    def test_aBatchFlushesOnceAtItsEnd(self) -> None:
        """
        Within a reactor batch the buffer waits for the batch's end, so
        the writes of two reads become one flush (one TLS record), still
        sent in that pass.
        """
        other, otherRelay, otherPeer = connected(self.reactor, 3)
        self.addCleanup(other.socket.close)
        self.addCleanup(otherPeer.close)
        otherRelay.targets = [self.buffer]
        self.sourcePeer.sendall(b"one")
        otherPeer.sendall(b"two")
        startEventBatch()
        try:
            self.source.doRead()
            other.doRead()
            self.assertEqual(self.writes.calls, [])
        finally:
            endEventBatch()
        self.assertEqual(self.writes.calls, [b"ONEONETWO"])
        self.assertEqual((self.clock.getDelayedCalls(), self.reactor.writers), ([], []))
        self.assertEqual(received(self.targetPeer), b"ONEONETWO")

    def test_aBatchTakesWritesOutsideReads(self) -> None:
        """
        A write during a batch but not in a read (a write event resuming a
        producer) waits for the batch's end too, not for a timer.
        """
        startEventBatch()
        try:
            self.buffer.write(b"x")
        finally:
            endEventBatch()
        self.assertEqual((self.writes.calls, self.clock.getDelayedCalls()), ([b"x"], []))

    def test_largeWritesFlushAtOnce(self) -> None:
        """Past C{MAX_BUFFER_SIZE} bytes the buffer is flushed at once."""
        big = b"x" * EndOfReadWrites.MAX_BUFFER_SIZE
        startEventBatch()
        try:
            self.buffer.write(b"a")
            self.buffer.write(big)
            self.assertEqual(self.writes.calls, [b"a" + big])
        finally:
            endEventBatch()
        self.assertEqual(len(self.writes.calls), 1)

    def test_closeFlushesAndCancelsTheTimer(self) -> None:
        """C{close} (the connection was lost) flushes now and drops the timer."""
        self.buffer.write(b"last")
        self.buffer.close()
        self.assertEqual((self.writes.calls, self.clock.getDelayedCalls()), ([b"last"], []))

    def test_onlyBytesAreTaken(self) -> None:
        """Like Twisted's buffer, a C{str} or an C{int} is refused when written."""
        self.assertRaises(TypeError, self.buffer.write, "text")
        self.assertRaises(TypeError, self.buffer.write, 5)

    def test_aMutableBufferIsCopied(self) -> None:
        """A C{bytearray} changed after its write is sent as it was written."""
        data = bytearray(b"abc")
        self.buffer.write(data)
        data[:] = b"xyz"
        self.clock.advance(0)
        self.assertEqual(self.writes.calls, [b"abc"])

    def test_aFailingLayerDoesNotEndTheRead(self) -> None:
        """
        A layer that fails while flushed is logged; the other layers still
        flush, and the read that queued them (another connection's) goes
        on.
        """

        class Failing:
            def write(self, data: bytes) -> None:
                flushAfterReads(self)

            def flushAfterReads(self) -> None:
                raise ValueError("broken layer")

        self.relay.targets = [Failing(), self.buffer]
        self.sourcePeer.sendall(b"x")
        self.assertIsNone(self.source.doRead())
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.writes.calls, [b"X"])

    def test_noReadNoBatchIsRefused(self) -> None:
        """L{flushAfterReads} outside reads and batches leaves it to the caller."""
        self.assertFalse(flushAfterReads(self.buffer))


class ReactorBatchTests(SynchronousTestCase):
    """L{ProxyEPollReactor.doPoll} brackets each batch of events."""

    def test_aPollFlushesOnceAfterItsReads(self) -> None:
        """
        Two reads delivered by one C{doPoll} that write to the same
        L{EndOfReadWrites} are flushed together, once, by the time
        C{doPoll} returns, with no timer.
        """
        reactor = ProxyEPollReactor()
        self.addCleanup(reactor._poller.close)
        clock = Clock()
        writes = RecordedWrites()
        buffer = EndOfReadWrites(writes, clock)
        for number, data in enumerate((b"ping", b"pong")):
            ours, theirs = socket.socketpair()
            ours.setblocking(False)
            self.addCleanup(ours.close)
            self.addCleanup(theirs.close)
            relay = Relay()
            server = FlushingServer(ours, relay, ("127.0.0.1", number), None, number, reactor)
            relay.makeConnection(server)
            relay.targets = [buffer]
            reactor.addReader(server)
            theirs.sendall(data)
        reactor.doPoll(1)
        self.assertEqual(len(writes.calls), 1)
        self.assertIn(writes.calls[0], (b"PINGPONG", b"PONGPING"))
        self.assertEqual(clock.getDelayedCalls(), [])


class ServerTLSProtocolTests(SynchronousTestCase):
    """The proxy's TLS connections use L{EndOfReadWrites}."""

    def test_writesGoThroughEndOfReadWrites(self) -> None:
        """C{write} is the buffer's, which flushes into TLS's own write."""
        factory = ServerTLSFactory(CertificateOptions(), Factory.forProtocol(Protocol))
        protocol = factory.buildProtocol(None)
        self.assertIsInstance(protocol._aggregator, EndOfReadWrites)
        self.assertEqual(protocol.write, protocol._aggregator.write)
