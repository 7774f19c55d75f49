"""
Tests for L{twisted_rproxy.http.h2channel}, L{twisted_rproxy.http.h2headers}
and the http2 module's directives: an C{h2} client talks to an
L{H2Channel} over a L{StringTransport}, timeouts are driven by a
L{MemoryReactorClock}, and the content handlers are the fakes of
L{tests.unit.test_channel}, so each flow-control and error rule is seen
frame by frame.
"""

from __future__ import annotations

import gc
import platform
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.unit.test_channel import HOLD, SINK, BodyCollector, compiled, configText
from tests.unit.test_channel import _resetFakes  # noqa: F401 (autouse fixture)
from twisted_rproxy.config.errors import ConfigError
from twisted_rproxy.http.h2channel import STREAM_BUFFER_LIMIT, H2Channel
from twisted_rproxy.http.h2headers import MalformedRequest, requestFromHeaders
from twisted_rproxy.plugins import builtinModules
from twisted_rproxy.service import loadConfig

Header = Tuple[bytes, bytes]


@implementer(IPushProducer)
class FakeProducer:
    """
    A response producer that records whether it was paused.
    """

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0
        self.resumes = 0

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1

    def stopProducing(self) -> None:
        pass


class Client:
    """
    An h2 client wired to an L{H2Channel} through a L{StringTransport}.
    """

    def __init__(self, extra: str = "", autoAck: bool = True) -> None:
        self.clock = MemoryReactorClock()
        listener = compiled(configText(extra=extra)).listeners[0]
        self.channel = H2Channel(listener, self.clock)
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50123),
        )
        self.channel.makeConnection(self.transport)
        self.h2 = H2Connection(
            H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
            )
        )
        self.h2.initiate_connection()
        self.autoAck = autoAck
        self.headers: Dict[int, List[Header]] = {}
        self.bodies: Dict[int, bytearray] = {}
        self.ended: set = set()
        self.resets: Dict[int, int] = {}
        self.terminated: Optional[ConnectionTerminated] = None
        self.unacked: Dict[int, int] = {}
        self.pump()

    def pump(self) -> None:
        """
        Move bytes both ways until neither side has anything to say.
        """
        for _ in range(100):
            toServer = self.h2.data_to_send()
            if toServer:
                self.channel.dataReceived(toServer)
            toClient = self.transport.value()
            self.transport.clear()
            if toClient:
                self._receive(toClient)
            if not toServer and not toClient:
                return

    def _receive(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, ResponseReceived):
                self.headers[event.stream_id] = list(event.headers)
            elif isinstance(event, DataReceived):
                self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                if self.autoAck:
                    self.h2.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                else:
                    self.unacked[event.stream_id] = (
                        self.unacked.get(event.stream_id, 0) + event.flow_controlled_length
                    )
            elif isinstance(event, StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, StreamReset):
                self.resets[event.stream_id] = event.error_code
            elif isinstance(event, ConnectionTerminated):
                self.terminated = event
            elif isinstance(event, RemoteSettingsChanged):
                pass

    def request(
        self,
        path: str = "/",
        method: bytes = b"GET",
        authority: bytes = b"a.test",
        extra: Sequence[Header] = (),
        end: bool = True,
        raw: Optional[Sequence[Header]] = None,
    ) -> int:
        streamId = self.h2.get_next_available_stream_id()
        block = list(raw) if raw is not None else [
            (b":method", method), (b":scheme", b"http"),
            (b":authority", authority), (b":path", path.encode()),
        ] + list(extra)
        self.h2.send_headers(streamId, block, end_stream=end)
        self.pump()
        return streamId

    def send(self, streamId: int, data: bytes, end: bool = False) -> None:
        """
        Send DATA in frames of the allowed size.
        """
        size = self.h2.max_outbound_frame_size
        for start in range(0, len(data), size):
            self.h2.send_data(streamId, data[start:start + size])
        if end:
            self.h2.end_stream(streamId)
        self.pump()

    def status(self, streamId: int) -> int:
        return int(dict(self.headers[streamId])[b":status"])

    def ack(self, streamId: int) -> None:
        size = self.unacked.pop(streamId, 0)
        if size:
            self.h2.acknowledge_received_data(size, streamId)
        self.pump()


