# -*- test-case-name: tests.unit.test_upstream -*-
"""
Upstream groups and their peers, with nginx's smooth weighted round-robin
and passive health (C{max_fails} within C{fail_timeout}), the base that
other balancers derive from.
"""

from __future__ import annotations

from typing import Any, Collection, Iterable, List, Optional, Set, Tuple

from zope.interface import implementer

from ..interfaces import IBalancer, IPeerState
from .peerstate import MemoryPeerState


class Peer:
    """
    One backend address of an upstream.

    @ivar name: the address as nginx prints it in C{$upstream_addr}.
    @ivar host: IP address or host name (C{None} for a UNIX socket).
    @ivar port: the port (0 for a UNIX socket).
    @ivar unixPath: the socket path, or C{None}.
    @ivar conns: connections in use now.
    @ivar state: where C{fails}, C{checked}, C{accessed} and C{conns}
        live (an L{IPeerState}); those four attributes read and write it,
        so a shared store makes them common to every process using it.
    @ivar server: the address as written in its C{server} directive
        (C{backend.example.com:8080}), shared by every address a name
        resolves to; consistent hashing places its points by it, as nginx
        does.
    @ivar checkFailed: whether an active health check
        (L{twisted_rproxy.upstream.health.HealthCheck}) has taken the peer
        out of rotation; L{RoundRobinBalancer.isAvailable} and
        L{RoundRobinBalancer.singlePick} then skip it.  Set through
        L{setCheckFailed}.
    """

    def __init__(self, host: Optional[str], port: int, unixPath: Optional[str] = None,
                 weight: int = 1, maxFails: int = 1, failTimeout: float = 10.0,
                 backup: bool = False, down: bool = False, maxConns: int = 0,
                 server: Optional[str] = None,
                 state: Optional[IPeerState] = None) -> None:
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
        self.state: IPeerState = MemoryPeerState() if state is None else state
        if unixPath is not None:
            self.name = f"unix:{unixPath}"
        elif host is not None and ":" in host:
            self.name = f"[{host}]:{port}"
        else:
            self.name = f"{host}:{port}"
        self.server = self.name if server is None else server
        self.checkFailed = False
        self._failingChecks: Set[int] = set()

    @property
    def fails(self) -> int:
        """
        Failures counted in the current C{fail_timeout} period.
        """
        return self.state.fails  # type: ignore[no-any-return]

    @fails.setter
    def fails(self, value: int) -> None:
        self.state.fails = value

    @property
    def checked(self) -> float:
        """
        When the current accounting period began.
        """
        return self.state.checked  # type: ignore[no-any-return]

    @checked.setter
    def checked(self, value: float) -> None:
        self.state.checked = value

    @property
    def accessed(self) -> float:
        """
        When the peer last failed.
        """
        return self.state.accessed  # type: ignore[no-any-return]

    @accessed.setter
    def accessed(self, value: float) -> None:
        self.state.accessed = value

    @property
    def conns(self) -> int:
        """
        Connections in use now.
        """
        return self.state.conns  # type: ignore[no-any-return]

    @conns.setter
    def conns(self, value: int) -> None:
        self.state.conns = value

    def setCheckFailed(self, check: Any, failed: bool) -> None:
        """
        Record one health check's verdict: the peer is out of rotation
        while any check of its group says it failed (nginx Plus: "a single
        failure of any check").

        @param check: the health check giving the verdict.
        @param failed: whether that check now holds the peer unhealthy.
        """
        if failed:
            self._failingChecks.add(id(check))
        else:
            self._failingChecks.discard(id(check))
        self.checkFailed = bool(self._failingChecks)

    def __repr__(self) -> str:
        return f"<Peer {self.name}>"


