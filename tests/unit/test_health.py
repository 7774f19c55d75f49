"""
Active health checks (C{health_check}, C{match}) on a L{Clock}, with fake
connections: a probe's "connection" is an L{UpstreamHTTPProtocol} on a
L{StringTransport} that the test answers byte for byte, so scheduling,
thresholds, hanging peers and match rules are checked with no socket.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.unit.configsupport import ConfigTestCase, httpConfig
from twisted_rproxy.config.ast import Directive
from twisted_rproxy.config.errors import ConfigError
from twisted_rproxy.interfaces import IHealthChecker
from twisted_rproxy.service import ProxyService
from twisted_rproxy.upstream.balancers import (
    ConsistentHashBalancer,
    HashBalancer,
    IPHashBalancer,
    LeastConnBalancer,
    RandomBalancer,
)
from twisted_rproxy.upstream.cluster import Peer, RoundRobinBalancer, Upstream
from twisted_rproxy.upstream.health import (
    HealthCheck,
    HealthCheckSpec,
    Match,
    parseHealthCheck,
    parseMatch,
)
from twisted_rproxy.upstream.http1 import UpstreamError, UpstreamHTTPProtocol
from twisted_rproxy.upstream.pool import ConnectionPool

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nok"
FAIL = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"


class Attempt:
    """
    One connection a probe asked for, which the test accepts, refuses, or
    leaves pending.

    @ivar protocol: the accepted connection's protocol, once accepted.
    """

    def __init__(self, peer: Peer, timeout: float, clock: Clock) -> None:
        """
        @param peer: the peer being connected to.
        @param timeout: the connect timeout the probe asked for.
        @param clock: the protocol's clock.
        """
        self.peer = peer
        self.timeout = timeout
        self.clock = clock
        self.deferred: "Deferred[Any]" = Deferred()
        self.protocol: Optional[UpstreamHTTPProtocol] = None
        self.transport = StringTransport()

    def accept(self) -> UpstreamHTTPProtocol:
        """
        @return: the connected protocol (the probe's request is in
            C{self.transport.value()} once this returns).
        """
        protocol = self.protocol = UpstreamHTTPProtocol(self.peer, self.clock)
        protocol.makeConnection(self.transport)
        self.deferred.callback((protocol, False))
        return protocol

    def answer(self, data: bytes) -> None:
        """
        Accept and send C{data} back as the peer's response.
        """
        self.accept().dataReceived(data)

    def refuse(self) -> None:
        """
        Fail to connect, as a closed port does.
        """
        self.deferred.errback(UpstreamError(
            "error", "connect() failed (111: Connection refused)", "connecting to upstream"
        ))


class FakeConnector:
    """
    Stands in for L{ConnectionPool.connect}: records each attempt.
    """

    def __init__(self, clock: Clock) -> None:
        """
        @param clock: the clock the fake connections time out on.
        """
        self.clock = clock
        self.attempts: List[Attempt] = []

    def __call__(self, peer: Peer, timeout: float) -> "Deferred[Any]":
        """
        @return: the Deferred of a new pending L{Attempt}.
        """
        attempt = Attempt(peer, timeout, self.clock)
        self.attempts.append(attempt)
        return attempt.deferred

    def pending(self) -> List[Attempt]:
        """
        @return: the attempts neither accepted nor refused.
        """
        return [a for a in self.attempts if not a.deferred.called]

    def lastFor(self, peer: Peer) -> Attempt:
        """
        @return: the latest attempt to C{peer}.
        """
        return [a for a in self.attempts if a.peer is peer][-1]


class HealthCheckTests(SynchronousTestCase):
    """
    L{HealthCheck} over three fake peers on a L{Clock}.
    """

    def setUp(self) -> None:
        """
        Three peers in one group, a clock, a connector and a log catcher.
        """
        self.clock = Clock()
        self.peers = [Peer("127.0.0.1", 8000 + i) for i in range(3)]
        self.balancer = RoundRobinBalancer(self.peers, self.clock)
        self.upstream = Upstream("app", self.peers, self.balancer)
        self.connector = FakeConnector(self.clock)
        self.events: List[dict] = []

    def makeCheck(self, match: Optional[Match] = None, connectTimeout: float = 60.0,
                  readTimeout: float = 60.0, **params: Any) -> HealthCheck:
        """
        @return: a check of the group with C{params} (interval, fails,
            passes, uri), logging into C{self.events}.
        """
        spec = HealthCheckSpec(**params)
        check = HealthCheck(self.upstream, spec, match, connectTimeout, readTimeout,
                            reactor=self.clock, connect=self.connector)
        check.log = Logger(observer=self.events.append)
        return check

    def answerAll(self, data: bytes) -> None:
        """
        Answer every pending probe with C{data}.
        """
        for attempt in self.connector.pending():
            attempt.answer(data)

    def picks(self, n: int = 9) -> List[Peer]:
        """
        @return: C{n} picks of the group's balancer.
        """
        found = []
        for _ in range(n):
            peer = self.balancer.pick(None)
            assert peer is not None
            found.append(peer)
        return found

    def testProvidesIHealthChecker(self) -> None:
        """
        L{HealthCheck} provides L{IHealthChecker}.
        """
        self.assertTrue(verifyObject(IHealthChecker, self.makeCheck()))

    def testNothingBeforeStart(self) -> None:
        """
        Building a check (as C{-t} does) schedules nothing and connects
        nowhere.
        """
        self.makeCheck()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.connector.attempts, [])

    def testProbesAtStartThenEveryInterval(self) -> None:
        """
        Every peer is probed when the check starts, then once per
        interval.
        """
        check = self.makeCheck(interval=5.0)
        check.start()
        self.assertEqual([a.peer for a in self.connector.attempts], self.peers)
        self.answerAll(OK)
        self.clock.advance(4.9)
        self.assertEqual(len(self.connector.attempts), 3)
        self.clock.advance(0.1)
        self.assertEqual(len(self.connector.attempts), 6)
        self.answerAll(OK)
        self.clock.advance(5)
        self.assertEqual(len(self.connector.attempts), 9)

    def testProbeRequest(self) -> None:
        """
        A probe is C{GET uri HTTP/1.1} with the group's name as C{Host}
        and C{Connection: close}, and closes its connection afterwards;
        the connect timeout is the interval when that is smaller.
        """
        check = self.makeCheck(interval=2.0, uri="/health?deep=1", connectTimeout=30.0)
        check.start()
        attempt = self.connector.attempts[0]
        self.assertEqual(attempt.timeout, 2.0)
        attempt.answer(OK)
        self.assertEqual(
            attempt.transport.value(),
            b"GET /health?deep=1 HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(attempt.transport.disconnecting)

    def testFollowsPeersThatChange(self) -> None:
        """
        A peer added to the group (by re-resolution) is probed from the
        next interval on; one removed is probed no more.
        """
        check = self.makeCheck(interval=1.0)
        check.start()
        self.answerAll(OK)
        added = Peer("127.0.0.1", 8009)
        removed = self.peers[0]
        self.upstream.peers = self.peers[1:] + [added]
        self.clock.advance(1)
        probed = [a.peer for a in self.connector.pending()]
        self.assertEqual(probed, self.peers[1:] + [added])
        self.assertNotIn(removed, check.peers)

    def testFailsThreshold(self) -> None:
        """
        With C{fails=2}, one failed probe leaves the peer in rotation; the
        second in a row takes it out, and the balancer skips it.
        """
        check = self.makeCheck(interval=1.0, fails=2)
        check.start()
        bad = self.peers[1]
        for attempt in self.connector.pending():
            attempt.answer(FAIL if attempt.peer is bad else OK)
        self.assertFalse(bad.checkFailed)
        self.assertIn(bad, self.picks())
        self.clock.advance(1)
        for attempt in self.connector.pending():
            attempt.answer(FAIL if attempt.peer is bad else OK)
        self.assertTrue(bad.checkFailed)
        self.assertFalse(self.balancer.isAvailable(bad, self.clock.seconds()))
        self.assertNotIn(bad, self.picks())
        self.assertEqual(len(self.events), 1)
        self.assertEqual(
            self.events[0]["log_format"].format(**self.events[0]),
            'peer 127.0.0.1:8001 is unhealthy (health check failed: status 500), '
            'upstream "app", health check uri "/"',
        )

    def testFailuresMustBeConsecutive(self) -> None:
        """
        A good probe between two failures resets the count.
        """
        check = self.makeCheck(interval=1.0, fails=2)
        check.start()
        peer = self.peers[0]
        for data in (FAIL, OK, FAIL):
            self.connector.lastFor(peer).answer(data)
            self.answerAll(OK)
            self.clock.advance(1)
        self.assertFalse(peer.checkFailed)

    def testPassesThreshold(self) -> None:
        """
        With C{passes=3}, an unhealthy peer comes back only after three
        good probes in a row, and the change is logged.
        """
        check = self.makeCheck(interval=1.0, passes=3)
        check.start()
        peer = self.peers[2]
        self.connector.lastFor(peer).refuse()
        self.assertTrue(peer.checkFailed)
        self.assertIn("connect() failed (111: Connection refused)",
                      self.events[0]["log_format"].format(**self.events[0]))
        for expected in (True, True, False):
            self.answerAll(OK)
            self.clock.advance(1)
            self.connector.lastFor(peer).answer(OK)
            self.assertEqual(peer.checkFailed, expected)
        self.assertIn(peer, self.picks())
        self.assertIn("peer 127.0.0.1:8002 is healthy again",
                      self.events[-1]["log_format"].format(**self.events[-1]))

    def testHangingPeerIsNotProbedTwice(self) -> None:
        """
        While a probe waits (here on a connection that never completes),
        the ticks of the interval start no other probe of that peer.
        """
        check = self.makeCheck(interval=1.0)
        check.start()
        hanging = self.peers[0]
        for _ in range(10):
            for attempt in self.connector.pending():
                if attempt.peer is not hanging:
                    attempt.answer(OK)
            self.clock.advance(1)
        self.assertEqual(len([a for a in self.connector.attempts if a.peer is hanging]), 1)
        self.assertEqual(len([a for a in self.connector.attempts if a.peer is self.peers[1]]), 11)

    def testReadTimeoutIsAFailure(self) -> None:
        """
        A peer that accepts and never answers fails the probe at the read
        timeout (the location's, here smaller than the interval), and is
        probed again at the next tick.
        """
        check = self.makeCheck(interval=5.0, readTimeout=2.0)
        check.start()
        hanging = self.peers[0]
        self.connector.lastFor(hanging).accept()
        self.clock.advance(1.9)
        self.assertFalse(hanging.checkFailed)
        self.clock.advance(0.1)
        self.assertTrue(hanging.checkFailed)
        self.assertIn("upstream timed out",
                      self.events[0]["log_format"].format(**self.events[0]))
        self.assertEqual(len([a for a in self.connector.attempts if a.peer is hanging]), 1)
        self.clock.advance(3)
        self.assertEqual(len([a for a in self.connector.attempts if a.peer is hanging]), 2)

    def testConnectTimeoutIsAFailure(self) -> None:
        """
        With the real connection pool, a connection that never completes
        fails the probe at the connect timeout, with no second probe
        meanwhile.
        """
        reactor = MemoryReactorClock()
        check = HealthCheck(self.upstream, HealthCheckSpec(interval=1.0), None,
                            connectTimeout=0.5, reactor=reactor,
                            connect=ConnectionPool(reactor).connect)
        check.log = Logger(observer=self.events.append)
        check.start()
        self.assertEqual(len(reactor.tcpClients), 3)
        reactor.advance(0.5)
        self.assertTrue(all(p.checkFailed for p in self.peers))
        self.assertIn("timed out", self.events[0]["log_format"].format(**self.events[0]))
        reactor.advance(0.5)
        self.assertEqual(len(reactor.tcpClients), 6)

    def testStopCancelsProbesAndSchedule(self) -> None:
        """
        L{HealthCheck.stop} cancels the schedule and the probes in flight
        and puts the peers it took out back in rotation.
        """
        check = self.makeCheck(interval=1.0)
        check.start()
        self.connector.lastFor(self.peers[0]).answer(FAIL)
        self.assertTrue(self.peers[0].checkFailed)
        hanging = self.connector.lastFor(self.peers[1])
        hanging.accept()
        check.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(hanging.transport.disconnected)
        self.assertFalse(self.peers[0].checkFailed)
        self.assertTrue(self.connector.lastFor(self.peers[2]).deferred.called)

    def testDownPeersAreNotProbed(self) -> None:
        """
        A C{down} peer is never used, so it is never probed.
        """
        self.peers[1].down = True
        check = self.makeCheck()
        check.start()
        self.assertEqual([a.peer for a in self.connector.attempts], [self.peers[0], self.peers[2]])

    def testAnyFailingCheckTakesThePeerOut(self) -> None:
        """
        With two checks of one group, a peer is out while either says it
        failed (nginx Plus: a single failure of any check).
        """
        first = self.makeCheck(uri="/a")
        second = self.makeCheck(uri="/b")
        first.start()
        second.start()
        peer = self.peers[0]
        for attempt in self.connector.pending():
            uri = attempt.peer is peer
            attempt.accept()
            request = attempt.transport.value()
            assert attempt.protocol is not None
            attempt.protocol.dataReceived(FAIL if uri and b"/a" in request else OK)
        self.assertTrue(peer.checkFailed)
        first.stop()
        self.assertFalse(peer.checkFailed)
        second.stop()

    def testBodyRuleReadsTheBody(self) -> None:
        """
        A C{body} rule is judged on the body, which the probe reads to its
        end (chunked here).
        """
        match = parseMatch(matchDirective(["body", "~", "^ok$"]))
        check = self.makeCheck(match)
        check.start()
        good, bad, _ = self.connector.pending()
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        good.answer(chunked + b"1\r\no\r\n1\r\nk\r\n0\r\n\r\n")
        bad.answer(chunked + b"2\r\nno\r\n0\r\n\r\n")
        self.assertFalse(good.peer.checkFailed)
        self.assertTrue(bad.peer.checkFailed)
        self.assertIn("health check failed: body", self.events[0]["log_format"].format(**self.events[0]))


def matchDirective(*lines: List[str]) -> Directive:
    """
    @return: a C{match m { ... }} directive with one child per line.
    """
    children = tuple(Directive(line[0], tuple(line[1:]), None, "test.conf", i + 2)
                     for i, line in enumerate(lines))
    return Directive("match", ("m",), children, "test.conf", 1)


class MatchTests(SynchronousTestCase):
    """
    C{match} blocks: parsing and judging a response.
    """

    def judge(self, lines: List[List[str]], status: int = 200,
              headers: Any = (), body: bytes = b"") -> Optional[str]:
        """
        @return: the failure of a response against a match of C{lines}.
        """
        return parseMatch(matchDirective(*lines)).failure(status, list(headers), body)

    def testStatusCodesAndRanges(self) -> None:
        """
        C{status} takes codes and ranges, any of which passes.
        """
        rule = [["status", "200", "301-303", "307"]]
        for status in (200, 301, 302, 303, 307):
            self.assertIsNone(self.judge(rule, status))
        for status in (204, 300, 304, 500):
            self.assertEqual(self.judge(rule, status), f"status {status}")

    def testStatusNegation(self) -> None:
        """
        C{status ! ...} passes a status outside every code and range.
        """
        rule = [["status", "!", "400-599", "304"]]
        self.assertIsNone(self.judge(rule, 200))
        self.assertEqual(self.judge(rule, 304), "status 304")
        self.assertEqual(self.judge(rule, 503), "status 503")

    def testNoStatusRulePassesAnyStatus(self) -> None:
        """
        A match with no C{status} rule does not look at the status.
        """
        self.assertIsNone(self.judge([["header", "X-Up"]], 500, [(b"X-Up", b"1")]))

    def testHeaders(self) -> None:
        """
        C{header} tests a name's presence or absence, its value for
        equality, or a regex on it; names ignore case.
        """
        headers = [(b"Content-Type", b"application/json; charset=utf-8"), (b"X-Up", b"yes")]
        passing = [
            ["header", "content-type"],
            ["header", "!", "X-Down"],
            ["header", "X-Up", "=", "yes"],
            ["header", "X-Up", "!=", "no"],
            ["header", "Content-Type", "~", "json"],
            ["header", "Content-Type", "!~", "^text/"],
            ["header", "Content-Type", "~*", "JSON"],
        ]
        for line in passing:
            self.assertIsNone(self.judge([line], headers=headers), line)
        failing = [
            ["header", "X-Down"],
            ["header", "!", "x-up"],
            ["header", "X-Up", "=", "Yes"],
            ["header", "X-Up", "!=", "yes"],
            ["header", "Content-Type", "~", "^text/"],
            ["header", "Content-Type", "!~", "json"],
            ["header", "X-Missing", "!=", "a"],
        ]
        for line in failing:
            self.assertIsNotNone(self.judge([line], headers=headers), line)
        self.assertEqual(self.judge([["header", "X-Down"]], headers=headers), 'header "x-down"')

    def testBody(self) -> None:
        """
        C{body ~} must find the regex in the body, C{body !~} must not.
        """
        self.assertIsNone(self.judge([["body", "~", '"status": *"ok"']], body=b'{"status": "ok"}'))
        self.assertEqual(self.judge([["body", "~", "ok"]], body=b"fail"), "body")
        self.assertIsNone(self.judge([["body", "!~", "fail"]], body=b"ok"))
        self.assertEqual(self.judge([["body", "!~", "fail"]], body=b"failing"), "body")

    def testAllRulesMustPass(self) -> None:
        """
        Every rule of a block must pass; the first failing one is named.
        """
        lines = [["status", "200"], ["header", "Content-Type", "~", "json"], ["body", "~", "ok"]]
        json = [(b"Content-Type", b"application/json")]
        self.assertIsNone(self.judge(lines, 200, json, b"ok"))
        self.assertEqual(self.judge(lines, 200, [], b"ok"), 'header "content-type"')
        self.assertEqual(self.judge(lines, 200, json, b"no"), "body")

    def testBadRules(self) -> None:
        """
        A badly written rule is an error at its own line.
        """
        bad = [
            ["status"],
            ["status", "!"],
            ["status", "20x"],
            ["status", "600"],
            ["status", "300-200"],
            ["header"],
            ["header", "!"],
            ["header", "A", "==", "b"],
            ["header", "A", "~", "("],
            ["body", "ok"],
            ["body", "=", "ok"],
            ["body", "~", "("],
            ["require", "$x"],
        ]
        for line in bad:
            error = self.assertRaises(ConfigError, parseMatch, matchDirective(["status", "200"], line))
            self.assertIn("test.conf:3", str(error), line)


class ParseHealthCheckTests(SynchronousTestCase):
    """
    The parameters of C{health_check}.
    """

    def parse(self, *args: str) -> HealthCheckSpec:
        """
        @return: C{health_check ARGS;} parsed.
        """
        return parseHealthCheck(Directive("health_check", args, None, "test.conf", 7))

    def testDefaults(self) -> None:
        """
        nginx Plus's defaults: every 5s, one failure, one pass, C{/}.
        """
        spec = self.parse()
        self.assertEqual((spec.interval, spec.fails, spec.passes, spec.uri, spec.match),
                         (5.0, 1, 1, "/", None))

    def testParameters(self) -> None:
        """
        Every parameter is read.
        """
        spec = self.parse("interval=1s", "fails=3", "passes=2", "uri=/health", "match=ok")
        self.assertEqual((spec.interval, spec.fails, spec.passes, spec.uri, spec.match),
                         (1.0, 3, 2, "/health", "ok"))
        self.assertEqual(self.parse("interval=500ms").interval, 0.5)

    def testBadParameters(self) -> None:
        """
        An unknown parameter or a bad value is C{invalid parameter} at the
        directive's line.
        """
        for arg in ("interval=0", "interval=x", "fails=0", "passes=-1", "uri=health",
                    "match=", "jitter=1s", "mandatory", "fails=1x"):
            error = self.assertRaises(ConfigError, self.parse, arg)
            self.assertEqual(str(error), f'invalid parameter "{arg}" in test.conf:7')


class BalancerTests(SynchronousTestCase):
    """
    Every balancing method skips a peer an active check took out, the
    single-peer shortcut included.
    """

    def testEveryMethodSkipsFailedPeers(self) -> None:
        """
        With one of three peers out, no method picks it; with all out,
        none picks any.
        """
        clock = Clock()

        class Key:
            def evaluate(self, exchange: Any) -> str:
                return exchange

        makers = [
            lambda peers: RoundRobinBalancer(peers, clock),
            lambda peers: LeastConnBalancer(peers, clock),
            lambda peers: IPHashBalancer(peers, clock),
            lambda peers: HashBalancer(peers, Key(), clock),
            lambda peers: ConsistentHashBalancer(peers, Key(), clock),
            lambda peers: RandomBalancer(peers, False, clock),
            lambda peers: RandomBalancer(peers, True, clock),
        ]
        for make in makers:
            peers = [Peer("127.0.0.1", 8000 + i) for i in range(3)]
            balancer = make(peers)
            peers[1].setCheckFailed(self, True)
            picked = {balancer.pick(f"key{i}") for i in range(60)}
            self.assertNotIn(peers[1], picked, balancer)
            self.assertNotIn(None, picked, balancer)
            for peer in peers:
                peer.setCheckFailed(self, True)
            self.assertIsNone(balancer.pick("key"), balancer)

    def testSinglePeer(self) -> None:
        """
        The single-peer shortcut, which ignores C{max_fails}, still skips
        a peer failing its health check.
        """
        peer = Peer("127.0.0.1", 8000)
        balancer = RoundRobinBalancer([peer], Clock())
        self.assertIs(balancer.pick(None), peer)
        peer.setCheckFailed(self, True)
        self.assertIsNone(balancer.pick(None))
        peer.setCheckFailed(self, False)
        self.assertIs(balancer.pick(None), peer)


GROUP = """
    match json {
        status 200-299;
        header Content-Type ~ json;
    }
    upstream app {
        server 127.0.0.1:8000;
    }
"""


class ConfigTests(ConfigTestCase):
    """
    C{health_check} and C{match} in a whole config, and the service that
    runs the checks.
    """

    def serverWith(self, location: str, extra: str = GROUP) -> str:
        """
        @return: the inside of C{http {}}: C{extra}, then a server with
            C{location} as the body of C{location /}.
        """
        return f"""{extra}
    server {{
        listen 127.0.0.1:8080;
        location / {{
{location}
        }}
    }}"""

    def testBuilt(self) -> None:
        """
        A C{health_check} builds a check of the location's group with its
        match and timeouts (the interval when smaller).
        """
        config = self.compileHTTP(self.serverWith(
            "proxy_pass http://app/; proxy_connect_timeout 2s;\n"
            "health_check interval=3s match=json;"
        ))
        [check] = config.stateOf("upstream")["healthChecks"]
        self.assertEqual(check.upstream.name, "app")
        self.assertEqual(check.match.name, "json")
        self.assertEqual((check.connectTimeout, check.readTimeout), (2.0, 3.0))
        self.assertFalse(check.running)

    def testErrors(self) -> None:
        """
        C{health_check} needs C{proxy_pass} to an upstream group and a
        known match; errors carry the directive's file and line.
        """
        cases = [
            ("health_check;", '"health_check" requires "proxy_pass" to an upstream group'),
            ("proxy_pass http://127.0.0.1:8000;\nhealth_check;",
             '"health_check" requires "proxy_pass" to an upstream group'),
            ("proxy_pass http://$host;\nhealth_check;",
             '"health_check" requires "proxy_pass" to an upstream group'),
            ("proxy_pass http://app;\nhealth_check match=nope;", 'match "nope" not found'),
            ("proxy_pass http://app;\nhealth_check fails=none;", 'invalid parameter "fails=none"'),
        ]
        for location, message in cases:
            text = self.httpError(self.serverWith(location))
            self.assertIn(message, text)
            self.assertRegex(text, r"nginx\.conf:\d+$")
        text = self.httpError(self.serverWith(
            "proxy_pass http://app;", GROUP + "    match json { status 200; }\n"))
        self.assertIn('duplicate match "json"', text)
        text = self.httpError(self.serverWith(
            "proxy_pass http://app;", "    match m {\n        status ok;\n    }\n" + GROUP))
        self.assertIn('invalid status "ok" in match block', text)
        self.assertTrue(text.endswith("nginx.conf:6"), text)
        text = self.httpError("server { listen 8080; health_check; }")
        self.assertIn('"health_check" directive is not allowed here', text)

    def testNoLiveUpstreams(self) -> None:
        """
        When the check took the only peer out, a request gets 502 (the
        single-peer shortcut does not bring it back).
        """
        config = self.compileHTTP(self.serverWith("proxy_pass http://app;\nhealth_check;"))
        [check] = config.stateOf("upstream")["healthChecks"]
        [peer] = check.upstream.peers
        peer.setCheckFailed(check, True)
        self.assertEqual(self.get(config, "/").status, 502)

    def testServiceRunsChecks(self) -> None:
        """
        L{ProxyService} starts the checks with the service, stops them
        with it, and on reload stops the old config's and starts the
        new one's.
        """
        text = httpConfig(self.serverWith("proxy_pass http://app;\nhealth_check interval=1s;"))
        config = self.compile(text)
        [check] = config.stateOf("upstream")["healthChecks"]
        service = ProxyService(config, self.reactor)
        self.assertFalse(check.running)
        service.startService()
        self.assertTrue(check.running)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        newConfig = self.compile(text)
        [newCheck] = newConfig.stateOf("upstream")["healthChecks"]
        service.reload(newConfig)
        self.assertFalse(check.running)
        self.assertTrue(newCheck.running)
        service.stopService()
        self.assertFalse(newCheck.running)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.tcpClients), 2)
