# -*- test-case-name: tests.unit.test_peerstate -*-
"""
Where the passive-health and load counters of upstream peers live
(C{fails}, C{checked}, C{accessed}, C{conns}): behind L{IPeerStateStore},
so that the in-process store used today can be swapped for one that
worker processes, and later several machines, share (nginx keeps these in
the C{zone} of an upstream, in shared memory).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from zope.interface import implementer

from ..interfaces import IPeerState, IPeerStateStore


@implementer(IPeerState)
class MemoryPeerState:
    """
    The counters of one peer as plain attributes of this process.
    """

    __slots__ = ("fails", "checked", "accessed", "conns")

    def __init__(self) -> None:
        self.fails = 0
        self.checked = 0.0
        self.accessed = 0.0
        self.conns = 0


@implementer(IPeerStateStore)
class MemoryPeerStateStore:
    """
    The default store: one L{MemoryPeerState} per (group, address), in
    this process.  A group's zone name, if any, is part of the key, so two
    upstreams naming one C{zone} keep apart, as in nginx.

    One store lives as long as the config that made it; a reload starts
    from fresh counters, as nginx's does.
    """

    def __init__(self) -> None:
        self._states: Dict[Tuple[Optional[str], str, str], MemoryPeerState] = {}

    def stateFor(self, zone: Optional[str], upstream: str, address: str) -> IPeerState:
        """
        @return: the state of peer C{address} of group C{upstream}, the
            same object every time it is asked for (so a peer that a
            re-resolution keeps keeps its counters).
        """
        key = (zone, upstream, address)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = MemoryPeerState()
        return state
