# -*- test-case-name: tests.unit.test_proxy_request -*-
"""
After a backend answers C{101 Switching Protocols}, the client and backend
connections are joined byte for byte (nginx's C{ngx_http_upstream_upgrade}),
with each side's socket pausing the other's reads when full.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from ..interfaces import IUpgradedPair, IUpgradeHandler


@implementer(IPushProducer)
class _PauseReading:
    """
    Pauses one transport's reading while another's write buffer is full.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def pauseProducing(self) -> None:
        """
        The other side is full.
        """
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        """
        The other side drained.
        """
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        """
        The other side closed; its own close handling ends this side.
        """


@implementer(IUpgradedPair)
class Tunnel:
    """
    A joined pair of connections.
    """

    def __init__(self, channel: Any, upstream: Any, onClose: Callable[[], None]) -> None:
        self.channel = channel
        self.upstream = upstream
        self._onClose = onClose
        self.closed = False

    def write(self, data: bytes) -> None:
        """
        Bytes from the backend, to the client.
        """
        self.channel.transport.write(data)

    def fromClient(self, data: bytes) -> None:
        """
        Bytes from the client, to the backend.
        """
        if self.upstream.transport is not None:
            self.upstream.noteActivity()
            self.upstream.transport.write(data)

    def loseConnection(self) -> None:
        """
        The backend closed: close the client once its data is written.
        """
        self._close()
        self.channel.transport.loseConnection()

    def clientLost(self) -> None:
        """
        The client closed: close the backend.
        """
        self._close()
        if self.upstream.transport is not None:
            self.upstream.transport.loseConnection()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._onClose()


@implementer(IUpgradeHandler)
class ByteTunnelHandler:
    """
    The upgrade handler of a location that has no other: a byte tunnel.
    """

    def startUpgrade(
        self, exchange: Any, upstream: Any, headers: list, onClose: Callable[[], None]
    ) -> Tunnel:
        """
        Send the 101 head to the client and join the two connections, each
        socket filling up pausing reads from the other.

        @param upstream: the L{twisted_rproxy.upstream.http1.UpstreamHTTPProtocol}
            that received the 101; it keeps delivering bytes to its handler.
        @return: the L{Tunnel}.
        """
        tunnel = Tunnel(exchange.channel, upstream, onClose)
        exchange.startResponse(101, headers)
        upstream.transport.registerProducer(_PauseReading(exchange.channel.transport), True)
        return tunnel


BYTE_TUNNEL = ByteTunnelHandler()
