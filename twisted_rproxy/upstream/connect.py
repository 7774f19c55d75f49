# -*- test-case-name: tests.unit.test_connect -*-
"""
New TCP connections to backends, opened at once and reported through one
L{Deferred}.

Twisted's way there is an endpoint: a C{TCP4ClientEndpoint} makes a
C{_WrappingFactory}, a C{Connector} (with a connect timer of its own) and a
C{tcp.Client}, which waits a reactor turn (a C{callLater(0)}) and a
C{Deferred} of its own before it sends the SYN; the endpoint's
C{_WrappingProtocol} then sits between the transport and the protocol for
every read of the connection's life.  A connection cost about 85 us of
CPU that way, of which the system calls take about 25 (bench/connects.py),
and nginx's default (no C{keepalive} in the upstream) opens one per
request; the benchmark's C{keepalive 32} for 50 clients, about one per 18.

L{connectTCP} here builds only the C{tcp.Client} (a L{FlushingClient},
so the connection's writes are flushed after reads, like every other
proxy connection), gives it a one-shot connector, L{OneConnection}, and
starts the connect in the same call.  A failure is still reported on a
later reactor turn, as Twisted reports it, so a caller never sees its
Deferred fail before C{connectTCP} has returned.  Timeouts are the
caller's: cancelling the Deferred stops the attempt, as with an endpoint.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectingCancelledError, NoProtocol
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.python.failure import Failure

from ..transport import FlushingClient


class DirectClient(FlushingClient):
    """
    A L{FlushingClient} that connects within its constructor and tells its
    L{OneConnection} once the protocol is connected.
    """

    connector: "OneConnection"

    def _finishInit(self, whenDone: Any, skt: Any, error: Any, reactor: Any) -> None:
        """
        Start connecting now, rather than on the next reactor turn.  A
        socket that could not be made (or bound) fails later, as in
        Twisted.
        """
        if not whenDone:
            super()._finishInit(whenDone, skt, error, reactor)
            return
        # No protocol yet, as in Twisted's own _finishInit.
        self._commonConnection.__init__(self, skt, None, reactor)  # type: ignore[arg-type]
        if self._requiresResolution:
            whenDone()  # a host name: Twisted's resolution, then the connect
        else:
            self._setRealAddress(self.addr)

    def startWriting(self) -> None:
        """
        While connecting, have the reactor watch for the connect's outcome
        at once: a flushing transport asked to write during another
        connection's read waits for that read's flush, which sends nothing
        on a connection not yet made.
        """
        if self.connected:
            super().startWriting()
        else:
            self._arm()

    def failIfNotConnected(self, err: Exception) -> None:
        """
        Fail as Twisted does, then replace the C{doRead}/C{doWrite} that
        Twisted's C{doConnect} set on the instance: bound methods of this
        client, a cycle it removes only on success.  The reactor may still
        call one for the event being handled; it then does nothing, as
        C{doConnect} would without a connector.
        """
        super().failIfNotConnected(err)
        if "doRead" in self.__dict__:
            self.doRead = self.doWrite = _nothing  # type: ignore[method-assign]

    def _connectDone(self) -> None:
        """
        Connected: build and connect the protocol as Twisted does, then
        fire the connection's Deferred with it.
        """
        super()._connectDone()
        self.connector.connected(self.protocol)


class OneConnection:
    """
    The connector of one L{DirectClient}: what C{tcp.Client} asks of a
    connector (C{buildProtocol}, C{connectionFailed}, C{connectionLost}),
    for one attempt whose outcome goes to L{deferred}.

    @ivar deferred: fires with the connected protocol, or fails with the
        reason the attempt failed; C{None} once it has fired.
    @ivar transport: the client while it connects, so that cancelling can
        stop it; C{None} afterwards (the two would refer to each other).
    @ivar starting: whether the client's constructor is still running; a
        failure then is reported on the next reactor turn.
    """

    def __init__(self, factory: IProtocolFactory, reactor: Any) -> None:
        self._factory: Optional[IProtocolFactory] = factory
        self._reactor = reactor
        self.deferred: Optional[Deferred[IProtocol]] = Deferred(self._cancel)
        self.transport: Optional[DirectClient] = None
        self.starting = True
        self._built = False
        factory.doStart()

    def buildProtocol(self, addr: Any) -> Optional[IProtocol]:
        """
        @return: the factory's protocol for this connection.
        """
        assert self._factory is not None
        protocol = self._factory.buildProtocol(addr)
        self._built = protocol is not None
        return protocol

    def connected(self, protocol: IProtocol) -> None:
        """
        The client is connected and C{protocol} made its connection; if
        the factory built none, Twisted closes the connection and this
        fails with C{NoProtocol}, as an endpoint does.
        """
        self.transport = None
        d, self.deferred = self.deferred, None
        if d is None:
            return
        if self._built:
            d.callback(protocol)
        else:
            d.errback(NoProtocol())

    def connectionFailed(self, reason: Failure) -> None:
        """
        The attempt failed: fail the Deferred (on the next turn if the
        client's constructor has not returned yet).
        """
        self.transport = None
        self._stopFactory()
        d, self.deferred = self.deferred, None
        if d is None:
            return
        if self.starting:
            self._reactor.callLater(0, _failLater, d, reason)
        else:
            d.errback(reason)

    def connectionLost(self, reason: Failure) -> None:
        """
        The connected protocol has been told already; only the factory is
        left to stop.
        """
        self._stopFactory()

    def _stopFactory(self) -> None:
        factory, self._factory = self._factory, None
        if factory is not None:
            factory.doStop()

    def _cancel(self, d: Deferred[IProtocol]) -> None:
        """
        Stop connecting, failing the Deferred as an endpoint does.
        """
        transport, self.transport = self.transport, None
        self.deferred = None
        if transport is not None:
            # The address as given: a host name may not be resolved yet.
            host, port = transport.addr[:2]
            d.errback(ConnectingCancelledError(transport._addressType("TCP", host, port)))
            transport.stopConnecting()


def _nothing() -> None:
    """What a failed client does when the reactor still calls it."""


def _failLater(d: Deferred[IProtocol], reason: Failure) -> None:
    if not d.called:  # cancelled in the meantime
        d.errback(reason)


def connectTCP(reactor: Any, host: str, port: int, factory: IProtocolFactory) -> Deferred[IProtocol]:
    """
    Connect to C{host:port} (an IPv4 or IPv6 address, or a name Twisted
    resolves) with the protocol C{factory} builds.

    @return: fires with the connected protocol, or fails with Twisted's
        C{ConnectError} for the reason; cancel it to give up.
    """
    connection = OneConnection(factory, reactor)
    d = connection.deferred
    assert d is not None
    client = DirectClient(host, port, None, connection, reactor)
    connection.starting = False
    if connection.deferred is not None:
        connection.transport = client
    return d
