# -*- test-case-name: tests.unit.test_balancers -*-
"""
Tests for the balancing methods of L{twisted_rproxy.upstream.balancers}
(C{least_conn}, C{ip_hash}, C{hash}, C{random}) and their directives in
L{twisted_rproxy.modules.balancers}.  Balancers run on a
L{MemoryReactorClock} with no sockets: a "connection" is a peer's C{conns}
count, raised and lowered by the test as the proxy does around C{pick} and
C{release}.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.unit.configsupport import ConfigTestCase
from twisted_rproxy.interfaces import IBalancer, IBalancerFactory
from twisted_rproxy.modules.balancers import (
    HashModule,
    IPHashModule,
    LeastConnModule,
    RandomModule,
)
from twisted_rproxy.plugins import builtinModules
from twisted_rproxy.upstream.balancers import (
    ConsistentHashBalancer,
    HashBalancer,
    IPHashBalancer,
    LeastConnBalancer,
    RandomBalancer,
)
from twisted_rproxy.upstream.balancers.hash import serverPoints
from twisted_rproxy.upstream.cluster import Peer, RoundRobinBalancer


def peers(*weights: int, **params: Any) -> List[Peer]:
    """
    Peers called a, b, c ... (as their host) with the given weights.
    """
    return [
        Peer(chr(ord("a") + i), 80, weight=w, **params) for i, w in enumerate(weights)
    ]


class FakeChannel:
    """
    The part of a channel C{ip_hash} reads.

    @ivar clientAddress: the client's address.
    """

    def __init__(self, clientAddress: Any) -> None:
        """
        @param clientAddress: an C{IPv4Address}, C{IPv6Address} or
            C{UNIXAddress}.
        """
        self.clientAddress = clientAddress


class FakeExchange:
    """
    An exchange with only a client address.

    @ivar channel: its L{FakeChannel}.
    """

    def __init__(self, host: Optional[str]) -> None:
        """
        @param host: the client's IP, or C{None} for a UNIX socket client.
        """
        if host is None:
            address: Any = UNIXAddress(None)
        elif ":" in host:
            address = IPv6Address("TCP", host, 50000)
        else:
            address = IPv4Address("TCP", host, 50000)
        self.channel = FakeChannel(address)


class EchoKey:
    """
    A stand-in for a compiled C{hash} key: the "exchange" is the key.
    """

    def evaluate(self, exchange: Any) -> Optional[str]:
        """
        @return: C{exchange} itself.
        """
        return exchange


def countPicks(balancer: Any, exchanges: Sequence[Any]) -> Dict[str, int]:
    """
    Pick once for each exchange, releasing at once (no load builds up).

    @return: picks per peer host.
    """
    counts: Counter = Counter()
    for exchange in exchanges:
        peer = balancer.pick(exchange)
        counts[peer.host] += 1
        balancer.release(peer, False)
    return dict(counts)


class BalancerTestCase(SynchronousTestCase):
    """
    A clock for fail_timeout, well after zero as a real one.
    """

    def setUp(self) -> None:
        """
        Make the clock.
        """
        self.clock = MemoryReactorClock()
        self.clock.advance(1000)

    def assertShare(self, counts: Dict[str, int], host: str, low: int, high: int) -> None:
        """
        Assert that C{host} got between C{low} and C{high} picks.
        """
        got = counts.get(host, 0)
        self.assertTrue(low <= got <= high, f"{host} got {got}, not {low}..{high}: {counts}")

    def assertPassiveHealth(self, makeBalancer: Any, exchange: Any) -> None:
        """
        A peer that failed C{max_fails} times is skipped for C{fail_timeout}
        and picked again after it, whatever the method.

        @param makeBalancer: builds the balancer from a list of peers.
        @param exchange: what to pick for.
        """
        group = peers(1, 1, 1, maxFails=1, failTimeout=10)
        balancer = makeBalancer(group)
        first = balancer.pick(exchange)
        balancer.release(first, True)
        for _ in range(50):
            other = balancer.pick(exchange)
            self.assertIsNot(other, first)
            balancer.release(other, False)
        self.clock.advance(11)
        seen = set()
        for _ in range(50):
            peer = balancer.pick(exchange)
            seen.add(peer)
            balancer.release(peer, False)
        self.assertIn(first, seen)


# ---------------------------------------------------------------------------
# least_conn
# ---------------------------------------------------------------------------


class LeastConnTests(BalancerTestCase):
    """
    L{LeastConnBalancer} sends each request to the peer with the fewest
    connections for its weight, so a slow peer that holds connections gets
    fewer new ones.
    """

    def test_providesIBalancer(self) -> None:
        """
        It is an L{IBalancer}.
        """
        verifyObject(IBalancer, LeastConnBalancer(peers(1, 1), self.clock))

    def test_idleSplitFollowsWeights(self) -> None:
        """
        With no connection held, every peer ties and the smooth weighted
        round-robin decides: 1,000 picks split evenly, or 3:1:1 by weight.
        """
        even = countPicks(LeastConnBalancer(peers(1, 1, 1), self.clock), [None] * 1000)
        self.assertEqual(sorted(even.values()), [333, 333, 334])
        weighted = countPicks(LeastConnBalancer(peers(3, 1, 1), self.clock), [None] * 1000)
        self.assertEqual(weighted, {"a": 600, "b": 200, "c": 200})

    def test_prefersLeastLoaded(self) -> None:
        """
        The peer with the fewest connections is picked.
        """
        a, b, c = group = peers(1, 1, 1)
        a.conns, b.conns, c.conns = 3, 1, 2
        balancer = LeastConnBalancer(group, self.clock)
        for _ in range(5):
            self.assertIs(balancer.pick(None), b)

    def test_loadIsPerWeight(self) -> None:
        """
        Connections count per unit of weight: 3 on weight 4 is less than
        1 on weight 1.
        """
        a, b = group = peers(4, 1)
        a.conns, b.conns = 3, 1
        self.assertIs(LeastConnBalancer(group, self.clock).pick(None), a)

    def test_heldConnectionsBalance(self) -> None:
        """
        When every pick keeps its connection, the connections end up in
        proportion to the weights (2:1).
        """
        group = peers(2, 1)
        balancer = LeastConnBalancer(group, self.clock)
        for _ in range(300):
            balancer.pick(None).conns += 1
        self.assertEqual([p.conns for p in group], [200, 100])

    def test_tiesAmongLeastLoadedOnly(self) -> None:
        """
        Only the peers tied at the lowest load take part in the
        round-robin: a busier peer is never picked.
        """
        a, b, c = group = peers(1, 1, 1)
        b.conns = 5
        counts = countPicks(LeastConnBalancer(group, self.clock), [None] * 100)
        self.assertEqual(counts, {"a": 50, "c": 50})

    def test_passiveHealth(self) -> None:
        """
        A failed peer is skipped for fail_timeout.
        """
        self.assertPassiveHealth(lambda g: LeastConnBalancer(g, self.clock), None)

    def test_backupOnlyWhenPrimariesDown(self) -> None:
        """
        The backup peer takes requests only while no primary can.
        """
        group = peers(1, 1, 1, maxFails=1, failTimeout=10)
        group[2].backup = True
        a, b, spare = group
        balancer = LeastConnBalancer(group, self.clock)
        self.assertNotIn("c", countPicks(balancer, [None] * 20))
        balancer.release(a, True)
        balancer.release(b, True)
        self.assertEqual(countPicks(balancer, [None] * 5), {"c": 5})
        self.clock.advance(11)
        self.assertNotIn("c", countPicks(balancer, [None] * 20))

    def test_excludedAndSingle(self) -> None:
        """
        Peers already tried are skipped; a single peer is always used.
        """
        a, b = group = peers(1, 1)
        a.conns = 0
        b.conns = 9
        self.assertIs(LeastConnBalancer(group, self.clock).pick(None, [a]), b)
        only = peers(1, maxFails=1)
        balancer = LeastConnBalancer(only, self.clock)
        balancer.release(only[0], True)
        self.assertIs(balancer.pick(None), only[0])


# ---------------------------------------------------------------------------
# ip_hash
# ---------------------------------------------------------------------------


class IPHashTests(BalancerTestCase):
    """
    L{IPHashBalancer} keeps a client network on one peer with nginx's own
    hash, so sessions stick the same way behind either proxy.
    """

    def test_providesIBalancer(self) -> None:
        """
        It is an L{IBalancer}.
        """
        verifyObject(IBalancer, IPHashBalancer(peers(1, 1), self.clock))

    def test_nginxHash(self) -> None:
        """
        192.168.1.x hashes as nginx computes it: from 89, C{(h * 113 +
        octet) % 6271} over 192, 168, 1 gives 154, and 154 % 3 is the
        second of three equal peers.
        """
        a, b, c = group = peers(1, 1, 1)
        balancer = IPHashBalancer(group, self.clock)
        self.assertIs(balancer.pick(FakeExchange("192.168.1.7")), b)

    def test_sameSlash24SamePeer(self) -> None:
        """
        Every address of one /24 goes to the same peer.
        """
        balancer = IPHashBalancer(peers(1, 1, 1), self.clock)
        for network in ("10.0.0", "192.168.7", "172.16.200"):
            hosts = {balancer.pick(FakeExchange(f"{network}.{i}")).host for i in range(256)}
            self.assertEqual(len(hosts), 1, network)

    def test_slash24sSpread(self) -> None:
        """
        1,000 different /24s spread over the peers, evenly without weights
        and 2:1:1 with weights 2, 1, 1.
        """
        clients = [FakeExchange(f"10.{i // 250}.{i % 250}.1") for i in range(1000)]
        even = countPicks(IPHashBalancer(peers(1, 1, 1), self.clock), clients)
        for host in "abc":
            self.assertShare(even, host, 250, 420)
        weighted = countPicks(IPHashBalancer(peers(2, 1, 1), self.clock), clients)
        self.assertShare(weighted, "a", 420, 580)
        self.assertShare(weighted, "b", 170, 330)
        self.assertShare(weighted, "c", 170, 330)

    def test_ipv6WholeAddress(self) -> None:
        """
        An IPv6 client is keyed by its whole address: addresses that
        differ only in their last group still spread.
        """
        balancer = IPHashBalancer(peers(1, 1, 1), self.clock)
        clients = [FakeExchange(f"2001:db8::{i:x}") for i in range(300)]
        counts = countPicks(balancer, clients)
        self.assertEqual(len(counts), 3)
        again = countPicks(IPHashBalancer(peers(1, 1, 1), self.clock), clients)
        self.assertEqual(counts, again)

    def test_unixClientIsStable(self) -> None:
        """
        A client without an IP address hashes as nginx's pseudo address,
        always to one peer.
        """
        balancer = IPHashBalancer(peers(1, 1, 1), self.clock)
        self.assertEqual(len(countPicks(balancer, [FakeExchange(None)] * 20)), 1)

    def test_passiveHealth(self) -> None:
        """
        When the client's peer failed, it is hashed again to another peer
        for fail_timeout, then returns.
        """
        self.assertPassiveHealth(lambda g: IPHashBalancer(g, self.clock), FakeExchange("10.1.1.1"))

    def test_fallsBackToRoundRobin(self) -> None:
        """
        When no usable peer is found in 21 hashes (here every peer but a
        tried one is down), the round-robin pick is used, which still
        honours C{down} and the tried peers.
        """
        a, b, c = group = peers(1, 1, 1)
        b.down = c.down = True
        balancer = IPHashBalancer(group, self.clock)
        exchange = FakeExchange("10.1.1.1")
        self.assertIs(balancer.pick(exchange), a)
        self.assertIsNone(balancer.pick(exchange, [a]))


# ---------------------------------------------------------------------------
# hash
# ---------------------------------------------------------------------------


class HashTests(BalancerTestCase):
    """
    L{HashBalancer} maps each key to a peer, the same one every time.
    """

    def test_providesIBalancer(self) -> None:
        """
        It is an L{IBalancer}.
        """
        verifyObject(IBalancer, HashBalancer(peers(1, 1), EchoKey(), self.clock))

    def test_stablePerKey(self) -> None:
        """
        One key always gets one peer, and a key's peer is nginx's:
        C{(crc32(key) >> 16 & 0x7fff) % total weight}.
        """
        group = peers(1, 1, 1)
        balancer = HashBalancer(group, EchoKey(), self.clock)
        for key in ("/a", "/b", "/users/42"):
            picked = {balancer.pick(key) for _ in range(10)}
            expected = group[((zlib.crc32(key.encode()) >> 16) & 0x7FFF) % 3]
            self.assertEqual(picked, {expected})

    def test_distribution(self) -> None:
        """
        1,000 keys split about evenly, or 2:1:1 by weight.
        """
        keys = [f"/item/{i}" for i in range(1000)]
        even = countPicks(HashBalancer(peers(1, 1, 1), EchoKey(), self.clock), keys)
        for host in "abc":
            self.assertShare(even, host, 280, 390)
        weighted = countPicks(HashBalancer(peers(2, 1, 1), EchoKey(), self.clock), keys)
        self.assertShare(weighted, "a", 440, 560)
        self.assertShare(weighted, "b", 190, 310)

    def test_emptyKeyIsRoundRobin(self) -> None:
        """
        A key with no value falls back to round-robin, as nginx does.
        """
        counts = countPicks(HashBalancer(peers(1, 1), EchoKey(), self.clock), [""] * 10)
        self.assertEqual(counts, {"a": 5, "b": 5})

    def test_passiveHealth(self) -> None:
        """
        A key whose peer failed is rehashed to another for fail_timeout.
        """
        self.assertPassiveHealth(lambda g: HashBalancer(g, EchoKey(), self.clock), "/k")

    def test_triedPeerRehashes(self) -> None:
        """
        A retry of the same key goes to a different peer.
        """
        group = peers(1, 1, 1)
        balancer = HashBalancer(group, EchoKey(), self.clock)
        first = balancer.pick("/k")
        second = balancer.pick("/k", [first])
        self.assertIsNotNone(second)
        self.assertIsNot(second, first)


class ConsistentHashTests(BalancerTestCase):
    """
    L{ConsistentHashBalancer} is ketama: peers can come and go and most
    keys stay where they were.
    """

    def test_providesIBalancer(self) -> None:
        """
        It is an L{IBalancer}.
        """
        verifyObject(IBalancer, ConsistentHashBalancer(peers(1, 1), EchoKey(), self.clock))

    def test_nginxPoints(self) -> None:
        """
        A server's points chain crc32 over C{HOST \\0 PORT} and the previous
        point's four little-endian bytes, 160 per unit of weight.
        """
        points = serverPoints("127.0.0.1:8080", 2)
        self.assertEqual(len(points), 320)
        first = zlib.crc32(b"127.0.0.1\x008080" + b"\0\0\0\0")
        self.assertEqual(points[0], first)
        self.assertEqual(points[1], zlib.crc32(b"127.0.0.1\x008080" + first.to_bytes(4, "little")))
        self.assertEqual(serverPoints("unix:/run/a.sock", 1)[0], zlib.crc32(b"/run/a.sock\0" + b"\0" * 4))

    def test_removingOnePeerOfFourRemapsAQuarter(self) -> None:
        """
        With C{hash $request_uri consistent}, removing one of 4 peers moves
        between 15% and 35% of 10,000 keys, and only keys that were on the
        removed peer.
        """
        def servers(count: int) -> List[Peer]:
            return [Peer("10.0.0.%d" % (i + 1), 8080) for i in range(count)]

        keys = [f"/catalog/item?id={i}" for i in range(10000)]
        four = ConsistentHashBalancer(servers(4), EchoKey(), self.clock)
        three = ConsistentHashBalancer(servers(3), EchoKey(), self.clock)
        before = [four.pick(k).name for k in keys]
        after = [three.pick(k).name for k in keys]
        moved = [(b, a) for b, a in zip(before, after) if b != a]
        self.assertTrue(1500 <= len(moved) <= 3500, len(moved))
        self.assertEqual({b for b, _ in moved}, {"10.0.0.4:8080"})
        for host in ("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"):
            self.assertTrue(1500 <= before.count(host) <= 3500, (host, before.count(host)))

    def test_stablePerKey(self) -> None:
        """
        One key always gets one peer.
        """
        balancer = ConsistentHashBalancer(peers(1, 1, 1), EchoKey(), self.clock)
        for key in ("/a", "/b", "/c?x=1"):
            self.assertEqual(len({balancer.pick(key) for _ in range(10)}), 1)

    def test_passiveHealth(self) -> None:
        """
        A key whose peer failed walks on to the next point's peer for
        fail_timeout.
        """
        self.assertPassiveHealth(
            lambda g: ConsistentHashBalancer(g, EchoKey(), self.clock), "/k"
        )

    def test_weights(self) -> None:
        """
        A peer of weight 2 has twice the points, and about twice the keys.
        """
        keys = [f"/w/{i}" for i in range(3000)]
        counts = countPicks(ConsistentHashBalancer(peers(2, 1, 1), EchoKey(), self.clock), keys)
        self.assertShare(counts, "a", 1200, 1800)


# ---------------------------------------------------------------------------
# random
# ---------------------------------------------------------------------------


class RandomTests(BalancerTestCase):
    """
    L{RandomBalancer} draws peers by weight, or the less loaded of two.
    """

    def balancer(self, group: List[Peer], two: bool = False) -> RandomBalancer:
        """
        @return: a balancer with a seeded random source, so runs repeat.
        """
        return RandomBalancer(group, two, self.clock, randomSource=random.Random(4))

    def test_providesIBalancer(self) -> None:
        """
        It is an L{IBalancer}, with or without C{two}.
        """
        verifyObject(IBalancer, self.balancer(peers(1, 1)))
        verifyObject(IBalancer, self.balancer(peers(1, 1), two=True))

    def test_distribution(self) -> None:
        """
        1,000 draws split about evenly, or 3:1:1 by weight.
        """
        even = countPicks(self.balancer(peers(1, 1, 1)), [None] * 1000)
        for host in "abc":
            self.assertShare(even, host, 280, 390)
        weighted = countPicks(self.balancer(peers(3, 1, 1)), [None] * 1000)
        self.assertShare(weighted, "a", 540, 660)
        self.assertShare(weighted, "b", 140, 260)

    def test_twoPrefersLessLoaded(self) -> None:
        """
        C{random two least_conn}: of two peers drawn, the one with fewer
        connections wins, so the busy one of two is never picked and the
        busy one of three only loses.
        """
        a, b = pair = peers(1, 1)
        a.conns = 5
        self.assertEqual(countPicks(self.balancer(pair, two=True), [None] * 100), {"b": 100})
        a, b, c = three = peers(1, 1, 1)
        a.conns = 5
        counts = countPicks(self.balancer(three, two=True), [None] * 300)
        self.assertNotIn("a", counts)
        self.assertShare(counts, "b", 100, 200)

    def test_twoHeldConnectionsBalance(self) -> None:
        """
        When picks keep their connections, C{two} keeps the peers within
        a few connections of each other.
        """
        group = peers(1, 1, 1)
        balancer = self.balancer(group, two=True)
        for _ in range(300):
            balancer.pick(None).conns += 1
        counts = [p.conns for p in group]
        self.assertLessEqual(max(counts) - min(counts), 10, counts)

    def test_passiveHealth(self) -> None:
        """
        A failed peer is not drawn for fail_timeout, with or without two.
        """
        self.assertPassiveHealth(lambda g: self.balancer(g), None)
        self.clock.advance(100)
        self.assertPassiveHealth(lambda g: self.balancer(g, two=True), None)


# ---------------------------------------------------------------------------
# directives
# ---------------------------------------------------------------------------


def upstreamBlock(lines: str) -> str:
    """
    @return: an C{http} body with upstream C{u} holding C{lines} (from the
        body's line 2) and two servers, and a server proxying to it.
    """
    return (
        "upstream u {\n"
        f"{lines}\n"
        "    server 127.0.0.1:1 weight=2;\n"
        "    server 127.0.0.1:2;\n"
        "}\n"
        "server { listen 127.0.0.1:8999; location / { proxy_pass http://u; } }"
    )


#: The config line of the first line of L{upstreamBlock}'s C{lines}.
FIRST_LINE = 6


class DirectiveTests(ConfigTestCase):
    """
    The balancing directives parse as nginx's do, build the right
    balancer, and report mistakes at file:line.
    """

    def balancerOf(self, lines: str) -> Any:
        """
        @return: the balancer upstream C{u} gets with C{lines}.
        """
        config = self.compileHTTP(upstreamBlock(lines))
        return config.stateOf("upstream")["upstreams"]["u"].balancer

    def errorOf(self, lines: str) -> str:
        """
        @return: the error text compiling upstream C{u} with C{lines}.
        """
        return self.httpError(upstreamBlock(lines))

    def test_eachMethodBuildsItsBalancer(self) -> None:
        """
        Each directive selects its balancer; none selects round-robin.
        """
        cases = [
            ("", RoundRobinBalancer),
            ("least_conn;", LeastConnBalancer),
            ("ip_hash;", IPHashBalancer),
            ("hash $request_uri;", HashBalancer),
            ("hash $arg_k consistent;", ConsistentHashBalancer),
            ("random;", RandomBalancer),
            ("random two;", RandomBalancer),
            ("random two least_conn;", RandomBalancer),
        ]
        for lines, expected in cases:
            balancer = self.balancerOf(lines)
            self.assertIs(type(balancer), expected, lines)
            verifyObject(IBalancer, balancer)
        self.assertTrue(self.balancerOf("random two;").two)
        self.assertFalse(self.balancerOf("random;").two)

    def sentTo(self, config: Any, path: str, client: str = "10.0.0.7") -> int:
        """
        Send one request through C{config} on the memory reactor.

        @return: the port the proxy connected to for it.
        """
        before = len(self.reactor.tcpClients)
        self.exchange(config, f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode(), peer=(client, 5555))
        self.assertEqual(len(self.reactor.tcpClients), before + 1)
        return self.reactor.tcpClients[-1][1]

    def test_hashKeyVariables(self) -> None:
        """
        The key is compiled once with its variables and evaluated for each
        request: C{$arg_k} sends every request with one C{k} to one peer,
        and the keys spread over both.
        """
        config = self.compileHTTP(upstreamBlock("hash $arg_k consistent;"))
        self.assertEqual(config.stateOf("upstream")["upstreams"]["u"].balancer.key.text, "$arg_k")
        byKey = {k: {self.sentTo(config, f"/?k={k}&n={n}") for n in range(3)} for k in range(20)}
        for ports in byKey.values():
            self.assertEqual(len(ports), 1)
        self.assertEqual(set().union(*byKey.values()), {1, 2})

    def test_ipHashReadsClientAddress(self) -> None:
        """
        C{ip_hash} keys on the connection's client address: one /24 goes
        to one peer, and different /24s reach both.
        """
        config = self.compileHTTP(upstreamBlock("ip_hash;"))
        same = {self.sentTo(config, "/", f"192.168.1.{i}") for i in range(1, 20)}
        self.assertEqual(len(same), 1)
        spread = {self.sentTo(config, "/", f"10.{i}.0.1") for i in range(20)}
        self.assertEqual(spread, {1, 2})

    def test_wrongArity(self) -> None:
        """
        C{least_conn} and C{ip_hash} take no argument, C{hash} one or two,
        C{random} at most two.
        """
        for lines, name in [
            ("least_conn x;", "least_conn"),
            ("ip_hash x;", "ip_hash"),
            ("hash;", "hash"),
            ("hash $a consistent x;", "hash"),
            ("random two least_conn x;", "random"),
        ]:
            self.assertEqual(
                self.errorOf(lines),
                f'invalid number of arguments in "{name}" directive in '
                f"{self.confPath}:{FIRST_LINE}",
            )

    def test_unknownFlag(self) -> None:
        """
        A flag other than those nginx knows is an invalid parameter.
        """
        for lines, flag in [
            ("hash $a ketama;", "ketama"),
            ("random three;", "three"),
            ("random two round_robin;", "round_robin"),
            ("random least_conn;", "least_conn"),
        ]:
            self.assertEqual(
                self.errorOf(lines),
                f'invalid parameter "{flag}" in {self.confPath}:{FIRST_LINE}',
            )

    def test_unknownVariableInKey(self) -> None:
        """
        An unknown variable in the key is reported at the C{hash} line.
        """
        self.assertEqual(
            self.errorOf("hash $nosuch;"),
            f'unknown "nosuch" variable in {self.confPath}:{FIRST_LINE}',
        )

    def test_wrongContext(self) -> None:
        """
        The directives belong in C{upstream} only.
        """
        for directive in ("least_conn;", "ip_hash;", "hash $uri;", "random;"):
            name = directive.rstrip(";").split()[0]
            error = self.httpError(
                f"server {{ listen 127.0.0.1:8999;\n{directive}\n}}"
            )
            self.assertEqual(
                error, f'"{name}" directive is not allowed here in {self.confPath}:6'
            )

    def test_methodRedefined(self) -> None:
        """
        A second balancing method in one block is refused at its line
        (nginx warns "load balancing method redefined" and keeps the last).
        """
        self.assertEqual(
            self.errorOf("least_conn;\nip_hash;"),
            f"load balancing method redefined in {self.confPath}:{FIRST_LINE + 1}",
        )
        self.assertEqual(
            self.errorOf("ip_hash;\nip_hash;"),
            f'"ip_hash" directive is duplicate in {self.confPath}:{FIRST_LINE + 1}',
        )

    def test_backupNeedsAMethodThatSupportsIt(self) -> None:
        """
        C{backup} servers work with round-robin and C{least_conn}; the
        hashing and random methods refuse them, as nginx does.
        """
        self.assertEqual(len(self.balancerOf("least_conn;\nserver 127.0.0.1:3 backup;").backup), 1)
        for method in ("ip_hash;", "hash $uri;", "random;"):
            name = method.rstrip(";").split()[0]
            self.assertEqual(
                self.errorOf(f"{method}\nserver 127.0.0.1:3 backup;"),
                f'balancing method "{name}" does not support parameter "backup" '
                f"in {self.confPath}:{FIRST_LINE + 1}",
            )

    def test_modulesAreBuiltinPlugins(self) -> None:
        """
        Each method is a built-in module of its own, and its directive
        parses into an L{IBalancerFactory}, the hook a team's own method
        uses too.
        """
        builtins = {type(m) for m in builtinModules()}
        for module in (LeastConnModule, IPHashModule, HashModule, RandomModule):
            self.assertIn(module, builtins)
        from twisted_rproxy.config.ast import Directive

        value = LeastConnModule().directives()[0].parse(Directive("least_conn", (), None, "f", 1))
        verifyObject(IBalancerFactory, value)
        self.assertTrue(value.supportsBackup)
