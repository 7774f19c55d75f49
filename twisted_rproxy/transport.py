# -*- test-case-name: tests.unit.test_transport -*-
"""
TCP transports that send what a read caused at the end of that read.

Twisted's L{FileDescriptor.write} buffers and arms the socket for
writability (an C{epoll_ctl}); the reactor then sends on its next pass and
disarms it again (another C{epoll_ctl}).  A proxy writes on one connection
because it read on another, so every request paid four C{epoll_ctl} calls
and two extra reactor passes: about a sixth of the proxy's CPU under load
(docs/benchmarks.md, the profile).

Here, a write made while one of these transports is delivering a read is
queued instead, and every queued transport is flushed with one C{send} (one
C{sendmsg} for several pieces, so a head and its body are not joined) as
soon as that read returns.  Whatever the socket does not take at once is
left to the reactor as usual, so backpressure and producers behave exactly
as in Twisted.  Writes made anywhere else (timers, connection set-up) take
Twisted's ordinary path.

The read and the queued write are done here in a few lines rather than
through Twisted's layers (C{Connection.doRead}, C{_dataReceived},
C{FileDescriptor.write}, C{doWrite}, C{writeSomeData}, C{untilConcludes},
C{stopWriting}): about twenty Python calls a proxied request, each of them
on every read of every connection.
"""

from __future__ import annotations

import socket
from errno import EWOULDBLOCK
from typing import Any, Dict, List, Optional

from twisted.internet import main, tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import Logger

_log = Logger()

DEFAULT_READ_SIZE: int = FileDescriptor.bufferSize
"""The most one read takes, as in Twisted (64 KiB)."""

SMALL_READ_SIZE = 4096
"""Where an accepted connection's reads start (L{FlushingServer}): most
request heads fit (nginx starts a connection with a 1k buffer,
C{client_header_buffer_size})."""

READ_GROWTH = 4
"""How much a connection's next read grows after a read that filled it
(4 KiB, 16 KiB, 64 KiB) and shrinks after two in a row under a quarter
of it."""


class _ReadFlushQueue:
    """
    The transports written to during the read being delivered now.

    @ivar reading: whether a flushing transport's C{doRead} is on the stack.
    @ivar pending: transports to flush when that read returns, in the
        order they were first written to.
    @ivar layers: buffering layers above the transports (TLS) to flush
        once the reads now being delivered are done, while a read still
        counts as in progress, so what they write lands in C{pending} and
        goes out in the same pass.
    @ivar batching: whether the reactor is delivering a batch of events
        and will call L{endBatch} after the last (L{ProxyEPollReactor}
        does): then the layers wait for the whole batch, so an HTTP/2
        connection gathers the responses of every backend read in it into
        one TLS record; otherwise they are flushed at the end of each read.
    """

    def __init__(self) -> None:
        self.reading = False
        self.batching = False
        self.pending: List["_FlushAfterRead"] = []
        self.layers: List[Any] = []

    def flush(self) -> None:
        """
        Send each pending transport's buffer; arm the reactor for the rest.
        """
        pending, self.pending = self.pending, []
        for transport in pending:
            transport._flushQueued = False
            transport._flushNow()

    def flushLayers(self) -> None:
        """
        Call each queued layer's C{flushAfterReads}.  The read that queued
        it may belong to another connection, so one layer's failure is
        logged and must not end that read's connection.
        """
        while self.layers:
            layers, self.layers = self.layers, []
            for layer in layers:
                try:
                    layer.flushAfterReads()
                except Exception:
                    _log.failure("flushing {layer!r} after reads", layer=layer)

    def endBatch(self) -> None:
        """
        The reactor delivered its batch of events: flush the layers, then
        the transports they wrote to, as at the end of a read.
        """
        self.batching = False
        if self.layers:
            self.reading = True
            try:
                self.flushLayers()
            finally:
                self.reading = False
                if self.pending:
                    self.flush()


_QUEUE = _ReadFlushQueue()


