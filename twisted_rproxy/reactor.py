# -*- test-case-name: tests.unit.test_reactor -*-
"""
The epoll reactor the C{rproxy} command runs on: Twisted's own, except that
the proxy's connections get their events without a legacy log context.

Twisted's C{doPoll} wraps every event in C{log.callWithLogger}: it asks the
transport for its log prefix (a formatted string), then copies and restores
a context dict, in six Python calls, so that old-style C{log.msg} calls
made while handling the event carry that prefix as their C{system}.  The
proxy logs through C{twisted.logger} with its own fields and never reads
that context, and on the request path this wrapping cost about a twentieth
of the proxy's CPU: each proxied request is at least two events.  Here the
proxy's own transports (L{FlushingServer}, L{FlushingClient}) are handed
their events directly; everything else (listening ports, the waker,
process pipes, other code's transports) keeps Twisted's wrapping.  The
only difference a user can see is the C{system} of an unexpected exception
from a proxy connection, which Twisted logs as C{-} instead of the
connection's prefix.

Each batch of events is bracketed by L{startEventBatch} and
L{endEventBatch}, so buffering layers (TLS) flush once per batch, without
a timer, and what they write is sent in the same pass.
"""

from __future__ import annotations

import errno
from typing import Any, Optional, Tuple

from twisted.internet.epollreactor import EPollReactor
from twisted.python import log

from .transport import FlushingClient, FlushingServer, endEventBatch, startEventBatch

DIRECT_DISPATCH: Tuple[type, ...] = (FlushingServer, FlushingClient)
"""
The transport types that get their events without a log context, with
their subclasses (the backend connections' L{DirectClient
<twisted_rproxy.upstream.connect.DirectClient>} is one).
"""


class ProxyEPollReactor(EPollReactor):
    """
    L{EPollReactor} that dispatches the proxy's connections directly.
    """

    def doPoll(self, timeout: Optional[float]) -> None:
        """
        Poll for events and handle each, as L{EPollReactor.doPoll} does.
        """
        if timeout is None:
            timeout = -1  # wait until something happens
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        direct = DIRECT_DISPATCH
        startEventBatch()
        try:
            for fd, event in events:
                selectable: Any = selectables.get(fd)
                if selectable is None:
                    continue
                if isinstance(selectable, direct):
                    handle(selectable, fd, event)
                else:
                    log.callWithLogger(selectable, handle, selectable, fd, event)
        finally:
            endEventBatch()

    doIteration = doPoll


def install() -> ProxyEPollReactor:
    """
    Install L{ProxyEPollReactor} as the global reactor.

    @raise twisted.internet.error.ReactorAlreadyInstalledError: when a
        reactor is installed already.
    """
    from twisted.internet.main import installReactor

    reactor = ProxyEPollReactor()
    installReactor(reactor)
    return reactor


def installIfUnset() -> bool:
    """
    Install L{ProxyEPollReactor} unless a reactor is installed already or
    this system has no epoll (the default reactor is used then).

    @return: whether it was installed.
    """
    import sys

    if "twisted.internet.reactor" in sys.modules:
        return False
    try:
        import select

        select.epoll
    except AttributeError:
        return False
    install()
    return True
