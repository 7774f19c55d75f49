# -*- test-case-name: tests.unit.test_wsrelay -*-
"""
C{proxy_websocket_relay on|off}: where it is on, a WebSocket upgrade is
relayed message by message through Autobahn (L{twisted_rproxy.http.wsrelay})
instead of nginx's byte tunnel.  Other upgrades keep the byte tunnel.
C{proxy_websocket_max_message_size SIZE} bounds the messages the relay
takes from either side (C{0}, the default: no limit); the byte tunnel
does not parse frames, so it only applies where the relay is on.
C{proxy_websocket_deflate on|off} (default C{off}): where the relay is on,
permessage-deflate is negotiated with the client and with the backend
apart; off, no extension is negotiated on either side.

A team's module adds an L{IWebSocketMessageFilter} to a location with
L{addMessageFilter} from its C{configureLocation}; that turns the relay on
there whatever the directive says.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..config.registry import HTTP, LOCATION, SERVER, DirectiveSpec, spec
from ..config.slots import flagSlot, sizeSlot
from ..module import ProxyModule

__all__ = ["WebSocketModule", "addMessageFilter"]


def addMessageFilter(location: Any, messageFilter: Any, reactor: Any = None) -> None:
    """
    Relay WebSocket upgrades on C{location} through Autobahn, passing every
    message through C{messageFilter} (after any filter added before).

    @param location: the L{twisted_rproxy.config.model.Location} a module's
        C{configureLocation} was given.
    @param messageFilter: an L{twisted_rproxy.interfaces.IWebSocketMessageFilter}.
    @param reactor: the compiler's C{reactor}, for the close timers.
    @raise ValueError: when another module already set a different kind
        of upgrade handler on the location.
    """
    from ..http.wsrelay import WebSocketRelayHandler

    current = location.upgradeHandler
    if current is None:
        location.upgradeHandler = WebSocketRelayHandler(
            reactor, [messageFilter], location.conf.get("proxy_websocket_max_message_size") or 0,
            bool(location.conf.get("proxy_websocket_deflate")))
    elif isinstance(current, WebSocketRelayHandler):
        # Handlers may be shared between locations: never change one.
        location.upgradeHandler = current.withFilter(messageFilter)
    else:
        raise ValueError(f"location already has the upgrade handler {current!r}")
    _negotiateExtensions(location)


def _negotiateExtensions(location: Any) -> None:
    """
    Give a relayed C{location} the request filter that takes the client's
    extension offer off its upgrades (once), as its handler's
    C{proxy_websocket_deflate} says.
    """
    from ..http.wsrelay import ExtensionNegotiation

    deflate = location.upgradeHandler.deflate
    for existing in location.requestFilters:
        if isinstance(existing, ExtensionNegotiation):
            existing.deflate = deflate
            return
    location.requestFilters.append(ExtensionNegotiation(deflate))


class WebSocketModule(ProxyModule):
    """
    Declares C{proxy_websocket_relay} (default C{off}, so a location behaves
    as in nginx unless asked) and installs the relay as the location's
    upgrade handler where it is on.
    """

    name = "websocket"

    def __init__(self) -> None:
        self._handlers: dict = {}

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: C{proxy_websocket_relay},
            C{proxy_websocket_max_message_size} and C{proxy_websocket_deflate}.
        """
        return [spec("proxy_websocket_relay", [HTTP, SERVER, LOCATION], 1, parse=flagSlot,
                     default=False),
                spec("proxy_websocket_max_message_size", [HTTP, SERVER, LOCATION], 1,
                     parse=sizeSlot, default=0),
                spec("proxy_websocket_deflate", [HTTP, SERVER, LOCATION], 1, parse=flagSlot,
                     default=False)]

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        Set the relay as C{location}'s upgrade handler where the directive
        is on (unless a module's filter already did, whose handler then
        gets the location's size limit); one handler (and one pair of
        Autobahn factories) serves every location with the same limit.
        """
        from ..http.wsrelay import WebSocketRelayHandler

        limit = location.conf.get("proxy_websocket_max_message_size") or 0
        deflate = bool(location.conf.get("proxy_websocket_deflate"))
        current = location.upgradeHandler
        if isinstance(current, WebSocketRelayHandler):
            if (current.maxMessageSize, current.deflate) != (limit, deflate):
                location.upgradeHandler = WebSocketRelayHandler(
                    current._reactor, current.filters, limit, deflate)
            _negotiateExtensions(location)
            return
        if not location.conf.get("proxy_websocket_relay") or current is not None:
            return
        handler = self._handlers.get((limit, deflate))
        if handler is None:
            handler = self._handlers[(limit, deflate)] = WebSocketRelayHandler(
                getattr(compiler, "reactor", None), maxMessageSize=limit, deflate=deflate)
        location.upgradeHandler = handler
        _negotiateExtensions(location)
