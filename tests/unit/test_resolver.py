"""
Tests for L{twisted_rproxy.upstream.resolver}: C{resolver} and
C{server NAME resolve} re-resolve upstream names while running, on a
clock, with an in-memory DNS client, and the directives report mistakes
at file:line as nginx does.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.names import dns
from twisted.names.error import DNSNameError, DNSQueryTimeoutError

from tests.unit.configsupport import ConfigTestCase
from tests.unit.test_balancers import FakeExchange
from twisted_rproxy.upstream.resolver import ResolverSpec, UpstreamResolver

Answer = List[Tuple[str, int]]


class MemoryDNS:
    """
    An C{IResolver} with the two lookups the re-resolver makes, answering
    from C{records} (name to C{[(ip, ttl)]}, or an exception to fail
    with), or holding the answer when C{hold} is set.

    @ivar asked: every (kind, name) looked up, in order.
    """

    def __init__(self) -> None:
        self.records: Dict[str, Any] = {}
        self.records6: Dict[str, Any] = {}
        self.asked: List[Tuple[str, str]] = []
        self.hold = False
        self.held: List[Deferred] = []

    def _answer(self, table: Dict[str, Any], kind: str, name: str, record: Any) -> Deferred:
        self.asked.append((kind, name))
        if self.hold:
            d: Deferred = Deferred()
            self.held.append(d)
            return d
        found = table.get(name, [])
        if isinstance(found, Exception):
            return fail(found)
        answers = [
            dns.RRHeader(name, record.TYPE, dns.IN, ttl, record(ip, ttl=ttl))
            for ip, ttl in found
        ]
        return succeed((answers, [], []))

    def lookupAddress(self, name: str) -> Deferred:
        """
        A records.
        """
        return self._answer(self.records, "A", name, dns.Record_A)

    def lookupIPV6Address(self, name: str) -> Deferred:
        """
        AAAA records.
        """
        return self._answer(self.records6, "AAAA", name, dns.Record_AAAA)


UPSTREAM = """
resolver 127.0.0.1:5353 {params};
upstream u {{
    zone u 64k;
    server 127.0.0.1:1;
    server backend.test:8080 resolve weight=2 max_fails=3;
}}
server {{ listen 127.0.0.1:8999; location / {{ proxy_pass http://u; }} }}
"""


class ResolverTests(ConfigTestCase):
    """
    A compiled config's L{UpstreamResolver} keeps the group's peers in
    step with DNS answers.
    """

    def build(self, params: str = "") -> Tuple[Any, UpstreamResolver, MemoryDNS]:
        """
        @return: the config, its one resolver (with a L{MemoryDNS}), and
            that DNS.
        """
        config = self.compileHTTP(UPSTREAM.format(params=params))
        resolvers = config.stateOf("upstream")["resolvers"]
        self.assertEqual(len(resolvers), 1)
        resolver = resolvers[0]
        memory = resolver.client = MemoryDNS()
        self.addCleanup(resolver.stop)
        return config, resolver, memory

    def names(self, resolver: UpstreamResolver) -> List[str]:
        """
        @return: the names of the group's peers now.
        """
        return [peer.name for peer in resolver.upstream.peers]

    def test_parsedSpec(self) -> None:
        """
        The resolver's servers and flags are parsed; the group starts with
        its static peers only (a C{resolve} name is not resolved at load).
        """
        _config, resolver, _memory = self.build("valid=5s ipv6=off")
        self.assertEqual(
            resolver.spec, ResolverSpec((("127.0.0.1", 5353),), 5.0, True, False, 30.0)
        )
        self.assertEqual(self.names(resolver), ["127.0.0.1:1"])

    def test_answersBecomePeers(self) -> None:
        """
        Every address of the answer becomes a peer with the server line's
        port and parameters, and the group's balancer picks among them.
        """
        config, resolver, memory = self.build()
        memory.records["backend.test"] = [("10.0.0.1", 60), ("10.0.0.2", 60)]
        memory.records6["backend.test"] = [("::1", 60)]
        resolver.start()
        self.assertEqual(
            self.names(resolver), ["127.0.0.1:1", "10.0.0.1:8080", "10.0.0.2:8080", "[::1]:8080"]
        )
        resolved = resolver.upstream.peers[1]
        self.assertEqual((resolved.weight, resolved.maxFails, resolved.server),
                         (2, 3, "backend.test:8080"))
        balancer = resolver.upstream.balancer
        self.assertEqual(balancer.peers, resolver.upstream.peers)
        picked = {balancer.pick(None).name for _ in range(7)}
        self.assertEqual(picked, set(self.names(resolver)))

    def test_reResolvedAfterTTL(self) -> None:
        """
        The name is asked again when the shortest TTL of its answer runs
        out, and a changed answer changes the peers; an address kept keeps
        its peer and counters.
        """
        _config, resolver, memory = self.build("ipv6=off")
        memory.records["backend.test"] = [("10.0.0.1", 30), ("10.0.0.2", 20)]
        resolver.start()
        kept = resolver.upstream.peers[1]
        kept.fails = 2
        memory.records["backend.test"] = [("10.0.0.1", 30), ("10.0.0.3", 30)]
        self.reactor.advance(19)
        self.assertEqual(len(memory.asked), 1)
        self.assertIn("10.0.0.2:8080", self.names(resolver))
        self.reactor.advance(1)
        self.assertEqual(len(memory.asked), 2)
        self.assertEqual(self.names(resolver), ["127.0.0.1:1", "10.0.0.1:8080", "10.0.0.3:8080"])
        self.assertIs(resolver.upstream.peers[1], kept)
        self.assertEqual(kept.fails, 2)

    def test_validOverridesTTL(self) -> None:
        """
        C{valid=} replaces the answers' TTL, as nginx's resolver does.
        """
        _config, resolver, memory = self.build("valid=5s ipv6=off")
        memory.records["backend.test"] = [("10.0.0.1", 3600)]
        resolver.start()
        self.reactor.advance(5)
        self.reactor.advance(5)
        self.assertEqual(memory.asked, [("A", "backend.test")] * 3)

    def test_nxdomainEmptiesTimeoutKeeps(self) -> None:
        """
        A name that stops existing has no peers (requests get the static
        one); a failed lookup (a timeout) keeps the last answer and asks
        again.
        """
        _config, resolver, memory = self.build("valid=5s ipv6=off")
        memory.records["backend.test"] = [("10.0.0.1", 60)]
        resolver.start()
        memory.records["backend.test"] = DNSQueryTimeoutError("backend.test")
        self.reactor.advance(5)
        self.assertEqual(self.names(resolver), ["127.0.0.1:1", "10.0.0.1:8080"])
        self.assertEqual(len(memory.asked), 2)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        memory.records["backend.test"] = DNSNameError("backend.test")
        self.reactor.advance(5)
        self.assertEqual(self.names(resolver), ["127.0.0.1:1"])
        memory.records["backend.test"] = [("10.0.0.4", 60)]
        self.reactor.advance(5)
        self.assertEqual(self.names(resolver), ["127.0.0.1:1", "10.0.0.4:8080"])

    def test_requestsGoToTheResolvedPeer(self) -> None:
        """
        With only a resolved server, no request can be sent before the
        first answer (502, no live upstreams); afterwards it goes to the
        answered address.
        """
        config = self.compileHTTP("""
            resolver 127.0.0.1 valid=10s ipv6=off;
            upstream u { zone u; server backend.test:8080 resolve; }
            server { listen 127.0.0.1:8999; location / { proxy_pass http://u; } }
        """)
        resolver = config.stateOf("upstream")["resolvers"][0]
        self.assertEqual(resolver.spec.servers, (("127.0.0.1", 53),))
        memory = resolver.client = MemoryDNS()
        self.addCleanup(resolver.stop)
        responses = self.exchange(config, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(responses[0].status, 502)
        memory.records["backend.test"] = [("10.1.2.3", 60)]
        resolver.start()
        self.exchange(config, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(self.reactor.tcpClients[-1][:2], ("10.1.2.3", 8080))

    def test_everyMethodRebuilt(self) -> None:
        """
        Whatever the balancing method, a group of only C{resolve} servers
        has no peer to pick before the first answer, and after it the
        group's balancer (of the same method) picks the answered ones.
        """
        for method in ("", "least_conn;", "ip_hash;", "hash one-key;",
                       "hash one-key consistent;", "random;", "random two;"):
            config = self.compileHTTP(f"""
                resolver 127.0.0.1 ipv6=off;
                upstream u {{ {method} zone u; server backend.test:81 resolve; }}
            """)
            resolver = config.stateOf("upstream")["resolvers"][0]
            memory = resolver.client = MemoryDNS()
            upstream = resolver.upstream
            kind = type(upstream.balancer)
            exchange = FakeExchange("10.0.0.1")
            self.assertIsNone(upstream.balancer.pick(exchange), method)
            memory.records["backend.test"] = [("10.0.0.1", 60), ("10.0.0.2", 60)]
            resolver.start()
            self.addCleanup(resolver.stop)
            self.assertIs(type(upstream.balancer), kind, method)
            picked = upstream.balancer.pick(exchange)
            self.assertIn(picked, upstream.peers, method)

    def test_stopCancels(self) -> None:
        """
        Stopping cancels the next lookup and any in flight, so a stopped
        config asks nothing more and leaves no timer.
        """
        _config, resolver, memory = self.build("valid=5s")
        memory.hold = True
        resolver.start()
        self.assertEqual(len(memory.held), 2)
        resolver.stop()
        self.assertFalse(resolver.running)
        memory.hold = False
        self.reactor.advance(60)
        self.assertEqual(len(memory.asked), 2)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_serviceRunsResolvers(self) -> None:
        """
        L{ProxyService} starts re-resolution with the service (never at
        compile, so C{-t} asks nothing), stops the old config's on reload
        and starts the new one's, and stops it with the service.
        """
        from twisted_rproxy.service import ProxyService

        config, resolver, memory = self.build("valid=5s ipv6=off")
        memory.records["backend.test"] = [("10.0.0.1", 60)]
        service = ProxyService(config, self.reactor)
        self.assertEqual(memory.asked, [])
        service.startService()
        self.assertTrue(resolver.running)
        self.assertEqual(len(memory.asked), 1)
        newConfig, newResolver, newMemory = self.build("valid=5s ipv6=off")
        service.reload(newConfig)
        self.assertFalse(resolver.running)
        self.assertTrue(newResolver.running)
        self.assertEqual(len(newMemory.asked), 1)
        service.stopService()
        self.assertFalse(newResolver.running)
        self.reactor.advance(60)
        self.assertEqual((len(memory.asked), len(newMemory.asked)), (1, 1))

    def test_reloadKeepsTheLastAnswer(self) -> None:
        """
        On reload the new config's group starts with the addresses the old
        one last had (as new peers), so it is never without them while the
        new lookups are under way; the new answer then replaces them.
        """
        from twisted_rproxy.service import ProxyService

        config, resolver, memory = self.build("valid=5s ipv6=off")
        memory.records["backend.test"] = [("10.0.0.1", 60)]
        service = ProxyService(config, self.reactor)
        service.startService()
        self.addCleanup(service.stopService)
        oldPeer = resolver.upstream.peers[1]
        newConfig, newResolver, newMemory = self.build("valid=5s ipv6=off")
        newMemory.hold = True
        service.reload(newConfig)
        self.assertEqual(self.names(newResolver), ["127.0.0.1:1", "10.0.0.1:8080"])
        self.assertIsNot(newResolver.upstream.peers[1], oldPeer)
        self.assertEqual(newResolver.upstream.peers[1].weight, 2)
        answers = [dns.RRHeader("backend.test", dns.A, dns.IN, 60, dns.Record_A("10.0.0.9", 60))]
        newMemory.held[0].callback((answers, [], []))
        self.assertEqual(self.names(newResolver), ["127.0.0.1:1", "10.0.0.9:8080"])

    def test_literalAddressIsStatic(self) -> None:
        """
        C{resolve} on an IP address or a UNIX socket has nothing to
        re-resolve: no resolver is built, and none is needed.
        """
        config = self.compileHTTP("""
            upstream u { server 127.0.0.1:81 resolve; server unix:/tmp/x.sock resolve; }
        """)
        self.assertEqual(config.stateOf("upstream")["resolvers"], [])
        peers = config.stateOf("upstream")["upstreams"]["u"].peers
        self.assertEqual([p.name for p in peers], ["127.0.0.1:81", "unix:/tmp/x.sock"])


class ResolverDirectiveTests(ConfigTestCase):
    """
    Mistakes in C{resolver}, C{zone} and C{resolve} are errors at
    file:line, worded as nginx words them.
    """

    def errorOf(self, body: str) -> str:
        """
        @return: the compile error of C{body} inside C{http}.
        """
        return self.httpError(body)

    def test_resolveNeedsZone(self) -> None:
        """
        Without C{zone}, run-time resolution is refused at the upstream.
        """
        self.assertEqual(
            self.errorOf("resolver 127.0.0.1;\nupstream u { server a.test resolve; }"),
            'resolving names at run time requires upstream "u" to be in shared memory '
            f"in {self.confPath}:6",
        )

    def test_resolveNeedsResolver(self) -> None:
        """
        Without a C{resolver} in the upstream or in C{http}, the server
        line is refused.
        """
        self.assertEqual(
            self.errorOf("upstream u {\nzone u;\nserver 127.0.0.1:1;\nserver a.test resolve;\n}"),
            f"no resolver defined to resolve a.test in {self.confPath}:8",
        )

    def test_upstreamResolverWins(self) -> None:
        """
        A C{resolver} (and C{resolver_timeout}) in the upstream block is
        used over the http one.
        """
        config = self.compileHTTP("""
            resolver 127.0.0.1;
            resolver_timeout 3s;
            upstream u { zone u; resolver [::1]:5300 ipv4=off; server a.test resolve; }
        """)
        spec = config.stateOf("upstream")["resolvers"][0].spec
        self.assertEqual(spec, ResolverSpec((("::1", 5300),), None, False, True, 3.0))

    def test_badResolverParameters(self) -> None:
        """
        A name that does not resolve, a bad port, a bad flag value, no
        name server, or both families off are refused in nginx's words.
        """
        for args, message in [
            ("ns.invalid", 'host not found in resolver "ns.invalid"'),
            ("127.0.0.1:0", 'invalid port in resolver "127.0.0.1:0"'),
            ("127.0.0.1 valid=x", "invalid parameter: valid=x"),
            ("127.0.0.1 ipv6=maybe", "invalid parameter: ipv6=maybe"),
            ("valid=5s", "no name servers defined"),
            ("127.0.0.1 ipv4=off ipv6=off", '"ipv4" and "ipv6" cannot both be "off"'),
        ]:
            self.assertEqual(
                self.errorOf(f"resolver {args};"), f"{message} in {self.confPath}:5", args
            )

    def test_resolverHostNameResolvedAtLoad(self) -> None:
        """
        A name server given by name is resolved once, at load.
        """
        config = self.compileHTTP("""
            resolver localhost:5300 ipv6=off;
            upstream u { zone u; server a.test resolve; }
        """)
        servers = config.stateOf("upstream")["resolvers"][0].spec.servers
        self.assertIn(("127.0.0.1", 5300), servers)

    def test_badZoneSize(self) -> None:
        """
        C{zone NAME SIZE} checks its size.
        """
        self.assertEqual(
            self.errorOf("upstream u {\nzone u lots;\nserver 127.0.0.1:1;\n}"),
            f'invalid zone size "lots" in {self.confPath}:6',
        )