def flushAfterReads(layer: Any) -> bool:
    """
    Have C{layer.flushAfterReads()} called when the reads now being
    delivered are done (L{_ReadFlushQueue.batching}), before the
    transports it writes to are flushed.

    @return: C{False} outside reads and reactor batches (a timer is
        running, say): the caller then schedules its own flush.
    """
    queue = _QUEUE
    if not (queue.reading or queue.batching):
        return False
    queue.layers.append(layer)
    return True


def startEventBatch() -> None:
    """
    A reactor is about to deliver a batch of events and will call
    L{endEventBatch} after the last: layers wait for it.
    """
    _QUEUE.batching = True


def endEventBatch() -> None:
    """
    The batch is delivered: flush the layers written to during it, then
    the transports they wrote to.
    """
    _QUEUE.endBatch()


class _FlushAfterRead:
    """
    Mixin for L{tcp.Connection} subclasses: defer C{startWriting} during a
    read, and flush at its end.
    """

    _flushQueued = False
    _armed = False
    """Whether this class asked the reactor to watch for writability."""

    # FileDescriptor's buffer and producer state, which this class drives.
    dataBuffer: bytes
    offset: int
    _tempDataBuffer: List[bytes]
    _tempDataLen: int
    producer: Any
    streamingProducer: bool
    producerPaused: bool

    readSize: int = DEFAULT_READ_SIZE
    """The most the next read takes: a protocol may lower it for a while
    (L{twisted_rproxy.upstream.http1} does while awaiting a head)."""

    adaptiveReads = False
    """Whether each read sizes the next one (L{_adaptReadSize})."""

    _smallReadSeen = False
    """Whether the last read used under a quarter of C{readSize}: a second
    such read in a row shrinks it."""

    def doRead(self) -> Any:
        """
        Deliver a read, then flush every transport it wrote to.

        The same as Twisted's C{Connection.doRead}: one C{recv} of up to
        L{readSize} bytes, C{CONNECTION_DONE} on end of file and
        C{CONNECTION_LOST} on an error other than C{EWOULDBLOCK}.
        """
        queue = _QUEUE
        if queue.reading:
            return super().doRead()  # type: ignore[misc]
        queue.reading = True
        try:
            size = self.readSize
            try:
                data = self.socket.recv(size)  # type: ignore[attr-defined]
            except OSError as e:
                if e.args[0] == EWOULDBLOCK:
                    return None
                return main.CONNECTION_LOST
            if not data:
                return main.CONNECTION_DONE
            if self.adaptiveReads:
                self._adaptReadSize(len(data), size)
            self.protocol.dataReceived(data)  # type: ignore[attr-defined]
            return None
        finally:
            if queue.layers and not queue.batching:
                queue.flushLayers()
            queue.reading = False
            if queue.pending:
                queue.flush()

    def _adaptReadSize(self, got: int, size: int) -> None:
        """
        Size the next read from this one: L{READ_GROWTH} times larger
        after a full read, up to L{DEFAULT_READ_SIZE}; that much smaller
        after the second read in a row that used under a quarter, down to
        L{SMALL_READ_SIZE}.

        C{recv(n)} allocates C{n} bytes before it knows how many came: on
        PyPy that is C{n} bytes of the GC nursery, so 64 KiB reads of
        80-byte requests ran a minor collection every 500 or so.  One
        small read is not enough to shrink: after a full 16 KiB read of
        a 16.1 KiB POST the next read brings only the rest, and shrinking
        on it made every such request take two reads.
        """
        small = got * READ_GROWTH < size and size > SMALL_READ_SIZE
        seen = self._smallReadSeen
        if small and seen:
            self.readSize = max(size // READ_GROWTH, SMALL_READ_SIZE)
        elif got == size and size < DEFAULT_READ_SIZE:
            self.readSize = min(size * READ_GROWTH, DEFAULT_READ_SIZE)
        # Written only when it changes, so a connection whose reads are
        # never small keeps no instance entry for it.
        if small and not seen:
            self._smallReadSeen = True
        elif seen:
            self._smallReadSeen = False

    def write(self, data: bytes) -> None:
        """
        During a read, buffer C{data} and queue this transport to be
        flushed when the read returns; otherwise Twisted's write.

        A streaming producer is paused only once the read has written
        more than L{_READ_BUFFER_FACTOR} buffers' worth; the flush pauses
        it if more than one buffer is left unsent.  Twisted would pause it
        as soon as the buffer passed C{bufferSize}, which a 64 KiB read
        passed on with its response head always does: a pause and a
        resume per read, two C{epoll_ctl} calls, for bytes the flush then
        sends at once.
        """
        if (
            _QUEUE.reading
            and type(data) is bytes
            and self.connected  # type: ignore[attr-defined]
            and not self._writeDisconnected  # type: ignore[attr-defined]
            and not self.TLS  # type: ignore[attr-defined]
        ):
            if data:
                self._tempDataBuffer.append(data)
                self._tempDataLen += len(data)
                if (
                    self.producer is not None
                    and self._tempDataLen > _READ_BUFFER_FACTOR * self.bufferSize  # type: ignore[attr-defined]
                ):
                    self._maybePauseProducer()  # type: ignore[attr-defined]
                if not self._flushQueued:
                    self._flushQueued = True
                    _QUEUE.pending.append(self)
            return
        super().write(data)  # type: ignore[misc]

    def startWriting(self) -> None:
        """
        During a read, queue this transport to be flushed when it returns;
        otherwise arm the reactor as Twisted does.
        """
        queue = _QUEUE
        if queue.reading:
            if not self._flushQueued:
                self._flushQueued = True
                queue.pending.append(self)
            return
        self._arm()

    def _arm(self) -> None:
        """Have the reactor send the rest when the socket can take it."""
        self._armed = True
        FileDescriptor.startWriting(self)  # type: ignore[arg-type]

    def stopWriting(self) -> None:
        """
        Stop watching for writability (Twisted's, noting it here).
        """
        self._armed = False
        FileDescriptor.stopWriting(self)  # type: ignore[arg-type]

    def _flushNow(self) -> None:
        """
        Try to send the buffer now.  A socket error or a short send goes
        back to the reactor, which then does exactly what it would have
        done without this class.
        """
        if not self.connected or self._aborting:  # type: ignore[attr-defined]
            return  # an aborted transport sends nothing more
        if self.disconnecting or self._writeDisconnecting:  # type: ignore[attr-defined]
            self._closeNow()
            return
        if self.offset < len(self.dataBuffer):
            self._flushBehind()  # older bytes go first, Twisted's way
            return
        pieces: List[bytes] = self._tempDataBuffer
        if not pieces:
            return
        sent = self._sendPieces(pieces)
        total: int = self._tempDataLen
        self._tempDataBuffer = []
        self._tempDataLen = 0
        if sent == total:
            if self._armed:
                self.stopWriting()  # an earlier write outside a read armed it
            producer = self.producer
            if producer is not None and (
                not self.streamingProducer or self.producerPaused
            ):
                self.producerPaused = False
                producer.resumeProducing()
            return
        self.dataBuffer = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.offset = sent
        self._arm()
        self._pauseIfBehind(total - sent)

    def _closeNow(self) -> None:
        """
        A closing transport: what the reactor's next C{doWrite} would do,
        done now.  Send the rest and, if the socket took it all, close,
        so a connection closed after its last response (C{Connection:
        close}, TLS's close alert) is not armed in epoll for one more
        pass.  A short send goes back to the reactor.
        """
        try:
            why = self.doWrite()  # type: ignore[attr-defined]
        except Exception:
            _log.failure("sending before closing failed; leaving it to the reactor")
            self._arm()
            return
        if why is None:
            if self._tempDataLen or self.offset < len(self.dataBuffer):
                self._arm()
            return
        try:
            # The read that queued this flush may be another connection's:
            # a failure here must not end that one.
            self.reactor._disconnectSelectable(self, why, False)  # type: ignore[attr-defined]
        except Exception:
            _log.failure("closing {transport!r} failed", transport=self)

    def _pauseIfBehind(self, unsent: int) -> None:
        """
        Pause a streaming producer when a flush left more than one buffer
        unsent, as Twisted's C{write} would have.
        """
        producer = self.producer
        if (
            producer is not None
            and self.streamingProducer
            and not self.producerPaused
            and unsent > self.bufferSize  # type: ignore[attr-defined]
        ):
            self.producerPaused = True
            producer.pauseProducing()

    def _sendPieces(self, pieces: List[bytes]) -> int:
        """
        Send what the socket takes of C{pieces} now, without joining them.

        @return: the number of bytes sent; 0 on any error, which leaves the
            bytes to the reactor's C{doWrite}, where Twisted meets the error
            again and reports the lost connection.
        """
        sock: Optional[socket.socket] = getattr(self, "socket", None)
        if sock is None:
            return 0
        try:
            if len(pieces) == 1:
                return sock.send(pieces[0])
            if len(pieces) <= _MAX_PIECES:
                return sock.sendmsg(pieces)
            return sock.send(b"".join(pieces))
        except OSError:
            return 0

    def _flushBehind(self) -> None:
        """
        Send after bytes an earlier short send left: Twisted's C{doWrite},
        and the reactor armed for whatever is still left.
        """
        try:
            failed = self.doWrite()  # type: ignore[attr-defined]
        except Exception:
            _log.failure("sending after a read failed; leaving it to the reactor")
            failed = True
        if (
            failed is not None
            or self._tempDataLen
            or self.offset < len(self.dataBuffer)
        ):
            self._arm()
            self._pauseIfBehind(len(self.dataBuffer) - self.offset + self._tempDataLen)


_READ_BUFFER_FACTOR = 4
"""
How many C{bufferSize}s a read may write to a transport before its
streaming producer is paused there and then, rather than at the flush.
"""

_MAX_PIECES = 64
"""
At most this many buffers go to one C{sendmsg} (the kernel allows 1,024);
beyond it they are joined, which is cheaper than the long I/O vector.
"""


_CLIENT_HOSTS: Dict[str, str] = {}
"""One string per client address text, for the connections from it."""

_MAX_CLIENT_HOSTS = 4096
"""Bound on L{_CLIENT_HOSTS}: a proxy reached by many addresses starts over."""


def _sharedHost(host: str) -> str:
    """
    @return: an equal host string already held by another connection, or
        C{host}, now held.  C{accept} makes a new string per connection, and
        the many connections that come from one address (a load balancer,
        a NAT, one busy client) can share one: about 60 bytes each.
    """
    shared = _CLIENT_HOSTS.get(host)
    if shared is None:
        if len(_CLIENT_HOSTS) >= _MAX_CLIENT_HOSTS:
            _CLIENT_HOSTS.clear()
        shared = _CLIENT_HOSTS[host] = host
    return shared


class FlushingServer(_FlushAfterRead, tcp.Server):
    """
    An accepted TCP connection that flushes at the end of each read.

    Twisted stores two formatted strings (C{logstr}, C{repstr}) and a bound
    C{socket.fileno} on every accepted connection: about 220 bytes, a tenth
    of what an idle keepalive connection holds.  Here they are made when
    asked for (the reactor asks for C{logPrefix} once per event, a cheap
    format), and Twisted's assignments to them are ignored.

    Its reads start small and follow what the client sends
    (L{_FlushAfterRead._adaptReadSize}): a keepalive connection sending
    small requests never asks C{recv} for 64 KiB.
    """

    readSize = SMALL_READ_SIZE
    adaptiveReads = True

    def __init__(self, sock: socket.socket, protocol: Any, client: Any, server: Any,
                 sessionno: int, reactor: Any) -> None:
        """
        As C{tcp.Server}, with the client's host string shared with the
        other connections from its address (L{_sharedHost}).
        """
        client = (_sharedHost(client[0]),) + tuple(client[1:])
        super().__init__(sock, protocol, client, server, sessionno, reactor)

    @property
    def logstr(self) -> str:
        """
        C{PROTOCOL,SESSION,HOST}, as Twisted's C{Server} logs.
        """
        protocol = getattr(self, "protocol", None)
        prefix = self._getLogPrefix(protocol) if protocol is not None else "Uninitialized"
        return f"{prefix},{self.sessionno},{self.hostname}"

    @logstr.setter
    def logstr(self, value: str) -> None:
        pass

    @property
    def repstr(self) -> str:
        """
        C{<PROTOCOL #SESSION on PORT>}, as Twisted's C{Server.__repr__}.
        """
        protocol = getattr(self, "protocol", None)
        name = type(protocol).__name__ if protocol is not None else "None"
        if self.server is None:
            return f"<{name} #{self.sessionno}>"
        return f"<{name} #{self.sessionno} on {self.server._realPortNumber}>"

    @repstr.setter
    def repstr(self, value: str) -> None:
        pass

    @property
    def fileno(self) -> Any:
        """
        The socket's C{fileno}, or C{FileDescriptor}'s (-1) once the socket
        is gone, as after Twisted's C{del self.fileno}.
        """
        sock = getattr(self, "socket", None)
        if sock is None:
            return FileDescriptor.fileno.__get__(self)
        return sock.fileno

    @fileno.setter
    def fileno(self, value: Any) -> None:
        pass

    @fileno.deleter
    def fileno(self) -> None:
        pass


class FlushingClient(_FlushAfterRead, tcp.Client):
    """
    An outgoing TCP connection that flushes at the end of each read.
    """


class FlushingPort(tcp.Port):
    """
    A listening port whose connections are L{FlushingServer}s.
    """

    transport = FlushingServer


class FlushingConnector(tcp.Connector):
    """
    A connector whose connection is a L{FlushingClient}.
    """

    def _makeTransport(self) -> FlushingClient:
        return FlushingClient(self.host, self.port, self.bindAddress, self, self.reactor)

    def connectionLost(self, reason: Any) -> None:
        """
        Let go of the closed transport first, as Twisted's C{connectionFailed}
        does: a transport and its connector refer to each other, and each
        closed upstream connection would otherwise wait for the garbage
        collector, with its protocol and buffers.
        """
        self.transport = None
        super().connectionLost(reason)


class _FlushingConnectReactor:
    """
    The one reactor method Twisted's TCP client endpoints call,
    C{connectTCP}, making a L{FlushingConnector} on the real reactor.
    """

    def __init__(self, reactor: PosixReactorBase) -> None:
        self._reactor = reactor

    def connectTCP(
        self, host: str, port: int, factory: Any, timeout: float = 30, bindAddress: Any = None
    ) -> FlushingConnector:
        """
        Connect like L{PosixReactorBase.connectTCP}, with flushing.
        """
        connector = FlushingConnector(host, port, factory, timeout, bindAddress, self._reactor)
        connector.connect()
        return connector


def supportsFlushing(reactor: Any) -> bool:
    """
    @return: whether C{reactor} runs Twisted's own POSIX TCP transports
        (epoll, poll, select, asyncio), which these classes extend.  Test
        reactors and others keep their own transports.
    """
    return isinstance(reactor, PosixReactorBase) and hasattr(
        tcp.Port, "_fromListeningDescriptor"
    )


def adoptFlushingPort(reactor: Any, fileno: int, family: int, factory: Any) -> Any:
    """
    Like C{reactor.adoptStreamPort}, with L{FlushingServer} connections
    where the reactor supports them.
    """
    if family == socket.AF_UNIX or not supportsFlushing(reactor):
        return reactor.adoptStreamPort(fileno, family, factory)
    port = FlushingPort._fromListeningDescriptor(reactor, fileno, family, factory)
    port.startListening()
    return port


def flushingClientEndpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """
    A TCP client endpoint (IPv6 when C{host} is) whose connection flushes
    at the end of each read where the reactor supports it.
    """
    endpointType = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
    if supportsFlushing(reactor):
        reactor = _FlushingConnectReactor(reactor)
    return endpointType(reactor, host, port, timeout=timeout)


def setNoDelay(transport: Any) -> None:
    """
    Turn Nagle's algorithm off on C{transport}'s TCP socket, as nginx's
    C{tcp_nodelay on} does: without it a response sent in two writes
    (a head with the start of the body, then the rest) waits for the
    client's delayed ACK, 40 ms on Linux, before its second part leaves.

    A transport without a TCP socket (a UNIX socket, a memory transport in
    a test) is left alone.  A TLS transport passes the attribute lookup on
    to the TCP transport beneath.  (Twisted's own C{setTcpNoDelay} logs an
    error for a UNIX socket, on every connection.)
    """
    sock = getattr(transport, "socket", None)
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
    except OSError:
        pass  # closed already; the connection's own error path reports it
