# -*- test-case-name: tests.unit.test_upstream -*-
"""
C{upstream NAME { server ...; keepalive N; }}: named groups of backends,
resolved at load as nginx does (or, with C{resolve} and a C{resolver},
again while running), and the C{$upstream_*} variables; also the
active health checks of those groups (nginx Plus's C{health_check} in a
location and C{match NAME {}} in C{http}), which L{ProxyService} starts.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attr

from ..config.ast import Directive
from ..config.registry import (
    HTTP,
    LOCATION,
    MERGE_NONE,
    SERVER,
    UPSTREAM,
    DirectiveSpec,
    spec,
)
from ..config.slots import numberSlot, timeSlot
from ..config.values import parseFlag, parseInt, parseSize, parseTime
from ..interfaces import IBalancerFactory, IPeerStateStore
from ..module import ProxyModule
from ..upstream.cluster import Peer, RoundRobinBalancer, Upstream, splitHostPort
from ..upstream.health import HealthCheck, Match, parseHealthCheck, parseMatch
from ..upstream.peerstate import MemoryPeerStateStore
from ..upstream.pool import ConnectionPool
from ..upstream.resolver import ResolvedServer, ResolverSpec, UpstreamResolver
from ..variables import simple

STATE = "upstream"
#: The key of C{compiler.state} where a module may put its own
#: L{IPeerStateStore} (before this module's C{configure} runs).
PEER_STATE_STORE = "peerStateStore"


def _parseServer(directive: Directive) -> Directive:
    """
    Checked when the upstream is built (it needs name resolution).
    """
    return directive


def resolvePeers(address: str, directive: Optional[Directive], defaultPort: int = 80,
                 **params: Any) -> List[Peer]:
    """
    Turn C{host[:port]} or C{unix:/path} into peers, one per resolved
    address, as nginx resolves upstream names at load.

    @raise ConfigError: C{host not found in upstream "..."}.
    """
    params.setdefault("server", address)
    if address.startswith("unix:"):
        return [Peer(None, 0, address[5:], **params)]
    try:
        host, port = splitHostPort(address, defaultPort)
    except ValueError as e:
        raise _error(directive, str(e))
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise _error(directive, f'host not found in upstream "{address}"')
    peers = []
    seen = set()
    for family, _t, _p, _c, sockaddr in infos:
        ip = str(sockaddr[0])
        if family not in (socket.AF_INET, socket.AF_INET6) or ip in seen:
            continue
        seen.add(ip)
        peers.append(Peer(ip, port, None, **params))
    return peers


def _error(directive: Optional[Directive], message: str) -> Exception:
    from ..config.errors import ConfigError

    return directive.error(message) if directive is not None else ConfigError(message)


def _serverParams(directive: Directive) -> Dict[str, Any]:
    params: Dict[str, Any] = {}
    for arg in directive.args[1:]:
        key, sep, value = arg.partition("=")
        try:
            if key == "weight" and sep:
                params["weight"] = parseInt(value)
                if params["weight"] < 1:
                    raise ValueError
            elif key == "max_fails" and sep:
                params["maxFails"] = parseInt(value)
            elif key == "fail_timeout" and sep:
                params["failTimeout"] = parseTime(value)
            elif key == "max_conns" and sep:
                params["maxConns"] = parseInt(value)
            elif key == "backup" and not sep:
                params["backup"] = True
            elif key == "down" and not sep:
                params["down"] = True
            elif key == "resolve" and not sep:
                params["resolve"] = True
            else:
                raise ValueError
        except ValueError:
            raise directive.error(f'invalid parameter "{arg}"')
    return params


class UpstreamModule(ProxyModule):
    """
    Declares C{upstream} and its C{server}, C{keepalive}, C{zone} and
    C{resolver} directives, and owns the connection pool shared by all
    upstreams.
    """

    name = "upstream"
    order = 60

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: the upstream directives.
        """
        return [
            spec("upstream", [HTTP], 1, block=UPSTREAM, multiple=True),
            spec("server", [UPSTREAM], (1, None), parse=_parseServer, multiple=True),
            spec("keepalive", [UPSTREAM], 1, parse=numberSlot),
            spec("keepalive_requests", [UPSTREAM], 1, parse=numberSlot),
            spec("keepalive_timeout", [UPSTREAM], 1, parse=timeSlot),
            spec("keepalive_time", [UPSTREAM], 1, parse=timeSlot),
            # Peer state lives in an IPeerStateStore (the process's own
            # unless a module supplies a shared one).
            spec("zone", [UPSTREAM], (1, 2), parse=_parseZone),
            spec("resolver", [HTTP, SERVER, LOCATION, UPSTREAM], (1, None),
                 parse=parseResolver),
            spec("resolver_timeout", [HTTP, SERVER, LOCATION, UPSTREAM], 1, parse=timeSlot),
            spec("match", [HTTP], 1, block="raw", parse=parseMatch, multiple=True),
            spec("health_check", [LOCATION], (0, None), parse=parseHealthCheck,
                 multiple=True, merge=MERGE_NONE),
        ]

    def variables(self) -> Sequence[Any]:
        """
        @return: C{$upstream_addr} and friends, listing every peer tried.
        """
        return [
            simple("upstream_addr", _joined(lambda a: a.addr)),
            simple("upstream_status", _joined(lambda a: a.status or "502")),
            simple("upstream_response_time", _joined(lambda a: _ms(a.responseTime))),
            simple("upstream_connect_time", _joined(lambda a: _ms(a.connectTime))),
            simple("upstream_header_time", _joined(lambda a: _ms(a.headerTime))),
        ]

    def configure(self, compiler: Any) -> None:
        """
        Build every C{upstream} block into an L{Upstream}, its peers' state
        in the L{IPeerStateStore} a module put in
        C{compiler.state[PEER_STATE_STORE]} (else one in this process), and
        an L{UpstreamResolver} for each group with C{resolve} servers.
        """
        reactor = compiler.reactor
        store = compiler.state.get(PEER_STATE_STORE)
        if store is None:
            store = MemoryPeerStateStore()
        elif not IPeerStateStore.providedBy(store):
            raise TypeError(f"{store!r} does not provide IPeerStateStore")
        upstreams: Dict[str, Upstream] = {}
        resolvers: List[UpstreamResolver] = []
        for block in compiler.httpBlock.childrenOf(UPSTREAM):
            directive = block.directive
            name = directive.args[0]
            if name in upstreams:
                raise directive.error(f'duplicate upstream "{name}"')
            method = _balancingMethod(block)
            zone = block.values.get("zone")
            peers: List[Peer] = []
            resolved: List[ResolvedServer] = []
            for server in block.values.get("server", []):
                params = _serverParams(server)
                resolve = params.pop("resolve", False)
                if method is not None and params.get("backup") and not method.supportsBackup:
                    raise server.error(
                        f'balancing method "{method.method}" does not support '
                        f'parameter "backup"'
                    )
                address = server.args[0]
                if resolve and not _isLiteral(address):
                    resolved.append(_resolvedServer(server, name, zone, store, params))
                    continue
                for peer in resolvePeers(address, server, **params):
                    peer.state = store.stateFor(zone, name, peer.name)
                    peers.append(peer)
            if not peers and not resolved:
                raise directive.error('no servers are inside upstream')
            buildBalancer = _balancerBuilder(method, compiler)
            upstream = upstreams[name] = Upstream(
                name,
                peers,
                buildBalancer(peers),
                keepalive=block.values.get("keepalive", 0),
                keepaliveRequests=block.values.get("keepalive_requests", 1000),
                keepaliveTime=block.values.get("keepalive_time", 3600.0),
                keepaliveTimeout=block.values.get("keepalive_timeout", 60.0),
            )
            if resolved:
                resolvers.append(UpstreamResolver(
                    upstream, list(peers), resolved,
                    _resolverOf(block, compiler, name, resolved),
                    buildBalancer, reactor,
                ))
        matches: Dict[str, Match] = {}
        for match in compiler.httpBlock.values.get("match", []):
            if match.name in matches:
                raise match.directive.error(f'duplicate match "{match.name}"')
            matches[match.name] = match
        compiler.state[STATE] = {
            "upstreams": upstreams,
            "pool": ConnectionPool(reactor),
            "matches": matches,
            "healthChecks": [],
            "resolvers": resolvers,
            PEER_STATE_STORE: store,
        }

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        Build a L{HealthCheck} for each C{health_check} of the location,
        over the upstream group its C{proxy_pass} names.  They are started
        by L{twisted_rproxy.service.ProxyService}, never by a C{-t} check.

        @raise ConfigError: C{health_check} without C{proxy_pass} to an
            upstream group, or naming an unknown C{match}.
        """
        specs = location.conf.get("health_check")
        if not specs:
            return
        state = compiler.state[STATE]
        url = location.conf.get("proxy_pass") or ""
        authority = url.partition("://")[2].partition("/")[0]
        upstream = None if "$" in url else state["upstreams"].get(authority)
        for healthSpec in specs:
            directive = healthSpec.directive
            if upstream is None:
                raise directive.error(
                    '"health_check" requires "proxy_pass" to an upstream group'
                )
            match = None
            if healthSpec.match is not None:
                match = state["matches"].get(healthSpec.match)
                if match is None:
                    raise directive.error(f'match "{healthSpec.match}" not found')
            state["healthChecks"].append(HealthCheck(
                upstream, healthSpec, match,
                connectTimeout=location.conf.get("proxy_connect_timeout"),
                readTimeout=location.conf.get("proxy_read_timeout"),
                reactor=compiler.reactor,
            ))


def _balancerBuilder(method: Optional[Any], compiler: Any) -> Callable[[List[Peer]], Any]:
    """
    @return: what makes the group's balancer over a list of peers, at load
        and again each time re-resolution changes the peers.
    """
    if method is None:
        reactor = compiler.reactor
        return lambda peers: RoundRobinBalancer(peers, reactor)
    return lambda peers: method.buildBalancer(peers, compiler)


def _isLiteral(address: str) -> bool:
    """
    @return: whether C{address} needs no name resolution (an IP address or
        C{unix:} socket), so C{resolve} does not apply to it.
    """
    if address.startswith("unix:"):
        return True
    try:
        ipaddress.ip_address(splitHostPort(address, 80)[0])
    except ValueError:
        return False
    return True


def _resolvedServer(server: Directive, upstream: str, zone: Optional[str],
                    store: Any, params: Dict[str, Any]) -> ResolvedServer:
    """
    @return: the re-resolved form of one C{server NAME resolve} line, with
        no peers until the first answer (nginx does not resolve such a name
        at load either).
    @raise ConfigError: for a bad port.
    """
    address = server.args[0]
    try:
        host, port = splitHostPort(address, 80)
    except ValueError as e:
        raise server.error(str(e))

    def makePeer(ip: str) -> Peer:
        peer = Peer(ip, port, None, server=address, **params)
        peer.state = store.stateFor(zone, upstream, peer.name)
        return peer

    return ResolvedServer(host, port, makePeer)


def _resolverOf(block: Any, compiler: Any, name: str,
                resolved: List[ResolvedServer]) -> ResolverSpec:
    """
    @return: the resolver of an upstream group with C{resolve} servers:
        its own C{resolver} (and C{resolver_timeout}) or the http block's.
    @raise ConfigError: as nginx, when the group has no C{zone}, or when no
        C{resolver} is defined.
    """
    if block.values.get("zone") is None:
        raise block.directive.error(
            f'resolving names at run time requires upstream "{name}" to be in shared memory'
        )
    http = compiler.httpBlock.values
    found = block.values.get("resolver") or http.get("resolver")
    if found is None:
        first = block.values["server"][0]
        for server in block.values["server"]:
            if "resolve" in server.args[1:]:
                first = server
                break
        raise first.error(f"no resolver defined to resolve {resolved[0].host}")
    timeout = block.values.get("resolver_timeout", http.get("resolver_timeout"))
    if timeout is not None:
        found = attr.evolve(found, timeout=timeout)
    return found  # type: ignore[no-any-return]


def _parseZone(directive: Directive) -> str:
    """
    C{zone NAME [SIZE]}: the size is checked and otherwise unused, as peer
    state lives in the L{IPeerStateStore}.

    @return: the zone name.
    """
    if len(directive.args) == 2:
        try:
            size = parseSize(directive.args[1])
        except ValueError:
            size = -1
        if size <= 0:
            raise directive.error(f'invalid zone size "{directive.args[1]}"')
    return directive.args[0]


def parseResolver(directive: Directive) -> ResolverSpec:
    """
    C{resolver ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off]
    [status_zone=NAME]}: name servers as IP addresses or host names
    (resolved now, as nginx does), with an optional port (53 by default).

    @raise ConfigError: nginx's words: C{invalid parameter: ARG},
        C{invalid port in resolver "ARG"}, C{host not found in resolver
        "ARG"}, C{no name servers defined}, or C{"ipv4" and "ipv6" cannot
        both be "off"}.
    """
    servers: List[Tuple[str, int]] = []
    valid: Optional[float] = None
    flags = {"ipv4": True, "ipv6": True}
    for arg in directive.args:
        key, sep, value = arg.partition("=")
        if sep and key in ("valid", "ipv4", "ipv6", "status_zone"):
            try:
                if key == "valid":
                    valid = parseTime(value)
                elif key != "status_zone":
                    flags[key] = parseFlag(value, directive.name)
            except ValueError:
                raise directive.error(f"invalid parameter: {arg}")
            continue
        try:
            host, port = splitHostPort(arg, 53)
        except ValueError:
            raise directive.error(f'invalid port in resolver "{arg}"')
        for ip in _nameServerAddresses(host, port):
            if (ip, port) not in servers:
                servers.append((ip, port))
        if not servers:
            raise directive.error(f'host not found in resolver "{arg}"')
    if not servers:
        raise directive.error("no name servers defined")
    if not flags["ipv4"] and not flags["ipv6"]:
        raise directive.error('"ipv4" and "ipv6" cannot both be "off"')
    return ResolverSpec(tuple(servers), valid, flags["ipv4"], flags["ipv6"])


def _nameServerAddresses(host: str, port: int) -> List[str]:
    """
    @return: C{host} itself when it is an IP address, else the addresses
        the system resolves it to now (none when it does not resolve).
    """
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror:
        return []
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


def _balancingMethod(block: Any) -> Optional[Any]:
    """
    Find the block's balancing directive: any value providing
    L{IBalancerFactory}, whichever module declared it.

    @return: that factory, or C{None} for the default round-robin.
    @raise ConfigError: C{load balancing method redefined} at the second
        one (nginx only warns and keeps the last; a second method is
        almost surely a mistake, so it is refused here).
    """
    found = None
    for name, value in block.values.items():
        if not IBalancerFactory.providedBy(value):
            continue
        if found is not None:
            raise block.sources[name].error("load balancing method redefined")
        found = value
    return found


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else "%.3f" % seconds


def _joined(field: Any) -> Any:
    def get(exchange: Any) -> Optional[str]:
        attempts = exchange.upstreamAttempts
        if not attempts:
            return None
        return ", ".join(str(field(a)) for a in attempts)

    return get