@implementer(IBalancer)
class RoundRobinBalancer:
    """
    nginx's smooth weighted round-robin (C{ngx_http_upstream_get_peer}):
    each pick adds every peer's effective weight to its current weight and
    takes the largest, so weights 5,1,1 give a,a,b,a,c,a,a.

    Backup peers are tried only when every primary peer is unavailable.

    This is also the base of every other balancing method, built-in or a
    team's own (see docs/upstream.md, "A balancer of your own"), as
    nginx's modules build on C{ngx_http_upstream_round_robin.c}.  A
    subclass overrides L{pick} and uses the public helpers, so that
    passive health, C{down}, C{max_conns} and the smooth weights behave
    the same in every method:

      - L{now} is the time the other helpers take;
      - L{usablePeers} filters a list down to the peers that may take the
        request now;
      - L{isAvailable} asks the same of one peer;
      - L{smoothPick} runs one step of the smooth weighted round-robin;
      - L{markChosen} must be called with the peer a pick returns;
      - L{singlePick} is the pick of a group of one peer (L{isSingle});
      - C{super().pick(exchange, excluded)} is the whole round-robin pick,
        backup peers included, for a fallback.

    @ivar primary: the peers without C{backup}, in config order.
    @ivar backup: the C{backup} peers, in config order.
    @ivar isSingle: whether the group is one primary peer and no backup
        (nginx's C{peers->single}).  Computed once: the peer lists are
        fixed when the balancer is made (a reload builds a new one).
    """

    def __init__(self, peers: List[Peer], reactor: Any = None) -> None:
        """
        @param peers: the group, in config order; C{backup} peers are
            split off into L{backup}.
        @param reactor: the clock of C{fail_timeout} (C{seconds()}).
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.primary: List[Peer] = [p for p in peers if not p.backup]
        self.backup: List[Peer] = [p for p in peers if p.backup]
        self.isSingle: bool = len(self.primary) == 1 and not self.backup

    @property
    def peers(self) -> List[Peer]:
        """
        Every peer, primary first.
        """
        return self.primary + self.backup

    def now(self) -> float:
        """
        @return: the time on the balancer's clock (the reactor's
            C{seconds()}), the C{now} that L{isAvailable}, L{usablePeers}
            and L{markChosen} take; read it once per pick.
        """
        return self._reactor.seconds()  # type: ignore[no-any-return]

    def isAvailable(self, peer: Peer, now: float) -> bool:
        """
        Whether C{peer} may take a request now, as nginx's round-robin
        decides it.

        @param peer: any peer of this group.
        @param now: the reactor's C{seconds()}.
        @return: C{True} unless it is C{down}, failing an active health
            check (C{checkFailed}), marked failed (C{max_fails} failures
            within C{fail_timeout}, for C{fail_timeout}) or at its
            C{max_conns}.
        """
        if peer.down or peer.checkFailed:
            return False
        if peer.maxFails and peer.fails >= peer.maxFails and now - peer.checked <= peer.failTimeout:
            return False
        if peer.maxConns and peer.conns >= peer.maxConns:
            return False
        return True

    def usablePeers(self, peers: Iterable[Peer], excluded: Collection[Peer],
                    now: float) -> List[Peer]:
        """
        The peers a pick may choose from.

        @param peers: the candidates, usually L{primary} or L{backup}.
        @param excluded: peers this request already tried (never tried
            again).
        @param now: the reactor's C{seconds()}.
        @return: the peers of C{peers} that L{isAvailable} accepts and
            that are not in C{excluded}, in their order.
        """
        return [p for p in peers if p not in excluded and self.isAvailable(p, now)]

    def smoothPick(self, candidates: Iterable[Peer]) -> Optional[Peer]:
        """
        One step of nginx's smooth weighted round-robin over C{candidates}:
        each one's current weight grows by its effective weight, the
        largest wins and loses the total.  Other methods use it to break
        ties (as C{least_conn} does) or as their fallback, so it changes
        the peers' C{currentWeight}: call it once per pick.

        @param candidates: peers already filtered by L{usablePeers}.
        @return: the chosen peer, or C{None} when there are no candidates.
            Pass it to L{markChosen}.
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

    def markChosen(self, peer: Peer, now: float) -> Peer:
        """
        Record that a pick returns C{peer}: a peer whose C{fail_timeout}
        has passed starts a new accounting period (nginx's C{checked}), so
        a failed peer gets one probe request and comes back only if
        L{release} reports it healthy.  Every pick that returns a peer
        other than through L{singlePick} must go through this.

        @param peer: the chosen peer.
        @param now: the reactor's C{seconds()}.
        @return: C{peer}, so a pick can end with C{return
            self.markChosen(peer, now)}.
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
        best = self.smoothPick(self.usablePeers(peers, excluded, now))
        if best is None:
            return None
        return self.markChosen(best, now)

    def singlePick(self, excluded: Collection[Peer]) -> Optional[Peer]:
        """
        The pick of a group of one primary peer and no backup
        (L{isSingle}), which nginx never marks failed: C{max_fails} does
        not apply, so a lone backend is always tried.

        @param excluded: peers this request already tried.
        @return: that peer, or C{None} when it is excluded, C{down},
            failing an active health check (C{checkFailed}: probes, unlike
            passive failures, take even a lone peer out) or at
            C{max_conns}.
        """
        peer = self.primary[0]
        if peer in excluded or peer.down or peer.checkFailed:
            return None
        if peer.maxConns and peer.conns >= peer.maxConns:
            return None
        return peer

    def pick(self, exchange: Any, excluded: Collection[Peer] = ()) -> Optional[Peer]:
        """
        The round-robin pick: the primary peers, then (only when none is
        usable) the backup peers.

        @param exchange: the request (round-robin does not look at it).
        @param excluded: peers this request already tried.
        @return: the next peer, or C{None} when all are down or excluded.
        """
        if self.isSingle:
            return self.singlePick(excluded)  # never marked unavailable (nginx)
        found = self._pickFrom(self.primary, excluded)
        if found is None and self.backup:
            found = self._pickFrom(self.backup, excluded)
        return found

    def release(self, peer: Peer, failed: bool) -> None:
        """
        Record the outcome for passive health, as nginx's
        C{ngx_http_upstream_free_round_robin_peer}.
        """
        if failed:
            now = self._reactor.seconds()
            peer.fails += 1
            peer.accessed = now
            peer.checked = now
            if peer.maxFails:
                peer.effectiveWeight -= peer.weight // peer.maxFails
            if peer.effectiveWeight < 0:
                peer.effectiveWeight = 0
        else:
            # The shared state read once, not through three properties:
            # this runs after every response.
            state = peer.state
            if state.accessed < state.checked:
                state.fails = 0


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
