# -*- test-case-name: tests.unit.test_h2channel -*-
"""
The HTTP/2 codec facing clients, on the C{h2} library's state machine and
HPACK: each stream becomes an L{Exchange} whose channel is an L{H2Stream}
(L{twisted_rproxy.http.h2stream}), an object with the same contract as
L{HTTPChannel <twisted_rproxy.http.channel.HTTPChannel>}, so routing,
modules, proxying and logging run unchanged.  Flow control holds both ways: response bytes
go out only as the client's windows allow (a stream's producer is paused
while its bounded buffer is full), and request DATA is acknowledged only
as the stream's consumer takes it, so a slow backend throttles its client.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from hpack.exceptions import HPACKError
from hyperframe.frame import GoAwayFrame
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .channel import BodyTooLarge, ClientGone
from .dates import httpDate
from .exchange import SERVER_SOFTWARE, Exchange
from .h2headers import MalformedRequest, requestFromHeaders
from .h2stream import STREAM_BUFFER_LIMIT, H2Stream

#: The connection-level receive window: large, so a stream whose consumer
#: is slow (holding its own window) does not hold up uploads on others.
CONNECTION_WINDOW = 16 * 1024 * 1024

#: Response headers that mean nothing in HTTP/2 (RFC 9113 8.2.2).
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_SERVER_FULL = SERVER_SOFTWARE.encode("ascii")
_SERVER_SHORT = b"twisted_rproxy"


class _ServerConnection(H2Connection):
    """
    h2's connection, except that a client opening more streams than
    advertised gets that stream refused (RFC 9113 5.1.2 allows
    REFUSED_STREAM) rather than the whole connection closed: h2 refuses
    before decoding the header block, which would also leave HPACK out of
    step, so its count is lifted while a HEADERS frame is taken in and
    L{H2Channel} enforces the limit on the decoded request.  Trailers
    (a HEADERS frame on an open stream) leave the content-length check off
    as the first one set it.  A header block that does not decode is a
    COMPRESSION_ERROR, as RFC 9113 4.3 says.
    """

    _lifting = False

    @property
    def open_inbound_streams(self) -> int:  # type: ignore[override]
        """
        h2's count of open client streams; 0 while a HEADERS frame is read.
        """
        if self._lifting:
            return 0
        return H2Connection.open_inbound_streams.fget(self)  # type: ignore[attr-defined,no-any-return]

    def _receive_headers_frame(self, frame: Any) -> Any:
        self._lifting = True
        try:
            result = super()._receive_headers_frame(frame)
        except ProtocolError as e:
            if isinstance(e.__cause__, HPACKError):
                # RFC 9113 4.3: COMPRESSION_ERROR (h2 says PROTOCOL_ERROR).
                e.error_code = ErrorCodes.COMPRESSION_ERROR
            raise
        finally:
            self._lifting = False
        stream = self.streams.get(frame.stream_id)
        if stream is not None:
            # H2Channel checks the body against content-length as a stream
            # error; h2 would make a mismatch a connection error, and the
            # DATA of this same read arrives before the channel sees the
            # request.
            stream._expected_content_length = None
        return result


@implementer(IPushProducer)
class H2Channel(Protocol):
    """
    One client connection speaking HTTP/2.

    @ivar listener: the listener the connection arrived on.
    @ivar scheme: C{"http"} or C{"https"}.
    """

    log = Logger()
    scheme = "http"
    transport: Any
    _connections = 0

    def __init__(self, listener: Any, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.listener = listener
        self._streams: Dict[int, H2Stream] = {}
        self._requests = 0
        self.writePaused = False
        self.lost = False
        self._goneAway = False
        self._lastStreamId = 0
        self._timer: Any = None
        self._writeTimer: Any = None
        self.clientAddress: Any = None
        self.serverAddress: Any = None
        self.connectionNumber = 0
        self._conn: _ServerConnection = _ServerConnection(
            H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )

    # -- lifecycle -----------------------------------------------------

    def connectionMade(self) -> None:
        """
        Send our SETTINGS (limits from the default server) and register
        as the transport's producer.
        """
        from .channel import HTTPChannel

        HTTPChannel._connections += 1
        self.connectionNumber = HTTPChannel._connections
        self.clientAddress = self.transport.getPeer()
        self.serverAddress = self.transport.getHost()
        if self.listener.byLocalAddress is not None:
            self.listener = self.listener.forLocalAddress(self.serverAddress.host)
        conf = self.listener.defaultServer.conf
        self._maxStreams = conf.get("http2_max_concurrent_streams")
        number, size = conf.get("large_client_header_buffers")
        conn = self._conn
        conn.local_settings = type(conn.local_settings)(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: self._maxStreams,
                SettingCodes.INITIAL_WINDOW_SIZE: conf.get("http2_body_preread_size"),
                SettingCodes.MAX_HEADER_LIST_SIZE: number * size,
            },
        )
        self._maxHeaderList = number * size
        # h2 would refuse a larger head as a connection error; it is
        # answered 431 on its stream instead (as an HTTP/1.1 one is).
        conn.decoder.max_header_list_size = max(65536, 4 * self._maxHeaderList)
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.transport.registerProducer(self, True)
        self._send()
        self._setTimer(conf.get("client_header_timeout"))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        Every open stream's exchange learns its client has gone.
        """
        self.lost = True
        self._cancelTimer()
        if self._writeTimer is not None and self._writeTimer.active():
            self._writeTimer.cancel()
        self._writeTimer = None
        self._abandonStreams()

    def _abandonStreams(self) -> None:
        """
        Give up every open stream as its client gone: the connection is
        lost, or the client's GOAWAY closed h2's side, which then refuses
        to send anything more on any stream.
        """
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            self._streamGone(stream)

    @property
    def requestCount(self) -> int:
        """
        Streams opened so far (C{$connection_requests}).
        """
        return self._requests

    def isIdle(self) -> bool:
        """
        Whether a graceful shutdown may close this connection now: after
        GOAWAY went out and every stream it allowed to finish has.
        """
        return self._goneAway and not self._streams

    def goAway(self) -> None:
        """
        Graceful stop: send GOAWAY naming the last stream taken, so the
        client opens no more, and close once the open ones finish.

        h2 moves to a closed state on its own GOAWAY and would refuse to
        send on the streams left, so the frame is written here directly.
        """
        if self._goneAway or self.lost:
            return
        self._goneAway = True
        self._send()
        frame = GoAwayFrame(stream_id=0, last_stream_id=self._lastStreamId, error_code=0)
        self.transport.write(frame.serialize())
        if not self._streams:
            self.transport.loseConnection()

    # -- timers ------------------------------------------------------------

    def _setTimer(self, seconds: Optional[float]) -> None:
        self._cancelTimer()
        if seconds:
            self._timer = self._reactor.callLater(seconds, self._timedOut)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timedOut(self) -> None:
        """
        No stream for the idle time: say GOAWAY and close.
        """
        self._timer = None
        if self._streams or self.lost:
            return
        self._goneAway = True
        self._send()
        frame = GoAwayFrame(stream_id=0, last_stream_id=self._lastStreamId, error_code=0)
        self.transport.write(frame.serialize())
        self.transport.loseConnection()

    # -- reading ---------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Feed h2 and act on the events it finds.
        """
        try:
            events = self._conn.receive_data(data)
        except ProtocolError as e:
            # h2 has queued the GOAWAY naming the error.
            self.log.info(
                "client {peer} violated HTTP/2: {error}", peer=self._peerText(), error=e
            )
            self._send()
            self.transport.loseConnection()
            return
        event: Any
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                self._data(event)
            elif kind is RequestReceived:
                self._request(event)
            elif kind is StreamEnded:
                self._ended(event.stream_id)
            elif kind is WindowUpdated or kind is RemoteSettingsChanged:
                self._windowOpened(getattr(event, "stream_id", 0))
            elif kind is StreamReset:
                stream = self._streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.closed = True
                    self.acknowledge(stream)
                    self._streamGone(stream)
                    self._release(stream)
                    self._streamClosed()
            elif kind is TrailersReceived:
                pass  # request trailers are not passed to HTTP/1.1 upstreams
            elif kind is ConnectionTerminated:
                self._goneAway = True
                self._send()
                self.transport.loseConnection()
                self._abandonStreams()
                return
        self._send()

    def _request(self, event: RequestReceived) -> None:
        streamId = event.stream_id
        if self._goneAway or len(self._streams) >= self._maxStreams:
            self._conn.reset_stream(streamId, ErrorCodes.REFUSED_STREAM)
            return
        try:
            request = requestFromHeaders(event.headers or [])
        except MalformedRequest as e:
            self.log.info(
                "client {peer} sent a malformed HTTP/2 request on stream {id}: {why}",
                peer=self._peerText(),
                id=streamId,
                why=str(e),
            )
            self._conn.reset_stream(streamId, ErrorCodes.PROTOCOL_ERROR)
            return
        self._cancelTimer()
        self._requests += 1
        self._lastStreamId = max(self._lastStreamId, streamId)
        stream = H2Stream(self, streamId)
        stream.declaredLength = request.contentLength
        self._streams[streamId] = stream
        exchange = Exchange(stream, request.method, request.path, b"HTTP/2.0", request.headers)
        exchange.requestLength = request.size
        stream.exchange = exchange
        ended = event.stream_ended is not None
        exchange.hasBody = not ended
        if ended:
            stream.requestEnded = True
            if request.contentLength:
                self._malformedBody(stream, "content-length without a body")
                return
            exchange.bodyFinished()
        if request.listSize > self._maxHeaderList:
            self.log.info(
                "client {peer} sent too large a request head on stream {id}",
                peer=self._peerText(),
                id=streamId,
            )
            exchange.server = self.listener.defaultServer
            exchange.sendLocalReply(431)
            return
        if request.method == b"CONNECT":
            exchange.server = self.listener.defaultServer
            exchange.sendLocalReply(405)
            return
        exchange.dispatch()
        if not ended and not stream.closed and stream.bodyTimer is None:
            self.bodyTimer(stream, exchange._bodyConsumer is not None and not stream.bodyPaused)

    def _data(self, event: DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        size = event.flow_controlled_length
        if stream is None or stream.exchange is None or stream.closed:
            self._conn.acknowledge_received_data(size, event.stream_id)
            return
        exchange = stream.exchange
        data = event.data
        stream.received += len(data)
        if stream.declaredLength is not None and stream.received > stream.declaredLength:
            self._conn.acknowledge_received_data(size, event.stream_id)
            self._malformedBody(stream, "more DATA than content-length")
            return
        location = exchange.location
        maxBody = location.conf.get("client_max_body_size") if location is not None else 0
        if maxBody and stream.received > maxBody and not exchange.finished:
            self._conn.acknowledge_received_data(size, event.stream_id)
            exchange.bodyFailed(BodyTooLarge())
            if not exchange.headSent:
                exchange.sendLocalReply(413)
            else:
                exchange.abort()
            return
        if exchange.finished or exchange.aborted:
            self._conn.acknowledge_received_data(size, event.stream_id)
            return
        stream.unacked += size
        exchange.bodyReceived(data)
        if exchange._bodyConsumer is not None and not stream.bodyPaused:
            self.acknowledge(stream)
            self.bodyTimer(stream, True)

    def bodyTimer(self, stream: H2Stream, arm: bool) -> None:
        """
        C{client_body_timeout} while the stream waits for the client's
        DATA: (re)armed when DATA arrives or the window opens, stopped
        while the proxy itself holds the window shut or the body is done.
        """
        timer = stream.bodyTimer
        if not arm or stream.requestEnded or stream.closed or stream.exchange is None:
            if timer is not None and timer.active():
                timer.cancel()
            stream.bodyTimer = None
            return
        seconds = stream.exchange.conf.get("client_body_timeout")
        if not seconds:
            return
        if timer is not None and timer.active():
            timer.reset(seconds)
        else:
            stream.bodyTimer = self._reactor.callLater(seconds, self._bodyTimedOut, stream)

    def _bodyTimedOut(self, stream: H2Stream) -> None:
        stream.bodyTimer = None
        if stream.closed or stream.requestEnded:
            return
        self.log.info(
            "client timed out (client_body_timeout) from {peer} on stream {id}",
            peer=self._peerText(),
            id=stream.streamId,
        )
        exchange = stream.exchange
        if exchange is not None and not exchange.finished:
            exchange.status = exchange.status or 408
        self.resetStream(stream, ErrorCodes.CANCEL, status=408)

    def acknowledge(self, stream: H2Stream) -> None:
        """
        Open C{stream}'s receive window by the DATA its consumer took (or,
        for a closed stream, give the connection window back what the
        stream held).
        """
        size, stream.unacked = stream.unacked, 0
        if size and not self.lost:
            self._conn.acknowledge_received_data(size, stream.streamId)
            self._send()

    def _ended(self, streamId: int) -> None:
        stream = self._streams.get(streamId)
        if stream is None or stream.exchange is None:
            return
        stream.requestEnded = True
        self.bodyTimer(stream, False)
        exchange = stream.exchange
        if stream.declaredLength is not None and stream.received != stream.declaredLength:
            self._malformedBody(stream, "less DATA than content-length")
            return
        if not exchange.bodyComplete:
            exchange.bodyFinished()
        self._maybeDone(stream)

    def _malformedBody(self, stream: H2Stream, why: str) -> None:
        """
        The body contradicts the content-length: a malformed request,
        reset with PROTOCOL_ERROR (RFC 9113 8.1.1).
        """
        self.log.info(
            "client {peer} sent a malformed HTTP/2 request body on stream {id}: {why}",
            peer=self._peerText(),
            id=stream.streamId,
            why=why,
        )
        self.resetStream(stream, ErrorCodes.PROTOCOL_ERROR, status=400)

    # -- writing ---------------------------------------------------------

    def _send(self) -> None:
        data = self._conn.data_to_send()
        if data and not self.lost:
            self.transport.write(data)

    def sendHead(self, stream: H2Stream, exchange: Exchange, status: int, headers: list) -> None:
        """
        Frame the response head: lowercase names, no connection-specific
        fields, our Server and Date unless passed through.
        """
        if stream.closed:
            return
        if status < 200:
            # An interim or 101 response has no HTTP/2 form here.
            self.resetStream(stream, ErrorCodes.INTERNAL_ERROR)
            return
        out = [(b":status", b"%d" % status)]
        ownServer = ownDate = True
        for name, value in headers:
            lower = name.lower()
            if lower in _CONNECTION_SPECIFIC:
                continue
            if lower == b"server":
                ownServer = False
            elif lower == b"date":
                ownDate = False
            out.append((lower, value))
        if ownServer:
            tokens = exchange.conf.get("server_tokens")
            out.insert(1, (b"server", _SERVER_FULL if tokens else _SERVER_SHORT))
        if ownDate:
            out.insert(2 if ownServer else 1, (b"date", httpDate(self._reactor.seconds())))
        stream.noBody = exchange.method == b"HEAD" or status in (204, 304)
        stream.chunkSize = exchange.conf.get("http2_chunk_size")
        stream.sendTimeout = exchange.conf.get("send_timeout")
        stream.headSent = True
        exchange.bytesSent += sum(len(n) + len(v) + 4 for n, v in out)
        self._conn.send_headers(stream.streamId, out, end_stream=stream.noBody)
        if stream.noBody:
            stream.endSent = True
        self._send()

    def flush(self, stream: H2Stream) -> None:
        """
        Send what C{stream}'s window and the frame size allow; end the
        stream when its response is complete and sent.
        """
        if stream.closed or self.lost:
            return
        conn = self._conn
        streamId = stream.streamId
        buffer = stream.buffer
        before = stream.buffered
        try:
            while buffer:
                window = conn.local_flow_control_window(streamId)
                if window <= 0:
                    break
                size = min(window, conn.max_outbound_frame_size, stream.chunkSize)
                chunk = buffer[0]
                if len(chunk) > size:
                    piece = chunk[:size]
                    buffer[0] = chunk[size:]
                else:
                    piece = buffer.popleft()
                stream.buffered -= len(piece)
                conn.send_data(streamId, piece, end_stream=stream.ended and not buffer)
                if stream.ended and not buffer:
                    stream.endSent = True
            if stream.ended and not buffer and not stream.endSent:
                stream.endSent = True
                conn.end_stream(streamId)
        except ProtocolError:
            # The stream was closed under us (reset by the client).
            stream.closed = True
        self._send()
        self._sendTimer(stream, progressed=stream.buffered < before)
        if stream.producerPaused and stream.buffered <= STREAM_BUFFER_LIMIT and not self.writePaused:
            self._resumeProducer(stream)
        if stream.endSent:
            self._maybeDone(stream)

    def _sendTimer(self, stream: H2Stream, progressed: bool) -> None:
        """
        C{send_timeout} per stream, as nginx: a stream whose client keeps
        its window shut that long is reset.  Each DATA frame sent restarts
        it; an empty buffer stops it.
        """
        timer = stream.sendTimer
        if not stream.buffer or stream.closed:
            if timer is not None and timer.active():
                timer.cancel()
            stream.sendTimer = None
            return
        if timer is not None and timer.active():
            if progressed:
                timer.reset(stream.sendTimeout)
            return
        seconds = stream.sendTimeout
        if seconds:
            stream.sendTimer = self._reactor.callLater(seconds, self._sendTimedOut, stream)

    def _sendTimedOut(self, stream: H2Stream) -> None:
        stream.sendTimer = None
        if stream.closed or not stream.buffer:
            return
        self.log.info(
            "client timed out (send_timeout) while sending response to client {peer} "
            "on stream {id}",
            peer=self._peerText(),
            id=stream.streamId,
        )
        self.resetStream(stream, ErrorCodes.CANCEL)

    def _resumeProducer(self, stream: H2Stream) -> None:
        stream.producerPaused = False
        exchange = stream.exchange
        if exchange is not None and exchange.responseProducer is not None:
            exchange.responseProducer.resumeProducing()

    def _windowOpened(self, streamId: int) -> None:
        """
        A WINDOW_UPDATE (or a larger initial window): send what waited.
        """
        if streamId:
            stream = self._streams.get(streamId)
            if stream is not None and stream.buffer:
                self.flush(stream)
            return
        for stream in list(self._streams.values()):
            if stream.buffer or (stream.ended and not stream.endSent):
                self.flush(stream)

    def _maybeDone(self, stream: H2Stream) -> None:
        """
        Forget a stream whose response went out; a request body still
        coming is refused with RST_STREAM NO_ERROR (RFC 9113 8.1).
        """
        if not stream.endSent or stream.closed:
            return
        if not stream.requestEnded:
            stream.closed = True
            try:
                self._conn.reset_stream(stream.streamId, ErrorCodes.NO_ERROR)
            except ProtocolError:
                pass  # the client's END_STREAM is already in h2, not yet seen here
            self._send()
        stream.closed = True
        self.acknowledge(stream)
        self.bodyTimer(stream, False)
        if self._streams.pop(stream.streamId, None) is not None:
            self._release(stream)
            self._streamClosed()

    def resetStream(self, stream: H2Stream, code: int, status: int = 0) -> None:
        """
        Reset C{stream} and tell its exchange the client side is gone.
        """
        if not stream.closed and not self.lost:
            stream.closed = True
            try:
                self._conn.reset_stream(stream.streamId, code)
            except ProtocolError:
                pass
            self._send()
        stream.closed = True
        self.acknowledge(stream)
        if self._streams.pop(stream.streamId, None) is not None:
            self._streamGone(stream, status)
            self._release(stream)
            self._streamClosed()

    @staticmethod
    def _release(stream: H2Stream) -> None:
        """
        A forgotten stream lets go of its exchange, whose channel it is:
        without the cycle, CPython frees the exchange and its upstream
        request when their last reference goes, not at a later garbage
        collection.  Everything that reads C{stream.exchange} after this
        takes C{None} as "no exchange".
        """
        stream.exchange = None

    def _streamClosed(self) -> None:
        """
        A stream left: close when draining, else idle towards keepalive.
        """
        if self._streams:
            return
        if self._goneAway:
            self.transport.loseConnection()
        else:
            self._setTimer(self.listener.defaultServer.conf.get("keepalive_timeout"))

    def _streamGone(self, stream: H2Stream, status: int = 0) -> None:
        """
        The client side of C{stream} went away before its response ended.
        """
        stream.closed = True
        self._sendTimer(stream, False)
        self.bodyTimer(stream, False)
        exchange = stream.exchange
        if exchange is None or exchange.finished or exchange.aborted:
            return
        exchange.aborted = True
        if not exchange.bodyComplete:
            exchange.bodyFailed(ClientGone())
        exchange.clientClosed()
        if not exchange.headSent and not exchange.status:
            exchange.status = status or 499
        self.logExchange(exchange)

    def logExchange(self, exchange: Exchange) -> None:
        """
        Write the exchange to its location's access logs.
        """
        exchange.endTime = time.time()
        location = exchange.location or exchange._fallback()
        for sink in location.logSinks:
            try:
                sink.log(exchange)
            except Exception:
                self.log.failure("access log sink {sink!r} failed", sink=sink)

    def _peerText(self) -> str:
        peer = self.clientAddress
        return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"

    # -- IPushProducer: the socket tells us when it is full ---------------

    def pauseProducing(self) -> None:
        """
        The client reads too slowly: pause every stream's producer.
        """
        self.writePaused = True
        seconds = self.listener.defaultServer.conf.get("send_timeout")
        if seconds and self._writeTimer is None:
            self._writeTimer = self._reactor.callLater(seconds, self._writeTimedOut)
        for stream in self._streams.values():
            exchange = stream.exchange
            if exchange is not None and exchange.responseProducer is not None:
                if not stream.producerPaused:
                    stream.producerPaused = True
                    exchange.responseProducer.pauseProducing()

    def resumeProducing(self) -> None:
        """
        The socket drained: resume streams that have room.
        """
        self.writePaused = False
        if self._writeTimer is not None:
            if self._writeTimer.active():
                self._writeTimer.cancel()
            self._writeTimer = None
        for stream in list(self._streams.values()):
            if stream.producerPaused and stream.buffered <= STREAM_BUFFER_LIMIT:
                self._resumeProducer(stream)

    def stopProducing(self) -> None:
        """
        The connection is going away; L{connectionLost} cleans up.
        """

    def _writeTimedOut(self) -> None:
        """
        The socket stayed full for C{send_timeout}: drop the connection.
        """
        self._writeTimer = None
        if not self.writePaused or self.lost:
            return
        self.log.info(
            "client timed out (send_timeout) while sending response to client {peer}",
            peer=self._peerText(),
        )
        self.transport.abortConnection()


__all__ = ["H2Channel", "H2Stream", "STREAM_BUFFER_LIMIT"]
