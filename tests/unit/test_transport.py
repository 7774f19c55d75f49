# -*- test-case-name: tests.unit.test_transport -*-
"""
Tests for L{twisted_rproxy.transport}: writes made while a read is being
delivered go out with one C{send} when the read returns, without arming the
reactor; everything else (short sends, closing, writes outside a read) is
left to the reactor as Twisted does it.  The transports sit on one end of a
real socket pair; the reactor is a recorder, so nothing spins.
"""

from __future__ import annotations

import socket
from typing import Any, List, Tuple

from twisted.internet import main
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.posixbase import _DisconnectSelectableMixin
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.sockets import acceptedTCP
from twisted_rproxy import transport
from twisted_rproxy.transport import (
    _READ_BUFFER_FACTOR,
    DEFAULT_READ_SIZE,
    SMALL_READ_SIZE,
    FlushingClient,
    FlushingConnector,
    FlushingServer,
    adoptFlushingPort,
    flushingClientEndpoint,
    setNoDelay,
    supportsFlushing,
)


class RecordingReactor(_DisconnectSelectableMixin):
    """
    The reactor methods a TCP transport calls, recorded rather than run,
    and Twisted's own code for disconnecting a selectable.

    @ivar writers: transports currently armed for writability.
    """

    def __init__(self) -> None:
        self.readers: List[Any] = []
        self.writers: List[Any] = []

    def addReader(self, reader: Any) -> None:
        """Record C{reader}."""
        if reader not in self.readers:
            self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        """Forget C{reader}."""
        if reader in self.readers:
            self.readers.remove(reader)

    def addWriter(self, writer: Any) -> None:
        """Record C{writer}: the epoll_ctl the flushing avoids."""
        if writer not in self.writers:
            self.writers.append(writer)

    def removeWriter(self, writer: Any) -> None:
        """Forget C{writer}."""
        if writer in self.writers:
            self.writers.remove(writer)

    def callLater(self, *args: Any, **kwargs: Any) -> None:
        """Timers are not needed here."""
        raise AssertionError("no timer expected")


class Relay(Protocol):
    """
    Writes what it reads onto other transports, as the proxy does.

    @ivar targets: the transports each read is written to.
    @ivar closeAfter: call C{loseConnection} on the targets after writing.
    """

    def __init__(self) -> None:
        self.targets: List[Any] = []
        self.closeAfter = False
        self.received: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        """Relay C{data} to every target."""
        self.received.append(data)
        for target in self.targets:
            target.write(data.upper())
            if self.closeAfter:
                target.loseConnection()


def connected(reactor: RecordingReactor, number: int) -> Tuple[FlushingServer, Relay, socket.socket]:
    """
    A L{FlushingServer} on one end of a socket pair, with a L{Relay}.

    @return: the transport, its protocol, and the other end of the pair.
    """
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    protocol = Relay()
    transport = FlushingServer(ours, protocol, ("127.0.0.1", 1000 + number), None, number, reactor)
    protocol.makeConnection(transport)
    return transport, protocol, theirs


def received(sock: socket.socket) -> bytes:
    """
    @return: everything readable on C{sock} now.
    """
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class TwoConnections(SynchronousTestCase):
    """
    A source connection whose reads a L{Relay} writes onto a target.
    """

    def setUp(self) -> None:
        self.reactor = RecordingReactor()
        self.source, self.relay, self.sourcePeer = connected(self.reactor, 1)
        self.target, _, self.targetPeer = connected(self.reactor, 2)
        self.addCleanup(self.sourcePeer.close)
        self.addCleanup(self.targetPeer.close)
        self.addCleanup(self.source.socket.close)
        self.addCleanup(self.target.socket.close)



