# -*- test-case-name: tests.unit.test_h2channel -*-
"""
One HTTP/2 stream as its L{Exchange <twisted_rproxy.http.exchange.Exchange>}
sees a channel: the contract of L{HTTPChannel
<twisted_rproxy.http.channel.HTTPChannel>} (C{sendHead}, C{sendBody},
C{responseDone}, C{pauseBody} ...), kept per stream so that routing,
modules, proxying and logging need not know about HTTP/2.  The framing
and flow control are the connection's (L{twisted_rproxy.http.h2channel}).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Optional

from h2.errors import ErrorCodes
from zope.interface import implementer

from ..interfaces import IExchangeChannel
from .exchange import Exchange
from .routing import normalizeHost

if TYPE_CHECKING:
    from .h2channel import H2Channel

#: What a stream may hold of response body beyond its window before its
#: producer is paused.
STREAM_BUFFER_LIMIT = 65536


@implementer(IExchangeChannel)
class H2Stream:
    """
    One HTTP/2 stream, as its L{Exchange} sees a channel.

    @ivar streamId: the stream's id.
    @ivar exchange: its exchange, once the request head was accepted.
    """

    def __init__(self, connection: "H2Channel", streamId: int) -> None:
        self.connection = connection
        self.streamId = streamId
        self.exchange: Optional[Exchange] = None
        self.buffer: Deque[bytes] = deque()
        self.buffered = 0
        self.headSent = False
        self.noBody = False
        self.ended = False
        self.endSent = False
        self.closed = False
        self.requestEnded = False
        self.declaredLength: Optional[int] = None
        self.received = 0
        self.unacked = 0
        self.bodyPaused = False
        self.producerPaused = False
        self.chunkSize = 8192
        self.sendTimer: Any = None
        self.bodyTimer: Any = None
        self.sendTimeout = 0.0

    # -- what an exchange reads of its channel ---------------------------

    @property
    def listener(self) -> Any:
        return self.connection.listener

    @property
    def scheme(self) -> str:
        return self.connection.scheme

    @property
    def transport(self) -> Any:
        return self.connection.transport

    @property
    def clientAddress(self) -> Any:
        return self.connection.clientAddress

    @property
    def serverAddress(self) -> Any:
        return self.connection.serverAddress

    @property
    def connectionNumber(self) -> int:
        return self.connection.connectionNumber

    @property
    def requestCount(self) -> int:
        """
        Requests (streams) read on the connection so far.
        """
        return self.connection.requestCount

    def normalizeHost(self, raw: bytes) -> Optional[str]:
        """
        @return: C{:authority} (or Host) as a server name, or C{None}.
        """
        return normalizeHost(raw)

    # -- request body -----------------------------------------------------

    def declaredBodyLength(self, exchange: Exchange) -> int:
        """
        @return: the declared Content-Length, else the body bytes so far.
        """
        if self.declaredLength is not None:
            return self.declaredLength
        return self.received

    def hasRequestBody(self, exchange: Exchange) -> bool:
        """
        Whether the HEADERS frame left the stream open for DATA.
        """
        return exchange.hasBody

    def bodyWanted(self, exchange: Exchange) -> None:
        """
        A handler takes the body now: release the window held for it.
        """
        self.bodyPaused = False
        self.connection.acknowledge(self)
        self.connection.bodyTimer(self, True)

    def pauseBody(self, exchange: Exchange) -> None:
        """
        The consumer is full: stop acknowledging DATA, so the client's
        window closes.
        """
        self.bodyPaused = True
        self.connection.bodyTimer(self, False)

    def resumeBody(self, exchange: Exchange) -> None:
        """
        The consumer caught up: open the window by what it took.
        """
        self.bodyPaused = False
        self.connection.acknowledge(self)
        self.connection.bodyTimer(self, True)

    # -- response ---------------------------------------------------------

    def sendHead(self, exchange: Exchange, status: int, reason: bytes, headers: list) -> None:
        """
        Send the response HEADERS (ending the stream when there is no body).
        """
        self.connection.sendHead(self, exchange, status, headers)

    def sendBody(self, exchange: Exchange, data: bytes) -> None:
        """
        Queue body bytes for the stream's window.
        """
        if self.noBody or self.closed:
            return
        exchange.bodyBytesSent += len(data)
        exchange.bytesSent += len(data)
        self.buffer.append(data)
        self.buffered += len(data)
        self.connection.flush(self)
        if self.buffered > STREAM_BUFFER_LIMIT and not self.producerPaused:
            producer = exchange.responseProducer
            if producer is not None:
                self.producerPaused = True
                producer.pauseProducing()

    def responseDone(self, exchange: Exchange) -> None:
        """
        The response is complete: end the stream once its bytes are out.
        """
        self.ended = True
        self.connection.logExchange(exchange)
        self.connection.flush(self)

    def abortExchange(self, exchange: Exchange) -> None:
        """
        The response cannot complete: reset this stream only.
        """
        self.connection.logExchange(exchange)
        self.connection.resetStream(self, ErrorCodes.INTERNAL_ERROR)

    def exchangeProducerChanged(self, exchange: Exchange) -> None:
        """
        Pause a new response producer at once if its stream is behind.
        """
        producer = exchange.responseProducer
        if producer is None:
            return
        if self.buffered > STREAM_BUFFER_LIMIT or self.connection.writePaused:
            self.producerPaused = True
            producer.pauseProducing()
        else:
            self.producerPaused = False

    def enterTunnel(self, exchange: Exchange, tunnel: Any) -> None:
        """
        A 101 cannot be relayed over HTTP/2 (extended CONNECT is not
        offered): drop the stream and the upstream side.
        """
        self.connection.log.info(
            "an upgrade to a tunnel is not supported over HTTP/2; stream {id} reset",
            id=self.streamId,
        )
        exchange.status = 502
        tunnel.clientLost()
        exchange.abort()
