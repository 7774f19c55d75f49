# -*- test-case-name: tests.unit.test_balancers -*-
"""
C{random [two [least_conn]]}: a peer drawn at random in proportion to its
weight, or the less loaded of two drawn so, as
C{ngx_http_upstream_random_module.c}.
"""

from __future__ import annotations

import bisect
import itertools
import random as _random
from typing import Any, Collection, List, Optional

from ..cluster import Peer, RoundRobinBalancer
from ._method import MAX_TRIES


class RandomBalancer(RoundRobinBalancer):
    """
    Draws primary peers with probability C{weight / total weight}.  With
    C{two}, it draws two different usable peers and takes the one with
    fewer connections for its weight (C{least_conn}, the only method nginx
    offers there), the second on a tie.  An unusable or already tried draw
    is drawn again; after 21 draws the request falls back to round-robin.

    @ivar two: whether to choose between two draws.
    """

    def __init__(self, peers: List[Peer], two: bool = False, reactor: Any = None,
                 randomSource: Optional[_random.Random] = None) -> None:
        """
        @param peers: the group (C{random} allows no backup peer).
        @param two: C{random two}.
        @param reactor: the clock of C{fail_timeout}.
        @param randomSource: where draws come from; tests pass a seeded
            one.
        """
        super().__init__(peers, reactor)
        self.two = two
        self._random = randomSource if randomSource is not None else _random.Random()
        self._bounds = list(itertools.accumulate(p.weight for p in self.primary))

    def _draw(self) -> Peer:
        """
        @return: a primary peer, drawn in proportion to its weight.
        """
        x = self._random.randrange(self._bounds[-1])
        return self.primary[bisect.bisect_right(self._bounds, x)]

    def pick(self, exchange: Any, excluded: Collection[Peer] = ()) -> Optional[Peer]:
        """
        @return: the drawn peer, or the round-robin pick.
        """
        if self.isSingle or len(self.primary) < (2 if self.two else 1):
            return super().pick(exchange, excluded)
        now = self._reactor.seconds()
        first: Optional[Peer] = None
        for _ in range(MAX_TRIES):
            peer = self._draw()
            if peer is first or peer in excluded or not self.isAvailable(peer, now):
                continue
            if not self.two:
                return self.markChosen(peer, now)
            if first is None:
                first = peer
                continue
            if peer.conns * first.weight > first.conns * peer.weight:
                peer = first
            return self.markChosen(peer, now)
        return super().pick(exchange, excluded)