class FlushAfterReadTests(TwoConnections):
    """
    L{FlushingServer} (and so L{FlushingClient}, which shares the mixin).
    """

    def test_writeDuringReadIsSentWhenTheReadReturns(self) -> None:
        """
        A write made while another transport delivers a read reaches the
        socket by the time C{doRead} returns, and the reactor was never
        asked to watch for writability.
        """
        self.relay.targets.append(self.target)
        self.sourcePeer.sendall(b"request")
        self.assertIsNone(self.source.doRead())
        self.assertEqual(received(self.targetPeer), b"REQUEST")
        self.assertEqual(self.reactor.writers, [])

    def test_severalWritesOneSend(self) -> None:
        """
        Two writes to one transport in one read go out together, in order,
        and a transport written to twice is flushed once.
        """
        self.relay.targets += [self.target, self.target]
        self.sourcePeer.sendall(b"ab")
        self.source.doRead()
        self.assertEqual(received(self.targetPeer), b"ABAB")
        self.assertEqual(self.reactor.writers, [])

    def test_severalTargets(self) -> None:
        """
        Every transport written to during the read is flushed, including
        the one delivering it.
        """
        self.relay.targets += [self.target, self.source]
        self.sourcePeer.sendall(b"x")
        self.source.doRead()
        self.assertEqual(received(self.targetPeer), b"X")
        self.assertEqual(received(self.sourcePeer), b"X")
        self.assertEqual(self.reactor.writers, [])

    def test_writeOutsideAReadArmsTheReactor(self) -> None:
        """
        A write from anywhere but a read (a timer, say) is Twisted's
        ordinary buffered write: the reactor is armed and sends it.
        """
        self.target.write(b"later")
        self.assertEqual(self.reactor.writers, [self.target])
        self.assertEqual(received(self.targetPeer), b"")
        self.assertIsNone(self.target.doWrite())
        self.assertEqual(received(self.targetPeer), b"later")
        self.assertEqual(self.reactor.writers, [])

    def test_shortSendLeavesTheRestToTheReactor(self) -> None:
        """
        When the socket takes only part of the data, the rest stays
        buffered and the reactor is armed to send it once it can.
        """
        self.target.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = b"y" * (4 << 20)
        self.relay.targets.append(self.target)
        self.sourcePeer.sendall(b"z")
        self.target.write(big)  # outside a read: armed at once
        self.reactor.writers.clear()
        self.source.doRead()
        self.assertEqual(self.reactor.writers, [self.target])
        got = received(self.targetPeer)
        while self.reactor.writers:
            self.target.doWrite()
            got += received(self.targetPeer)
        self.assertEqual(got, big + b"Z")

    def test_shortSendDuringARead(self) -> None:
        """
        A large write queued during a read sends what fits, then arms the
        reactor for the rest.
        """
        self.target.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.target.bufferSize = 1 << 30  # no producer pausing in this test

        class Big(Relay):
            def dataReceived(self, data: bytes) -> None:
                for target in self.targets:
                    target.write(b"w" * (4 << 20))

        big = Big()
        big.targets.append(self.target)
        self.source.protocol = big
        self.sourcePeer.sendall(b"go")
        self.source.doRead()
        self.assertEqual(self.reactor.writers, [self.target])
        got = received(self.targetPeer)
        self.assertTrue(got, "part of the data was sent with the read")
        while self.reactor.writers:
            self.target.doWrite()
            got += received(self.targetPeer)
        self.assertEqual(len(got), 4 << 20)

    def test_loseConnectionDuringAReadClosesAtTheFlush(self) -> None:
        """
        A transport closed during the read sends what was written to it
        and closes when the read returns, as the reactor's next C{doWrite}
        would, without being armed for it.
        """
        lost: List[Failure] = []
        self.target.protocol.connectionLost = lost.append  # type: ignore[method-assign]
        self.relay.targets.append(self.target)
        self.relay.closeAfter = True
        self.sourcePeer.sendall(b"bye")
        self.assertIsNone(self.source.doRead())
        self.assertEqual(self.reactor.writers, [])
        self.assertEqual(len(lost), 1)
        lost[0].trap(ConnectionDone)
        self.assertFalse(self.target.connected)
        self.assertNotIn(self.target, self.reactor.readers)
        self.assertIn(self.source, self.reactor.readers)
        self.assertEqual(received(self.targetPeer), b"BYE")
        self.assertEqual(self.targetPeer.recv(1), b"", "the socket is closed")

    def test_shortSendWhileClosingIsTheReactors(self) -> None:
        """
        When a closing transport's socket takes only part of its data, the
        reactor is armed for the rest, and closes once it is sent.
        """
        self.target.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.target.bufferSize = 1 << 30  # no producer pausing in this test

        class BigThenClose(Relay):
            def dataReceived(self, data: bytes) -> None:
                for target in self.targets:
                    target.write(b"w" * (4 << 20))
                    target.loseConnection()

        closing = BigThenClose()
        closing.targets.append(self.target)
        self.source.protocol = closing
        self.sourcePeer.sendall(b"go")
        self.source.doRead()
        self.assertEqual(self.reactor.writers, [self.target])
        self.assertTrue(self.target.connected)
        got = received(self.targetPeer)
        why = None
        while why is None:
            why = self.target.doWrite()
            got += received(self.targetPeer)
        self.assertEqual(len(got), 4 << 20)
        self.assertIs(why, main.CONNECTION_DONE)

    def test_failedCloseDoesNotEndTheReadingConnection(self) -> None:
        """
        An exception from the closed connection's C{connectionLost} is
        logged; the connection whose read queued the flush carries on.
        """

        def fail(reason: Failure) -> None:
            raise RuntimeError("connectionLost failed")

        self.target.protocol.connectionLost = fail  # type: ignore[method-assign]
        self.relay.targets.append(self.target)
        self.relay.closeAfter = True
        self.sourcePeer.sendall(b"bye")
        self.assertIsNone(self.source.doRead())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(self.source.connected)
        self.assertEqual(received(self.targetPeer), b"BYE")

    def test_abortDuringAReadSendsNothing(self) -> None:
        """
        A transport aborted after being written to during the read sends
        nothing and is not armed again (its close is the reactor's).
        """

        class Aborting(Relay):
            def dataReceived(self, data: bytes) -> None:
                for target in self.targets:
                    target.write(b"never")
                    target.abortConnection()

        aborting = Aborting()
        aborting.targets.append(self.target)
        self.source.protocol = aborting
        self.reactor.callLater = lambda *args, **kwargs: None  # type: ignore[method-assign]
        self.sourcePeer.sendall(b"x")
        self.source.doRead()
        self.assertEqual(self.reactor.writers, [])
        self.assertEqual(received(self.targetPeer), b"")

    def test_writeAfterCloseIsDropped(self) -> None:
        """
        A write to a transport whose peer has gone arms the reactor, which
        then reports the lost connection; nothing is raised into the read.
        """
        self.targetPeer.close()
        self.relay.targets.append(self.target)
        self.sourcePeer.sendall(b"q")
        self.assertIsNone(self.source.doRead())
        self.assertEqual(self.relay.received, [b"q"])
        self.assertEqual(self.reactor.writers, [self.target])
        self.assertIsInstance(self.target.doWrite(), ConnectionLost)


