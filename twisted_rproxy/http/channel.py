# -*- test-case-name: tests.unit.test_channel -*-
"""
The HTTP/1.1 codec facing clients: reads request heads and bodies with the
strict parser, runs one L{Exchange} at a time in pipeline order, frames the
responses, and keeps both directions flowing with backpressure.
"""

from __future__ import annotations

import time
from typing import AbstractSet, Any, Dict, FrozenSet, List, Optional, Tuple

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..transport import setNoDelay
from .dates import httpDate
from .exchange import SERVER_SOFTWARE, Exchange
from .parser import (
    ChunkedDecoder,
    HTTPError,
    Limits,
    checkIncompleteHead,
    findHeadEnd,
    parseRequestHead,
    requestFraming,
)
from .routing import normalizeHost
from .timers import timersFor

_HEAD, _BODY, _WAIT, _TUNNEL, _CLOSED = "head", "body", "wait", "tunnel", "closed"

#: Pipelined bytes held while a response is in progress before reading stops.
PIPELINE_LIMIT = 65536
#: Request body bytes held for a handler that has not asked for them yet.
BODY_QUEUE_LIMIT = 65536

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SERVER_FULL = SERVER_SOFTWARE.encode("ascii")
_OWN_HEADERS = frozenset({b"server", b"date"})
_SERVER_SHORT = b"twisted_rproxy"
#: The whole C{Server} header lines, for C{server_tokens on} and C{off}.
_SERVER_FULL_LINE = b"Server: %s\r\n" % _SERVER_FULL
_SERVER_SHORT_LINE = b"Server: %s\r\n" % _SERVER_SHORT
#: Joins one C{(name, value)} pair into a header line without its CRLF.
_FIELD_JOIN = b": ".join


def _withoutOwn(own: frozenset, name: bytes) -> Optional[frozenset]:
    """
    @return: C{own} less C{name}, or C{None} when nothing is left to add.
    """
    rest = own - {name}
    return rest or None


class BodyTooLarge(Exception):
    """
    The request body exceeded C{client_max_body_size}.
    """


class ClientGone(Exception):
    """
    The client connection closed before the request body was complete.
    """


_LIMITS: Dict[Tuple[int, int], Limits] = {}
"""One L{Limits} per C{large_client_header_buffers} value, shared by every
connection (an idle keepalive connection should cost little)."""

#: The read pauses of a connection reading freely; a set replaces it on
#: the first pause.
_NO_PAUSES: FrozenSet[str] = frozenset()


_SERVER_ADDRESSES: Dict[Any, Any] = {}
"""The local addresses connections arrived at: a few per listener, so
every connection shares one object instead of keeping its own."""


def _sharedAddress(address: Any) -> Any:
    """
    @return: an equal address already held, or C{address}, now held.
    """
    try:
        shared = _SERVER_ADDRESSES.get(address)
    except TypeError:
        return address  # not hashable: kept as it is
    if shared is not None:
        return shared
    if len(_SERVER_ADDRESSES) >= 1024:
        # Bound it (a listener on many local addresses); refill from now.
        _SERVER_ADDRESSES.clear()
    _SERVER_ADDRESSES[address] = address
    return address


def limitsFor(conf: Any) -> Limits:
    """
    @return: parser limits from a server's C{large_client_header_buffers}.
    """
    number, size = key = conf.get("large_client_header_buffers")
    limits = _LIMITS.get(key)
    if limits is None:
        limits = _LIMITS[key] = Limits(
            maxRequestLine=size,
            maxHeaderLine=size,
            maxHeadersSize=number * size,
            maxHeaderCount=max(100, number * 25),
        )
    return limits


