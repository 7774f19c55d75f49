# -*- test-case-name: tests.integration.test_http2 -*-
"""
The protocol of a connection on a listener that offers HTTP/2: it picks
the codec once, by the ALPN protocol TLS negotiated or, on a plain socket,
by whether the client opened with HTTP/2's connection preface (prior
knowledge, as nginx 1.25.1+ with C{http2 on}), then hands the connection
to an L{HTTPChannel <twisted_rproxy.http.channel.HTTPChannel>} or an
L{H2Channel <twisted_rproxy.http.h2channel.H2Channel>} and relays to it.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ..transport import setNoDelay
from .channel import HTTPChannel
from .h2channel import H2Channel

#: The client connection preface (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@implementer(IHandshakeListener)
class ProtocolSelector(Protocol):
    """
    Until the first request bytes: the codec not chosen yet.

    @ivar chosen: the channel once chosen.
    """

    scheme = "http"
    transport: Any

    def __init__(self, listener: Any, reactor: Any, factory: Any) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.listener = listener
        self.factory = factory
        self.chosen: Optional[Any] = None
        self.lost = False
        self._buffer = b""
        self._timer: Any = None
        self._noDelaySet = False

    def connectionMade(self) -> None:
        """
        Give the client C{client_header_timeout} to start.
        """
        if self.listener.defaultServer.conf.get("tcp_nodelay"):
            setNoDelay(self.transport)
            self._noDelaySet = True
        seconds = self.listener.defaultServer.conf.get("client_header_timeout")
        if seconds:
            self._timer = self._reactor.callLater(seconds, self._timedOut)

    def _timedOut(self) -> None:
        self._timer = None
        if self.chosen is None:
            self.transport.abortConnection()

    def isIdle(self) -> bool:
        """
        A connection yet to send its first request is not idle (as for
        HTTP/1.1): it is answered within its timeouts.
        """
        return False

    def handshakeCompleted(self) -> None:
        """
        TLS is up: ALPN has said which protocol the client speaks.
        """
        if self.chosen is None:
            self._choose(getattr(self.transport, "negotiatedProtocol", None) == b"h2")

    def plainConnection(self) -> None:
        """
        The TLS layer found the client speaking plain text on a TLS port:
        HTTP/1.x, so its request gets nginx's 497 (as nginx, which parses
        such a request as HTTP/1.x whatever the listener offers).
        """
        if self.chosen is None:
            self._choose(False)

    def dataReceived(self, data: bytes) -> None:
        """
        Relay to the chosen channel, choosing first if need be.
        """
        chosen = self.chosen
        if chosen is not None:
            chosen.dataReceived(data)
            return
        if self.scheme == "https":
            self._choose(getattr(self.transport, "negotiatedProtocol", None) == b"h2")
            self.chosen.dataReceived(data)  # type: ignore[union-attr]
            return
        data = self._buffer + data
        if len(data) < len(PREFACE) and PREFACE.startswith(data):
            self._buffer = data
            return
        self._buffer = b""
        self._choose(data.startswith(PREFACE))
        self.chosen.dataReceived(data)  # type: ignore[union-attr]

    def _choose(self, http2: bool) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        channel: Any = (H2Channel if http2 else HTTPChannel)(self.listener, self._reactor)
        channel.scheme = self.scheme
        channel.factory = self.factory
        if self._noDelaySet:
            channel.noDelaySet = True
        self.chosen = channel
        channels = getattr(self.factory, "channels", None)
        if channels is not None:
            channels.add(channel)
            channels.discard(self)
        channel.makeConnection(self.transport)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        Tell the chosen channel, if any.
        """
        self.lost = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.chosen is not None:
            self.chosen.connectionLost(reason)