class DirectPathTests(TwoConnections):
    """
    The read and the flush made here rather than through Twisted's layers
    keep Twisted's results: end of file and errors, the order of bytes an
    earlier write left, and what producers are told.
    """

    def test_endOfFileIsConnectionDone(self) -> None:
        """An orderly close by the peer is C{CONNECTION_DONE}."""
        self.sourcePeer.shutdown(socket.SHUT_WR)
        self.assertIs(self.source.doRead(), main.CONNECTION_DONE)

    def test_readSizeCapsARead(self) -> None:
        """
        A read takes at most C{readSize} bytes; the rest waits for the
        next read.
        """
        self.source.adaptiveReads = False
        self.sourcePeer.sendall(b"x" * 10)
        self.source.readSize = 4
        self.source.doRead()
        self.source.readSize = DEFAULT_READ_SIZE
        self.source.doRead()
        self.assertEqual(self.relay.received, [b"xxxx", b"x" * 6])

    def test_acceptedConnectionsStartWithSmallReads(self) -> None:
        """
        An accepted connection's first read asks for 4 KiB, not Twisted's
        64 KiB: a request head fits, and on PyPy each C{recv} allocates
        what it asks for.
        """
        self.assertEqual((SMALL_READ_SIZE, DEFAULT_READ_SIZE), (4096, 65536))
        self.assertEqual(self.source.readSize, SMALL_READ_SIZE)
        self.sourcePeer.sendall(b"x" * 5000)
        self.source.doRead()
        self.assertEqual([len(data) for data in self.relay.received], [SMALL_READ_SIZE])

    def test_fullReadsGrowTheNext(self) -> None:
        """
        A read that fills C{readSize} makes the next one four times larger,
        up to 64 KiB, so a body takes few reads.
        """
        sizes = []
        for _ in range(4):
            self.sourcePeer.sendall(b"x" * self.source.readSize)
            self.source.doRead()
            sizes.append(self.source.readSize)
        self.assertEqual(sizes, [16384, 65536, 65536, 65536])
        self.assertEqual([len(data) for data in self.relay.received],
                         [4096, 16384, 65536, 65536])

    def test_smallReadsShrinkTheNext(self) -> None:
        """
        After two reads in a row of under a quarter of C{readSize}, the
        next is four times smaller, down to 4 KiB; a read of a quarter or
        more keeps the size, so a connection posting 16 KiB bodies keeps
        its 64 KiB reads.
        """
        self.source.readSize = DEFAULT_READ_SIZE
        sizes = []
        for length in (16384, 16383, 16383, 4095, 4095, 10, 10, 10):
            self.sourcePeer.sendall(b"x" * length)
            self.source.doRead()
            sizes.append(self.source.readSize)
        self.assertEqual(sizes, [65536, 65536, 16384, 16384, 4096, 4096, 4096, 4096])

    def test_oneSmallReadDoesNotShrink(self) -> None:
        """
        A small read between larger ones (the tail of a request a full
        read cut) leaves C{readSize} alone: a connection posting 16.1 KiB
        requests settles on one 64 KiB read each, not a grow-and-shrink
        pair of reads per request.
        """
        request = b"x" * (16384 + 100)
        reads = []
        for _ in range(4):
            self.sourcePeer.sendall(request)
            before = len(self.relay.received)
            while sum(len(data) for data in self.relay.received[before:]) < len(request):
                self.source.doRead()
            reads.append(len(self.relay.received) - before)
        self.assertEqual(self.source.readSize, DEFAULT_READ_SIZE)
        self.assertEqual(reads[-2:], [1, 1])

    def test_fixedReadSizeIsKept(self) -> None:
        """
        A transport that does not adapt (the backend side, whose codec sets
        its own sizes) keeps C{readSize} whatever the reads bring.
        """
        self.assertFalse(FlushingClient.adaptiveReads)
        self.source.adaptiveReads = False
        self.source.readSize = 8
        for length in (8, 1):
            self.sourcePeer.sendall(b"x" * length)
            self.source.doRead()
        self.assertEqual(self.source.readSize, 8)

    def test_nothingToReadIsNotAnError(self) -> None:
        """A spurious wake-up (C{EWOULDBLOCK}) reads nothing and is fine."""
        self.assertIsNone(self.source.doRead())
        self.assertEqual(self.relay.received, [])

    def test_recvErrorIsConnectionLost(self) -> None:
        """
        A C{recv} that fails with anything but C{EWOULDBLOCK} (here
        C{EBADF}, as for a reset the error is C{ECONNRESET}) is
        C{CONNECTION_LOST}.
        """
        self.source.socket.close()
        self.assertIs(self.source.doRead(), main.CONNECTION_LOST)

    def test_piecesGoOutInOrderWithoutBeingJoined(self) -> None:
        """
        Several writes in one read go to the socket as separate buffers of
        one C{sendmsg}, in order.
        """
        calls: List[Tuple[str, int]] = []

        class Recording:
            def __init__(self, sock: socket.socket) -> None:
                self.sock = sock

            def send(self, data: bytes) -> int:
                calls.append(("send", 1))
                return self.sock.send(data)

            def sendmsg(self, pieces: List[bytes]) -> int:
                calls.append(("sendmsg", len(pieces)))
                return self.sock.sendmsg(pieces)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.sock, name)

        self.target.socket = Recording(self.target.socket)  # type: ignore[assignment]
        self.relay.targets += [self.target, self.target, self.target]
        self.sourcePeer.sendall(b"ab")
        self.source.doRead()
        self.assertEqual(received(self.targetPeer), b"ABABAB")
        self.assertEqual(calls, [("sendmsg", 3)])

    def test_writeOutsideAReadThenInOneIsSentInOrder(self) -> None:
        """
        Bytes written outside a read (the reactor armed for them) and more
        written during a read go out together, oldest first, and the
        reactor stops watching for writability once all are sent.
        """
        self.target.write(b"first ")
        self.assertEqual(self.reactor.writers, [self.target])
        self.relay.targets.append(self.target)
        self.sourcePeer.sendall(b"second")
        self.source.doRead()
        self.assertEqual(received(self.targetPeer), b"first SECOND")
        self.assertEqual(self.reactor.writers, [])

    def test_bytesAShortSendLeftGoFirst(self) -> None:
        """
        When an earlier short send left bytes behind, a write during a read
        goes after them, through Twisted's own C{doWrite}.
        """
        self.target.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.target.bufferSize = 1 << 30  # no producer pausing in this test
        big = b"b" * (4 << 20)
        self.relay.targets.append(self.target)
        self.target.write(big)
        self.target.doWrite()  # a short send: most of it is left
        self.assertTrue(self.target.offset < len(self.target.dataBuffer))
        self.sourcePeer.sendall(b"tail")
        self.source.doRead()
        got = received(self.targetPeer)
        while self.reactor.writers:
            self.target.doWrite()
            got += received(self.targetPeer)
        self.assertEqual(got, big + b"TAIL")

    def test_pullProducerIsAskedForMoreOnceSent(self) -> None:
        """
        A pull producer is asked for more when a flush empties the buffer,
        as Twisted's C{doWrite} asks it.
        """
        producer = RecordingProducer()
        self.target.registerProducer(producer, False)
        self.assertEqual(producer.events, ["resume"])  # Twisted asks at once
        self.relay.targets.append(self.target)
        self.sourcePeer.sendall(b"x")
        self.source.doRead()
        self.assertEqual(received(self.targetPeer), b"X")
        self.assertEqual(producer.events, ["resume", "resume"])

    def test_streamingProducerNotPausedForWhatTheFlushSends(self) -> None:
        """
        A read that writes past C{bufferSize}, but not past
        L{_READ_BUFFER_FACTOR} buffers' worth, does not pause a streaming
        producer when the flush then sends it all: no pause and resume
        (two C{epoll_ctl} calls) per 64 KiB relayed.
        """
        producer = RecordingProducer()
        self.target.registerProducer(producer, True)
        self.target.bufferSize = 2
        self.relay.targets.append(self.target)
        self.sourcePeer.sendall(b"x" * (2 * _READ_BUFFER_FACTOR))
        self.source.doRead()
        self.assertEqual(received(self.targetPeer), b"X" * (2 * _READ_BUFFER_FACTOR))
        self.assertEqual(producer.events, [])

    def test_streamingProducerPausedPastTheReadLimitThenResumed(self) -> None:
        """
        A read that writes more than L{_READ_BUFFER_FACTOR} buffers' worth
        pauses a streaming producer there and then, as Twisted does past
        one buffer, and the flush that sends it all resumes it.
        """
        producer = RecordingProducer()
        self.target.registerProducer(producer, True)
        self.target.bufferSize = 2
        self.relay.targets.append(self.target)
        self.sourcePeer.sendall(b"x" * (2 * _READ_BUFFER_FACTOR + 1))
        self.source.doRead()
        self.assertEqual(received(self.targetPeer), b"X" * (2 * _READ_BUFFER_FACTOR + 1))
        self.assertEqual(producer.events, ["pause", "resume"])

    def test_shortSendLeavingMoreThanABufferPausesThenResumes(self) -> None:
        """
        When the flush's send is short and leaves more than C{bufferSize}
        behind, a streaming producer is paused; Twisted's C{doWrite}
        resumes it once the rest is sent.  A short send that leaves less
        does not pause it.
        """

        class ShortSends:
            def __init__(self, sock: socket.socket) -> None:
                self.sock = sock
                self.short = True

            def sendmsg(self, pieces: List[bytes]) -> int:
                data = b"".join(pieces)
                return self.sock.send(data[:1] if self.short else data)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.sock, name)

        short = ShortSends(self.target.socket)
        self.target.socket = short  # type: ignore[assignment]
        producer = RecordingProducer()
        self.target.registerProducer(producer, True)
        self.target.bufferSize = 4
        self.relay.targets += [self.target, self.target]
        self.sourcePeer.sendall(b"abc")  # 6 bytes written, 5 left
        self.source.doRead()
        self.assertEqual(producer.events, ["pause"])
        self.assertEqual(self.reactor.writers, [self.target])
        short.short = False
        self.target.doWrite()
        self.assertEqual(received(self.targetPeer), b"ABCABC")
        self.assertEqual(producer.events, ["pause", "resume"])
        short.short = True
        self.sourcePeer.sendall(b"de")  # 4 bytes written, 3 left
        self.source.doRead()
        self.assertEqual(producer.events, ["pause", "resume"])


