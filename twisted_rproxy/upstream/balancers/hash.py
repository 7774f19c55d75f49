# -*- test-case-name: tests.unit.test_balancers -*-
"""
C{hash KEY [consistent]}: a key made of variables picks the peer, as
C{ngx_http_upstream_hash_module.c}.  Plain hashing is the
C{Cache::Memcached} scheme; C{consistent} is ketama, so removing one of N
peers moves only about 1/N of the keys.
"""

from __future__ import annotations

import bisect
import zlib
from typing import Any, Collection, List, Optional, Tuple

from ..cluster import Peer, RoundRobinBalancer
from ._method import MAX_TRIES
from .iphash import walkWeights

#: Points on the ring per unit of weight (nginx's 160).
POINTS_PER_WEIGHT = 160


def keyBytes(key: Any, exchange: Any) -> bytes:
    """
    @param key: a compiled value (C{evaluate(exchange)} gives a string).
    @return: the key of C{exchange} as bytes (empty when it has no value).
    """
    text = key.evaluate(exchange)
    if not text:
        return b""
    return text.encode("utf-8", "surrogateescape")


class HashBalancer(RoundRobinBalancer):
    """
    C{hash KEY}: the first try takes C{(crc32(KEY) >> 16) & 0x7fff}, the
    n-th adds that of C{crc32(str(n) + KEY)} to the previous value, and the
    sum modulo the total weight of the primary peers picks one (weights
    honoured as shares, C{down} peers keeping theirs).  An unusable or
    already tried peer makes it rehash; after 21 tries, and for an empty
    key, the request falls back to round-robin.
    """

    def __init__(self, peers: List[Peer], key: Any, reactor: Any = None) -> None:
        """
        @param peers: the group (C{hash} allows no backup peer).
        @param key: the compiled key, evaluated for each request.
        @param reactor: the clock of C{fail_timeout}.
        """
        super().__init__(peers, reactor)
        self.key = key
        self._totalWeight = sum(p.weight for p in self.primary)

    def pick(self, exchange: Any, excluded: Collection[Peer] = ()) -> Optional[Peer]:
        """
        @return: the key's peer, or the round-robin pick.
        """
        key = keyBytes(self.key, exchange)
        if self.isSingle or not key or not self.primary:
            return super().pick(exchange, excluded)
        now = self._reactor.seconds()
        value = 0
        for rehash in range(MAX_TRIES):
            data = (b"%d" % rehash + key) if rehash else key
            value += (zlib.crc32(data) >> 16) & 0x7FFF
            peer = walkWeights(self.primary, self._totalWeight, value)
            if peer not in excluded and self.isAvailable(peer, now):
                return self.markChosen(peer, now)
        return super().pick(exchange, excluded)


def serverPoints(server: str, weight: int) -> List[int]:
    """
    The ring points of one C{server} address, as nginx places them: the
    base is C{HOST \\0 PORT} (the text after the last colon is the port;
    a C{unix:} path has none), and point I is the crc32 of the base
    followed by point I-1 (0 for the first) as four little-endian bytes.

    @return: C{weight * 160} points.
    """
    if server[:5].lower() == "unix:":
        host, port = server[5:], ""
    else:
        host, sep, port = server.rpartition(":")
        if not sep:
            host, port = server, ""
    base = host.encode("utf-8") + b"\0" + port.encode("utf-8")
    points = []
    previous = 0
    for _ in range(weight * POINTS_PER_WEIGHT):
        previous = zlib.crc32(base + previous.to_bytes(4, "little"))
        points.append(previous)
    return points


class ConsistentHashBalancer(RoundRobinBalancer):
    """
    C{hash KEY consistent}: every primary peer puts C{160 * weight} points
    on a ring (see L{serverPoints}); a key goes to the first point at or
    after C{crc32(KEY)}, wrapping round.  When the peers of that point
    (all addresses of its C{server}) are unusable or tried, the next point
    is taken, 21 at most before round-robin.  Peers of one C{server} share
    its points and are chosen among by the smooth weighted round-robin.
    """

    def __init__(self, peers: List[Peer], key: Any, reactor: Any = None) -> None:
        """
        @param peers: the group (C{hash} allows no backup peer).
        @param key: the compiled key, evaluated for each request.
        @param reactor: the clock of C{fail_timeout}.
        """
        super().__init__(peers, reactor)
        self.key = key
        ring: List[Tuple[int, str]] = []
        for peer in self.primary:
            ring.extend((point, peer.server) for point in serverPoints(peer.server, peer.weight))
        ring.sort()
        self._hashes: List[int] = []
        self._servers: List[str] = []
        for point, server in ring:
            if self._hashes and self._hashes[-1] == point:
                continue  # nginx keeps one server per point
            self._hashes.append(point)
            self._servers.append(server)

    def pick(self, exchange: Any, excluded: Collection[Peer] = ()) -> Optional[Peer]:
        """
        @return: the key's peer on the ring, or the round-robin pick.
        """
        if self.isSingle or not self._hashes:
            return super().pick(exchange, excluded)
        key = keyBytes(self.key, exchange)
        start = bisect.bisect_left(self._hashes, zlib.crc32(key))
        now = self._reactor.seconds()
        count = len(self._hashes)
        for step in range(MAX_TRIES):
            server = self._servers[(start + step) % count]
            usable = [p for p in self.usablePeers(self.primary, excluded, now) if p.server == server]
            best = self.smoothPick(usable)
            if best is not None:
                return self.markChosen(best, now)
        return super().pick(exchange, excluded)
