# -*- test-case-name: tests.unit.test_proxy_request -*-
"""
After a backend answers C{101 Switching Protocols}, the client and backend
connections are joined byte for byte (nginx's C{ngx_http_upstream_upgrade}),
with each side's socket pausing the other's reads when full.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import IUpgradedPair, IUpgradeHandler

log = Logger()


@implementer(IPushProducer)
class _PauseReading:
    """
    Pauses one transport's reading while another's write buffer is full;
    with a C{timeout}, a buffer full for that long (C{proxy_send_timeout},
    as nginx times an upgraded connection's blocked writes) calls
    C{stalled}.
    """

    def __init__(self, transport: Any, stalled: Optional[Callable[[], None]] = None,
                 timeout: float = 0.0, clock: Any = None) -> None:
        self._transport = transport
        self._stalled = stalled
        self._timeout = timeout
        self._clock = clock
        self._timer: Any = None

    def pauseProducing(self) -> None:
        """
        The other side is full.
        """
        self._transport.pauseProducing()
        if self._timeout and self._stalled is not None and self._timer is None:
            self._timer = self._clock.callLater(self._timeout, self._expired)

    def resumeProducing(self) -> None:
        """
        The other side drained.
        """
        self._cancel()
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        """
        The other side closed; its own close handling ends this side.
        """
        self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        assert self._stalled is not None
        self._stalled()


def pauseClientWhileBackendFull(exchange: Any, upstream: Any) -> _PauseReading:
    """
    Register, on the backend's socket, the producer that pauses reads from
    the client while that socket is full, and closes the backend (so the
    pair ends) once it has been full for the location's
    C{proxy_send_timeout}.
    """
    timeout = 0.0
    location = getattr(exchange, "location", None)
    if location is not None:
        timeout = location.conf.get("proxy_send_timeout") or 0.0

    def stalled() -> None:
        log.error("upstream timed out (110: Connection timed out) while proxying"
                  " upgraded connection")
        if upstream.transport is not None:
            upstream.transport.abortConnection()

    producer = _PauseReading(exchange.channel.transport, stalled, timeout,
                             getattr(upstream, "_reactor", None))
    upstream.transport.registerProducer(producer, True)
    return producer


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
            # Called once, then let go: it is a bound method of the upstream
            # request, which holds the exchange, whose channel holds this
            # tunnel; kept, that cycle waits for the garbage collector.
            onClose, self._onClose = self._onClose, _closedAlready
            onClose()


def _closedAlready() -> None:
    """What a closed L{Tunnel} keeps in place of its close callback."""


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
        pauseClientWhileBackendFull(exchange, upstream)
        return tunnel


BYTE_TUNNEL = ByteTunnelHandler()