class RecordingProducer:
    """A producer that records what it is told."""

    def __init__(self) -> None:
        self.events: List[str] = []

    def pauseProducing(self) -> None:
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.events.append("resume")

    def stopProducing(self) -> None:
        self.events.append("stop")


class LazyNamesTests(SynchronousTestCase):
    """
    L{FlushingServer} keeps no per-connection strings or bound C{fileno}
    (an idle connection should be small) but answers as Twisted's does.
    """

    def setUp(self) -> None:
        self.reactor = RecordingReactor()
        self.transport, _, self.peer = connected(self.reactor, 7)
        self.addCleanup(self.peer.close)

    def test_nothingStored(self) -> None:
        """The names are not in the instance."""
        for name in ("logstr", "repstr", "fileno"):
            self.assertNotIn(name, vars(self.transport))

    def test_names(self) -> None:
        """C{logPrefix}, C{repr} and C{fileno} are Twisted's."""
        self.assertEqual(self.transport.logPrefix(), "Relay,7,127.0.0.1")
        self.assertEqual(repr(self.transport), "<Relay #7>")
        self.assertEqual(self.transport.fileno(), self.transport.socket.fileno())

    def test_afterClose(self) -> None:
        """
        Once the connection is lost, C{fileno} is C{FileDescriptor}'s (-1),
        as after Twisted's C{del self.fileno}, and the names still work.
        """
        self.peer.close()
        self.transport.connectionLost(Failure(self.transport.doRead()))
        self.assertEqual(self.transport.fileno(), -1)
        self.assertEqual(self.transport.logPrefix(), "Uninitialized,7,127.0.0.1")
        self.assertEqual(repr(self.transport), "<None #7>")


