# -*- test-case-name: tests.integration.test_listen -*-
"""
The C{listen} directive as a Twisted server endpoint.  TCP sockets are made
here, so that nginx's socket options apply: C{[::]:80} is IPv6-only by
default (so C{listen 80; listen [::]:80;} both bind), and C{reuseport},
C{rcvbuf=}, C{sndbuf=} and C{backlog=} are honoured.  UNIX sockets use
Twisted's own endpoint.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Dict, Mapping, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from .config.model import ListenAddress
from .config.values import parseSize
from .transport import adoptFlushingPort


class ListenError(Exception):
    """
    A listening socket could not be made; the message reads like nginx's.
    """


@implementer(IStreamServerEndpoint)
class ListenEndpoint:
    """
    Listens on one TCP address with nginx's socket options, handing the
    bound socket to the reactor as a L{FlushingPort
    <twisted_rproxy.transport.FlushingPort>} (C{adoptStreamPort} on
    reactors without Twisted's POSIX transports).
    """

    def __init__(self, reactor: Any, address: ListenAddress) -> None:
        self._reactor = reactor
        self.address = address

    def _options(self) -> dict:
        options = {}
        for option in self.address.options:
            key, _sep, value = option.partition("=")
            options[key] = value
        return options

    def makeSocket(self) -> socket.socket:
        """
        Create, configure, bind and listen on the socket.

        @raise OSError: when the address cannot be bound.
        """
        address = self.address
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        host = address.host or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        options = self._options()
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                v6only = options.get("ipv6only", "on") != "off"
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
            if "reuseport" in options:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if options.get("rcvbuf"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, parseSize(options["rcvbuf"]))
            if options.get("sndbuf"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, parseSize(options["sndbuf"]))
            sock.bind((host, address.port))
            sock.listen(address.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def listen(self, factory: Any) -> "Deferred[Any]":
        """
        Bind and start accepting connections for C{factory}.
        """
        try:
            sock = self.makeSocket()
        except OSError as e:
            return fail(
                ListenError(f"bind() to {self.address.display()} failed ({e.strerror})")
            )
        try:
            port = adoptFlushingPort(self._reactor, sock.fileno(), sock.family, factory)
        finally:
            sock.close()  # the reactor holds its own duplicate
        return succeed(port)


#: The environment variable through which a master hands its listening
#: sockets to the workers it starts: JSON C{{address: [fd, family]}}.
INHERITED_ENV = "RPROXY_LISTEN_FDS"

#: Listening sockets a process inherited, by C{ListenAddress.display()}.
Inherited = Mapping[str, Tuple[int, int]]


def inheritedSockets(environ: Mapping[str, str] = os.environ) -> Dict[str, Tuple[int, int]]:
    """
    @return: the listening sockets a master passed to this worker, or none.
    """
    text = environ.get(INHERITED_ENV)
    if not text:
        return {}
    return {address: (int(fd), int(family)) for address, (fd, family) in json.loads(text).items()}


@implementer(IStreamServerEndpoint)
class InheritedEndpoint:
    """
    Serves on a listening socket made by another process (the master),
    as nginx's workers serve on the master's sockets.
    """

    def __init__(self, reactor: Any, fileno: int, family: int) -> None:
        self._reactor = reactor
        self.fileno = fileno
        self.family = family

    def listen(self, factory: Any) -> "Deferred[Any]":
        """
        Start accepting connections on the inherited socket.
        """
        return succeed(adoptFlushingPort(self._reactor, self.fileno, self.family, factory))


def bindSocket(address: ListenAddress) -> socket.socket:
    """
    Make the listening socket for C{address} without serving on it, for a
    master that hands it to its workers.

    @raise ListenError: when it cannot be bound.
    """
    if address.unixPath is None:
        try:
            return ListenEndpoint(None, address).makeSocket()
        except OSError as e:
            raise ListenError(f"bind() to {address.display()} failed ({e.strerror})") from e
    if os.path.exists(address.unixPath):
        try:
            os.unlink(address.unixPath)
        except OSError:
            pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(address.unixPath)
        sock.listen(address.backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise ListenError(f"bind() to {address.display()} failed ({e.strerror})") from e
    return sock


def endpointFor(reactor: Any, address: ListenAddress, inherited: Optional[Inherited] = None) -> Any:
    """
    @param inherited: sockets this process inherited from its master; an
        address among them is served on that socket instead of a new one.
    @return: the server endpoint for a C{listen} address.
    """
    if inherited and address.display() in inherited:
        fileno, family = inherited[address.display()]
        return InheritedEndpoint(reactor, fileno, family)
    if address.unixPath is not None:
        if os.path.exists(address.unixPath):
            # nginx removes a stale socket file before binding.
            try:
                os.unlink(address.unixPath)
            except OSError:
                pass
        return serverFromString(reactor, address.endpointDescription())
    return ListenEndpoint(reactor, address)
