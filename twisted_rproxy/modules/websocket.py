# -*- test-case-name: tests.unit.test_wsrelay -*-
"""
C{proxy_websocket_relay on|off}: where it is on, a WebSocket upgrade is
relayed message by message through Autobahn (L{twisted_rproxy.http.wsrelay})
instead of nginx's byte tunnel.  Other upgrades keep the byte tunnel.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..config.registry import HTTP, LOCATION, SERVER, DirectiveSpec, spec
from ..config.slots import flagSlot
from ..module import ProxyModule


class WebSocketModule(ProxyModule):
    """
    Declares C{proxy_websocket_relay} (default C{off}, so a location behaves
    as in nginx unless asked) and installs the relay as the location's
    upgrade handler where it is on.
    """

    name = "websocket"

    def __init__(self) -> None:
        self._handler: Any = None

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: C{proxy_websocket_relay}.
        """
        return [spec("proxy_websocket_relay", [HTTP, SERVER, LOCATION], 1, parse=flagSlot,
                     default=False)]

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        Set the relay as C{location}'s upgrade handler where the directive
        is on; one handler (and one pair of Autobahn factories) serves
        every such location.
        """
        if not location.conf.get("proxy_websocket_relay"):
            return
        from ..http.wsrelay import WebSocketRelayHandler

        if self._handler is None:
            self._handler = WebSocketRelayHandler(getattr(compiler, "reactor", None))
        location.upgradeHandler = self._handler