def testRequestRoutedByAuthority() -> None:
    """
    :authority picks the server and is $host; the response carries
    :status, server and date, and ends the stream.
    """
    client = Client()
    sid = client.request("/host?x=1", authority=b"A.Test:8080")
    assert client.status(sid) == 200
    names = [n for n, _v in client.headers[sid]]
    assert names[:3] == [b":status", b"server", b"date"]
    assert bytes(client.bodies[sid]) == b"a.test /host x=1\n"
    assert sid in client.ended
    assert SINK.exchanges[-1].version == b"HTTP/2.0"


def testOtherServerByAuthority() -> None:
    """
    The second server is reached by its name in :authority.
    """
    client = Client()
    sid = client.request("/only/", authority=b"b.test")
    assert bytes(client.bodies[sid]) == b"b\n"


def testHeadEndsOnHeaders() -> None:
    """
    HEAD: the HEADERS frame ends the stream, no DATA follows.
    """
    client = Client()
    sid = client.request("/", method=b"HEAD")
    assert client.status(sid) == 200 and sid in client.ended
    assert sid not in client.bodies


def testResponseProducerPausedByWindowAndResumed() -> None:
    """
    A response beyond the client's window fills the stream's bounded
    buffer, which pauses its producer; WINDOW_UPDATE resumes it.
    """
    client = Client(autoAck=False)
    sid = client.request("/hold")
    exchange = HOLD.exchanges[-1]
    producer = FakeProducer()
    exchange.startResponse(200, [])
    exchange.setResponseProducer(producer)
    exchange.write(b"x" * 100000)
    client.pump()
    assert len(client.bodies[sid]) == 65535  # the initial stream window
    assert not producer.paused
    exchange.write(b"y" * STREAM_BUFFER_LIMIT)
    client.pump()
    assert producer.paused
    assert len(client.bodies[sid]) == 65535
    client.ack(sid)
    # Another window went out, and the buffer fell under its limit.
    assert len(client.bodies[sid]) == 2 * 65535
    assert not producer.paused and producer.resumes == 1
    client.autoAck = True
    client.ack(sid)
    exchange.finish()
    client.pump()
    assert bytes(client.bodies[sid]) == b"x" * 100000 + b"y" * STREAM_BUFFER_LIMIT
    assert sid in client.ended


def testSocketBackpressurePausesEveryStream() -> None:
    """
    The transport pausing the channel pauses each stream's producer.
    """
    client = Client()
    client.request("/hold")
    client.request("/hold")
    producers = []
    for exchange in HOLD.exchanges:
        producer = FakeProducer()
        exchange.startResponse(200, [])
        exchange.setResponseProducer(producer)
        producers.append(producer)
    client.channel.pauseProducing()
    assert all(p.paused for p in producers)
    client.channel.resumeProducing()
    assert not any(p.paused for p in producers)


def testRequestBodyAcknowledgedOnlyAsConsumed() -> None:
    """
    DATA with no consumer yet, or a paused one, is not acknowledged, so
    the client's window stays shut; reading it opens the window.  (h2
    sends WINDOW_UPDATE once half a window was taken, so pieces here are
    larger than that.)
    """
    client = Client()
    window = client.h2.remote_settings.initial_window_size
    assert window == 65536  # http2_body_preread_size's default
    sid = client.request("/hold", method=b"POST", end=False)
    exchange = HOLD.exchanges[-1]
    client.send(sid, b"a" * 40000)
    assert client.h2.local_flow_control_window(sid) == window - 40000
    collector = BodyCollector()
    exchange.readBody(collector)
    client.pump()
    assert b"".join(collector.data) == b"a" * 40000
    assert client.h2.local_flow_control_window(sid) == window
    exchange.pauseBody()
    client.send(sid, b"b" * 40000)
    assert client.h2.local_flow_control_window(sid) == window - 40000
    exchange.resumeBody()
    client.pump()
    assert client.h2.local_flow_control_window(sid) == window
    client.h2.end_stream(sid)
    client.pump()
    assert collector.finished and len(b"".join(collector.data)) == 80000


