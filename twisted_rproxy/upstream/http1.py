# -*- test-case-name: tests.unit.test_upstream -*-
"""
The HTTP/1.1 client codec facing backends: sends one request at a time on a
(possibly reused) connection, parses the response with the same strict
parser as client requests, and streams the body to a handler.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from ..http.parser import (
    ChunkedDecoder,
    HTTPError,
    Limits,
    checkIncompleteHead,
    findHeadEnd,
    fieldValues,
    headerLowers,
    parseResponseHead,
    responseFraming,
)
from ..http.timers import timersFor
from ..transport import DEFAULT_READ_SIZE


class UpstreamError(Exception):
    """
    A backend failed; C{stage} says how far the response got, in nginx's
    words (C{"connecting"}, C{"reading response header"}, ...).

    @ivar kind: C{"error"}, C{"timeout"} or C{"invalid_header"}, the
        C{proxy_next_upstream} classes.
    """

    def __init__(self, kind: str, message: str, stage: str) -> None:
        super().__init__(kind, message, stage)
        self.kind = kind
        self.message = message
        self.stage = stage

    @property
    def status(self) -> int:
        """
        The status nginx answers with: 504 for timeouts, else 502.
        """
        return 504 if self.kind == "timeout" else 502

    def __str__(self) -> str:
        return f"{self.message} while {self.stage}"


_IDLE, _HEAD, _BODY = 0, 1, 2

HEAD_READ_SIZE = 4096
"""The most read at once while a response head is awaited, unless the
caller says otherwise: nginx's default C{proxy_buffer_size}, one page."""

BODY_READ_SIZE = DEFAULT_READ_SIZE
"""The most read at once from then on."""