@implementer(IPushProducer)
class HTTPChannel(Protocol):
    """
    One client connection speaking HTTP/1.x.

    @ivar listener: the L{twisted_rproxy.config.model.Listener} this
        connection arrived on (its config stays fixed for the connection).
    @ivar scheme: C{"http"} or C{"https"}.
    """

    log = Logger()
    scheme = "http"
    #: A TCP (or TLS) transport once connected: it is also the producer
    #: this channel pauses, which Protocol's C{Optional[ITransport]} hides.
    transport: Any
    _connections = 0
    #: Whether the L{ProtocolSelector} that chose this channel has set
    #: C{TCP_NODELAY} already (one C{setsockopt} per connection, not two).
    noDelaySet = False
    # The per-connection state lives in slots: an idle keepalive connection
    # should cost little, and more than 30 attributes in an instance dict
    # would turn CPython's shared-key layout into a full dict per
    # connection (1.5 KiB).  Attributes set from outside (C{factory},
    # C{scheme}, Twisted's C{transport}) still go to the instance dict.
    __slots__ = (
        "_reactor", "listener", "_limits", "_headerTimeout", "_buffer", "_state",
        "_exchange", "_remaining", "_decoder", "_bodyReceived", "_chunked",
        "_requests", "_readPauses", "_writePaused", "_continueSent", "_timers",
        "_deadline", "_timerEntry", "_timerWhy", "_inReadHeads", "_headRest", "_chunkedOut",
        "lost", "_sendTimer", "_tunnel", "clientAddress", "serverAddress",
        "connectionNumber",
    )

    def __init__(self, listener: Any, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.listener = listener
        conf = listener.defaultServer.conf
        self._limits = limitsFor(conf)
        self._headerTimeout = conf.get("client_header_timeout")
        self._buffer = bytearray()
        self._state = _HEAD
        self._exchange: Optional[Exchange] = None
        self._remaining = 0
        self._decoder: Optional[ChunkedDecoder] = None
        self._bodyReceived = 0
        self._chunked = False
        self._requests = 0
        self._readPauses: AbstractSet[str] = _NO_PAUSES
        self._writePaused = False
        self._continueSent = False
        self._timers = timersFor(reactor)
        self._deadline: Optional[float] = None
        self._timerEntry: Optional[List[Any]] = None
        self._timerWhy = ""
        self._inReadHeads = False
        # What followed a head read by _readWholeHead, while that head is
        # acted on: as good as buffered.
        self._headRest = b""
        self._chunkedOut = False
        self.lost = False
        self._sendTimer: Any = None
        self._tunnel: Any = None
        self.clientAddress: Any = None
        self.serverAddress: Any = None

    # -- connection lifecycle -------------------------------------------

    def connectionMade(self) -> None:
        """
        Register as the transport's producer and start the header timer.
        """
        HTTPChannel._connections += 1
        self.connectionNumber = HTTPChannel._connections
        self.clientAddress = self.transport.getPeer()
        self.serverAddress = _sharedAddress(self.transport.getHost())
        if self.listener.byLocalAddress is not None:
            # A wildcard socket serving specific addresses too: use the
            # servers of the address the client reached, and their
            # default server's limits, as ngx_http_init_connection does.
            listener = self.listener = self.listener.forLocalAddress(self.serverAddress.host)
            conf = listener.defaultServer.conf
            self._limits = limitsFor(conf)
            self._headerTimeout = conf.get("client_header_timeout")
        if not self.noDelaySet and self.listener.defaultServer.conf.get("tcp_nodelay"):
            setNoDelay(self.transport)
        self.transport.registerProducer(self, True)
        self._setTimer(self._headerTimeout, "client_header_timeout")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        Tell an unfinished exchange the client has gone, so its upstream
        request is abandoned.
        """
        self.lost = True
        channels = getattr(self.factory, "channels", None)
        if channels is not None:
            channels.discard(self)
        inTunnel = self._state == _TUNNEL
        self._state = _CLOSED
        self._stopTimer()
        if self._sendTimer is not None and self._sendTimer.active():
            self._sendTimer.cancel()
        self._sendTimer = None
        if inTunnel:
            # Dropped once told: the tunnel refers back to this channel.
            tunnel, self._tunnel = self._tunnel, None
            tunnel.clientLost()
        exchange, self._exchange = self._exchange, None
        if exchange is not None and not exchange.finished:
            exchange.aborted = True
            if not exchange.bodyComplete:
                exchange.bodyFailed(ClientGone())
            exchange.clientClosed()
            if not exchange.headSent and not exchange.status:
                # 499 is for a client that left on its own; a timeout has
                # already recorded 408.
                exchange.status = 499
            self._logExchange(exchange)

    # -- timers -------------------------------------------------------------

    def _setTimer(self, seconds: Optional[float], why: str) -> None:
        """
        Arm the connection's one timeout for C{why}, replacing the one
        before: an entry in the reactor's shared L{ConnectionTimers}, not
        a C{DelayedCall} per connection (see L{twisted_rproxy.http.timers}).
        """
        if not seconds:
            self._timerWhy = ""
            return
        self._timerWhy = why
        self._timers.arm(self, seconds)

    def _cancelTimer(self) -> None:
        """
        Disarm the timer; a deadline still queued is ignored when it comes.
        """
        self._timerWhy = ""

    def _stopTimer(self) -> None:
        """
        Really drop the timer: the connection is gone.
        """
        self._timerWhy = ""
        self._timers.disarm(self)

    def _timedOut(self) -> None:
        """
        The deadline came (called by L{ConnectionTimers}).
        """
        why, self._timerWhy = self._timerWhy, ""
        if not why:
            return
        if why != "keepalive_timeout":
            self.log.info(
                "client timed out ({why}) from {peer}", why=why, peer=self._peerText()
            )
        exchange = self._exchange
        if exchange is not None and not exchange.finished:
            exchange.status = exchange.status or 408
        self.transport.abortConnection()

    def _sendTimedOut(self) -> None:
        """
        The client read nothing for C{send_timeout}: drop it, as nginx
        does ("client timed out ... while sending response to client").
        """
        self._sendTimer = None
        if not self._writePaused or self.lost:
            return
        self.log.info(
            "client timed out (send_timeout) while sending response to client {peer}",
            peer=self._peerText(),
        )
        self.transport.abortConnection()

    def _peerText(self) -> str:
        peer = self.clientAddress
        return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"

    # -- reading ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Feed bytes to whichever part of a request is being read.
        """
        if self._state == _TUNNEL:
            self._tunnel.fromClient(data)
            return
        if self._state == _BODY:
            data = self._feedBody(data)
            if not data or self._state == _CLOSED:
                return
        if self._state == _CLOSED:
            return
        if self._state == _HEAD and not self._buffer and not self._inReadHeads:
            data = self._readWholeHead(data)
            if not data:
                return
        self._buffer += data
        if self._state == _HEAD:
            self._readHeads()
        elif len(self._buffer) > PIPELINE_LIMIT:
            self._pauseReading("pipeline")

    def _readWholeHead(self, data: bytes) -> bytes:
        """
        The usual read: nothing buffered, and C{data} starts with a whole
        request head.  Act on it straight from C{data}, without the copies
        into and out of the buffer that L{_readHeadsLoop} makes (for a
        POST, three copies of its body).

        @return: what is left for the buffer: all of C{data} if it holds
            no whole head, else what follows the head and the body read
            with it (a pipelined request).
        """
        end = findHeadEnd(data)
        if end < 0:
            return data
        self._inReadHeads = True
        try:
            rest = data[end:] if end < len(data) else b""
            self._headRest = rest
            self._startRequest(data[:end] if rest else data)
            rest = self._headRest  # (an upgrade may have taken it)
            if rest and self._state == _BODY:
                rest = self._feedBody(rest)
        finally:
            self._inReadHeads = False
            self._headRest = b""
        if self._state == _CLOSED:
            return b""
        return rest

    def _readHeads(self) -> None:
        # Responses answered synchronously call back into _nextRequest; the
        # flag keeps pipelined requests in this loop instead of recursing.
        self._inReadHeads = True
        try:
            self._readHeadsLoop()
        finally:
            self._inReadHeads = False

    def _readHeadsLoop(self) -> None:
        while self._state == _HEAD and self._buffer:
            end = findHeadEnd(self._buffer)
            if end < 0:
                if self._timerWhy == "keepalive_timeout":
                    self._startHeaderTimer()
                try:
                    checkIncompleteHead(self._buffer, self._limits)
                except HTTPError as e:
                    self._badRequest(e)
                return
            head = bytes(self._buffer[:end])
            del self._buffer[:end]
            self._startRequest(head)
            if self._state == _BODY and self._buffer:
                rest = bytes(self._buffer)
                self._buffer = bytearray()
                rest = self._feedBody(rest)
                self._buffer += rest

    def _startHeaderTimer(self) -> None:
        """
        The next request has begun: from its first byte it has
        client_header_timeout to complete.  Only the switch from
        keepalive_timeout starts the timer, so later bytes of the same head
        cannot push it back (a client trickling its head byte by byte).  A
        head that arrives whole and parses needs no timer at all, so the
        switch is made only for a partial head or a bad one.
        """
        self._setTimer(self._headerTimeout, "client_header_timeout")

    def _badRequest(self, error: HTTPError) -> None:
        self.log.info(
            "bad request from {peer}: {status} {reason}",
            peer=self._peerText(),
            status=error.status,
            reason=error.reason,
        )
        exchange = Exchange(self, b"GET", b"/", b"HTTP/1.1", [])
        exchange.server = self.listener.defaultServer
        exchange.keepAlive = False
        self._exchange = exchange
        self._state = _WAIT
        self._pauseReading("closing")
        exchange.sendLocalReply(error.status)

    def _startRequest(self, head: bytes) -> None:
        try:
            request = parseRequestHead(head, self._limits)
            framing = request.framing or requestFraming(request)
        except HTTPError as e:
            if self._timerWhy == "keepalive_timeout":
                self._startHeaderTimer()
            self._badRequest(e)
            return
        self._requests += 1
        self._cancelTimer()
        exchange = Exchange(
            self, request.method, request.target, request.version, request.headers
        )
        exchange.requestLength = len(head)
        exchange.keepAlive = self._clientKeepAlive(request.version, exchange)
        self._exchange = exchange
        self._continueSent = False
        self._bodyReceived = 0
        if framing.kind == "length" and framing.length > 0:
            self._state = _BODY
            self._chunked = False
            self._remaining = framing.length
        elif framing.kind == "chunked":
            self._state = _BODY
            self._chunked = True
            self._decoder = ChunkedDecoder()
        else:
            self._state = _WAIT
            exchange.bodyFinished()
        exchange.hasBody = framing.kind != "none"
        exchange.dispatch()
        if self._state == _BODY and self._exchange is exchange and not self._timerWhy:
            # After dispatch, so the chosen location's client_body_timeout
            # applies (an early response has already set it).
            self._setTimer(exchange.conf.get("client_body_timeout"), "client_body_timeout")

    def _clientKeepAlive(self, version: bytes, exchange: Exchange) -> bool:
        connection = exchange.header(b"connection")
        if connection is None:
            return version == b"HTTP/1.1"
        # find(), not "in": bytes.__contains__ tries its operand as an int
        # first and builds (then drops) a TypeError for a bytes one.
        tokens = connection.lower()
        if version == b"HTTP/1.1":
            return tokens.find(b"close") < 0
        return tokens.find(b"keep-alive") >= 0

    def declaredBodyLength(self, exchange: Exchange) -> int:
        """
        @return: the Content-Length the client declared, or for a chunked
            body the bytes received so far (0 for none), so
            C{client_max_body_size} can refuse early.
        """
        if exchange is not self._exchange:
            return 0
        if self._state == _BODY and not self._chunked:
            return self._remaining + self._bodyReceived
        # Chunked: what has arrived so far, in case the location is chosen
        # only after (part of) the body was read.
        return self._bodyReceived

    def _feedBody(self, data: bytes) -> bytes:
        """
        Deliver request body bytes; return what follows the body.
        """
        exchange = self._exchange
        assert exchange is not None
        if self._chunked:
            assert self._decoder is not None
            try:
                pieces, done, rest = self._decoder.feed(data)
            except HTTPError as e:
                self._bodyError(exchange, e, e.status)
                return b""
            for piece in pieces:
                self._deliver(exchange, bytes(piece))
                if self._state == _CLOSED:
                    return b""
            if done:
                self._bodyDone(exchange)
            return rest
        n = self._remaining
        if len(data) < n:
            self._remaining -= len(data)
            self._deliver(exchange, data)
            return b""
        self._remaining = 0
        self._deliver(exchange, data[:n] if len(data) > n else data)
        self._bodyDone(exchange)
        return data[n:]

    def _deliver(self, exchange: Exchange, data: bytes) -> None:
        self._bodyReceived += len(data)
        # Looked up here rather than once after dispatch: a phase filter
        # may choose the location only later (a Deferred), and the limit
        # must hold for the bytes that arrive after that too.
        location = exchange.location
        maxBody = location.conf.get("client_max_body_size") if location is not None else 0
        if maxBody and self._bodyReceived > maxBody:
            self._bodyError(exchange, BodyTooLarge(), 413)
            return
        if self._timerWhy:
            self._setTimer(exchange.conf.get("client_body_timeout"), "client_body_timeout")
        if exchange.finished:
            return  # discarding the body of an answered request
        exchange.bodyReceived(data)
        if exchange._bodyConsumer is None and len(exchange._bodyQueue) > 1:
            if sum(len(d) for d in exchange._bodyQueue) > BODY_QUEUE_LIMIT:
                self._pauseReading("queue")

    def _bodyDone(self, exchange: Exchange) -> None:
        self._decoder = None
        self._cancelTimer()
        if exchange.finished:
            self._state = _WAIT
            self._nextRequest()
            return
        self._state = _WAIT
        exchange.bodyFinished()

    def _bodyError(self, exchange: Exchange, reason: Exception, status: int) -> None:
        self.log.info(
            "bad request body from {peer}: {reason!r}", peer=self._peerText(), reason=reason
        )
        self._state = _WAIT
        exchange.keepAlive = False
        exchange.bodyFailed(reason)
        if exchange.finished:
            self.transport.loseConnection()
            self._state = _CLOSED
        elif not exchange.headSent:
            exchange.sendLocalReply(status)
        else:
            exchange.abort()

    def bodyWanted(self, exchange: Exchange) -> None:
        """
        A handler asked for the body: honour C{Expect: 100-continue}.
        """
        self._resumeReading("queue")
        if self._awaitingContinue(exchange) and not exchange.headSent:
            self._continueSent = True
            self.transport.write(_CONTINUE)

    def _awaitingContinue(self, exchange: Exchange) -> bool:
        """
        Whether the client sent C{Expect: 100-continue} and may be holding
        its body back until told to go on: nothing of the body has arrived
        and no C{100 Continue} was sent (RFC 9110 section 10.1.1).
        """
        if not (
            exchange is self._exchange
            and self._state == _BODY
            and not self._continueSent
            and self._bodyReceived == 0
            and not self._buffer
            and not self._headRest
            and exchange.version == b"HTTP/1.1"
        ):
            return False
        expect = exchange.header(b"expect")
        return expect is not None and expect.lower() == b"100-continue"

    def pauseBody(self, exchange: Exchange) -> None:
        """
        Stop reading the socket while the body's consumer is busy.
        """
        if exchange is self._exchange:
            self._pauseReading("body")

    def resumeBody(self, exchange: Exchange) -> None:
        """
        Read the socket again for the body's consumer.
        """
        if exchange is self._exchange:
            self._resumeReading("body")

    def _pauseReading(self, why: str) -> None:
        pauses = self._readPauses
        if not pauses:
            self.transport.pauseProducing()
            self._readPauses = {why}
        else:
            pauses.add(why)  # type: ignore[attr-defined]

    def _resumeReading(self, why: str) -> None:
        pauses = self._readPauses
        if why in pauses:
            pauses.discard(why)  # type: ignore[attr-defined]
            if not pauses and self._state != _CLOSED:
                self.transport.resumeProducing()

    # -- writing ------------------------------------------------------------

    def isIdle(self) -> bool:
        """
        Whether this is a keepalive connection between requests, so a
        graceful shutdown may close it now.  A connection that has not
        sent its first request yet is not idle: the client connected to
        be served (an old worker accepting just before a reload must
        answer it, not drop it), so it gets its request answered, within
        C{client_header_timeout} and the shutdown's own deadline.
        """
        return (
            self._requests > 0
            and self._exchange is None
            and self._state == _HEAD
            and not self._buffer
        )

    @property
    def requestCount(self) -> int:
        """
        Requests read on this connection so far (C{$connection_requests}).
        """
        return self._requests

    def normalizeHost(self, raw: bytes) -> Optional[str]:
        """
        @return: the Host header as a server name, or C{None} if invalid.
        """
        return normalizeHost(raw)

    def sendHead(self, exchange: Exchange, status: int, reason: bytes, headers: list) -> None:
        """
        Frame and write a response head for C{exchange}.
        """
        if status == 101:
            self._sendSwitchingHead(exchange, reason, headers)
            return
        noBody = exchange.method == b"HEAD" or status < 200 or status in (204, 304)
        # The names lowered once upstream (by the parser, for a proxied
        # response no filter changed), else lowered here: a few scans in C.
        lowers = exchange.responseLowers
        if lowers is None:
            lowers = [name.lower() for name, _value in headers]
        hasLength = b"content-length" in lowers
        # Server and Date, unless the response has them (proxy_pass_header
        # Server/Date: the backend's is sent instead of ours, as nginx does).
        own: Optional[frozenset] = _OWN_HEADERS
        if b"server" in lowers:
            own = _withoutOwn(_OWN_HEADERS, b"server")
        if b"date" in lowers and own is not None:
            own = _withoutOwn(own, b"date")
        self._chunkedOut = False
        if not noBody and not hasLength:
            if exchange.version == b"HTTP/1.1":
                self._chunkedOut = True
            else:
                exchange.keepAlive = False
        conf = exchange.conf
        if exchange.keepAlive:
            if (
                self._requests >= conf.get("keepalive_requests")
                or not conf.get("keepalive_timeout")
                or "closing" in self._readPauses
                # Answered without 100 Continue: the client may never send
                # the body, so neither waiting for it nor reading what
                # follows as the next request is safe.
                or self._awaitingContinue(exchange)
            ):
                exchange.keepAlive = False
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        if own is not None:
            if b"server" in own:
                parts.append(_SERVER_FULL_LINE if conf.get("server_tokens") else _SERVER_SHORT_LINE)
            if b"date" in own:
                parts.append(b"Date: %s\r\n" % httpDate(self._reactor.seconds()))
        if headers:
            # Each "name: value" joined in C, not a Python pass per line.
            parts.append(b"\r\n".join(map(_FIELD_JOIN, headers)))
            parts.append(b"\r\n")
        if self._chunkedOut:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(
            b"Connection: keep-alive\r\n\r\n" if exchange.keepAlive else b"Connection: close\r\n\r\n"
        )
        head = b"".join(parts)
        exchange.bytesSent += len(head)
        self.transport.write(head)

    def _serverHeader(self, exchange: Exchange) -> bytes:
        """
        The C{Server} value: with the version unless C{server_tokens off}.
        """
        return _SERVER_FULL if exchange.conf.get("server_tokens") else _SERVER_SHORT

    def _sendSwitchingHead(self, exchange: Exchange, reason: bytes, headers: list) -> None:
        parts = [
            b"HTTP/1.1 101 %s\r\nServer: %s\r\nDate: %s\r\n"
            % (reason, self._serverHeader(exchange), httpDate(self._reactor.seconds()))
        ]
        parts += [b"%s: %s\r\n" % pair for pair in headers]
        parts.append(b"\r\n")
        self.transport.write(b"".join(parts))

    def enterTunnel(self, exchange: Exchange, tunnel: Any) -> None:
        """
        Hand the connection to a byte tunnel after a 101; bytes the client
        already sent after its request go first.
        """
        self._cancelTimer()
        self._state = _TUNNEL
        self._tunnel = tunnel
        exchange.status = 101
        self._readPauses = _NO_PAUSES
        self.transport.resumeProducing()
        pending, self._headRest = self._headRest, b""
        if self._buffer:
            pending += bytes(self._buffer)
            self._buffer = bytearray()
        if pending:
            tunnel.fromClient(pending)

    @property
    def upgradedPair(self) -> Any:
        """
        The L{twisted_rproxy.interfaces.IUpgradedPair} joined after a 101,
        or C{None}: a graceful stop asks a WebSocket relay to send 1001.
        """
        return self._tunnel if self._state == _TUNNEL else None

    def hasRequestBody(self, exchange: Exchange) -> bool:
        """
        Whether C{exchange}'s request came with a (non-empty) body.
        """
        return exchange.hasBody

    def sendBody(self, exchange: Exchange, data: bytes) -> None:
        """
        Write a piece of the response body, chunk-encoded when needed.
        """
        if exchange.method == b"HEAD":
            return
        exchange.bodyBytesSent += len(data)
        if self._chunkedOut:
            size = b"%x\r\n" % len(data)
            exchange.bytesSent += len(size) + len(data) + 2
            self.transport.writeSequence((size, data, b"\r\n"))
        else:
            exchange.bytesSent += len(data)
            self.transport.write(data)

    def responseDone(self, exchange: Exchange) -> None:
        """
        The response is complete: log it, then read the next request or
        close.
        """
        if self._chunkedOut and exchange.method != b"HEAD":
            self.transport.write(b"0\r\n\r\n")
            exchange.bytesSent += 5
        self._chunkedOut = False
        self._logExchange(exchange)
        if self._state == _CLOSED:
            return
        if not exchange.keepAlive:
            self._state = _CLOSED
            self._exchange = None
            self.transport.loseConnection()
            return
        if self._state == _BODY:
            # The rest of the body is read and thrown away, then the next
            # request follows.
            self._setTimer(exchange.conf.get("client_body_timeout"), "client_body_timeout")
            self._resumeReading("queue")
            self._resumeReading("body")
            return
        self._nextRequest()

    def _nextRequest(self) -> None:
        # keepalive_timeout is a location directive in nginx: the one of
        # the request just answered applies to the idle time after it.
        finished = self._exchange
        conf = finished.conf if finished is not None else self.listener.defaultServer.conf
        self._exchange = None
        self._state = _HEAD
        if self._readPauses:  # usually nothing to resume: no calls then
            self._resumeReading("pipeline")
            self._resumeReading("body")
            self._resumeReading("queue")
        self._setTimer(conf.get("keepalive_timeout"), "keepalive_timeout")
        if self._buffer and not self._inReadHeads:
            self._readHeads()

    def abortExchange(self, exchange: Exchange) -> None:
        """
        The response cannot complete: close the connection.
        """
        self._logExchange(exchange)
        self._state = _CLOSED
        self._exchange = None
        self.transport.loseConnection()

    def exchangeProducerChanged(self, exchange: Exchange) -> None:
        """
        A new response producer registered; pause it at once if the client
        is already behind.
        """
        producer = exchange.responseProducer
        if producer is not None and self._writePaused:
            producer.pauseProducing()

    def _logExchange(self, exchange: Exchange) -> None:
        exchange.endTime = time.time()
        location = exchange.location or exchange._fallback()
        for sink in location.logSinks:
            try:
                sink.log(exchange)
            except Exception:
                self.log.failure("access log sink {sink!r} failed", sink=sink)

    # -- IPushProducer: the client's socket tells us when it is full --------

    def pauseProducing(self) -> None:
        """
        The client is not reading fast enough: pause the response source.
        """
        self._writePaused = True
        exchange = self._exchange
        if exchange is not None:
            if exchange.responseProducer is not None:
                exchange.responseProducer.pauseProducing()
            # send_timeout: how long the client may leave us unable to write.
            seconds = exchange.conf.get("send_timeout")
            if seconds and self._sendTimer is None:
                self._sendTimer = self._reactor.callLater(seconds, self._sendTimedOut)

    def resumeProducing(self) -> None:
        """
        The client caught up: resume the response source.
        """
        self._writePaused = False
        if self._sendTimer is not None:
            if self._sendTimer.active():
                self._sendTimer.cancel()
            self._sendTimer = None
        exchange = self._exchange
        if exchange is not None and exchange.responseProducer is not None:
            exchange.responseProducer.resumeProducing()

    def stopProducing(self) -> None:
        """
        The connection is going away; L{connectionLost} does the cleanup.
        """
