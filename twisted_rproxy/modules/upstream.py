# -*- test-case-name: tests.unit.test_upstream -*-
"""
C{upstream NAME { server ...; keepalive N; }}: named groups of backends,
resolved at load as nginx does, and the C{$upstream_*} variables; also the
active health checks of those groups (nginx Plus's C{health_check} in a
location and C{match NAME {}} in C{http}), which L{ProxyService} starts.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, List, Optional, Sequence

from ..config.ast import Directive
from ..config.registry import HTTP, LOCATION, MERGE_NONE, UPSTREAM, DirectiveSpec, spec
from ..config.slots import numberSlot, timeSlot
from ..config.values import parseInt, parseTime
from ..interfaces import IBalancerFactory
from ..module import ProxyModule
from ..upstream.cluster import Peer, RoundRobinBalancer, Upstream, splitHostPort
from ..upstream.health import HealthCheck, Match, parseHealthCheck, parseMatch
from ..upstream.pool import ConnectionPool
from ..variables import simple

STATE = "upstream"


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
            else:
                raise ValueError
        except ValueError:
            raise directive.error(f'invalid parameter "{arg}"')
    return params


class UpstreamModule(ProxyModule):
    """
    Declares C{upstream} and its C{server}, C{keepalive} and C{zone}
    directives, and owns the connection pool shared by all upstreams.
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
            # Peer state lives in the process until workers share it.
            spec("zone", [UPSTREAM], (1, 2), ignored=True),
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
        Build every C{upstream} block into an L{Upstream}.
        """
        reactor = compiler.reactor
        upstreams: Dict[str, Upstream] = {}
        for block in compiler.httpBlock.childrenOf(UPSTREAM):
            directive = block.directive
            name = directive.args[0]
            if name in upstreams:
                raise directive.error(f'duplicate upstream "{name}"')
            method = _balancingMethod(block)
            peers: List[Peer] = []
            for server in block.values.get("server", []):
                params = _serverParams(server)
                if method is not None and params.get("backup") and not method.supportsBackup:
                    raise server.error(
                        f'balancing method "{method.method}" does not support '
                        f'parameter "backup"'
                    )
                peers.extend(resolvePeers(server.args[0], server, **params))
            if not peers:
                raise directive.error(f'no servers are inside upstream')
            if method is None:
                balancer = RoundRobinBalancer(peers, reactor)
            else:
                balancer = method.buildBalancer(peers, compiler)
            upstreams[name] = Upstream(
                name,
                peers,
                balancer,
                keepalive=block.values.get("keepalive", 0),
                keepaliveRequests=block.values.get("keepalive_requests", 1000),
                keepaliveTime=block.values.get("keepalive_time", 3600.0),
                keepaliveTimeout=block.values.get("keepalive_timeout", 60.0),
            )
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
