"""
Tests for L{twisted_rproxy.http.wsrelay} and C{proxy_websocket_relay}: the
proxy on a memory reactor, the client and backend played with hand-built
WebSocket frames (RFC 6455 section 5), so the relay is checked against the
wire format rather than against Autobahn itself.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any, List, Optional, Tuple

from twisted.internet.testing import StringTransport
from twisted.logger import Logger, formatEvent
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_rproxy.config.registry import LOCATION, spec
from twisted_rproxy.config.slots import flagSlot
from twisted_rproxy.http.wsrelay import (
    DROP,
    PROXY_DEFLATE_OFFER,
    CloseWith,
    WebSocketRelay,
    WebSocketRelayHandler,
)
from twisted_rproxy.interfaces import IUpgradedPair, IUpgradeHandler, IWebSocketMessageFilter
from twisted_rproxy.module import ProxyModule
from twisted_rproxy.modules.websocket import addMessageFilter

from .test_proxy_request import BACKEND, Backend, ProxyTestCase

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10

Frame = Tuple[bool, int, bytes]


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False) -> bytes:
    """
    Encode one frame.

    @param masked: mask it, as a client must.
    """
    head = bytes([(0x80 if fin else 0) | opcode])
    maskBit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([maskBit | n])
    elif n < 65536:
        head += bytes([maskBit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([maskBit | 127]) + struct.pack("!Q", n)
    if masked:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def closePayload(code: int, reason: bytes = b"") -> bytes:
    """
    The payload of a close frame.
    """
    return struct.pack("!H", code) + reason


def frames(data: bytes) -> List[Frame]:
    """
    Decode every whole frame in C{data} into C{(fin, opcode, payload)}.
    """
    found = []
    while len(data) >= 2:
        fin, opcode = bool(data[0] & 0x80), data[0] & 0x0F
        masked, n = bool(data[1] & 0x80), data[1] & 0x7F
        offset = 2
        if n == 126:
            (n,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif n == 127:
            (n,) = struct.unpack("!Q", data[2:10])
            offset = 10
        key = b""
        if masked:
            key, offset = data[offset:offset + 4], offset + 4
        payload = data[offset:offset + n]
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        found.append((fin, opcode, payload))
        data = data[offset + n:]
    return found


class RelayTests(ProxyTestCase):
    """
    With C{proxy_websocket_relay on}, a WebSocket upgrade is relayed
    message by message.
    """

    CONFIG = f"""location / {{
        proxy_websocket_relay on;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_pass http://{BACKEND};
    }}"""
    MAP = """map $http_upgrade $connection_upgrade { default upgrade; '' close; }"""
    SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n")

    def open(self, extra: bytes = b"", config: Optional[str] = None
             ) -> Tuple[object, StringTransport, Backend]:
        """
        Open a relayed WebSocket: the client's handshake, the backend's 101
        (with C{extra} header lines).

        @return: the client channel, its transport, the backend.
        """
        self.makeProxy(config or self.CONFIG, self.MAP)
        channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   b"Sec-WebSocket-Version: 13\r\n")
        backend = self.backend()
        backend.respond(self.SWITCH + extra + b"\r\n")
        head, _, rest = client.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "))
        self.assertEqual(rest, b"")
        client.clear()
        backend.transport.clear()
        return channel, client, backend

    def pair(self, channel: object) -> WebSocketRelay:
        """
        The relay the proxy made for C{channel}.
        """
        return channel._tunnel  # type: ignore[attr-defined,no-any-return]

    def test_interfaces(self) -> None:
        """
        The handler and its relay provide the upgrade interfaces, and the
        directive installs the handler on the location.
        """
        channel, _, _ = self.open()
        handler = channel._exchange.location.upgradeHandler  # type: ignore[attr-defined]
        self.assertIsInstance(handler, WebSocketRelayHandler)
        verifyObject(IUpgradeHandler, handler)
        verifyObject(IUpgradedPair, self.pair(channel))

    def test_offByDefault(self) -> None:
        """
        Without the directive the location keeps the byte tunnel.
        """
        channel, client, backend = self.open(config=self.CONFIG.replace(
            "proxy_websocket_relay on;", ""))
        self.assertIsNone(channel._exchange.location.upgradeHandler)  # type: ignore[attr-defined]
        backend.respond(b"raw")
        self.assertEqual(client.value(), b"raw")

    def test_textBothWays(self) -> None:
        """
        A text message from the client reaches the backend masked; one from
        the backend reaches the client unmasked.
        """
        channel, client, backend = self.open()
        channel.dataReceived(frame(TEXT, "h\u00e9llo".encode(), masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, TEXT, "h\u00e9llo".encode())])
        self.assertTrue(backend.received[1] & 0x80)
        backend.respond(frame(TEXT, b"back"))
        self.assertEqual(frames(client.value()), [(True, TEXT, b"back")])
        self.assertFalse(client.value()[1] & 0x80)

    def test_binaryBothWays(self) -> None:
        """
        Binary messages, large ones included, cross unchanged.
        """
        channel, client, backend = self.open()
        big = os.urandom(70000)
        channel.dataReceived(frame(BINARY, big, masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, BINARY, big)])
        backend.respond(frame(BINARY, b"\x00\xff"))
        self.assertEqual(frames(client.value()), [(True, BINARY, b"\x00\xff")])

    def test_hotPathSkipsAutobahnEvents(self) -> None:
        """
        A relayed message does not go through Autobahn's C{message} event
        (a Deferred per message) and is written straight to the socket,
        counted in the side's traffic stats; a frame written while
        Autobahn has sends queued goes behind them, in order.
        """
        channel, client, backend = self.open()
        relay = self.pair(channel)
        fired: list = []
        relay.clientSide.on("message", lambda *a, **k: fired.append(a))
        channel.dataReceived(frame(BINARY, b"one", masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, BINARY, b"one")])
        self.assertEqual(fired, [])
        self.assertEqual(relay.backendSide.trafficStats.outgoingOctetsWireLevel,
                         len(backend.received))
        side = relay.clientSide
        side.send_queue.append((b"queued", False))
        side.triggered = True  # as while Autobahn's queue is being sent
        backend.respond(frame(TEXT, b"after"))
        self.assertEqual(client.value(), b"")
        queued = list(side.send_queue)
        side.send_queue.clear()
        self.assertEqual(queued[0], (b"queued", False))
        self.assertEqual([frames(data) for data, _ in queued[1:]], [[(True, TEXT, b"after")]])

    def test_splitReads(self) -> None:
        """
        A frame arriving a byte at a time is relayed once it is whole.
        """
        channel, _, backend = self.open()
        for byte in frame(TEXT, b"slow", masked=True):
            channel.dataReceived(bytes([byte]))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, TEXT, b"slow")])

    def test_fragmentedMessageArrivesWhole(self) -> None:
        """
        A message sent in three fragments reaches the other side as one
        message.
        """
        channel, client, backend = self.open()
        channel.dataReceived(  # type: ignore[attr-defined]
            frame(TEXT, b"one ", fin=False, masked=True)
            + frame(CONTINUATION, b"two ", fin=False, masked=True))
        self.assertEqual(backend.received, b"")
        channel.dataReceived(frame(CONTINUATION, b"three", masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, TEXT, b"one two three")])
        backend.respond(frame(BINARY, b"a", fin=False) + frame(CONTINUATION, b"b"))
        self.assertEqual(frames(client.value()), [(True, BINARY, b"ab")])

    def test_pingAnsweredPerSide(self) -> None:
        """
        Each side's ping is answered by the proxy on that side.
        """
        channel, client, backend = self.open()
        channel.dataReceived(frame(PING, b"c", masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(client.value()), [(True, PONG, b"c")])
        backend.respond(frame(PING, b"b"))
        self.assertEqual(frames(backend.received), [(True, PONG, b"b")])

    def test_clientCloseForwarded(self) -> None:
        """
        The client's close code and reason reach the backend, and the
        client's reply is the backend's own reply, code and reason.
        """
        channel, client, backend = self.open()
        channel.dataReceived(frame(CLOSE, closePayload(4000, b"bye"), masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, CLOSE, closePayload(4000, b"bye"))])
        self.assertEqual(client.value(), b"")
        backend.respond(frame(CLOSE, closePayload(1000, b"ok then")))
        self.assertEqual(frames(client.value()), [(True, CLOSE, closePayload(1000, b"ok then"))])
        self.assertTrue(client.disconnecting)
        self.assertFalse(backend.closed)
        backend.close()
        self.assertTrue(self.pair(channel).closed)

    def test_clientCloseWithoutReply(self) -> None:
        """
        A backend that goes away instead of answering the forwarded close
        gets the client a reply echoing its own close.
        """
        channel, client, backend = self.open()
        channel.dataReceived(frame(CLOSE, closePayload(4000, b"bye"), masked=True))  # type: ignore[attr-defined]
        backend.close()
        self.assertEqual(frames(client.value()), [(True, CLOSE, closePayload(4000, b"bye"))])
        self.assertTrue(client.disconnecting)

    def test_closeWithoutCode(self) -> None:
        """
        A close frame without a code is forwarded without one.
        """
        channel, client, backend = self.open()
        channel.dataReceived(frame(CLOSE, b"", masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, CLOSE, b"")])
        backend.respond(frame(CLOSE, b""))
        self.assertEqual(frames(client.value()), [(True, CLOSE, b"")])

    def test_backendCloseForwarded(self) -> None:
        """
        The backend's close code and reason reach the client (1001 and other
        codes an application may not send itself included), and the
        client's reply goes back to the backend.
        """
        channel, client, backend = self.open()
        backend.respond(frame(CLOSE, closePayload(1001, b"server says")))
        self.assertEqual(frames(client.value()),
                         [(True, CLOSE, closePayload(1001, b"server says"))])
        self.assertEqual(backend.received, b"")
        channel.dataReceived(frame(CLOSE, closePayload(4001, b"fine"), masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, CLOSE, closePayload(4001, b"fine"))])
        self.assertTrue(client.disconnecting or client.disconnected)
        backend.close()
        self.assertTrue(self.pair(channel).closed)

    def test_messagesBeforeReply(self) -> None:
        """
        Messages the backend sends after the client's close and before its
        reply still reach the client.
        """
        channel, client, backend = self.open()
        channel.dataReceived(frame(CLOSE, closePayload(1000), masked=True))  # type: ignore[attr-defined]
        backend.respond(frame(TEXT, b"last words") + frame(CLOSE, closePayload(1000)))
        self.assertEqual(frames(client.value()),
                         [(True, TEXT, b"last words"), (True, CLOSE, closePayload(1000))])

    def test_backendLostIs1011(self) -> None:
        """
        A backend that drops the connection without a close frame gets the
        client a 1011 close, and is logged.
        """
        events: List[dict] = []
        self.patch(WebSocketRelay, "log", Logger(observer=events.append))
        channel, client, backend = self.open()
        backend.close(reset=True)
        self.assertEqual([formatEvent(e) for e in events],
                         ["upstream closed the WebSocket without a close frame,"
                          f" upstream: {BACKEND}"])
        [(fin, opcode, payload)] = frames(client.value())
        self.assertEqual((fin, opcode), (True, CLOSE))
        self.assertEqual(payload[:2], struct.pack("!H", 1011))
        channel.dataReceived(frame(CLOSE, payload[:2], masked=True))  # type: ignore[attr-defined]
        self.assertTrue(client.disconnecting or client.disconnected)

    def test_clientLostClosesBackend(self) -> None:
        """
        A client that goes away without a close frame gets the backend a
        1001 close.
        """
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        channel, _, backend = self.open()
        channel.connectionLost(Failure(ConnectionLost()))  # type: ignore[attr-defined]
        [(_, opcode, payload)] = frames(backend.received)
        self.assertEqual((opcode, payload), (CLOSE, struct.pack("!H", 1001)))

    def test_subprotocolKept(self) -> None:
        """
        The backend's chosen subprotocol reaches the client in the 101.
        """
        self.makeProxy(self.CONFIG, self.MAP)
        channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                   b"Sec-WebSocket-Protocol: chat, superchat\r\n")
        backend = self.backend()
        self.assertIn(b"Sec-WebSocket-Protocol: chat, superchat", backend.received)
        backend.respond(self.SWITCH + b"Sec-WebSocket-Protocol: chat\r\n\r\n")
        self.assertIn(b"Sec-WebSocket-Protocol: chat\r\n", client.value())
        self.assertIsInstance(channel._tunnel, WebSocketRelay)  # type: ignore[attr-defined]
        self.assertEqual(channel._tunnel.clientSide.websocket_protocol_in_use, "chat")  # type: ignore[attr-defined]

    def test_extensionsUseByteTunnel(self) -> None:
        """
        A 101 that negotiated an extension is tunnelled byte for byte.
        """
        channel, client, backend = self.open(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        self.assertNotIsInstance(self.pair(channel), WebSocketRelay)
        backend.respond(b"\xc1\x01x")
        self.assertEqual(client.value(), b"\xc1\x01x")

    def test_otherUpgradeUsesByteTunnel(self) -> None:
        """
        An upgrade to another protocol is tunnelled byte for byte.
        """
        self.makeProxy(self.CONFIG, self.MAP)
        channel, client = self.get("/x", b"Upgrade: h2c\r\nConnection: Upgrade\r\n")
        backend = self.backend()
        backend.respond(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                        b"Connection: Upgrade\r\n\r\nraw")
        self.assertNotIsInstance(channel._tunnel, WebSocketRelay)  # type: ignore[attr-defined]
        self.assertTrue(client.value().endswith(b"\r\n\r\nraw"))

    def test_backendFullPausesClient(self) -> None:
        """
        The backend's socket filling up pauses reads from the client, and
        its draining resumes them.
        """
        channel, client, backend = self.open()
        producer = backend.transport.producer
        self.assertIsNotNone(producer)
        producer.pauseProducing()
        self.assertEqual(client.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(client.producerState, "producing")

    def test_clientFullPausesBackend(self) -> None:
        """
        The client's socket filling up pauses reads from the backend.
        """
        channel, client, backend = self.open()
        client.producer.pauseProducing()
        self.assertEqual(backend.transport.producerState, "paused")
        client.producer.resumeProducing()
        self.assertEqual(backend.transport.producerState, "producing")

    SEND_TIMEOUT = CONFIG.replace(
        "proxy_http_version", "proxy_read_timeout 1h; proxy_send_timeout 10s; proxy_http_version")

    def test_sendTimeout(self) -> None:
        """
        A backend whose socket stays full for C{proxy_send_timeout} is
        dropped (logged as nginx words it), and the client gets 1011; one
        that drains in time is kept.
        """
        from twisted_rproxy.http import tunnel

        events: List[dict] = []
        self.patch(tunnel, "log", Logger(observer=events.append))
        for relayed in (True, False):
            config = self.SEND_TIMEOUT if relayed else self.SEND_TIMEOUT.replace(
                "proxy_websocket_relay on;", "")
            channel, client, backend = self.open(config=config)
            producer = backend.transport.producer
            producer.pauseProducing()
            self.reactor.advance(9)
            producer.resumeProducing()
            self.reactor.advance(9)
            self.assertFalse(backend.closed)
            producer.pauseProducing()
            self.assertEqual(client.producerState, "paused")
            self.reactor.advance(10)
            self.assertTrue(backend.closed)
            backend.close(reset=True)
            if relayed:
                [(_, opcode, payload)] = frames(client.value())
                self.assertEqual((opcode, payload[:2]), (CLOSE, struct.pack("!H", 1011)))
            else:
                self.assertTrue(client.disconnecting or client.disconnected)
        self.assertEqual(
            [formatEvent(e) for e in events],
            ["upstream timed out (110: Connection timed out) while proxying upgraded connection"]
            * 2)

    def test_idleTimeout(self) -> None:
        """
        C{proxy_read_timeout} closes a relay idle both ways; messages in
        either direction restart it.
        """
        channel, client, backend = self.open(config=self.CONFIG.replace(
            "proxy_http_version", "proxy_read_timeout 60s; proxy_http_version"))
        self.reactor.advance(59)
        channel.dataReceived(frame(TEXT, b"a", masked=True))  # type: ignore[attr-defined]
        self.reactor.advance(59)
        backend.respond(frame(TEXT, b"b"))
        self.reactor.advance(59)
        self.assertFalse(client.disconnecting)
        self.assertFalse(backend.closed)
        self.reactor.advance(1)
        self.assertTrue(client.disconnecting or client.disconnected)
        self.assertTrue(backend.closed)

    def test_invalidTextClosed(self) -> None:
        """
        A client sending text that is not UTF-8 is closed with 1007; the
        backend is closed with 1001 once the client is gone.
        """
        channel, client, backend = self.open()
        channel.dataReceived(frame(TEXT, b"\xff\xfe", masked=True))  # type: ignore[attr-defined]
        [(_, opcode, payload)] = frames(client.value())
        self.assertEqual((opcode, payload[:2]), (CLOSE, struct.pack("!H", 1007)))
        # The backend hears at once, not after the client's handshake.
        [(_, opcode, payload)] = frames(backend.received)
        self.assertEqual((opcode, payload), (CLOSE, struct.pack("!H", 1001)))
        channel.dataReceived(frame(CLOSE, struct.pack("!H", 1007), masked=True))  # type: ignore[attr-defined]
        self.assertTrue(client.disconnecting or client.disconnected)
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        channel.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        self.assertEqual(len(frames(backend.received)), 1)

    LIMITED = CONFIG.replace("proxy_websocket_relay on;",
                             "proxy_websocket_relay on; proxy_websocket_max_message_size 1k;")

    def test_maxMessageSizeFromClient(self) -> None:
        """
        A client message over C{proxy_websocket_max_message_size} is
        refused as its first frame header arrives (nothing of it reaches
        the backend): both sides get a 1009 close, and it is logged.  A
        message of exactly the limit passes.
        """
        events: List[dict] = []
        self.patch(WebSocketRelay, "log", Logger(observer=events.append))
        channel, client, backend = self.open(config=self.LIMITED)
        channel.dataReceived(frame(BINARY, b"x" * 1024, masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, BINARY, b"x" * 1024)])
        backend.transport.clear()
        # Only the header of a 2000-byte frame: refused before its payload.
        channel.dataReceived(frame(BINARY, b"y" * 2000, masked=True)[:8])  # type: ignore[attr-defined]
        [(_, opcode, payload)] = frames(client.value())
        self.assertEqual((opcode, payload[:2]), (CLOSE, struct.pack("!H", 1009)))
        self.assertEqual(frames(backend.received),
                         [(True, CLOSE, closePayload(1009, b"message too big"))])
        self.assertEqual([formatEvent(e) for e in events],
                         ["WebSocket message over proxy_websocket_max_message_size"])

    def test_maxMessageSizeFragments(self) -> None:
        """
        The limit is on the whole message: fragments that are each small
        but together over it are refused.
        """
        channel, client, backend = self.open(config=self.LIMITED)
        channel.dataReceived(frame(TEXT, b"a" * 600, fin=False, masked=True)  # type: ignore[attr-defined]
                             + frame(CONTINUATION, b"b" * 600, masked=True))
        self.assertEqual([f[1] for f in frames(backend.received)], [CLOSE])
        [(_, opcode, payload)] = frames(client.value())
        self.assertEqual((opcode, payload[:2]), (CLOSE, struct.pack("!H", 1009)))

    def test_maxMessageSizeFromBackend(self) -> None:
        """
        A backend message over the limit closes the backend with 1009, and
        the client with 1009 and the reason.
        """
        channel, client, backend = self.open(config=self.LIMITED)
        backend.respond(frame(TEXT, b"z" * 1025))
        self.assertEqual(frames(client.value()),
                         [(True, CLOSE, closePayload(1009, b"message too big"))])
        [(_, opcode, payload)] = frames(backend.received)
        self.assertEqual((opcode, payload[:2]), (CLOSE, struct.pack("!H", 1009)))

    def test_maxMessageSizeDefaultUnlimited(self) -> None:
        """
        Without the directive a message of 2 MiB passes.
        """
        channel, _, backend = self.open()
        big = os.urandom(2 << 20)
        channel.dataReceived(frame(BINARY, big, masked=True))  # type: ignore[attr-defined]
        self.assertEqual(frames(backend.received), [(True, BINARY, big)])

    def test_maxMessageSizeBadArgument(self) -> None:
        """
        A size nginx would not parse is refused with its file and line.
        """
        from twisted_rproxy.config.errors import ConfigError

        with self.assertRaises(ConfigError) as caught:
            self.makeProxy(self.CONFIG.replace(
                "proxy_websocket_relay on;",
                "proxy_websocket_relay on;\nproxy_websocket_max_message_size lots;"), self.MAP)
        self.assertIn('"proxy_websocket_max_message_size"', str(caught.exception))
        self.assertRegex(str(caught.exception), r":\d+")

    def test_maxMessageSizeWithFilterModule(self) -> None:
        """
        A location whose relay a module's filter turned on still gets the
        location's size limit.
        """
        module = FilterModule()
        self.makeProxy(MessageFilterTests.CONFIG.replace(
            "x_ws_filter on;", "x_ws_filter on; proxy_websocket_max_message_size 10;"),
            self.MAP, extraModules=[module])
        channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
        backend = self.backend()
        backend.respond(self.SWITCH + b"\r\n")
        relay = self.pair(channel)
        self.assertIsInstance(relay, WebSocketRelay)
        self.assertEqual(relay.filters, (module.filter,))
        client.clear()
        backend.respond(frame(TEXT, b"z" * 11))
        self.assertEqual(frames(client.value()),
                         [(True, CLOSE, closePayload(1009, b"message too big"))])

    def test_goingAway(self) -> None:
        """
        A graceful stop's C{goingAway} (through the channel's
        C{upgradedPair}) closes the client with 1001 and the backend with
        1001; each end's reply then ends its connection.
        """
        channel, client, backend = self.open()
        pair = channel.upgradedPair  # type: ignore[attr-defined]
        self.assertIs(pair, self.pair(channel))
        pair.goingAway()
        self.assertEqual(frames(client.value()),
                         [(True, CLOSE, closePayload(1001, b"proxy shutting down"))])
        self.assertEqual(frames(backend.received), [(True, CLOSE, closePayload(1001))])
        channel.dataReceived(frame(CLOSE, closePayload(1001), masked=True))  # type: ignore[attr-defined]
        self.assertTrue(client.disconnecting or client.disconnected)
        backend.respond(frame(CLOSE, closePayload(1001)))
        backend.close()
        self.assertTrue(pair.closed)
        # Said again (every sweep of the stop asks), it sends nothing more.
        pair.goingAway()
        self.assertEqual(len(frames(client.value())), 1)

    def test_tunnelHasNoGoingAway(self) -> None:
        """
        The byte tunnel has no C{goingAway}: a graceful stop lets it run
        until it ends or the stop's deadline aborts it.
        """
        channel, _, _ = self.open(config=self.CONFIG.replace("proxy_websocket_relay on;", ""))
        self.assertIsNotNone(channel.upgradedPair)  # type: ignore[attr-defined]
        self.assertFalse(hasattr(channel.upgradedPair, "goingAway"))  # type: ignore[attr-defined]


def deflate(payload: bytes) -> bytes:
    """
    A message body as permessage-deflate sends it (RFC 7692 7.2.1: raw
    deflate, sync flush, the final 00 00 ff ff taken off).
    """
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def inflate(data: bytes) -> bytes:
    """
    The message body of a permessage-deflate payload.
    """
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


def compressedFrame(opcode: int, payload: bytes, masked: bool = False) -> bytes:
    """
    One frame with RSV1 set (a compressed message) carrying C{payload}
    deflated.
    """
    data = frame(opcode, deflate(payload), masked=masked)
    return bytes([data[0] | 0x40]) + data[1:]


def isCompressed(data: bytes) -> bool:
    """
    Whether the first frame in C{data} has RSV1 set.
    """
    return bool(data[0] & 0x40)


class DeflateTests(ProxyTestCase):
    """
    permessage-deflate is negotiated with the client and with the backend
    apart: each side compresses or not as it agreed with the proxy.
    """

    OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"

    def open(self, deflateOn: bool, clientOffers: bool, backendAccepts: bool
             ) -> Tuple[Any, StringTransport, Backend, bytes, bytes]:
        """
        A relayed handshake.

        @return: the channel, its transport, the backend, the request the
            backend got and the 101 the client got.
        """
        config = RelayTests.CONFIG
        if deflateOn:
            config = config.replace("proxy_websocket_relay on;",
                                    "proxy_websocket_relay on; proxy_websocket_deflate on;")
        self.makeProxy(config, RelayTests.MAP)
        channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                   + (self.OFFER if clientOffers else b""))
        backend = self.backend()
        request = backend.received
        backend.transport.clear()
        backend.respond(RelayTests.SWITCH
                        + (b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
                           if backendAccepts else b"") + b"\r\n")
        head = client.value()
        client.clear()
        return channel, client, backend, request, head

    def test_offByDefault(self) -> None:
        """
        Without C{proxy_websocket_deflate} the client's offer does not reach
        the backend and no extension is answered: plain frames both ways
        through the relay.
        """
        channel, client, backend, request, head = self.open(False, True, False)
        self.assertNotIn(b"sec-websocket-extensions", request.lower())
        self.assertNotIn(b"sec-websocket-extensions", head.lower())
        self.assertIsInstance(channel.upgradedPair, WebSocketRelay)
        channel.dataReceived(frame(TEXT, b"plain", masked=True))
        self.assertEqual(frames(backend.received), [(True, TEXT, b"plain")])

    def test_bothSides(self) -> None:
        """
        The client's offer is answered by the proxy, the backend gets the
        proxy's own offer; a compressed message from the client reaches
        the backend compressed again (by the proxy's own zlib stream) and
        back.
        """
        channel, client, backend, request, head = self.open(True, True, True)
        self.assertIn(b"Sec-WebSocket-Extensions: " + PROXY_DEFLATE_OFFER + b"\r\n", request)
        self.assertEqual(PROXY_DEFLATE_OFFER, b"permessage-deflate; client_no_context_takeover;"
                         b" client_max_window_bits")
        self.assertEqual(request.lower().count(b"sec-websocket-extensions"), 1)
        self.assertIn(b"Sec-WebSocket-Extensions: permessage-deflate", head)
        channel.dataReceived(compressedFrame(TEXT, b"hello hello hello", masked=True))
        data = backend.received
        self.assertTrue(isCompressed(data))
        [(_, opcode, payload)] = frames(data)
        self.assertEqual((opcode, inflate(payload)), (TEXT, b"hello hello hello"))
        backend.respond(compressedFrame(BINARY, b"\x00" * 1000))
        self.assertTrue(isCompressed(client.value()))
        [(_, opcode, payload)] = frames(client.value())
        self.assertEqual((opcode, inflate(payload)), (BINARY, b"\x00" * 1000))

    def test_clientSideOnly(self) -> None:
        """
        A backend that does not accept the proxy's offer: the client side
        still compresses (the proxy accepted its offer), the backend side
        is plain.
        """
        channel, client, backend, request, head = self.open(True, True, False)
        self.assertIn(b"Sec-WebSocket-Extensions: permessage-deflate", head)
        channel.dataReceived(compressedFrame(TEXT, b"squeezed", masked=True))
        self.assertFalse(isCompressed(backend.received))
        self.assertEqual(frames(backend.received), [(True, TEXT, b"squeezed")])
        backend.respond(frame(TEXT, b"plain reply"))
        self.assertTrue(isCompressed(client.value()))
        self.assertEqual(inflate(frames(client.value())[0][2]), b"plain reply")

    def test_backendSideOnly(self) -> None:
        """
        A client that offers nothing gets no extension, while the backend,
        which accepted the proxy's offer, gets compressed messages.
        """
        channel, client, backend, request, head = self.open(True, False, True)
        self.assertIn(b"permessage-deflate", request)
        self.assertNotIn(b"sec-websocket-extensions", head.lower())
        channel.dataReceived(frame(TEXT, b"plain", masked=True))
        self.assertTrue(isCompressed(backend.received))
        self.assertEqual(inflate(frames(backend.received)[0][2]), b"plain")
        backend.respond(compressedFrame(TEXT, b"from backend"))
        self.assertEqual(frames(client.value()), [(True, TEXT, b"from backend")])

    def test_unofferedExtensionTunnels(self) -> None:
        """
        A backend answering with an extension the proxy never offered (the
        directive is off) gets the byte tunnel, its 101 unchanged.
        """
        channel, client, backend, request, head = self.open(False, True, True)
        self.assertNotIsInstance(channel.upgradedPair, WebSocketRelay)
        self.assertIn(b"Sec-WebSocket-Extensions: permessage-deflate", head)

    def test_compressedSizeLimit(self) -> None:
        """
        C{proxy_websocket_max_message_size} bounds the inflated size too:
        a small compressed frame that inflates past it is refused with 1009.
        """
        channel, client, backend = self._deflatingRelayLimitedTo1k()
        bomb = compressedFrame(BINARY, b"\x00" * 100000, masked=True)
        self.assertLess(len(bomb), 1024)
        channel.dataReceived(bomb)
        self.assertNotIn((True, BINARY), [f[:2] for f in frames(backend.received)])
        closes = [f for f in frames(client.value()) if f[1] == CLOSE]
        self.assertEqual(closes[0][2][:2], struct.pack("!H", 1009))

    def _deflatingRelayLimitedTo1k(self) -> Any:
        """
        A relayed WebSocket with permessage-deflate and a 1 KiB message
        limit, past its 101, both sides' buffers cleared.

        @return: the client channel, its transport, and the backend.
        """
        self.makeProxy(RelayTests.CONFIG.replace(
            "proxy_websocket_relay on;", "proxy_websocket_relay on; proxy_websocket_deflate on;"
            " proxy_websocket_max_message_size 1k;"), RelayTests.MAP)
        channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                   + self.OFFER)
        backend = self.backend()
        backend.respond(RelayTests.SWITCH + b"\r\n")
        client.clear()
        backend.transport.clear()
        return channel, client, backend

    def test_compressedAtTheLimitPassesWhole(self) -> None:
        """
        A compressed message inflating to exactly the limit passes whole,
        and one byte more is refused: never cut to size and passed on (as
        Autobahn before 25 did at its extension limit).
        """
        for size, passes in [(1024, True), (1025, False)]:
            channel, client, backend = self._deflatingRelayLimitedTo1k()
            channel.dataReceived(compressedFrame(BINARY, b"\x01" * size, masked=True))
            relayed = [f for f in frames(backend.received) if f[1] == BINARY]
            if passes:
                self.assertEqual(relayed, [(True, BINARY, b"\x01" * size)])
            else:
                self.assertEqual(relayed, [])
                closes = [f for f in frames(client.value()) if f[1] == CLOSE]
                self.assertEqual(closes[0][2][:2], struct.pack("!H", 1009))


@implementer(IWebSocketMessageFilter)
class RewritingFilter:
    """
    Drops client text C{drop me}, upper-cases other client text, closes
    with 1008 after C{limit} client messages, and records the counts of
    each closed connection.
    """

    def __init__(self, limit: int = 100) -> None:
        """@param limit: client messages allowed per connection."""
        self.limit = limit
        self.closedCounts: List[int] = []

    def messageReceived(self, relay: WebSocketRelay, payload: bytes, isBinary: bool,
                        fromClient: bool) -> object:
        """Count, drop, rewrite or close, as the class says."""
        if not fromClient:
            return None
        count = relay.filterState[self] = relay.filterState.get(self, 0) + 1
        if count > self.limit:
            return CloseWith(1008, "too many messages")
        if payload == b"drop me":
            return DROP
        if not isBinary:
            return (payload.upper(), False)
        return None

    def connectionClosed(self, relay: WebSocketRelay) -> None:
        """Record how many client messages the connection had."""
        self.closedCounts.append(relay.filterState.get(self, 0))


class FilterModule(ProxyModule):
    """
    Declares C{x_ws_filter on;} and adds its L{RewritingFilter} there.
    """

    name = "test_ws_filter"

    def __init__(self, limit: int = 100) -> None:
        """@param limit: for the filter."""
        self.filter = RewritingFilter(limit)

    def directives(self) -> Any:
        """@return: C{x_ws_filter}."""
        return [spec("x_ws_filter", [LOCATION], 1, parse=flagSlot, default=False)]

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """Add the filter where C{x_ws_filter on}."""
        if location.conf.get("x_ws_filter"):
            addMessageFilter(location, self.filter, compiler.reactor)


class MessageFilterTests(ProxyTestCase):
    """
    L{IWebSocketMessageFilter}s added by a module see, rewrite, drop and
    close on messages.
    """

    CONFIG = RelayTests.CONFIG.replace("proxy_websocket_relay on;", "x_ws_filter on;")

    def open(self, limit: int = 100) -> Tuple[Any, StringTransport, Backend]:
        """A relayed connection on a location with the test filter."""
        self.module = FilterModule(limit)
        self.makeProxy(self.CONFIG, RelayTests.MAP, extraModules=[self.module])
        channel, client = self.get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
        backend = self.backend()
        backend.respond(RelayTests.SWITCH + b"\r\n")
        client.clear()
        backend.transport.clear()
        return channel, client, backend

    def test_filterTurnsRelayOn(self) -> None:
        """
        A filter relays the location's WebSocket upgrades without the
        directive, and provides its interface.
        """
        channel, _, _ = self.open()
        verifyObject(IWebSocketMessageFilter, self.module.filter)
        self.assertIsInstance(channel._tunnel, WebSocketRelay)
        self.assertEqual(channel._tunnel.filters, (self.module.filter,))

    def test_rewriteAndDrop(self) -> None:
        """
        A filter rewrites one message and drops another; the backend's
        messages pass unchanged.
        """
        channel, client, backend = self.open()
        channel.dataReceived(frame(TEXT, b"drop me", masked=True)
                             + frame(TEXT, b"shout", masked=True))
        self.assertEqual(frames(backend.received), [(True, TEXT, b"SHOUT")])
        backend.respond(frame(TEXT, b"quiet"))
        self.assertEqual(frames(client.value()), [(True, TEXT, b"quiet")])

    def test_closeWith(self) -> None:
        """
        A filter's L{CloseWith} closes both sides with its code and reason,
        and C{connectionClosed} sees the connection's state.
        """
        channel, client, backend = self.open(limit=2)
        channel.dataReceived(b"".join(frame(BINARY, b"x", masked=True) for _ in range(3)))
        close = (True, CLOSE, closePayload(1008, b"too many messages"))
        self.assertEqual(frames(backend.received), [(True, BINARY, b"x")] * 2 + [close])
        self.assertEqual(frames(client.value()), [close])
        backend.close()
        self.assertEqual(self.module.filter.closedCounts, [3])

    def test_filtersChain(self) -> None:
        """
        Adding a filter where the directive already set the shared handler
        gives the location a new handler with the filter, leaving the
        shared one unchanged.
        """
        shared = WebSocketRelayHandler(self)
        location = type("Location", (), {"upgradeHandler": shared, "requestFilters": [],
                                         "conf": {}})()
        first, second = RewritingFilter(), RewritingFilter()
        addMessageFilter(location, first)
        addMessageFilter(location, second)
        self.assertEqual(shared.filters, ())
        self.assertEqual(location.upgradeHandler.filters, (first, second))

    def test_filterRaises(self) -> None:
        """
        A filter that raises closes both sides with 1011 and is logged; the
        message is not relayed.
        """
        events: List[dict] = []
        self.patch(WebSocketRelay, "log", Logger(observer=events.append))
        channel, client, backend = self.open()
        self.patch(self.module.filter, "messageReceived", lambda *a: 1 / 0)
        channel.dataReceived(frame(TEXT, b"boom", masked=True))
        close = (True, CLOSE, closePayload(1011, b"message filter failed"))
        self.assertEqual(frames(backend.received), [close])
        self.assertEqual(frames(client.value()), [close])
        self.assertEqual(len(events), 1)
        self.assertIn("message filter", formatEvent(events[0]))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 0)

    def test_notAFilter(self) -> None:
        """
        An object without the interface is refused at load time.
        """
        self.assertRaises(TypeError, WebSocketRelayHandler, self, [object()])
