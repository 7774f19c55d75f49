# -*- test-case-name: tests.unit.test_balancers -*-
"""
The balancing directives of an C{upstream} block, one module each as nginx
has them: C{least_conn}, C{ip_hash}, C{hash KEY [consistent]} and
C{random [two [least_conn]]}.  Each parses into an L{IBalancerFactory}
that the upstream module asks for the group's balancer; a team's own
method is a module declaring one more such directive.
"""

from __future__ import annotations

from typing import Any, List, Sequence

from ..config.ast import Directive
from ..config.registry import UPSTREAM, DirectiveSpec, spec
from ..module import ProxyModule
from ..upstream.balancers import (
    BalancerMethod,
    ConsistentHashBalancer,
    HashBalancer,
    IPHashBalancer,
    LeastConnBalancer,
    RandomBalancer,
)
from ..upstream.cluster import Peer


def _parseLeastConn(directive: Directive) -> BalancerMethod:
    """
    @return: the C{least_conn} method (backup peers allowed, as in nginx).
    """
    return BalancerMethod(
        "least_conn",
        lambda peers, compiler: LeastConnBalancer(peers, compiler.reactor),
        supportsBackup=True,
    )


def _parseIPHash(directive: Directive) -> BalancerMethod:
    """
    @return: the C{ip_hash} method.
    """
    return BalancerMethod(
        "ip_hash", lambda peers, compiler: IPHashBalancer(peers, compiler.reactor)
    )


def _parseHash(directive: Directive) -> BalancerMethod:
    """
    Check C{hash KEY [consistent]}; the key is compiled when the group is
    built, after every module has defined its variables.

    @raise ConfigError: C{invalid parameter} for a flag other than
        C{consistent}.
    """
    text = directive.args[0]
    consistent = len(directive.args) == 2
    if consistent and directive.args[1] != "consistent":
        raise directive.error(f'invalid parameter "{directive.args[1]}"')
    balancer = ConsistentHashBalancer if consistent else HashBalancer

    def make(peers: List[Peer], compiler: Any) -> Any:
        return balancer(peers, compiler.compileValue(text, directive), compiler.reactor)

    return BalancerMethod("hash", make)


def _parseRandom(directive: Directive) -> BalancerMethod:
    """
    Check C{random [two [least_conn]]}.

    @raise ConfigError: C{invalid parameter} for anything else.
    """
    args = directive.args
    for arg, allowed in zip(args, ("two", "least_conn")):
        if arg != allowed:
            raise directive.error(f'invalid parameter "{arg}"')
    two = bool(args)
    return BalancerMethod(
        "random", lambda peers, compiler: RandomBalancer(peers, two, compiler.reactor)
    )


class _BalancerModule(ProxyModule):
    """
    A module that declares one balancing directive.

    @cvar directiveSpec: its declaration.
    """

    order = 55
    directiveSpec: DirectiveSpec

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: the one balancing directive.
        """
        return [self.directiveSpec]


class LeastConnModule(_BalancerModule):
    """
    C{least_conn;} (nginx's C{ngx_http_upstream_least_conn_module}).
    """

    name = "upstream_least_conn"
    directiveSpec = spec("least_conn", [UPSTREAM], 0, parse=_parseLeastConn)


class IPHashModule(_BalancerModule):
    """
    C{ip_hash;} (nginx's C{ngx_http_upstream_ip_hash_module}).
    """

    name = "upstream_ip_hash"
    directiveSpec = spec("ip_hash", [UPSTREAM], 0, parse=_parseIPHash)


class HashModule(_BalancerModule):
    """
    C{hash KEY [consistent];} (nginx's C{ngx_http_upstream_hash_module}).
    """

    name = "upstream_hash"
    directiveSpec = spec("hash", [UPSTREAM], (1, 2), parse=_parseHash)


class RandomModule(_BalancerModule):
    """
    C{random [two [least_conn]];} (nginx's C{ngx_http_upstream_random_module}).
    """

    name = "upstream_random"
    directiveSpec = spec("random", [UPSTREAM], (0, 2), parse=_parseRandom)
