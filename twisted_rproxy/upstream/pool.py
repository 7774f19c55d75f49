# -*- test-case-name: tests.unit.test_upstream -*-
"""
Connections to backends: new ones through Twisted endpoints with
C{proxy_connect_timeout}, and idle keepalive ones cached per peer as nginx's
C{keepalive N} does.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.error import ConnectError, TimeoutError
from twisted.python.failure import Failure

from .http1 import UpstreamError, UpstreamHTTPProtocol


class ConnectionPool:
    """
    Hands out backend connections, reusing idle keepalive ones first.

    @ivar idle: per C{(upstream, peer)}, idle protocols, most recent last.
    """

    def __init__(self, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.idle: Dict[Tuple[int, Any], Deque[Tuple[UpstreamHTTPProtocol, Any]]] = {}

    def acquire(self, upstream: Any, peer: Any, connectTimeout: float) -> "Deferred[Tuple[UpstreamHTTPProtocol, bool]]":
        """
        @return: a Deferred firing with C{(protocol, reused)}, or failing
            with L{UpstreamError} when the backend cannot be reached.
        """
        key = (id(upstream), peer)
        cached = self.idle.get(key)
        while cached:
            protocol, timer = cached.pop()
            if timer.active():
                timer.cancel()
            if protocol.connected:
                protocol.onLost = None
                return succeed((protocol, True))
        protocol = UpstreamHTTPProtocol(peer, self._reactor)
        d = self._endpoint(peer, connectTimeout).connect(_QuietFactory(protocol))
        if connectTimeout:
            self._limitConnect(d, connectTimeout)
        d.addCallbacks(lambda p: (p, False), _connectFailed)
        return d

    def _limitConnect(self, d: Deferred, timeout: float) -> None:
        """
        Fail C{d} with a timeout L{UpstreamError} after C{timeout} seconds
        on this pool's clock.  The endpoint's own timeout is the reactor's
        (which a test clock never fires, and which not every endpoint
        has); this one is C{proxy_connect_timeout} everywhere.
        """
        timedOut = []

        def expire() -> None:
            timedOut.append(True)
            d.cancel()

        timer = self._reactor.callLater(timeout, expire)

        def settle(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if timedOut and isinstance(result, Failure):
                return Failure(UpstreamError(
                    "timeout", "upstream timed out (110: Connection timed out)",
                    "connecting to upstream",
                ))
            return result

        d.addBoth(settle)

    def _endpoint(self, peer: Any, timeout: float) -> Any:
        wait = max(timeout, 0.001) if timeout else 60
        if peer.unixPath is not None:
            return UNIXClientEndpoint(self._reactor, peer.unixPath, timeout=wait)
        if ":" in peer.host:
            return TCP6ClientEndpoint(self._reactor, peer.host, peer.port, timeout=wait)
        return TCP4ClientEndpoint(self._reactor, peer.host, peer.port, timeout=wait)

    def release(self, upstream: Any, protocol: UpstreamHTTPProtocol, reusable: bool) -> None:
        """
        Return a connection after a response: keep it idle when the upstream
        has C{keepalive} room and the exchange left it clean, else close it.
        """
        if (
            not reusable
            or not protocol.connected
            or not upstream.keepalive
            or protocol.requests >= upstream.keepaliveRequests
        ):
            protocol.onLost = None
            if protocol.transport is not None:
                protocol.transport.loseConnection()
            return
        key = (id(upstream), protocol.peer)
        cached = self.idle.setdefault(key, deque())
        if len(cached) >= upstream.keepalive:
            oldest, timer = cached.popleft()
            if timer.active():
                timer.cancel()
            oldest.onLost = None
            oldest.transport.loseConnection()
        timer = self._reactor.callLater(
            upstream.keepaliveTimeout, self._expire, key, protocol
        )
        entry = (protocol, timer)
        cached.append(entry)
        protocol.onLost = lambda p: self._forget(key, p)

    def _expire(self, key: Any, protocol: UpstreamHTTPProtocol) -> None:
        self._forget(key, protocol)
        protocol.onLost = None
        protocol.transport.loseConnection()

    def _forget(self, key: Any, protocol: UpstreamHTTPProtocol) -> None:
        cached = self.idle.get(key)
        if not cached:
            return
        for entry in list(cached):
            if entry[0] is protocol:
                cached.remove(entry)
                if entry[1].active():
                    entry[1].cancel()
        if not cached:
            del self.idle[key]

    def idleCount(self) -> int:
        """
        @return: how many idle connections are cached, for tests and status.
        """
        return sum(len(c) for c in self.idle.values())

    def closeAll(self) -> None:
        """
        Close every idle connection (shutdown).
        """
        for key in list(self.idle):
            for protocol, timer in list(self.idle.get(key, ())):
                if timer.active():
                    timer.cancel()
                protocol.onLost = None
                protocol.transport.loseConnection()
        self.idle.clear()


class _QuietFactory(Factory):
    """
    Hands one prepared protocol to an endpoint, without logging a line per
    backend connection as Twisted's default factories do.
    """

    noisy = False

    def __init__(self, protocol: UpstreamHTTPProtocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> UpstreamHTTPProtocol:
        """
        @return: the prepared protocol.
        """
        return self._protocol


def _connectFailed(failure: Failure) -> Failure:
    if failure.check(TimeoutError):
        raise UpstreamError(
            "timeout", "upstream timed out (110: Connection timed out)", "connecting to upstream"
        )
    if failure.check(ConnectError):
        reason = failure.value.osError if hasattr(failure.value, "osError") else None
        message = failure.getErrorMessage()
        if "refused" in message.lower() or reason == 111:
            message = "connect() failed (111: Connection refused)"
        else:
            message = f"connect() failed ({message})"
        raise UpstreamError("error", message, "connecting to upstream")
    return failure
