#!/usr/bin/env python3
# -*- test-case-name: tests.integration.test_bench -*-
"""
The ceiling the Twisted reactor leaves on this machine: a byte relay with
no HTTP at all.  Each client connection gets its own backend connection,
and bytes go across both ways as they arrive, with Twisted's own TCP
transports, producers and the epoll reactor.  It parses nothing, so it is
no proxy anyone would deploy; its requests/s next to nginx's and
twisted_rproxy's in the same run says how much of the gap is the reactor
and how much is the proxy's own work.

    python3 bench/bareproxy.py LISTEN_PORT BACKEND_PORT

It prints C{LISTENING} once it accepts connections.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402


class BackendSide(Protocol):
    """The backend half: what it sends goes to the client."""

    client: "ClientSide"

    def dataReceived(self, data: bytes) -> None:
        self.client.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.client.transport.loseConnection()  # type: ignore[union-attr]


class ClientSide(Protocol):
    """
    The client half: holds what arrives before the backend connection is
    up, then relays; each side is the other's producer, so a slow reader
    pauses the fast writer.
    """

    def __init__(self, backendPort: int) -> None:
        self.backendPort = backendPort
        self.backend: Optional[BackendSide] = None
        self.early: List[bytes] = []

    def connectionMade(self) -> None:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.backendPort)
        side = BackendSide()
        side.client = self
        connecting = endpoint.connect(Factory.forProtocol(lambda: side))
        connecting.addCallbacks(self._connected, lambda _: self.transport.loseConnection())

    def _connected(self, side: BackendSide) -> None:
        self.backend = side
        side.transport.registerProducer(self.transport, True)  # type: ignore[union-attr]
        self.transport.registerProducer(side.transport, True)  # type: ignore[union-attr]
        side.transport.writeSequence(self.early)  # type: ignore[union-attr]
        self.early = []

    def dataReceived(self, data: bytes) -> None:
        if self.backend is None:
            self.early.append(data)
        else:
            self.backend.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.backend is not None:
            self.backend.transport.loseConnection()  # type: ignore[union-attr]


def main(argv: List[str]) -> None:
    """Listen on C{argv[1]}, relay to 127.0.0.1:C{argv[2]}."""
    listenPort, backendPort = int(argv[1]), int(argv[2])
    factory = Factory.forProtocol(lambda: ClientSide(backendPort))
    listening = TCP4ServerEndpoint(reactor, listenPort, backlog=4096,
                                   interface="127.0.0.1").listen(factory)
    listening.addCallback(lambda _: print("LISTENING", flush=True))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
