# -*- test-case-name: tests.unit.test_balancers -*-
"""
The parsed value of a balancing directive: what the upstream module asks
for a group's balancer.
"""

from __future__ import annotations

from typing import Any, Callable, List

import attr
from zope.interface import implementer

from ...interfaces import IBalancerFactory
from ..cluster import Peer

#: How many peers the hashing and random methods look at before they fall
#: back to round-robin, as nginx's C{tries > 20}.
MAX_TRIES = 21


@implementer(IBalancerFactory)
@attr.s(frozen=True, slots=True, auto_attribs=True)
class BalancerMethod:
    """
    An L{IBalancerFactory} made of a function.

    @ivar method: the directive name (C{"least_conn"}).
    @ivar make: called with the peers and the compiler, returns the
        L{IBalancer}.
    @ivar supportsBackup: whether C{backup} servers are allowed.
    """

    method: str
    make: Callable[[List[Peer], Any], Any]
    supportsBackup: bool = False

    def buildBalancer(self, peers: List[Peer], compiler: Any) -> Any:
        """
        @return: the balancer of one group.
        """
        return self.make(peers, compiler)
