# -*- test-case-name: tests.unit.test_resolver -*-
"""
Re-resolving upstream server names while running (C{server NAME resolve}
with a C{resolver}), as nginx's upstream zones do: each name is looked up
through twisted.names again when its answer expires (its TTL, or the
resolver's C{valid=}), and the group's peer set follows the answers.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attr
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.names import dns
from twisted.names.error import DNSNameError
from twisted.python.failure import Failure

from .cluster import Peer, Upstream

#: Seconds before asking again after a failed lookup (nginx's resolver
#: caches an error for a short while, then tries again).
ERROR_RETRY = 10.0


@attr.s(frozen=True, auto_attribs=True)
class ResolverSpec:
    """
    A parsed C{resolver ADDRESS ... [valid=T] [ipv4=on|off] [ipv6=on|off]}.

    @ivar servers: the name servers, as C{(ip, port)}.
    @ivar valid: a TTL that overrides the answers' own, or C{None}.
    @ivar ipv4: whether to ask for A records.
    @ivar ipv6: whether to ask for AAAA records.
    @ivar timeout: C{resolver_timeout}, seconds one lookup may take.
    """

    servers: Tuple[Tuple[str, int], ...]
    valid: Optional[float] = None
    ipv4: bool = True
    ipv6: bool = True
    timeout: float = 30.0

    def makeClient(self, reactor: Any) -> Any:
        """
        @return: a twisted.names client asking only these servers (never
            /etc/resolv.conf), giving up after C{timeout}.
        """
        from twisted.names.client import Resolver

        return Resolver(servers=list(self.servers), timeout=(self.timeout,), reactor=reactor)


@attr.s(auto_attribs=True)
class ResolvedServer:
    """
    One C{server NAME:PORT ... resolve} line of an upstream block.

    @ivar host: the name to look up.
    @ivar port: the port of every address it resolves to.
    @ivar makePeer: builds the peer of one address (the line's parameters
        and the peer's shared state applied).
    @ivar peers: the peers of the last answer, by address.
    """

    host: str
    port: int
    makePeer: Callable[[str], Peer]
    peers: Dict[str, Peer] = attr.Factory(dict)


class UpstreamResolver:
    """
    Keeps the C{resolve} servers of one upstream group in step with DNS.
    Like an L{twisted_rproxy.interfaces.IHealthChecker} it is built with
    the config and runs only while a service serves it.

    On each new answer the group gets a new peer list (peers kept by
    address keep their counters and weights) and a new balancer over it,
    built the way the config built the first; requests in flight finish
    on the peers they had.  A name that does not exist (NXDOMAIN) has no
    peers until it does; other failures keep the last answer.

    @ivar running: whether lookups are being scheduled.
    @ivar client: the C{IResolver} asked (made from the spec at the first
        L{start} unless one was given).
    """

    log = Logger()

    def __init__(self, upstream: Upstream, staticPeers: List[Peer],
                 servers: Sequence[ResolvedServer], spec: ResolverSpec,
                 buildBalancer: Callable[[List[Peer]], Any], reactor: Any,
                 client: Any = None) -> None:
        """
        @param upstream: the group whose C{peers} and C{balancer} change.
        @param staticPeers: the group's peers that are never re-resolved.
        @param servers: the C{resolve} lines.
        @param spec: the resolver to ask.
        @param buildBalancer: makes the group's balancer over a peer list.
        @param reactor: for timers (and the DNS client); C{None} for the
            global one.
        @param client: an C{IResolver} to use instead of one made from
            C{spec} (tests).
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.upstream = upstream
        self.staticPeers = staticPeers
        self.servers = list(servers)
        self.spec = spec
        self._buildBalancer = buildBalancer
        self._reactor = reactor
        self.client = client
        self._timers: Dict[int, Any] = {}
        self._pending: Dict[int, Deferred] = {}
        self.running = False

    def start(self) -> None:
        """
        Look every name up now, then again as each answer expires.
        """
        if self.running:
            return
        self.running = True
        if self.client is None:
            self.client = self.spec.makeClient(self._reactor)
        for index in range(len(self.servers)):
            self._lookup(index)

    def adopt(self, previous: Sequence[Any]) -> None:
        """
        Start from the answers a previous config's resolver of the same
        group had (on reload), so the group is not left without its
        resolved peers until the first new answer.  The peers are new
        (with this config's parameters and state); lookups go on as usual.

        @param previous: the old config's background tasks; those that are
            not an L{UpstreamResolver} of this group are passed over.
        """
        for other in previous:
            if not isinstance(other, UpstreamResolver) or other is self:
                continue
            if other.upstream.name != self.upstream.name:
                continue
            known = {(s.host, s.port): list(s.peers) for s in other.servers}
            for server in self.servers:
                addresses = known.get((server.host, server.port))
                if addresses:
                    self._update(server, addresses)

    def stop(self) -> None:
        """
        Cancel the timers and lookups in flight; the peers stay as they are.
        """
        self.running = False
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.cancel()

    def _lookup(self, index: int) -> None:
        """
        Ask for the A (and AAAA) records of one server's name.
        """
        self._timers.pop(index, None)
        server = self.servers[index]
        queries = []
        if self.spec.ipv4:
            queries.append(self.client.lookupAddress(server.host))
        if self.spec.ipv6:
            queries.append(self.client.lookupIPV6Address(server.host))
        d = self._pending[index] = DeferredList(queries, consumeErrors=True)
        d.addCallback(self._answered, index)
        d.addErrback(self._crashed, index)

    def _answered(self, results: List[Tuple[bool, Any]], index: int) -> None:
        """
        Turn the answers into the server's addresses and schedule the next
        lookup.
        """
        self._pending.pop(index, None)
        if not self.running:
            return
        server = self.servers[index]
        addresses: List[str] = []
        ttls: List[int] = []
        failures = [r for ok, r in results if not ok]
        for ok, result in results:
            if ok:
                for address, ttl in _addresses(result[0], server.host):
                    if address not in addresses:
                        addresses.append(address)
                    ttls.append(ttl)
        if failures and not addresses:
            failure = failures[0]
            if not failure.check(DNSNameError):
                self.log.error(
                    "{host} could not be resolved ({reason})",
                    host=server.host, reason=failure.getErrorMessage(),
                )
                self._schedule(index, self.spec.valid or ERROR_RETRY)
                return
            self.log.error("{host} could not be resolved (3: Host not found)",
                           host=server.host)
        self._update(server, addresses)
        if self.spec.valid is not None:
            delay = self.spec.valid
        elif ttls:
            delay = max(1, min(ttls))
        else:
            delay = ERROR_RETRY
        self._schedule(index, delay)

    def _crashed(self, failure: Failure, index: int) -> None:
        """
        A bug while handling an answer: log it and keep the schedule going.
        """
        self._pending.pop(index, None)
        self.log.failure("re-resolving an upstream server failed", failure)
        if self.running:
            self._schedule(index, self.spec.valid or ERROR_RETRY)

    def _schedule(self, index: int, delay: float) -> None:
        if self.running:
            self._timers[index] = self._reactor.callLater(delay, self._lookup, index)

    def _update(self, server: ResolvedServer, addresses: List[str]) -> None:
        """
        Give the group its new peers when the addresses changed.
        """
        if list(server.peers) == addresses:
            return
        old = server.peers
        server.peers = {a: old.get(a) or server.makePeer(a) for a in addresses}
        peers = list(self.staticPeers)
        for each in self.servers:
            peers.extend(each.peers.values())
        self.upstream.peers = peers
        self.upstream.balancer = self._buildBalancer(peers)
        self.log.info(
            "upstream {upstream}: {host} now resolves to {addresses}",
            upstream=self.upstream.name, host=server.host,
            addresses=", ".join(addresses) or "nothing",
        )


def _addresses(records: Sequence[Any], host: str) -> List[Tuple[str, int]]:
    """
    @return: the IPv4 and IPv6 addresses of C{records} with their TTLs
        (CNAMEs followed by the server are skipped, their targets kept).
    """
    found = []
    for record in records:
        if record.type == dns.A or record.type == dns.AAAA:
            found.append((record.payload.dottedQuad() if record.type == dns.A
                          else _ipv6(record.payload), int(record.ttl)))
    return found


def _ipv6(payload: Any) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, payload.address)