MALFORMED: List[Tuple[str, List[Header]]] = [
    ("uppercase", [(b"X-A", b"1")]),
    ("connection", [(b"connection", b"close")]),
    ("keep-alive", [(b"keep-alive", b"1")]),
    ("upgrade", [(b"upgrade", b"websocket")]),
    ("te", [(b"te", b"gzip")]),
    ("bad-content-length", [(b"content-length", b"1x")]),
    ("conflicting-content-length", [(b"content-length", b"1"), (b"content-length", b"2")]),
    ("value-with-nul", [(b"x-a", b"a\x00b")]),
    ("value-leading-space", [(b"x-a", b" a")]),
    ("empty-name", [(b"", b"a")]),
]
_BASE = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]


@pytest.mark.parametrize("fields", [pytest.param(f, id=i) for i, f in MALFORMED])
def testMalformedFields(fields: List[Header]) -> None:
    """
    Each RFC 9113 8.2 rule refuses the head.
    """
    with pytest.raises(MalformedRequest):
        requestFromHeaders(_BASE + fields)


@pytest.mark.parametrize("block", [
    pytest.param(_BASE[1:], id="no-method"),
    pytest.param(_BASE[:1] + _BASE[2:], id="no-scheme"),
    pytest.param(_BASE + [(b":path", b"/")], id="duplicate-path"),
    pytest.param([(b"x", b"1")] + _BASE, id="pseudo-after-regular"),
    pytest.param(_BASE + [(b":status", b"200")], id="response-pseudo"),
    pytest.param([(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")],
                 id="connect-with-path"),
    pytest.param([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"u@a"),
                  (b":path", b"/")], id="userinfo"),
    pytest.param(_BASE[:3] + [(b":path", b"http://a/")], id="absolute-path"),
    pytest.param(_BASE[:3] + [(b":path", b"*")], id="asterisk-not-options"),
])
def testMalformedPseudoHeaders(block: List[Header]) -> None:
    """
    Pseudo-header rules (RFC 9113 8.3.1) refuse the head.
    """
    with pytest.raises(MalformedRequest):
        requestFromHeaders(block)


def testAuthorityReplacesHostAndCookiesJoin() -> None:
    """
    Host comes first, from :authority; te: trailers is allowed; cookie
    crumbs are joined.
    """
    request = requestFromHeaders(_BASE + [
        (b"host", b"other"), (b"te", b"trailers"), (b"cookie", b"a=1"),
        (b"content-length", b"3"), (b"cookie", b"b=2"),
    ])
    assert request.headers[0] == (b"host", b"a")
    assert (b"cookie", b"a=1; b=2") in request.headers
    assert request.contentLength == 3
    assert not any(n == b"host" and v == b"other" for n, v in request.headers)


def testMalformedStreamResetConnectionLives() -> None:
    """
    A malformed head resets its stream with PROTOCOL_ERROR only.
    """
    client = Client()
    bad = client.request(raw=_BASE + [(b"connection", b"close")])
    assert client.resets[bad] == ErrorCodes.PROTOCOL_ERROR
    good = client.request("/")
    assert client.status(good) == 200
    assert client.terminated is None


def testContentLengthMismatchResets() -> None:
    """
    More DATA than content-length: RST_STREAM PROTOCOL_ERROR, logged 400.
    """
    client = Client()
    sid = client.request("/hold", method=b"POST", end=False,
                         extra=[(b"content-length", b"3")])
    client.h2.send_data(sid, b"12345", end_stream=True)
    client.pump()
    assert client.resets[sid] == ErrorCodes.PROTOCOL_ERROR
    assert SINK.entries[-1][0] == 400


def testClientResetAbortsExchange() -> None:
    """
    The client's RST_STREAM abandons the upstream work and logs 499.
    """
    client = Client()
    sid = client.request("/hold")
    exchange = HOLD.exchanges[-1]
    closed: List[bool] = []
    exchange.notifyClientClosed(lambda: closed.append(True))
    client.h2.reset_stream(sid, ErrorCodes.CANCEL)
    client.pump()
    assert closed == [True] and exchange.aborted
    assert SINK.entries[-1] == (499, b"/hold")


def testConnectionLostAbortsEveryStream() -> None:
    """
    Losing the connection aborts each open exchange.
    """
    client = Client()
    client.request("/hold")
    client.request("/hold")
    client.channel.connectionLost(Failure(ConnectionDone()))
    assert all(e.aborted for e in HOLD.exchanges)
    assert [s for s, _u in SINK.entries] == [499, 499]


def testClientGoAwayAbortsOpenStreams() -> None:
    """
    After the client's GOAWAY, h2 will send nothing more, so the open
    streams are given up as on a lost connection: each exchange learns its
    client is gone (the proxy then drops its upstream request) and logs
    499, and a response head that still reaches a stream is dropped, not
    an h2 ProtocolError raised out of the backend's read.
    """
    client = Client()
    client.request("/hold")
    client.request("/hold")
    closed: List[bool] = []
    for exchange in HOLD.exchanges:
        exchange.notifyClientClosed(lambda: closed.append(True))
    client.h2.close_connection()
    client.pump()
    assert client.transport.disconnecting
    assert closed == [True, True] and all(e.aborted for e in HOLD.exchanges)
    assert [s for s, _u in SINK.entries] == [499, 499]
    late = HOLD.exchanges[0]
    late.channel.sendHead(late, 200, b"OK", [])
    assert client.transport.value() == b""


def testUpstreamAbortResetsOnlyThatStream() -> None:
    """
    An exchange that cannot complete resets its stream, not the connection.
    """
    client = Client()
    sid = client.request("/hold")
    exchange = HOLD.exchanges[-1]
    exchange.startResponse(200, [])
    exchange.abort()
    client.pump()
    assert client.resets[sid] == ErrorCodes.INTERNAL_ERROR
    assert not client.transport.disconnecting
    assert client.status(client.request("/")) == 200


def testMaxConcurrentStreams() -> None:
    """
    Streams beyond http2_max_concurrent_streams are refused, not the
    connection; the limit is advertised.
    """
    client = Client(extra="http2_max_concurrent_streams 1;")
    assert client.h2.remote_settings.max_concurrent_streams == 1
    first = client.h2.get_next_available_stream_id()
    client.h2.send_headers(first, _BASE[:2] + [(b":authority", b"a.test"), (b":path", b"/hold")],
                           end_stream=True)
    # The client would refuse itself; go past its check as a rogue one.
    client.h2.remote_settings._settings[3] = __import__("collections").deque([10])
    second = client.request("/")
    assert client.resets[second] == ErrorCodes.REFUSED_STREAM
    assert client.terminated is None
    HOLD.exchanges[-1].sendLocalReply(204)
    client.pump()
    assert client.status(first) == 204


def testGoAwayLetsOpenStreamFinish() -> None:
    """
    goAway() sends GOAWAY naming the last stream; that stream completes,
    a newer one is refused, then the connection closes.
    """
    client = Client()
    sid = client.request("/hold")
    client.channel.goAway()
    client.pump()
    assert client.terminated is not None
    assert client.terminated.error_code == 0 and client.terminated.last_stream_id == sid
    assert not client.transport.disconnecting
    assert not client.channel.isIdle()
    exchange = HOLD.exchanges[-1]
    exchange.sendLocalReply(200, b"done")
    assert client.transport.disconnecting
    assert client.channel.isIdle()


def testIdleTimeoutSendsGoAway() -> None:
    """
    keepalive_timeout after the last stream: GOAWAY, then close.
    """
    client = Client()
    client.request("/")
    client.clock.advance(29)
    assert not client.transport.disconnecting
    client.clock.advance(2)
    client.pump()
    assert client.terminated is not None and client.transport.disconnecting


def testBodyOverClientMaxBodySize() -> None:
    """
    More body than client_max_body_size: 413.
    """
    client = Client()
    sid = client.request("/small", method=b"POST", end=False)
    client.h2.send_data(sid, b"x" * 11, end_stream=True)
    client.pump()
    assert client.status(sid) == 413


def testConnectAnswered405() -> None:
    """
    CONNECT (no tunnels over HTTP/2 here) is answered 405.
    """
    client = Client()
    sid = client.request(raw=[(b":method", b"CONNECT"), (b":authority", b"a.test:443")])
    assert client.status(sid) == 405


# -- directives -------------------------------------------------------------


def _listeners(server: str, http: str = "") -> List[Any]:
    return loadConfig(
        text=f"events {{}}\nhttp {{ access_log off;\n{http}\nserver {{\n{server}\n}}\n}}\n",
        modules=builtinModules(),
        reactor=MemoryReactorClock(),
    ).listeners


def testListenFlagAndHttp2On() -> None:
    """
    C{listen ... http2} or C{http2 on} in the server (or http) offer
    HTTP/2 on the listener; neither leaves it off.
    """
    assert _listeners("listen 127.0.0.1:8081 http2;")[0].http2
    assert _listeners("listen 127.0.0.1:8081; http2 on;")[0].http2
    assert _listeners("listen 127.0.0.1:8081;", "http2 on;")[0].http2
    assert not _listeners("listen 127.0.0.1:8081;")[0].http2


@pytest.mark.parametrize("directive, message", [
    ("http2 maybe;", 'invalid value "maybe"'),
    ("http2_max_concurrent_streams 0;", "must be between 1 and"),
    ("http2_chunk_size 0;", "must be between 1 and"),
    ("http2_body_preread_size 3g;", "must be between 0 and"),
])
def testDirectiveErrorsCarryFileAndLine(directive: str, message: str) -> None:
    """
    Bad values are config errors at the directive's line.
    """
    with pytest.raises(ConfigError) as caught:
        _listeners(f"listen 127.0.0.1:8081;\n{directive}")
    text = str(caught.value)
    assert message in text
    assert "<string>:6" in text, text


def testSendTimeoutResetsStalledStream() -> None:
    """
    A stream whose client keeps its window shut for send_timeout is reset
    (CANCEL); the connection and its other streams go on.
    """
    client = Client(extra="send_timeout 5s;", autoAck=False)
    sid = client.request("/hold")
    exchange = HOLD.exchanges[-1]
    exchange.startResponse(200, [])
    exchange.write(b"x" * 70000)
    client.pump()
    assert len(client.bodies[sid]) == 65535
    client.clock.advance(4)
    assert sid not in client.resets
    client.clock.advance(2)
    client.pump()
    assert client.resets[sid] == ErrorCodes.CANCEL
    assert not client.transport.disconnecting
    client.autoAck = True
    assert client.status(client.request("/")) == 200


def testSendTimeoutRestartsOnProgress() -> None:
    """
    Each window the client opens restarts the stream's send_timeout.
    """
    client = Client(extra="send_timeout 5s;", autoAck=False)
    sid = client.request("/hold")
    exchange = HOLD.exchanges[-1]
    exchange.startResponse(200, [])
    exchange.write(b"x" * 200000)
    client.pump()
    for _ in range(2):
        client.clock.advance(4)
        client.ack(sid)
    assert sid not in client.resets
    client.clock.advance(6)
    client.pump()
    assert client.resets[sid] == ErrorCodes.CANCEL


def testSocketSendTimeoutAbortsConnection() -> None:
    """
    A socket that stays full for send_timeout drops the connection.
    """
    client = Client(extra="send_timeout 5s;")
    client.channel.pauseProducing()
    client.clock.advance(3)
    client.channel.resumeProducing()
    client.clock.advance(3)
    assert not client.transport.disconnecting
    client.channel.pauseProducing()
    client.clock.advance(6)
    assert client.transport.disconnecting


def testALPNFollowsTheListener(tmp_path: Any) -> None:
    """
    The ALPN callback picks h2 only where the connection's listener has
    HTTP/2 on, else http/1.1 (or http/1.0, http/0.9, as nginx); with
    nothing in common the handshake is refused (h2 alone is nothing in
    common where HTTP/2 is off, as with nginx).
    """
    from tests.integration.certs import CertificateAuthority
    from twisted_rproxy.tls import NoApplicationProtocol, alpnSelectCallback

    cert, key = CertificateAuthority(tmp_path).issue(["a.test"])
    config = loadConfig(
        text=f"""
events {{}}
http {{
    access_log off;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    server {{ listen 127.0.0.1:8443 ssl http2; }}
    server {{ listen 127.0.0.1:8444 ssl; }}
}}
""",
        modules=builtinModules(),
        reactor=MemoryReactorClock(),
    )
    byPort = {listener.address.port: listener for listener in config.listeners}
    offered = [b"h2", b"http/1.1"]
    withH2 = byPort[8443].tls.serverConnectionForTLS(None)
    without = byPort[8444].tls.serverConnectionForTLS(None)
    assert alpnSelectCallback(withH2, offered) == b"h2"
    assert alpnSelectCallback(without, offered) == b"http/1.1"
    assert alpnSelectCallback(withH2, [b"http/1.1"]) == b"http/1.1"
    assert alpnSelectCallback(withH2, [b"spdy/3", b"http/1.0"]) == b"http/1.0"
    assert alpnSelectCallback(without, [b"http/0.9"]) == b"http/0.9"
    with pytest.raises(NoApplicationProtocol):
        alpnSelectCallback(without, [b"h2"])
    with pytest.raises(NoApplicationProtocol):
        alpnSelectCallback(withH2, [b"spdy/3"])


def testHeadOverHeaderListLimitIs431() -> None:
    """
    A head larger than large_client_header_buffers allows (advertised as
    SETTINGS_MAX_HEADER_LIST_SIZE) is answered 431 on its stream.
    """
    client = Client()
    # configText's server: large_client_header_buffers 2 1k.
    assert client.h2.remote_settings.max_header_list_size == 2048
    big = client.request("/", extra=[(b"x-big", b"b" * 2100)])
    assert client.status(big) == 431
    assert client.status(client.request("/")) == 200


def testClientBodyTimeout() -> None:
    """
    A stream whose client sends no DATA for client_body_timeout (while its
    window is open) is reset and logged 408; DATA restarts the timer, and
    a consumer holding the window shut stops it.
    """
    client = Client()
    sid = client.request("/hold", method=b"POST", end=False)
    exchange = HOLD.exchanges[-1]
    collector = BodyCollector()
    exchange.readBody(collector)
    client.pump()
    client.clock.advance(15)
    client.send(sid, b"a" * 10)
    client.clock.advance(15)
    assert sid not in client.resets  # 30 s in all, but DATA came at 15
    exchange.pauseBody()
    client.clock.advance(60)
    assert sid not in client.resets  # the proxy held the window
    exchange.resumeBody()
    client.clock.advance(21)
    client.pump()
    assert client.resets[sid] == ErrorCodes.CANCEL
    assert SINK.entries[-1] == (408, b"/hold")
    assert isinstance(collector.failure, Exception)


def testBadHPACKIsConnectionError() -> None:
    """
    A header block that does not decode is a connection error: GOAWAY
    COMPRESSION_ERROR, and the connection closes.
    """
    from hyperframe.frame import HeadersFrame

    client = Client()
    frame = HeadersFrame(1, data=b"\xff\xff\xff\xff\xff", flags=["END_HEADERS", "END_STREAM"])
    client.channel.dataReceived(frame.serialize())
    client.pump()
    assert client.terminated is not None
    assert client.terminated.error_code == ErrorCodes.COMPRESSION_ERROR
    assert client.transport.disconnecting


def testStreamProvidesTheExchangeChannelContract() -> None:
    """
    H2Stream provides IExchangeChannel, and HTTPChannel has every part of
    it too, so the interface is the contract the HTTP/1.1 codec already
    keeps.
    """
    from zope.interface.verify import verifyObject

    from twisted_rproxy.http.channel import HTTPChannel
    from twisted_rproxy.interfaces import IExchangeChannel

    client = Client()
    client.request("/hold")
    verifyObject(IExchangeChannel, HOLD.exchanges[-1].channel)
    listener = compiled(configText()).listeners[0]
    channel = HTTPChannel(listener, client.clock)
    channel.makeConnection(StringTransport())
    verifyObject(IExchangeChannel, channel, tentative=True)


@pytest.mark.skipif(platform.python_implementation() != "CPython",
                    reason="only CPython frees objects by reference counting")
def testFinishedStreamsLeaveNoCycle() -> None:
    """
    A stream answered, and one the client reset, let go of their
    exchanges (whose channel they are): CPython frees both at once, with
    no garbage for the collector.
    """
    wasEnabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        client = Client()
        answered = client.request("/host")
        assert client.status(answered) == 200 and answered in client.ended
        reset = client.request("/hold")
        client.h2.reset_stream(reset, ErrorCodes.CANCEL)
        client.pump()
        assert HOLD.exchanges[-1].aborted
        del SINK.exchanges[:], SINK.entries[:], HOLD.exchanges[:]
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if wasEnabled:
            gc.enable()
    assert not garbage & {"H2Stream", "Exchange"}, garbage
