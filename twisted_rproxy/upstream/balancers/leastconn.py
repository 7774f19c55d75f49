# -*- test-case-name: tests.unit.test_balancers -*-
"""
C{least_conn}: the peer with the fewest connections for its weight, ties
broken by the smooth weighted round-robin, as
C{ngx_http_upstream_least_conn_module.c}.
"""

from __future__ import annotations

from typing import Any, Collection, List, Optional

from ..cluster import Peer, RoundRobinBalancer


class LeastConnBalancer(RoundRobinBalancer):
    """
    Picks the usable peer with the lowest C{conns / weight} (compared as
    C{a.conns * b.weight < b.conns * a.weight}, so no division); among
    equally loaded peers the smooth weighted round-robin decides.  Backup
    peers are used, the same way, only when no primary peer is usable.
    """

    def pick(self, exchange: Any, excluded: Collection[Peer] = ()) -> Optional[Peer]:
        """
        @return: the least loaded peer, or C{None} when none is usable.
        """
        if self.isSingle:
            return self.singlePick(excluded)
        found = self._leastLoaded(self.primary, excluded)
        if found is None and self.backup:
            found = self._leastLoaded(self.backup, excluded)
        return found

    def _leastLoaded(self, peers: List[Peer], excluded: Collection[Peer]) -> Optional[Peer]:
        """
        @return: the least loaded usable peer of C{peers}, or C{None}.
        """
        now = self._reactor.seconds()
        usable = self.usablePeers(peers, excluded, now)
        if not usable:
            return None
        best = usable[0]
        for peer in usable[1:]:
            if peer.conns * best.weight < best.conns * peer.weight:
                best = peer
        tied = [p for p in usable if p.conns * best.weight == best.conns * p.weight]
        if len(tied) > 1:
            best = self.smoothPick(tied)  # type: ignore[assignment]
        return self.markChosen(best, now)
