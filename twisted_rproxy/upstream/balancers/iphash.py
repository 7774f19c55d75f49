# -*- test-case-name: tests.unit.test_balancers -*-
"""
C{ip_hash}: the client's network picks the peer, as
C{ngx_http_upstream_ip_hash_module.c}: the first three octets of an IPv4
address (so a /24 stays on one peer), the whole IPv6 address.
"""

from __future__ import annotations

import socket
from typing import Any, Collection, List, Optional

from ..cluster import Peer, RoundRobinBalancer
from ._method import MAX_TRIES

#: What a client that has no IP address (a UNIX socket) hashes as (nginx's
#: C{ngx_http_upstream_ip_hash_pseudo_addr}).
PSEUDO_ADDRESS = b"\0\0\0"


def hashKey(exchange: Any) -> bytes:
    """
    @return: the bytes of the client address that C{ip_hash} hashes.
    """
    address = getattr(getattr(exchange, "channel", None), "clientAddress", None)
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return PSEUDO_ADDRESS
    try:
        if ":" in host:
            return socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
        return socket.inet_aton(host)[:3]
    except (OSError, ValueError):
        return PSEUDO_ADDRESS


def walkWeights(peers: List[Peer], total: int, value: int) -> Peer:
    """
    @return: the peer whose share of C{0 .. total-1} (in config order, each
        C{weight} wide) holds C{value % total}, as nginx walks its peers.
    """
    w = value % total
    for peer in peers:
        if w < peer.weight:
            return peer
        w -= peer.weight
    return peers[-1]


class IPHashBalancer(RoundRobinBalancer):
    """
    nginx's C{ip_hash}: starting from 89, each octet of the key is mixed
    in as C{hash = (hash * 113 + octet) % 6271}; the result modulo the
    total weight of the primary peers (C{down} ones included, so marking a
    peer down moves only its clients) picks a peer.  An unusable or
    already tried peer makes it hash the key again, and after 21 tries the
    request falls back to round-robin.

    Unlike nginx, which keeps the hash between a request's tries, each
    pick starts again from 89 and skips the peers already tried, which
    reaches the same peers in the same order.
    """

    def __init__(self, peers: List[Peer], reactor: Any = None) -> None:
        """
        @param peers: the group (C{ip_hash} allows no backup peer).
        @param reactor: the clock of C{fail_timeout}.
        """
        super().__init__(peers, reactor)
        self._totalWeight = sum(p.weight for p in self.primary)

    def pick(self, exchange: Any, excluded: Collection[Peer] = ()) -> Optional[Peer]:
        """
        @return: the client's peer, or the round-robin pick when it and the
            next 20 rehashes are unusable.
        """
        if self.isSingle or not self.primary:
            return super().pick(exchange, excluded)
        key = hashKey(exchange)
        now = self._reactor.seconds()
        value = 89
        for _ in range(MAX_TRIES):
            for octet in key:
                value = (value * 113 + octet) % 6271
            peer = walkWeights(self.primary, self._totalWeight, value)
            if peer not in excluded and self.isAvailable(peer, now):
                return self.markChosen(peer, now)
        return super().pick(exchange, excluded)