class UpstreamHTTPProtocol(Protocol):
    """
    One connection to a backend.

    The handler gets C{responseHead(head)}, C{responseBody(data)},
    C{responseDone(reusable)} and C{responseFailed(UpstreamError)}.

    @ivar requests: requests sent on this connection, for
        C{keepalive_requests}.
    @ivar peer: the L{twisted_rproxy.upstream.cluster.Peer}.
    """

    #: A TCP or UNIX transport (an C{ITCPTransport}-like object with
    #: C{abortConnection} and the C{IPushProducer} methods), which
    #: C{Protocol}'s C{Optional[ITransport]} does not describe.
    transport: Any
    # Per-connection state in slots: at 29 instance attributes this class
    # was one short of CPython 3.11's limit for its compact shared-key
    # layout, past which every connection gets a full dict.  Attributes
    # set from outside still go to the instance dict.
    __slots__ = (
        "peer", "_reactor", "_limits", "_state", "_handler", "_buffer", "_framing",
        "_remaining", "_decoder", "_method", "_timers", "_deadline", "_timerEntry",
        "_timerArmed", "pooled", "idleTimer", "idleDeadline", "connectedAt",
        "_sendTimer", "_readTimeout", "_sendTimeout", "_sending", "_gotBytes",
        "_connectionClose", "_upgrade", "requests", "onLost",
    )

    #: The TLS target a TLS subclass was made for; the keepalive pool's key.
    tlsKey: Any = None

    def __init__(self, peer: Any, reactor: Any, limits: Optional[Limits] = None) -> None:
        self.peer = peer
        self._reactor = reactor
        self._limits = limits or Limits(maxRequestLine=65536, maxHeadersSize=65536)
        self._state = _IDLE
        self._handler: Any = None
        self._buffer = bytearray()
        self._framing: Any = None
        self._remaining = 0
        self._decoder: Optional[ChunkedDecoder] = None
        self._method = b"GET"
        # The read timeout is an entry in the reactor's shared heap (see
        # twisted_rproxy.http.timers): no DelayedCall reset per request.
        self._timers = timersFor(reactor)
        self._deadline: Optional[float] = None
        self._timerEntry: Optional[List[Any]] = None
        self._timerArmed = False
        self.pooled = False
        self.idleTimer: Any = None
        self.idleDeadline = 0.0
        self.connectedAt = 0.0
        self._sendTimer: Any = None
        self._readTimeout = 60.0
        self._sendTimeout = 0.0
        self._sending = False
        self._gotBytes = False
        self._connectionClose = False
        self._upgrade = False
        self.requests = 0
        self.connected = False
        self.onLost: Any = None

    def connectionMade(self) -> None:
        """
        Mark the connection usable.
        """
        self.connected = True
        self.connectedAt = self._reactor.seconds()

    # -- sending --------------------------------------------------------

    def startRequest(self, method: bytes, head: bytes, handler: Any, readTimeout: float,
                     sendTimeout: float = 0.0, bodyFollows: bool = False,
                     headReadSize: int = HEAD_READ_SIZE) -> None:
        """
        Send a request head; the body (if any) follows through
        L{writeBody} and ends with L{bodySent}.

        As in nginx, C{readTimeout} (the longest wait between two reads)
        starts once the whole request is sent, or at the first response
        byte; while the request is going out, C{sendTimeout} limits how
        long the backend may leave its socket full (L{sendBlocked}), so a
        slow client streaming its body is never the backend's timeout.

        Until the response head is in, reads take at most C{headReadSize}
        bytes (nginx's C{proxy_buffer_size}), so a large body comes in
        reads of its own: a head and most of a 64 KiB body in one read
        would cost a copy of the body to split them.
        """
        self._handler = handler
        self.transport.readSize = headReadSize
        self._method = method
        self._state = _HEAD
        self._buffer = bytearray()
        self._gotBytes = False
        self._connectionClose = False
        self._upgrade = False
        self._readTimeout = readTimeout
        self._sendTimeout = sendTimeout
        self._sending = bodyFollows
        self.requests += 1
        self.transport.write(head)
        if not bodyFollows:
            self._armTimer()

    def writeBody(self, data: bytes) -> None:
        """
        Send part of the request body.
        """
        self.transport.write(data)

    def bodySent(self) -> None:
        """
        The whole request body is written: wait for the response now.
        """
        if not self._sending:
            return
        self._sending = False
        self.sendUnblocked()
        # Unless the first response byte already started it.  (Whether an
        # entry is queued says nothing: the previous request's stays
        # queued between requests on a keepalive connection.)
        if self._state == _HEAD and self._handler is not None and not self._timerArmed:
            self._armTimer()

    def sendBlocked(self) -> None:
        """
        The backend's socket is full while the request is going out:
        C{proxy_send_timeout} starts.
        """
        if (self._sending and self._sendTimeout and self._handler is not None
                and self._sendTimer is None):
            self._sendTimer = self._reactor.callLater(self._sendTimeout, self._sendTimedOut)

    def sendUnblocked(self) -> None:
        """
        The backend's socket drained: the send timeout stops.
        """
        if self._sendTimer is not None:
            if self._sendTimer.active():
                self._sendTimer.cancel()
            self._sendTimer = None

    # -- timers -------------------------------------------------------------

    def _armTimer(self) -> None:
        if not self._readTimeout:
            return
        self._timerArmed = True
        self._timers.arm(self, self._readTimeout)

    def _cancelTimer(self) -> None:
        """
        Disarm the read timer between requests; it stays scheduled (and is
        ignored if it fires) so the next request only has to reset it.
        """
        self._timerArmed = False
        self.sendUnblocked()

    def _stopTimer(self) -> None:
        """
        Really cancel the read timer: the connection is closing or leaving
        this codec.
        """
        self._timerArmed = False
        self._timers.disarm(self)
        self.sendUnblocked()

    def _sendTimedOut(self) -> None:
        self._sendTimer = None
        self._fail(UpstreamError(
            "timeout", "upstream timed out (110: Connection timed out)",
            "sending request to upstream",
        ))
        self.transport.abortConnection()

    def _timedOut(self) -> None:
        if not self._timerArmed:
            return
        stage = "reading response header from upstream" if self._state == _HEAD else (
            "reading upstream"
        )
        self._fail(UpstreamError("timeout", "upstream timed out (110: Connection timed out)", stage))
        self.transport.abortConnection()

    # -- receiving ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Parse the response head, then stream the body to the handler.
        """
        if self._state == _IDLE:
            # Bytes on an idle keepalive connection: the backend is broken;
            # the pool must not hand this connection out again.
            self.transport.loseConnection()
            return
        self._gotBytes = True
        # proxy_read_timeout is the longest wait between two reads: every
        # read restarts it (a finished response cancels it).
        self._armTimer()
        if self._state == _BODY:
            self._body(data)
            return
        if self._buffer:
            # The rest of a head that began in an earlier read.
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer = bytearray()
        while self._state == _HEAD:
            end = findHeadEnd(data)
            if end < 0:
                try:
                    checkIncompleteHead(data, self._limits, isRequest=False)
                except HTTPError as e:
                    self._invalid(e)
                    return
                self._buffer += data
                return
            # What follows the head goes on as one slice of the read, not
            # copied into a buffer and out again (a 64 KiB read is mostly
            # body).
            head, data = data[:end], data[end:]
            if not self._head(head, data):
                return
        if self._state == _BODY and data:
            self._body(data)

    def _head(self, raw: bytes, rest: bytes) -> bool:
        """
        Act on one response head.

        @param rest: the bytes of the same read that follow it.
        @return: whether C{rest} is to be read on (as the body, or as
            the head after an interim response).
        """
        try:
            head = parseResponseHead(raw, self._limits)
            framing = responseFraming(self._method, head)
        except HTTPError as e:
            self._invalid(e)
            return False
        if 100 <= head.status < 200 and head.status != 101:
            return True  # interim response: wait for the final one
        values = fieldValues(head.headers, head.lowers if head.lowers is not None else headerLowers(head), b"connection")
        connection = b",".join(values).lower() if values else b""
        # find(), not "in": bytes.__contains__ tries its operand as an int
        # first and builds (then drops) a TypeError for a bytes one.
        self._connectionClose = connection.find(b"close") >= 0 or (
            head.version == b"HTTP/1.0" and connection.find(b"keep-alive") < 0
        )
        self._framing = framing
        if head.status == 101:
            # From here on every byte belongs to the tunnel, including any
            # that came in the same read as the head (dataReceived passes
            # them on); proxy_read_timeout keeps running between reads, as
            # nginx's does on upgraded connections.
            self._upgrade = True
            self._state = _BODY
            self.transport.readSize = BODY_READ_SIZE
            self._armTimer()
            self._handler.responseHead(head)
            return self._handler is not None and self._state == _BODY
        self._state = _BODY
        self.transport.readSize = BODY_READ_SIZE
        if framing.kind == "length":
            self._remaining = framing.length
        elif framing.kind == "chunked":
            self._decoder = ChunkedDecoder()
        self._handler.responseHead(head)
        if self._handler is None or self._state != _BODY:
            return False  # the handler gave up on this response
        if framing.kind == "none" or (framing.kind == "length" and framing.length == 0):
            if rest:
                self._connectionClose = True  # bytes after a bodiless response
            self._complete()
            return False
        return True

    def _body(self, data: bytes) -> None:
        if self._upgrade:
            self._handler.responseBody(data)
            return
        kind = self._framing.kind
        if kind == "length":
            n = self._remaining
            if len(data) >= n:
                piece, extra = (data[:n], data[n:]) if len(data) > n else (data, b"")
                self._remaining = 0
                if piece:
                    self._handler.responseBody(piece)
                if extra:
                    self._connectionClose = True  # the backend sent more than it said
                self._complete()
            else:
                self._remaining -= len(data)
                self._handler.responseBody(data)
        elif kind == "chunked":
            assert self._decoder is not None
            try:
                pieces, done, extra = self._decoder.feed(data)
            except HTTPError as e:
                self._fail(UpstreamError("error", f"upstream sent invalid chunked response ({e.reason})", "reading upstream"))
                self.transport.abortConnection()
                return
            for piece in pieces:
                if self._handler is None:
                    return
                self._handler.responseBody(bytes(piece))
            if done:
                if extra:
                    self._connectionClose = True
                self._complete()
        else:  # "eof"
            self._handler.responseBody(data)

    def _complete(self) -> None:
        handler, self._handler = self._handler, None
        self._state = _IDLE
        self._decoder = None
        self._cancelTimer()
        reusable = not self._connectionClose and self.connected
        if handler is not None:
            handler.responseDone(reusable)

    def _invalid(self, error: HTTPError) -> None:
        self._fail(
            UpstreamError("invalid_header", _invalidMessage(error.reason),
                          "reading response header from upstream")
        )
        self.transport.abortConnection()

    def _fail(self, error: UpstreamError) -> None:
        handler, self._handler = self._handler, None
        self._state = _IDLE
        self._cancelTimer()
        if handler is not None:
            handler.responseFailed(error, self._gotBytes)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        A close ends a close-delimited body; anywhere else it is an error.
        """
        self.connected = False
        self._stopTimer()
        if self.onLost is not None:
            self.onLost(self)
        if self._handler is None:
            return
        if self._state == _BODY and (self._upgrade or self._framing.kind == "eof"):
            handler, self._handler = self._handler, None
            self._state = _IDLE
            handler.responseDone(False)
            return
        stage = (
            "reading response header from upstream" if self._state == _HEAD else "reading upstream"
        )
        if reason is not None and not reason.check(ConnectionDone):
            # A reset (or another socket error), not an orderly close: say
            # so in the words of nginx's recv() failure.
            message = "recv() failed (104: Connection reset by peer)"
        else:
            message = "upstream prematurely closed connection"
        self._fail(UpstreamError("error", message, stage))

    # -- flow control from the client side ----------------------------------

    def pauseProducing(self) -> None:
        """
        The client is slow: stop reading from the backend.
        """
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """
        The client caught up: read from the backend again.
        """
        if self.transport is not None:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """
        The client is gone: drop the backend connection.
        """
        if self.transport is not None:
            self.transport.abortConnection()

    def noteActivity(self) -> None:
        """
        The client side of an upgraded connection sent bytes: restart
        C{proxy_read_timeout}, which nginx re-arms on traffic in either
        direction of a tunnel, so only a tunnel idle both ways times out.
        """
        if self._upgrade and self._handler is not None:
            self._armTimer()

    def abandon(self) -> None:
        """
        The handler gives up on the response in progress (a retry, an
        intercepted error, a client that left): report nothing more to it,
        and never reuse the connection, whose stream position is unknown.
        """
        self._handler = None
        self._state = _IDLE
        self._connectionClose = True
        self._decoder = None
        self._buffer = bytearray()
        self._stopTimer()

    def detach(self) -> Any:
        """
        Hand the raw transport over (after a 101) and stop parsing.
        """
        self._handler = None
        self._state = _IDLE
        self._stopTimer()
        return self.transport


#: Parser reasons that nginx reports as "upstream sent no valid HTTP/1.0
#: header": the status line itself is not HTTP/1.x.
_NO_VALID_HEADER = frozenset({
    "upstream sent invalid status line",
    "upstream sent unsupported HTTP version",
    "upstream sent invalid status code",
})


def _invalidMessage(reason: str) -> str:
    """
    The error log text for a response head the parser refused, in nginx's
    words: a broken status line is "no valid HTTP/1.0 header"; the
    parser's own "upstream sent ..." reasons are already nginx's.
    """
    if reason in _NO_VALID_HEADER:
        return "upstream sent no valid HTTP/1.0 header"
    if reason.startswith("upstream sent"):
        return reason
    return f"upstream sent invalid header ({reason})"
