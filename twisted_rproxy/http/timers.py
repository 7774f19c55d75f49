# -*- test-case-name: tests.unit.test_timers -*-
"""
One reactor timer for the timeouts of every client connection.

A Twisted C{DelayedCall} per connection costs about 460 bytes (the call,
two bound methods of the reactor, the bound callback and its args) and a
C{reset} per request, which for 10,000 idle keepalive connections is most
of what they hold beyond the socket.  nginx keeps its timers in one tree
and moves a connection's only when its deadline changes; this is the same
idea on a heap: each connection has at most one live entry, pushed back
lazily when its deadline moved later, and only the earliest entry has a
C{DelayedCall}.  Deadlines fire exactly when due, on the reactor's clock,
so tests drive it with L{twisted.internet.task.Clock} as before.
"""

from __future__ import annotations

import heapq
import weakref
from itertools import count
from typing import Any, List, Optional, Protocol, Tuple


class TimedConnection(Protocol):
    """
    What L{ConnectionTimers} needs of a connection: its current deadline
    (C{None} when disarmed), the deadline of its queued entry, and what to
    call when the deadline passes.
    """

    _deadline: Optional[float]
    _queuedAt: Optional[float]

    def _timedOut(self) -> None:
        ...


class ConnectionTimers:
    """
    The deadlines of a reactor's connections, in one heap.

    @ivar _heap: C{(deadline, sequence, connection)}; an entry is live only
        while it is its connection's C{_queuedAt}.
    @ivar _live: connections with a live entry; at zero the heap is
        dropped and the reactor holds no call of ours.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._heap: List[Tuple[float, int, Any]] = []
        self._order = count()
        self._live = 0
        self._call: Any = None

    def arm(self, connection: TimedConnection, seconds: float) -> None:
        """
        Time C{connection} out C{seconds} from now (replacing any earlier
        deadline).
        """
        deadline = self._reactor.seconds() + seconds
        connection._deadline = deadline
        queued = connection._queuedAt
        if queued is not None and queued <= deadline:
            return  # its entry fires first and pushes itself back
        if queued is None:
            self._live += 1
        self._push(connection, deadline)

    def disarm(self, connection: TimedConnection) -> None:
        """
        Forget C{connection}'s deadline (its entry, if any, is dropped when
        reached, or at once when it is the last one).
        """
        connection._deadline = None
        if connection._queuedAt is not None:
            connection._queuedAt = None
            self._live -= 1
            if not self._live:
                self._heap.clear()
                if self._call is not None and self._call.active():
                    self._call.cancel()
                self._call = None

    def _push(self, connection: TimedConnection, deadline: float) -> None:
        connection._queuedAt = deadline
        heapq.heappush(self._heap, (deadline, next(self._order), connection))
        call = self._call
        if call is None or not call.active():
            self._call = self._reactor.callLater(
                max(0.0, deadline - self._reactor.seconds()), self._expire)
        elif deadline < call.getTime():
            call.reset(max(0.0, deadline - self._reactor.seconds()))

    def _expire(self) -> None:
        """
        Time out every connection whose deadline has come; push back the
        ones whose deadline moved later; schedule for the next.
        """
        self._call = None
        heap = self._heap
        now = self._reactor.seconds()
        due: List[Any] = []
        while heap and heap[0][0] <= now:
            at, _order, connection = heapq.heappop(heap)
            if connection._queuedAt != at:
                continue  # stale: disarmed, or re-queued earlier
            deadline = connection._deadline
            if deadline is not None and deadline > now:
                connection._queuedAt = deadline
                heapq.heappush(heap, (deadline, next(self._order), connection))
                continue
            connection._queuedAt = None
            connection._deadline = None
            self._live -= 1
            due.append(connection)
        if heap and self._call is None:
            if self._live:
                self._call = self._reactor.callLater(max(0.0, heap[0][0] - now), self._expire)
            else:
                heap.clear()
        for connection in due:
            connection._timedOut()


_TIMERS: "weakref.WeakKeyDictionary[Any, ConnectionTimers]" = weakref.WeakKeyDictionary()


def timersFor(reactor: Any) -> ConnectionTimers:
    """
    @return: the one L{ConnectionTimers} of C{reactor}.
    """
    timers = _TIMERS.get(reactor)
    if timers is None:
        timers = _TIMERS[reactor] = ConnectionTimers(reactor)
    return timers
