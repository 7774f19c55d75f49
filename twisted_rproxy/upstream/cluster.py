# -*- test-case-name: tests.unit.test_upstream -*-
"""
Upstream groups and their peers, with nginx's smooth weighted round-robin
and passive health (C{max_fails} within C{fail_timeout}), the base that
other balancers derive from.
"""

from __future__ import annotations

from typing import Any, Collection, Iterable, List, Optional, Tuple

from zope.interface import implementer

from ..interfaces import IBalancer


class Peer:
    """
    One backend address of an upstream.

    @ivar name: the address as nginx prints it in C{$upstream_addr}.
    @ivar host: IP address or host name (C{None} for a UNIX socket).
    @ivar port: the port (0 for a UNIX socket).
    @ivar unixPath: the socket path, or C{None}.
    @ivar conns: connections in use now.
    @ivar server: the address as written in its C{server} directive
        (C{backend.example.com:8080}), shared by every address a name
        resolves to; consistent hashing places its points by it, as nginx
        does.
    """

    def __init__(self, host: Optional[str], port: int, unixPath: Optional[str] = None,
                 weight: int = 1, maxFails: int = 1, failTimeout: float = 10.0,
                 backup: bool = False, down: bool = False, maxConns: int = 0,
                 server: Optional[str] = None) -> None:
        self.host = host
        self.port = port
        self.unixPath = unixPath
        self.weight = weight
        self.maxFails = maxFails
        self.failTimeout = failTimeout
        self.backup = backup
        self.down = down
        self.maxConns = maxConns
        self.currentWeight = 0
        self.effectiveWeight = weight
        self.fails = 0
        self.checked = 0.0
        self.accessed = 0.0
        self.conns = 0
        if unixPath is not None:
            self.name = f"unix:{unixPath}"
        elif host is not None and ":" in host:
            self.name = f"[{host}]:{port}"
        else:
            self.name = f"{host}:{port}"
        self.server = self.name if server is None else server

    def __repr__(self) -> str:
        return f"<Peer {self.name}>"


