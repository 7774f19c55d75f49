# -*- test-case-name: tests.unit.test_upstream -*-
"""
Connections to backends: new ones with C{proxy_connect_timeout} (TCP ones
by L{connect.connectTCP}, UNIX ones and those on other reactors through
Twisted endpoints), and idle keepalive ones cached per peer as nginx's
C{keepalive N} does.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.error import ConnectError, TimeoutError
from twisted.python.failure import Failure

from ..transport import flushingClientEndpoint, supportsFlushing
from .connect import connectTCP
from .http1 import UpstreamError, UpstreamHTTPProtocol

#: Seconds a new connection may take when no C{proxy_connect_timeout} is
#: given (nginx's default for it).
_DEFAULT_CONNECT_TIMEOUT = 60


class ConnectionPool:
    """
    Hands out backend connections, reusing idle keepalive ones first.

    @ivar idle: per C{(upstream, peer, tls)}, idle protocols, most recent
        last; C{tls} is the L{TLSTarget <twisted_rproxy.upstream.tls.TLSTarget>}
        of a TLS connection (one per verified name) and C{None} for plain
        ones, so the two, or two names, never share a connection.  Past
        C{keepalive} the oldest are closed at the end of the reactor turn.
    @ivar _trims: the pending trim call per key of C{idle}.
    """

    def __init__(self, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        # Whether new TCP connections can skip the endpoint: a fact of the
        # reactor, so decided once rather than per connection.
        self._direct = supportsFlushing(reactor)
        self.idle: Dict[Tuple[int, Any, Any], Deque[UpstreamHTTPProtocol]] = {}
        self._trims: Dict[Tuple[int, Any, Any], Any] = {}

    def takeIdle(self, upstream: Any, peer: Any, tls: Any = None) -> Optional[UpstreamHTTPProtocol]:
        """
        @param tls: the L{TLSTarget <twisted_rproxy.upstream.tls.TLSTarget>}
            for C{https} backends, C{None} for plain ones.
        @return: an idle keepalive connection to C{peer}, or C{None}.  The
            synchronous fast path: no Deferred for the common case.
        """
        cached = self.idle.get((id(upstream), peer, tls))
        while cached:
            protocol = cached.pop()
            protocol.onLost = None
            protocol.pooled = False  # its idle timer, if it fires, is ignored
            if protocol.connected:
                return protocol
        return None

    def acquire(self, upstream: Any, peer: Any, connectTimeout: float,
                tls: Any = None) -> "Deferred[Tuple[UpstreamHTTPProtocol, bool]]":
        """
        @return: a Deferred firing with C{(protocol, reused)}, or failing
            with L{UpstreamError} when the backend cannot be reached.
        """
        protocol = self.takeIdle(upstream, peer, tls)
        if protocol is not None:
            return succeed((protocol, True))
        return self.connect(peer, connectTimeout, tls)

    def connect(self, peer: Any, connectTimeout: float,
                tls: Any = None) -> "Deferred[Tuple[UpstreamHTTPProtocol, bool]]":
        """
        Open a new connection to C{peer} within C{proxy_connect_timeout}
        (which, as in nginx, covers the TLS handshake too).

        @param tls: a L{TLSTarget <twisted_rproxy.upstream.tls.TLSTarget>}
            to speak TLS to the backend; the Deferred then fires once the
            handshake is done and the certificate accepted.
        """
        if tls is None:
            protocol = UpstreamHTTPProtocol(peer, self._reactor)
            d = self._open(peer, connectTimeout, _QuietFactory(protocol))
        else:
            from .tls import TLSUpstreamHTTPProtocol

            protocol = TLSUpstreamHTTPProtocol(peer, self._reactor, tls)
            d = self._open(peer, connectTimeout, tls.wrapFactory(_QuietFactory(protocol)))
            d.addCallback(lambda _wrapper: protocol.handshake)
        self._limitConnect(d, connectTimeout or _DEFAULT_CONNECT_TIMEOUT)
        d.addCallbacks(lambda p: (p, False), _connectFailed)
        return d

    def _open(self, peer: Any, connectTimeout: float, factory: Any) -> Deferred:
        """
        Start a connection to C{peer} for C{factory}'s protocol: directly
        (L{connect.connectTCP}) for TCP on a reactor with Twisted's own TCP
        transports, else through an endpoint.

        @return: fires with the protocol once connected; the caller
            limits the time it may take.
        """
        if peer.unixPath is None and self._direct:
            return connectTCP(self._reactor, peer.host, peer.port, factory)
        return self._endpoint(peer, connectTimeout).connect(factory)

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
        wait = max(timeout, 0.001) if timeout else _DEFAULT_CONNECT_TIMEOUT
        if peer.unixPath is not None:
            return UNIXClientEndpoint(self._reactor, peer.unixPath, timeout=wait)
        return flushingClientEndpoint(self._reactor, peer.host, peer.port, wait)

    def release(self, upstream: Any, protocol: UpstreamHTTPProtocol, reusable: bool) -> None:
        """
        Return a connection after a response: keep it idle when the upstream
        has C{keepalive} room and the exchange left it clean, else close it.
        """
        now = self._reactor.seconds()
        if (
            not reusable
            or not protocol.connected
            or not upstream.keepalive
            or protocol.requests >= upstream.keepaliveRequests
            or now - protocol.connectedAt >= upstream.keepaliveTime
        ):
            protocol.onLost = None
            _dropIdleTimer(protocol)
            if protocol.transport is not None:
                protocol.transport.loseConnection()
            return
        key = (id(upstream), protocol.peer, protocol.tlsKey)
        cached = self.idle.get(key)
        if cached is None:
            cached = self.idle[key] = deque()
        if len(cached) >= upstream.keepalive and key not in self._trims:
            # Over the cap: trimmed once this turn of the reactor is over,
            # so requests read in the same turn take these connections
            # rather than open new ones.  Releases come in bursts (one
            # epoll wake-up completes many responses), and trimming at
            # once reconnected for 8 % of 64 KiB requests with 50 clients
            # and keepalive 32.
            self._trims[key] = self._reactor.callLater(0, self._trim, key, upstream.keepalive)
        cached.append(protocol)
        protocol.pooled = True
        protocol.onLost = lambda p: self._forget(key, p)
        # One idle timer per connection.  A reuse only moves the deadline;
        # the timer, when it fires early, waits again for the rest (no
        # DelayedCall.reset per request).
        timeout = upstream.keepaliveTimeout
        protocol.idleDeadline = now + timeout
        timer = protocol.idleTimer
        if timer is None or not timer.active():
            protocol.idleTimer = self._reactor.callLater(timeout, self._expire, key, protocol)

    def _trim(self, key: Any, keep: int) -> None:
        """
        Close the least recently used idle connections beyond C{keep}.
        """
        del self._trims[key]
        cached = self.idle.get(key)
        while cached is not None and len(cached) > keep:
            oldest = cached.popleft()
            oldest.pooled = False
            oldest.onLost = None
            _dropIdleTimer(oldest)
            oldest.transport.loseConnection()

    def _expire(self, key: Any, protocol: UpstreamHTTPProtocol) -> None:
        protocol.idleTimer = None
        if not protocol.pooled:
            return  # in use again since the timer was set
        rest = protocol.idleDeadline - self._reactor.seconds()
        if rest > 0:
            # Released again since the timer was set: idle from then on.
            protocol.idleTimer = self._reactor.callLater(rest, self._expire, key, protocol)
            return
        self._forget(key, protocol)
        protocol.onLost = None
        protocol.transport.loseConnection()

    def _forget(self, key: Any, protocol: UpstreamHTTPProtocol) -> None:
        """
        The backend closed an idle connection: drop it and its timer.
        """
        protocol.pooled = False
        if protocol.idleTimer is not None and protocol.idleTimer.active():
            protocol.idleTimer.cancel()
        protocol.idleTimer = None
        cached = self.idle.get(key)
        if not cached:
            return
        try:
            cached.remove(protocol)
        except ValueError:
            pass
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
        for cached in list(self.idle.values()):
            for protocol in list(cached):
                protocol.pooled = False
                protocol.onLost = None
                if protocol.idleTimer is not None and protocol.idleTimer.active():
                    protocol.idleTimer.cancel()
                protocol.idleTimer = None
                protocol.transport.loseConnection()
        self.idle.clear()


def _dropIdleTimer(protocol: UpstreamHTTPProtocol) -> None:
    """
    Cancel the idle timer of a connection being closed: its arguments hold
    the closed protocol (and its transport) until it fires, which after a
    burst beyond C{keepalive} kept every surplus connection in memory for
    C{keepalive_timeout}.
    """
    timer = protocol.idleTimer
    if timer is not None and timer.active():
        timer.cancel()
    protocol.idleTimer = None


class _QuietFactory(Factory):
    """
    Hands one prepared protocol to an endpoint, without logging a line per
    backend connection as Twisted's default factories do.
    """

    noisy = False

    def __init__(self, protocol: UpstreamHTTPProtocol) -> None:
        self._protocol: Optional[UpstreamHTTPProtocol] = protocol

    def buildProtocol(self, addr: Any) -> Optional[UpstreamHTTPProtocol]:
        """
        @return: the prepared protocol, handed over once (one factory per
            connection attempt).  Not kept: the connector keeps this
            factory, and the protocol keeps its transport, which keeps the
            connector, so a closed connection would wait for the garbage
            collector; a second call gets C{None}, which refuses it.
        """
        protocol, self._protocol = self._protocol, None
        return protocol


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
