"""
Two example WebSocket message filters as a twisted_rproxy plugin
(docs/plugins-websocket.md explains them):

  - C{x_ws_max_rate N WINDOW;} in a location closes a relayed connection
    with 1008 (policy violation) when its client sends more than N
    messages within any WINDOW (a sliding window per connection);
  - C{x_ws_message_log on;} logs, when a relayed connection closes, how
    many messages and bytes went each way.

Either turns the WebSocket relay on for its location (a filter needs the
messages).  Like the other example plugins, it is found when the directory
holding C{twisted/plugins/} is on C{sys.path} (PYTHONPATH=docs/examples).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Optional, Sequence

from twisted.logger import Logger
from zope.interface import implementer

from twisted_rproxy.config.ast import Directive
from twisted_rproxy.config.registry import LOCATION, DirectiveSpec, spec
from twisted_rproxy.config.slots import flagSlot
from twisted_rproxy.config.values import parseInt, parseTime
from twisted_rproxy.http.wsrelay import CloseWith
from twisted_rproxy.interfaces import IWebSocketMessageFilter
from twisted_rproxy.module import ProxyModule
from twisted_rproxy.modules.websocket import addMessageFilter


@implementer(IWebSocketMessageFilter)
class MaxMessageRate:
    """
    At most C{limit} client messages in any C{window} seconds per
    connection; the next one closes both sides with 1008.  The backend's
    messages are not limited.
    """

    def __init__(self, limit: int, window: float, clock: Any) -> None:
        """
        @param clock: C{seconds()} gives the time (the compiler's reactor).
        """
        self.limit = limit
        self.window = window
        self.clock = clock

    def messageReceived(self, relay: Any, payload: bytes, isBinary: bool,
                        fromClient: bool) -> Optional[CloseWith]:
        """
        Keep the times of the last C{limit} client messages; one more
        within C{window} of the oldest is one too many.
        """
        if not fromClient:
            return None
        times: Deque[float] = relay.filterState.setdefault(self, deque())
        now = self.clock.seconds()
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return CloseWith(1008, "message rate exceeded")
        times.append(now)
        return None

    def connectionClosed(self, relay: Any) -> None:
        """
        Nothing to release: the state goes with the connection.
        """


@implementer(IWebSocketMessageFilter)
class MessageCountLog:
    """
    Counts messages and bytes each way and logs them once the connection
    has closed.
    """

    log = Logger()

    def messageReceived(self, relay: Any, payload: bytes, isBinary: bool,
                        fromClient: bool) -> None:
        """
        Count, and pass the message on unchanged.
        """
        counts: Dict[str, int] = relay.filterState.setdefault(
            self, {"client": 0, "clientBytes": 0, "backend": 0, "backendBytes": 0})
        side = "client" if fromClient else "backend"
        counts[side] += 1
        counts[side + "Bytes"] += len(payload)

    def connectionClosed(self, relay: Any) -> None:
        """
        One log line per connection, at C{info} level.
        """
        counts = relay.filterState.get(
            self, {"client": 0, "clientBytes": 0, "backend": 0, "backendBytes": 0})
        self.log.info(
            "websocket {uri} closed: {client} messages ({clientBytes} bytes) from the client,"
            " {backend} messages ({backendBytes} bytes) from the backend",
            uri=relay.exchange.rawURI.decode("latin-1", "replace"), **counts)


def parseRate(directive: Directive) -> tuple:
    """
    C{x_ws_max_rate N WINDOW}: a positive count and a time (C{1s},
    C{500ms}, C{1m} ...).  A C{ValueError} becomes a config error at the
    directive's file and line.
    """
    count, window = directive.args
    try:
        limit, seconds = parseInt(count), parseTime(window)
    except ValueError:
        raise ValueError(f'invalid value "{count} {window}" in "{directive.name}" directive')
    if limit < 1 or seconds <= 0:
        raise ValueError(f'"{directive.name}" needs a count and a window above zero')
    return (limit, seconds)


class WebSocketFiltersModule(ProxyModule):
    """
    Declares C{x_ws_max_rate} and C{x_ws_message_log} and adds their
    filters where they are set.
    """

    name = "example_ws_filters"

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: the two directives, location-level.
        """
        return [
            spec("x_ws_max_rate", [LOCATION], 2, parse=parseRate, default=None),
            spec("x_ws_message_log", [LOCATION], 1, parse=flagSlot, default=False),
        ]

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        The rate limit first, so a message that closes the connection is
        not counted as relayed.
        """
        rate = location.conf.get("x_ws_max_rate")
        if rate is not None:
            # The compiler's reactor is None when the config is only
            # compiled (rproxy -t); the running reactor is the clock then.
            clock = compiler.reactor
            if clock is None:
                from twisted.internet import reactor as clock
            addMessageFilter(location, MaxMessageRate(rate[0], rate[1], clock),
                             compiler.reactor)
        if location.conf.get("x_ws_message_log"):
            addMessageFilter(location, MessageCountLog(), compiler.reactor)


#: The plugin object twisted.plugin finds.
webSocketFiltersModule = WebSocketFiltersModule()