class SharedHostTests(SynchronousTestCase):
    """
    Connections from one address share one host string (C{accept} makes
    a new one each time), and the strings held are bounded.
    """

    def setUp(self) -> None:
        self.reactor = RecordingReactor()
        self.patch(transport, "_CLIENT_HOSTS", {})

    def accepted(self, client: Tuple[Any, ...]) -> FlushingServer:
        """A L{FlushingServer} on a socket pair, as if accepted from C{client}."""
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        return FlushingServer(ours, Relay(), client, None, 1, self.reactor)

    def test_oneStringPerAddress(self) -> None:
        """
        Two connections from equal but distinct host strings hold one of
        them, in C{client}, C{hostname} and C{getPeer}; ports stay their
        own.
        """
        first = self.accepted(("".join(["10.0.0.", "1"]), 1001))
        second = self.accepted(("".join(["10.0.0.", "1"]), 1002))
        self.assertIs(second.client[0], first.client[0])
        self.assertIs(second.hostname, first.hostname)
        self.assertIs(second.getPeer().host, first.getPeer().host)
        self.assertEqual((first.getPeer().port, second.getPeer().port), (1001, 1002))

    def test_ipv6AddressKeepsItsFields(self) -> None:
        """An IPv6 client's flow info and scope id are kept."""
        server = self.accepted(("::1", 1003, 0, 0))
        self.assertEqual(server.client, ("::1", 1003, 0, 0))

    def test_bounded(self) -> None:
        """Past the bound the strings held start over."""
        self.patch(transport, "_MAX_CLIENT_HOSTS", 2)
        for last in range(3):
            self.accepted((f"10.0.0.{last}", 1000))
        self.assertEqual(list(transport._CLIENT_HOSTS), ["10.0.0.2"])


