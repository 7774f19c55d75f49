"""
Tests for the worked WebSocket message-filter examples of
docs/plugins-websocket.md (docs/examples/twisted/plugins/
rproxy_example_wsfilters.py): C{x_ws_max_rate} and C{x_ws_message_log},
on the proxy's memory reactor, its clock driving the rate window.
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import Any, List, Tuple

from twisted.internet.testing import StringTransport
from twisted.logger import Logger, formatEvent
from zope.interface.verify import verifyObject

from twisted_rproxy.config.errors import ConfigError
from twisted_rproxy.interfaces import IProxyModule, IWebSocketMessageFilter

from . import test_wsrelay as wire
from .test_proxy_request import Backend, ProxyTestCase
from .test_wsrelay import BINARY, CLOSE, TEXT, closePayload, frame, frames

EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "docs" / "examples" / "twisted" / "plugins" / "rproxy_example_wsfilters.py"
)


def loadExample() -> Any:
    """
    @return: the example plugin's module, imported from its file.
    """
    spec = importlib.util.spec_from_file_location("docs_rproxy_example_wsfilters", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = loadExample()


class ExampleFilterTests(ProxyTestCase):
    """
    The two example filters on a relayed location.
    """

    def open(self, directives: str) -> Tuple[Any, StringTransport, Backend]:
        """
        A WebSocket through a location with the seeds' recipe and
        C{directives} (no C{proxy_websocket_relay}: the filters turn the
        relay on).
        """
        config = wire.RelayTests.CONFIG.replace("proxy_websocket_relay on;", directives)
        self.makeProxy(config, wire.RelayTests.MAP, extraModules=[example.WebSocketFiltersModule()])
        channel, client = self.get("/ws?room=1", b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
        backend = self.backend()
        backend.respond(wire.RelayTests.SWITCH + b"\r\n")
        client.clear()
        backend.transport.clear()
        return channel, client, backend

    def test_pluginShape(self) -> None:
        """
        The plugin object is a proxy module; both filters provide the
        filter interface.
        """
        verifyObject(IProxyModule, example.webSocketFiltersModule)
        verifyObject(IWebSocketMessageFilter, example.MaxMessageRate(1, 1.0, self))
        verifyObject(IWebSocketMessageFilter, example.MessageCountLog())

    def test_rateWithinLimit(self) -> None:
        """
        Three client messages a second pass with C{x_ws_max_rate 3 1s},
        second after second; the backend's messages are never limited.
        """
        channel, client, backend = self.open("x_ws_max_rate 3 1s;")
        for second in range(5):
            channel.dataReceived(b"".join(frame(TEXT, b"m%d" % i, masked=True)
                                          for i in range(3)))
            self.reactor.advance(1)
        self.assertEqual(len(frames(backend.received)), 15)
        backend.respond(b"".join(frame(TEXT, b"b") for _ in range(10)))
        self.assertEqual(len(frames(client.value())), 10)

    def test_rateExceeded(self) -> None:
        """
        The fourth client message within a second closes both sides with
        1008; the three before it were relayed.
        """
        channel, client, backend = self.open("x_ws_max_rate 3 1s;")
        channel.dataReceived(b"".join(frame(BINARY, b"x", masked=True) for _ in range(2)))
        self.reactor.advance(0.5)
        channel.dataReceived(b"".join(frame(BINARY, b"x", masked=True) for _ in range(2)))
        close = (True, CLOSE, closePayload(1008, b"message rate exceeded"))
        self.assertEqual(frames(backend.received), [(True, BINARY, b"x")] * 3 + [close])
        self.assertEqual(frames(client.value()), [close])

    def test_rateWindowSlides(self) -> None:
        """
        The window slides: three messages late in one second and three
        early in the next are six within one second, and too many.
        """
        channel, client, backend = self.open("x_ws_max_rate 3 1s;")
        self.reactor.advance(0.9)
        channel.dataReceived(b"".join(frame(TEXT, b"a", masked=True) for _ in range(3)))
        self.reactor.advance(0.2)
        channel.dataReceived(frame(TEXT, b"b", masked=True))
        self.assertEqual(frames(client.value())[-1][2][:2], struct.pack("!H", 1008))

    def test_rateBadArguments(self) -> None:
        """
        A count or window that does not parse, or is zero, is a config
        error at the directive's line.
        """
        for bad in ("x_ws_max_rate many 1s;", "x_ws_max_rate 3 soon;",
                    "x_ws_max_rate 0 1s;", "x_ws_max_rate 3;"):
            with self.assertRaises(ConfigError) as caught:
                self.open(bad)
            self.assertIn('"x_ws_max_rate"', str(caught.exception))
            self.assertIsNotNone(caught.exception.line)

    def test_messageLog(self) -> None:
        """
        C{x_ws_message_log on} logs one line when the connection closes,
        with the request URI and the messages and bytes each way.
        """
        events: List[dict] = []
        self.patch(example.MessageCountLog, "log", Logger(observer=events.append))
        channel, client, backend = self.open("x_ws_message_log on;")
        channel.dataReceived(frame(TEXT, b"hello", masked=True)
                             + frame(BINARY, b"\x00" * 300, masked=True))
        backend.respond(frame(TEXT, b"hi"))
        self.assertEqual(events, [])
        channel.dataReceived(frame(CLOSE, closePayload(1000), masked=True))
        backend.respond(frame(CLOSE, closePayload(1000)))
        backend.close()
        self.assertEqual(
            [formatEvent(e) for e in events],
            ["websocket /ws?room=1 closed: 2 messages (305 bytes) from the client,"
             " 1 messages (2 bytes) from the backend"])

    def test_bothFilters(self) -> None:
        """
        With both, the rate limit runs first: the message that closes the
        connection is not counted as relayed.
        """
        events: List[dict] = []
        self.patch(example.MessageCountLog, "log", Logger(observer=events.append))
        channel, client, backend = self.open("x_ws_max_rate 1 1m; x_ws_message_log on;")
        relay = channel.upgradedPair
        self.assertEqual([type(f).__name__ for f in relay.filters],
                         ["MaxMessageRate", "MessageCountLog"])
        channel.dataReceived(frame(TEXT, b"one", masked=True) + frame(TEXT, b"two", masked=True))
        backend.respond(frame(CLOSE, closePayload(1008)))
        backend.close()
        self.assertIn("1 messages (3 bytes) from the client", formatEvent(events[0]))
