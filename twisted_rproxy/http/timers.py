# -*- test-case-name: tests.unit.test_timers -*-
"""
One reactor timer for the timeouts of every connection: the client
connections' header, body and keepalive timeouts and the upstream
connections' read timeout.

A Twisted C{DelayedCall} per connection costs about 460 bytes (the call,
two bound methods of the reactor, the bound callback and its args) and a
C{reset} per request, which for 10,000 idle keepalive connections is most
of what they hold beyond the socket.  nginx keeps its timers in one tree
and moves a connection's only when its deadline changes; this is the same
idea on a heap: each connection has at most one live entry, pushed back
lazily when its deadline moved later, and only the earliest entry has a
C{DelayedCall}.  A disarmed entry lets go of its connection at once.
Deadlines fire exactly when due, on the reactor's clock, so tests drive it
with L{twisted.internet.task.Clock} as before.
"""

from __future__ import annotations

import heapq
import weakref
from itertools import count
from typing import Any, List, Optional, Protocol


class TimedConnection(Protocol):
    """
    What L{ConnectionTimers} needs of a connection: its current deadline
    (C{None} when disarmed), its entry in the heap (C{None} when it has
    none), and what to call when the deadline passes.
    """

    _deadline: Optional[float]
    _timerEntry: Optional[List[Any]]

    def _timedOut(self) -> None:
        ...


class ConnectionTimers:
    """
    The deadlines of a reactor's connections, in one heap.

    @ivar _heap: C{[deadline, sequence, connection]} lists; a disarmed or
        superseded entry has its connection set to C{None}, so a closed
        connection is never kept alive by the heap, and the heap is
        compacted when such entries are more than half of it (as Twisted
        does for cancelled calls).
    @ivar _live: connections with an entry; at zero the heap is dropped
        and the reactor holds no call of ours.
    @ivar _stale: entries whose connection was set to C{None}.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._heap: List[List[Any]] = []
        self._order = count()
        self._live = 0
        self._stale = 0
        self._call: Any = None

    def arm(self, connection: TimedConnection, seconds: float) -> None:
        """
        Time C{connection} out C{seconds} from now (replacing any earlier
        deadline).
        """
        deadline = self._reactor.seconds() + seconds
        connection._deadline = deadline
        entry = connection._timerEntry
        if entry is not None:
            if entry[0] <= deadline:
                return  # its entry comes first and pushes itself back
            entry[2] = None
            self._stale += 1
        else:
            self._live += 1
        self._push(connection, deadline)

    def disarm(self, connection: TimedConnection) -> None:
        """
        Forget C{connection}'s deadline and let go of it.
        """
        connection._deadline = None
        entry = connection._timerEntry
        if entry is None:
            return
        entry[2] = None
        connection._timerEntry = None
        self._live -= 1
        self._stale += 1
        heap = self._heap
        if not self._live:
            heap.clear()
            self._stale = 0
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
        elif self._stale > 50 and self._stale > len(heap) >> 1:
            heap[:] = [e for e in heap if e[2] is not None]
            heapq.heapify(heap)
            self._stale = 0

    def _push(self, connection: TimedConnection, deadline: float) -> None:
        entry = [deadline, next(self._order), connection]
        connection._timerEntry = entry
        heapq.heappush(self._heap, entry)
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
            entry = heapq.heappop(heap)
            connection = entry[2]
            if connection is None:
                self._stale -= 1
                continue
            deadline = connection._deadline
            if deadline is not None and deadline > now:
                entry[0] = deadline
                entry[1] = next(self._order)
                heapq.heappush(heap, entry)
                continue
            connection._timerEntry = None
            connection._deadline = None
            self._live -= 1
            due.append(connection)
        if heap and self._call is None:
            if self._live:
                self._call = self._reactor.callLater(max(0.0, heap[0][0] - now), self._expire)
            else:
                heap.clear()
                self._stale = 0
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
