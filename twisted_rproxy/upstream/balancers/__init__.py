# -*- test-case-name: tests.unit.test_balancers -*-
"""
nginx's load-balancing methods beyond the default round-robin, each
derived from L{RoundRobinBalancer} (as nginx's modules derive from
C{ngx_http_upstream_round_robin.c}) so passive health, C{down},
C{max_conns} and the round-robin fallback behave the same everywhere.
"""

from ..cluster import RoundRobinBalancer
from ._method import BalancerMethod
from .hash import ConsistentHashBalancer, HashBalancer
from .iphash import IPHashBalancer
from .leastconn import LeastConnBalancer
from .random import RandomBalancer

__all__ = [
    "BalancerMethod",
    "ConsistentHashBalancer",
    "HashBalancer",
    "IPHashBalancer",
    "LeastConnBalancer",
    "RandomBalancer",
    "RoundRobinBalancer",
]