class ConnectorTests(SynchronousTestCase):
    """
    L{FlushingConnector} lets go of a lost transport, as Twisted's
    connector does of a failed one.
    """

    def test_lostTransportReleased(self) -> None:
        """
        After C{connectionLost} the connector holds no transport (the two
        refer to each other), and its factory was told.
        """
        lost: List[Any] = []

        class Factory(ClientFactory):
            def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
                lost.append((connector.transport, reason))

        connector = FlushingConnector("127.0.0.1", 1, Factory(), 30, None, RecordingReactor())
        connector.transport = object()
        connector.state = "connected"
        reason = Failure(ConnectionDone())
        connector.connectionLost(reason)
        self.assertIsNone(connector.transport)
        self.assertEqual(lost, [(None, reason)])
        self.assertEqual(connector.state, "disconnected")


class ReactorSupportTests(SynchronousTestCase):
    """
    The flushing classes are used only on reactors with Twisted's POSIX
    TCP transports; others keep their own.
    """

    def test_memoryReactorKeepsItsOwnTransports(self) -> None:
        """
        On a L{MemoryReactor}, listening and connecting go to the reactor's
        own methods, so tests that inspect C{tcpClients} still see them.
        """
        from twisted.internet.testing import MemoryReactor

        reactor = MemoryReactor()
        self.assertFalse(supportsFlushing(reactor))
        endpoint = flushingClientEndpoint(reactor, "127.0.0.1", 80, 5)
        endpoint.connect(Protocol)  # type: ignore[arg-type]
        self.assertEqual(reactor.tcpClients[0][:2], ("127.0.0.1", 80))
        sock = socket.socket()
        self.addCleanup(sock.close)
        adoptFlushingPort(reactor, sock.fileno(), sock.family, None)
        self.assertEqual(len(reactor.adoptedPorts), 1)

    def test_realReactorIsSupported(self) -> None:
        """
        The reactor Twisted installs by default here supports flushing.
        """
        from twisted.internet.epollreactor import EPollReactor

        # Only its type matters: no epoll descriptor is made.
        self.assertTrue(supportsFlushing(EPollReactor.__new__(EPollReactor)))


