# -*- test-case-name: tests.unit.test_balancer_api -*-
"""
Tests for the public extension API of L{RoundRobinBalancer} (the helpers a
team's balancing method reuses) and for the worked example built on it,
C{x_sticky_header} in docs/examples/twisted/plugins/rproxy_example_balancer.py,
as docs/plugins-balancer.md describes it.  Balancers run on a
L{MemoryReactorClock}, with no sockets.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.unit.configsupport import ConfigTestCase
from twisted_rproxy.interfaces import IBalancer, IBalancerFactory, IProxyModule
from twisted_rproxy.plugins import builtinModules
from twisted_rproxy.upstream.balancers import (
    ConsistentHashBalancer,
    HashBalancer,
    IPHashBalancer,
    LeastConnBalancer,
    RandomBalancer,
)
from twisted_rproxy.upstream.cluster import Peer, RoundRobinBalancer

EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "docs" / "examples" / "twisted" / "plugins" / "rproxy_example_balancer.py"
)


def loadExample() -> Any:
    """
    @return: the example plugin's Python module, imported from its file
        (docs/examples is not a package).
    """
    spec = importlib.util.spec_from_file_location("docs_rproxy_example_balancer", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = loadExample()


def peers(count: int, **params: Any) -> List[Peer]:
    """
    @return: C{count} peers called a, b, c ... (as their host).
    """
    return [Peer(chr(ord("a") + i), 80, **params) for i in range(count)]


class HeaderExchange:
    """
    An exchange with at most one request header, the part of an exchange
    the sticky balancer reads.
    """

    def __init__(self, value: Optional[bytes]) -> None:
        """
        @param value: the C{X-Session} value, or C{None} for none.
        """
        self.value = value

    def header(self, lowerName: bytes) -> Optional[bytes]:
        """
        @return: the value for C{x-session}, else C{None}.
        """
        return self.value if lowerName == b"x-session" else None


class PublicHelpersTests(SynchronousTestCase):
    """
    The helpers documented for balancer authors exist on
    L{RoundRobinBalancer}, and behave as documented.
    """

    def setUp(self) -> None:
        """A clock well after zero."""
        self.clock = MemoryReactorClock()
        self.clock.advance(1000)

    def test_helpersArePublic(self) -> None:
        """
        Every helper docs/plugins-balancer.md lists is a public method, and
        the old private names are gone, so no balancer depends on them.
        """
        for name in ("now", "isAvailable", "usablePeers", "smoothPick", "markChosen",
                     "singlePick", "pick", "release"):
            self.assertTrue(callable(getattr(RoundRobinBalancer, name)), name)
        for name in ("_usable", "_smooth", "_chosen", "_single", "_available"):
            self.assertFalse(hasattr(RoundRobinBalancer, name), name)

    def test_isSingleComputedOnce(self) -> None:
        """
        C{isSingle} is a plain attribute set at construction (the peer lists
        are fixed), not a property evaluated on every pick.
        """
        self.assertNotIsInstance(RoundRobinBalancer.__dict__.get("isSingle"), property)
        self.assertTrue(RoundRobinBalancer(peers(1), self.clock).isSingle)
        self.assertFalse(RoundRobinBalancer(peers(2), self.clock).isSingle)
        group = peers(2)
        group[1].backup = True
        self.assertFalse(RoundRobinBalancer(group, self.clock).isSingle)
        for cls in (LeastConnBalancer, IPHashBalancer, RandomBalancer):
            self.assertIn("isSingle", vars(cls(peers(1), reactor=self.clock)))
        for hashed in (HashBalancer, ConsistentHashBalancer):
            self.assertIn("isSingle", vars(hashed(peers(1), None, self.clock)))

    def test_nowIsTheClock(self) -> None:
        """
        C{now()} is the reactor's time.
        """
        balancer = RoundRobinBalancer(peers(2), self.clock)
        self.assertEqual(balancer.now(), 1000)
        self.clock.advance(5)
        self.assertEqual(balancer.now(), 1005)

    def test_usablePeersSkipsFailedDownFullAndTried(self) -> None:
        """
        C{usablePeers} drops down, failed, full and excluded peers, keeping
        the order; a failed peer is usable again after C{fail_timeout}.
        """
        a, b, c, d, e = group = peers(5, maxFails=1, failTimeout=10, maxConns=1)
        balancer = RoundRobinBalancer(group, self.clock)
        b.down = True
        balancer.release(c, True)
        d.conns = 1
        now = balancer.now()
        self.assertEqual(balancer.usablePeers(group, [e], now), [a])
        self.assertEqual([balancer.isAvailable(p, now) for p in group],
                         [True, False, False, False, True])
        self.clock.advance(11)
        self.assertEqual(balancer.usablePeers(group, (), balancer.now()), [a, c, e])

    def test_smoothPickOrder(self) -> None:
        """
        C{smoothPick} alone gives nginx's smooth weighted order for 5,1,1.
        """
        group = [Peer(h, 80, weight=w) for h, w in (("a", 5), ("b", 1), ("c", 1))]
        balancer = RoundRobinBalancer(group, self.clock)
        order = "".join(str(getattr(balancer.smoothPick(group), "host")) for _ in range(7))
        self.assertEqual(order, "aabacaa")
        self.assertIsNone(balancer.smoothPick([]))

    def test_markChosenStartsAProbe(self) -> None:
        """
        C{markChosen} returns the peer, and restarts the accounting period
        of a peer whose C{fail_timeout} has passed (so one failure of that
        probe marks it failed again at once).
        """
        a, _ = group = peers(2, maxFails=1, failTimeout=10)
        balancer = RoundRobinBalancer(group, self.clock)
        balancer.release(a, True)
        self.clock.advance(11)
        self.assertIs(balancer.markChosen(a, balancer.now()), a)
        self.assertEqual(a.checked, 1011)
        balancer.markChosen(a, balancer.now() + 4)
        self.assertEqual(a.checked, 1011)

    def test_singlePick(self) -> None:
        """
        C{singlePick} returns the lone peer even when it failed, but not
        when it is excluded, down or full.
        """
        (a,) = group = peers(1, maxFails=1, maxConns=1)
        balancer = RoundRobinBalancer(group, self.clock)
        balancer.release(a, True)
        self.assertIs(balancer.singlePick(()), a)
        self.assertIsNone(balancer.singlePick([a]))
        a.conns = 1
        self.assertIsNone(balancer.singlePick(()))
        a.conns, a.down = 0, True
        self.assertIsNone(balancer.singlePick(()))


class StickyHeaderBalancerTests(SynchronousTestCase):
    """
    The example balancer: a header value sticks to one peer, values
    spread, failed peers move only their values, no header means
    round-robin.
    """

    def setUp(self) -> None:
        """A clock, and the example balancer over peers a, b, c."""
        self.clock = MemoryReactorClock()
        self.clock.advance(1000)
        self.group = peers(3, maxFails=1, failTimeout=10)
        self.balancer = example.StickyHeaderBalancer(self.group, b"x-session", self.clock)

    def pickFor(self, value: Optional[bytes], excluded: Any = ()) -> str:
        """
        @return: the host of the peer picked for C{value} ("-" for none).
        """
        peer = self.balancer.pick(HeaderExchange(value), excluded)
        return "-" if peer is None else peer.host

    def test_providesIBalancer(self) -> None:
        """
        It is a real L{IBalancer}.
        """
        verifyObject(IBalancer, self.balancer)

    def test_sameValueSamePeer(self) -> None:
        """
        Every request with one value goes to one peer, the one with the
        highest score; 300 values spread over all three peers.
        """
        values = [b"user%d" % i for i in range(300)]
        first = {v: self.pickFor(v) for v in values}
        for v in values:
            self.assertEqual(self.pickFor(v), first[v])
            best = max(self.group, key=lambda p: example.score(v, p))
            self.assertEqual(first[v], best.host)
        counts = Counter(first.values())
        self.assertEqual(set(counts), {"a", "b", "c"})
        self.assertTrue(all(70 <= n <= 130 for n in counts.values()), counts)

    def test_noHeaderIsRoundRobin(self) -> None:
        """
        Without the header (or with an empty one) peers take turns.
        """
        self.assertEqual("".join(self.pickFor(None) for _ in range(6)), "abcabc")
        self.assertEqual("".join(self.pickFor(b"") for _ in range(3)), "abc")

    def test_failedPeerMovesOnlyItsValues(self) -> None:
        """
        While a peer is marked failed only its values move (each to its
        second choice); after C{fail_timeout} one of them probes it, and
        once that succeeds they all come back.
        """
        values = [b"user%d" % i for i in range(60)]
        first = {v: self.pickFor(v) for v in values}
        a = self.group[0]
        self.balancer.release(a, True)
        during = {v: self.pickFor(v) for v in values}
        for v in values:
            if first[v] == "a":
                self.assertNotEqual(during[v], "a")
            else:
                self.assertEqual(during[v], first[v])
        self.clock.advance(11)
        probe = [v for v in values if first[v] == "a"][0]
        self.assertEqual(self.pickFor(probe), "a")
        self.balancer.release(a, False)
        self.assertEqual({v: self.pickFor(v) for v in values}, first)

    def test_retryGoesToTheNextChoice(self) -> None:
        """
        A retry excludes the peers tried, and goes to the next best score;
        with all tried there is no peer.
        """
        ranked = sorted(self.group, key=lambda p: example.score(b"k", p), reverse=True)
        self.assertEqual(self.pickFor(b"k"), ranked[0].host)
        self.assertEqual(self.pickFor(b"k", ranked[:1]), ranked[1].host)
        self.assertEqual(self.pickFor(b"k", ranked[:2]), ranked[2].host)
        self.assertEqual(self.pickFor(b"k", ranked), "-")

    def test_backupWhenNoPrimary(self) -> None:
        """
        A backup peer takes keyed requests only when no primary can.
        """
        group = peers(3, maxFails=1, failTimeout=10)
        group[2].backup = True
        balancer = example.StickyHeaderBalancer(group, b"x-session", self.clock)
        self.assertNotEqual(balancer.pick(HeaderExchange(b"k")).host, "c")
        balancer.release(group[0], True)
        balancer.release(group[1], True)
        self.assertEqual(balancer.pick(HeaderExchange(b"k")).host, "c")

    def test_singlePeerNeverFails(self) -> None:
        """
        A lone peer is always picked, as round-robin does.
        """
        (a,) = group = peers(1, maxFails=1)
        balancer = example.StickyHeaderBalancer(group, b"x-session", self.clock)
        balancer.release(a, True)
        self.assertIs(balancer.pick(HeaderExchange(b"k")), a)


class StickyHeaderDirectiveTests(ConfigTestCase):
    """
    C{x_sticky_header NAME;} with the example module next to the built-in
    ones.
    """

    def compileUpstream(self, lines: str) -> Any:
        """
        @return: the compiled config with upstream C{u} holding C{lines}.
        """
        from twisted_rproxy.service import loadConfig

        text = (
            "events {}\nhttp {\n    access_log off;\n    upstream u {\n"
            f"{lines}\n        server 127.0.0.1:1;\n        server 127.0.0.1:2;\n    }}\n"
            "    server { listen 127.0.0.1:8999; location / { proxy_pass http://u; } }\n}\n"
        )
        return loadConfig(text=text, prefix=self.prefix,
                          modules=builtinModules() + [example.stickyHeaderModule])

    def errorOf(self, lines: str) -> str:
        """
        @return: the error compiling upstream C{u} with C{lines}.
        """
        from twisted_rproxy.config.errors import ConfigError

        with self.assertRaises(ConfigError) as caught:
            self.compileUpstream(lines)
        return str(caught.exception)

    def test_moduleShape(self) -> None:
        """
        The plugin object provides IProxyModule; its parsed value is an
        IBalancerFactory that allows backup.
        """
        verifyObject(IProxyModule, example.stickyHeaderModule)
        from twisted_rproxy.config.ast import Directive

        method = example.parseStickyHeader(Directive("x_sticky_header", ("X-A",), None, "f", 1))
        verifyObject(IBalancerFactory, method)
        self.assertTrue(method.supportsBackup)

    def test_buildsTheBalancer(self) -> None:
        """
        The directive gives the group a StickyHeaderBalancer on the
        lowercased header name.
        """
        config = self.compileUpstream("        x_sticky_header X-Session;")
        balancer = config.stateOf("upstream")["upstreams"]["u"].balancer
        self.assertIsInstance(balancer, example.StickyHeaderBalancer)
        self.assertEqual(balancer.headerName, b"x-session")

    def test_errors(self) -> None:
        """
        A bad name, a second method and a wrong argument count are errors
        at the directive's line.
        """
        self.assertIn('invalid header name "a:b" in <string>:5',
                      self.errorOf("        x_sticky_header a:b;"))
        self.assertIn("load balancing method redefined",
                      self.errorOf("        x_sticky_header X;\n        least_conn;"))
        self.assertIn('invalid number of arguments in "x_sticky_header" directive',
                      self.errorOf("        x_sticky_header;"))
