"""
An example balancing method as a twisted_rproxy plugin: in an C{upstream}
block, C{x_sticky_header NAME;} sends every request that carries the
request header NAME to the peer chosen by a stable hash of its value, so
one session, tenant or user always reaches the same backend.  Requests
without the header are balanced by round-robin, and failed peers are
skipped, with the helpers of C{RoundRobinBalancer}.

docs/plugins-balancer.md explains it step by step.  Like the other example
plugin, it is found when the directory holding C{twisted/plugins/} is on
C{sys.path} (PYTHONPATH=docs/examples); neither C{twisted/} nor
C{twisted/plugins/} may contain an C{__init__.py}.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Collection, List, Optional, Sequence

from twisted_rproxy.config.ast import Directive
from twisted_rproxy.config.registry import UPSTREAM, DirectiveSpec, spec
from twisted_rproxy.module import ProxyModule
from twisted_rproxy.upstream.balancers import BalancerMethod
from twisted_rproxy.upstream.cluster import Peer, RoundRobinBalancer

#: What an HTTP header name may be made of (RFC 9110's C{token}).
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


def score(value: bytes, peer: Peer) -> bytes:
    """
    How much C{peer} wants the header value C{value}: a hash of both.  The
    request goes to the usable peer with the highest score (rendezvous
    hashing), so a value keeps its peer for as long as that peer is up,
    and when it is not, only the values it had move.

    @param value: the header's value, as the client sent it.
    @param peer: a peer of the group; its address (C{peer.name}) is hashed,
        so the choice survives a restart or a reload of the proxy.
    @return: eight bytes, compared as a big-endian number.
    """
    return hashlib.blake2b(value + b"\0" + peer.name.encode("utf-8"), digest_size=8).digest()


class StickyHeaderBalancer(RoundRobinBalancer):
    """
    Picks by the value of one request header, and by round-robin for a
    request without it.

    @ivar headerName: the header, lowercase, as
        C{exchange.header(headerName)} wants it.
    """

    def __init__(self, peers: List[Peer], headerName: bytes, reactor: Any = None) -> None:
        """
        @param peers: the group, backup peers included.
        @param headerName: the lowercase header name.
        @param reactor: the clock of C{fail_timeout}.
        """
        super().__init__(peers, reactor)
        self.headerName = headerName

    def pick(self, exchange: Any, excluded: Collection[Peer] = ()) -> Optional[Peer]:
        """
        @param exchange: the request.
        @param excluded: the peers this request already tried.
        @return: the usable primary peer with the highest L{score} for the
            header's value; without the header, in a group of one peer, or
            when no primary peer is usable, the round-robin pick (which
            tries the backup peers).
        """
        value = exchange.header(self.headerName)
        if not value or self.isSingle:
            return super().pick(exchange, excluded)
        now = self.now()
        usable = self.usablePeers(self.primary, excluded, now)
        if not usable:
            return super().pick(exchange, excluded)
        best = max(usable, key=lambda peer: score(value, peer))
        return self.markChosen(best, now)


def parseStickyHeader(directive: Directive) -> BalancerMethod:
    """
    Parse C{x_sticky_header NAME;}.

    @param directive: the directive as written, with one argument.
    @return: the method, which builds a L{StickyHeaderBalancer} for each
        group that uses it.
    @raise ValueError: for a NAME that is not a header name.
    """
    name = directive.args[0]
    if not HEADER_NAME.match(name):
        raise ValueError(f'invalid header name "{name}"')
    headerName = name.lower().encode("ascii")

    def make(peers: List[Peer], compiler: Any) -> StickyHeaderBalancer:
        """
        @return: the balancer of one group, on the proxy's reactor.
        """
        return StickyHeaderBalancer(peers, headerName, compiler.reactor)

    return BalancerMethod("x_sticky_header", make, supportsBackup=True)


class StickyHeaderModule(ProxyModule):
    """
    Declares C{x_sticky_header NAME;} for the C{upstream} block.
    """

    name = "example_sticky_header"

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: the one balancing directive, with one argument.
        """
        return [spec("x_sticky_header", [UPSTREAM], 1, parse=parseStickyHeader)]


#: The plugin object that twisted.plugin finds.
stickyHeaderModule = StickyHeaderModule()