class NoDelayTests(SynchronousTestCase):
    """
    L{setNoDelay} turns Nagle's algorithm off where there is a TCP socket
    and leaves anything else alone.
    """

    def test_tcp(self) -> None:
        """
        A TCP connection gets C{TCP_NODELAY}.
        """
        ours = acceptedTCP(self)
        transport = FlushingServer(ours, Relay(), ("127.0.0.1", 1), None, 1, RecordingReactor())
        self.assertEqual(ours.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)
        setNoDelay(transport)
        self.assertNotEqual(ours.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)

    def test_throughAWrapper(self) -> None:
        """
        Through a protocol wrapper such as Twisted's TLS transport, the TCP
        socket beneath gets it.
        """
        from twisted.internet.protocol import Factory
        from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

        ours = acceptedTCP(self)
        transport = FlushingServer(ours, Relay(), ("127.0.0.1", 1), None, 1, RecordingReactor())
        wrapper = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
        wrapper.makeConnection(transport)
        setNoDelay(wrapper)
        self.assertNotEqual(ours.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)

    def test_unixSocket(self) -> None:
        """
        A socket without TCP options (here a UNIX socket pair) is no error.
        """
        transport, _, peer = connected(RecordingReactor(), 1)
        self.addCleanup(peer.close)
        self.addCleanup(transport.socket.close)
        setNoDelay(transport)

    def test_noTCPTransport(self) -> None:
        """
        A transport without C{setTcpNoDelay} (a memory transport) is left
        alone.
        """
        setNoDelay(object())