@implementer(IBalancer)
class RoundRobinBalancer:
    """
    nginx's smooth weighted round-robin (C{ngx_http_upstream_get_peer}):
    each pick adds every peer's effective weight to its current weight and
    takes the largest, so weights 5,1,1 give a,a,b,a,c,a,a.

    Backup peers are tried only when every primary peer is unavailable.
    """

    def __init__(self, peers: List[Peer], reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.primary = [p for p in peers if not p.backup]
        self.backup = [p for p in peers if p.backup]

    @property
    def peers(self) -> List[Peer]:
        """
        Every peer, primary first.
        """
        return self.primary + self.backup

    def _available(self, peer: Peer, now: float) -> bool:
        """
        @return: whether C{peer} may take a request now: not C{down}, not
            marked failed (C{max_fails} within C{fail_timeout}) and below
            its C{max_conns}.
        """
        if peer.down:
            return False
        if peer.maxFails and peer.fails >= peer.maxFails and now - peer.checked <= peer.failTimeout:
            return False
        if peer.maxConns and peer.conns >= peer.maxConns:
            return False
        return True

    def _usable(self, peers: Iterable[Peer], excluded: Collection[Peer],
                now: float) -> List[Peer]:
        """
        @return: the peers of C{peers} that are available and not excluded,
            in order.
        """
        return [p for p in peers if p not in excluded and self._available(p, now)]

    def _smooth(self, candidates: Iterable[Peer]) -> Optional[Peer]:
        """
        One step of the smooth weighted round-robin over C{candidates}
        (already filtered): the other balancers use it to break ties, as
        nginx's do.

        @return: the chosen peer, or C{None} when there are no candidates.
        """
        best = None
        total = 0
        for peer in candidates:
            peer.currentWeight += peer.effectiveWeight
            total += peer.effectiveWeight
            if peer.effectiveWeight < peer.weight:
                peer.effectiveWeight += 1
            if best is None or peer.currentWeight > best.currentWeight:
                best = peer
        if best is not None:
            best.currentWeight -= total
        return best

    def _chosen(self, peer: Peer, now: float) -> Peer:
        """
        Note that C{peer} was picked: a peer whose C{fail_timeout} has
        passed starts a new accounting period (nginx's C{checked}).

        @return: C{peer}.
        """
        if now - peer.checked > peer.failTimeout:
            peer.checked = now
        return peer

    def _pickFrom(self, peers: List[Peer], excluded: Collection[Peer]) -> Optional[Peer]:
        """
        @return: the smooth weighted round-robin's pick among C{peers}, or
            C{None} when none is usable.
        """
        now = self._reactor.seconds()
        best = self._smooth(self._usable(peers, excluded, now))
        if best is None:
            return None
        return self._chosen(best, now)

    def _single(self, excluded: Collection[Peer]) -> Optional[Peer]:
        """
        The pick of a group of one primary peer and no backup, which nginx
        never marks failed.

        @return: that peer, or C{None} when it is excluded, C{down} or at
            C{max_conns}.
        """
        peer = self.primary[0]
        if peer in excluded or peer.down:
            return None
        if peer.maxConns and peer.conns >= peer.maxConns:
            return None
        return peer

    @property
    def isSingle(self) -> bool:
        """
        Whether the group is one primary peer and no backup (nginx's
        C{peers->single}).
        """
        return len(self.primary) == 1 and not self.backup

    def pick(self, exchange: Any, excluded: Collection[Peer] = ()) -> Optional[Peer]:
        """
        @return: the next peer, or C{None} when all are down or excluded.
        """
        if self.isSingle:
            return self._single(excluded)  # never marked unavailable (nginx)
        found = self._pickFrom(self.primary, excluded)
        if found is None and self.backup:
            found = self._pickFrom(self.backup, excluded)
        return found

    def release(self, peer: Peer, failed: bool) -> None:
        """
        Record the outcome for passive health, as nginx's
        C{ngx_http_upstream_free_round_robin_peer}.
        """
        now = self._reactor.seconds()
        if failed:
            peer.fails += 1
            peer.accessed = now
            peer.checked = now
            if peer.maxFails:
                peer.effectiveWeight -= peer.weight // peer.maxFails
            if peer.effectiveWeight < 0:
                peer.effectiveWeight = 0
        elif peer.accessed < peer.checked:
            peer.fails = 0


class Upstream:
    """
    A named group of peers (C{upstream NAME {}}) or the implicit group of a
    C{proxy_pass http://host:port}.

    @ivar keepalive: idle connections to cache per worker (0: none).
    """

    def __init__(self, name: str, peers: List[Peer], balancer: Any,
                 keepalive: int = 0, keepaliveRequests: int = 1000,
                 keepaliveTime: float = 3600.0,
                 keepaliveTimeout: float = 60.0, implicit: bool = False) -> None:
        self.name = name
        self.peers = peers
        self.balancer = balancer
        self.keepalive = keepalive
        self.keepaliveRequests = keepaliveRequests
        self.keepaliveTime = keepaliveTime
        self.keepaliveTimeout = keepaliveTimeout
        self.implicit = implicit

    @property
    def triesDefault(self) -> int:
        """
        How many peers a request may try with C{proxy_next_upstream_tries 0}.
        """
        return max(1, len([p for p in self.peers if not p.down]))

    def __repr__(self) -> str:
        return f"<Upstream {self.name} {self.peers}>"


def splitHostPort(text: str, defaultPort: int) -> Tuple[str, int]:
    """
    Split C{host[:port]} or C{[v6]:port}.

    @raise ValueError: for a bad port.
    """
    if text.startswith("["):
        end = text.index("]")
        host, rest = text[1:end], text[end + 1 :]
        if not rest:
            return host, defaultPort
        if not rest.startswith(":"):
            raise ValueError(f'invalid host "{text}"')
        portText = rest[1:]
    else:
        host, sep, portText = text.rpartition(":")
        if not sep:
            return text, defaultPort
    if not portText.isdigit() or not 0 < int(portText) < 65536:
        raise ValueError(f'invalid port in "{text}"')
    return host, int(portText)
