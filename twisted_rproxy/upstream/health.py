# -*- test-case-name: tests.unit.test_health -*-
"""
Active health checks in nginx Plus / Angie syntax: C{health_check} in a
location probes every peer of its upstream group, and C{match NAME {}} in
C{http} says what a good answer is.  A peer that fails C{fails} probes in a
row leaves rotation (L{Peer.checkFailed}, which the balancers' public
helpers consult) before a user request hits it; C{passes} good probes in a
row bring it back.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Pattern, Sequence, Tuple

import attr
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..config.ast import Directive
from ..config.values import parseInt, parseTime
from ..interfaces import IHealthChecker
from .cluster import Peer, Upstream
from .http1 import UpstreamError

#: The most body bytes a probe reads for C{body} rules (nginx Plus
#: examines the first 256k).
MAX_BODY = 256 * 1024


# -- match blocks ------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StatusRule:
    """
    C{status [!] CODE|LOW-HIGH ...}: the status is one of the ranges (or,
    negated, none of them).

    @ivar negate: whether C{!} was written.
    @ivar ranges: inclusive C{(low, high)} pairs.
    """

    negate: bool
    ranges: Tuple[Tuple[int, int], ...]

    def check(self, status: int) -> bool:
        """
        @return: whether C{status} passes.
        """
        inside = any(low <= status <= high for low, high in self.ranges)
        return inside != self.negate


@attr.s(frozen=True, slots=True, auto_attribs=True)
class HeaderRule:
    """
    C{header NAME}, C{header ! NAME}, or C{header NAME OP VALUE} with C{OP}
    one of C{=}, C{!=}, C{~}, C{!~} (C{~*} and C{!~*} ignore case).

    @ivar name: the lowercase header name.
    @ivar op: C{""} (present), C{"!"} (absent) or the operator.
    @ivar value: the value C{=} and C{!=} compare.
    @ivar regex: the compiled regex of C{~} and C{!~}.
    """

    name: bytes
    op: str
    value: str = ""
    regex: Optional[Pattern[str]] = None

    def check(self, headers: Sequence[Tuple[bytes, bytes]]) -> bool:
        """
        @return: whether the response headers pass: for every operator but
            C{!}, a header of that name must be present and one of them
            must satisfy the operator.
        """
        values = [v.decode("latin-1") for n, v in headers if n.lower() == self.name]
        if self.op == "!":
            return not values
        if self.op == "":
            return bool(values)
        if self.op == "=":
            return any(v == self.value for v in values)
        if self.op == "!=":
            return any(v != self.value for v in values)
        assert self.regex is not None
        found = [self.regex.search(v) is not None for v in values]
        if self.op.startswith("!"):
            return any(not f for f in found)
        return any(found)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class BodyRule:
    """
    C{body ~ REGEX} or C{body !~ REGEX} over the first L{MAX_BODY} bytes.
    """

    negate: bool
    regex: Pattern[str]

    def check(self, body: bytes) -> bool:
        """
        @return: whether C{body} passes.
        """
        return (self.regex.search(body.decode("latin-1")) is not None) != self.negate


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Match:
    """
    A C{match NAME { ... }} block: a response passes when it satisfies
    every rule.  Without a C{status} rule, any status passes.

    @ivar name: the block's name.
    @ivar status: the C{status} rules.
    @ivar headers: the C{header} rules.
    @ivar body: the C{body} rules.
    @ivar directive: where the block was written.
    """

    name: str
    status: Tuple[StatusRule, ...] = ()
    headers: Tuple[HeaderRule, ...] = ()
    body: Tuple[BodyRule, ...] = ()
    directive: Optional[Directive] = attr.ib(default=None, eq=False, repr=False)

    @property
    def needsBody(self) -> bool:
        """
        Whether a probe must read the body (a C{body} rule exists).
        """
        return bool(self.body)

    def failure(self, status: int, headers: Sequence[Tuple[bytes, bytes]],
                body: bytes) -> Optional[str]:
        """
        @return: C{None} when the response passes, else what failed, for
            the error log (C{"status 500"}, C{'header "Content-Type"'},
            C{"body"}).
        """
        for statusRule in self.status:
            if not statusRule.check(status):
                return f"status {status}"
        for headerRule in self.headers:
            if not headerRule.check(headers):
                return f'header "{headerRule.name.decode("latin-1")}"'
        for bodyRule in self.body:
            if not bodyRule.check(body):
                return "body"
        return None


#: What a response must be without C{match=}: a 2xx or 3xx status.
DEFAULT_MATCH = Match("", status=(StatusRule(False, ((200, 399),)),))


def _regex(text: str, directive: Directive) -> Pattern[str]:
    """
    @raise ConfigError: for a regex that does not compile.
    """
    try:
        return re.compile(text)
    except re.error as e:
        raise directive.error(f'invalid regex "{text}" ({e})')


def _statusRule(line: Directive) -> StatusRule:
    """
    Parse C{status [!] CODE|LOW-HIGH ...}.
    """
    args = list(line.args)
    negate = bool(args) and args[0] == "!"
    if negate:
        args = args[1:]
    if not args:
        raise line.error('invalid number of arguments in "status" match directive')
    ranges = []
    for arg in args:
        low, sep, high = arg.partition("-")
        if not (low.isdigit() and (not sep or high.isdigit())):
            raise line.error(f'invalid status "{arg}" in match block')
        lo, hi = int(low), int(high) if sep else int(low)
        if not 100 <= lo <= hi <= 599:
            raise line.error(f'invalid status "{arg}" in match block')
        ranges.append((lo, hi))
    return StatusRule(negate, tuple(ranges))


def _headerRule(line: Directive) -> HeaderRule:
    """
    Parse C{header NAME}, C{header ! NAME} or C{header NAME OP VALUE}.
    """
    args = line.args
    if len(args) == 1 and args[0] != "!":
        return HeaderRule(args[0].lower().encode("latin-1"), "")
    if len(args) == 2 and args[0] == "!":
        return HeaderRule(args[1].lower().encode("latin-1"), "!")
    if len(args) == 3:
        name, op, value = args
        lower = name.lower().encode("latin-1")
        if op in ("=", "!="):
            return HeaderRule(lower, op, value)
        if op in ("~", "!~"):
            return HeaderRule(lower, op, value, _regex(value, line))
        if op in ("~*", "!~*"):
            try:
                regex = re.compile(value, re.IGNORECASE)
            except re.error as e:
                raise line.error(f'invalid regex "{value}" ({e})')
            return HeaderRule(lower, op, value, regex)
        raise line.error(f'invalid operator "{op}" in "header" match directive')
    raise line.error('invalid number of arguments in "header" match directive')


def _bodyRule(line: Directive) -> BodyRule:
    """
    Parse C{body ~ REGEX} or C{body !~ REGEX}.
    """
    if len(line.args) != 2:
        raise line.error('invalid number of arguments in "body" match directive')
    op, text = line.args
    if op not in ("~", "!~"):
        raise line.error(f'invalid operator "{op}" in "body" match directive')
    return BodyRule(op == "!~", _regex(text, line))


def parseMatch(directive: Directive) -> Match:
    """
    Parse a C{match NAME { ... }} block (its children are read here, not
    by the registry: C{status} and C{header} mean something else
    elsewhere).

    @raise ConfigError: at the offending line, for an unknown or badly
        written rule.
    """
    status: List[StatusRule] = []
    headers: List[HeaderRule] = []
    body: List[BodyRule] = []
    for line in directive.block or ():
        if line.block is not None:
            raise line.error(f'directive "{line.name}" is not terminated by ";"')
        if line.name == "status":
            status.append(_statusRule(line))
        elif line.name == "header":
            headers.append(_headerRule(line))
        elif line.name == "body":
            body.append(_bodyRule(line))
        else:
            raise line.error(f'unknown directive "{line.name}" in match block')
    return Match(directive.args[0], tuple(status), tuple(headers), tuple(body), directive)


# -- health_check ------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class HealthCheckSpec:
    """
    A parsed C{health_check} directive, before its location is known.

    @ivar interval: seconds between two probes of a peer.
    @ivar fails: failed probes in a row that take a peer out.
    @ivar passes: good probes in a row that bring it back.
    @ivar uri: the probe's request target.
    @ivar match: the name of its C{match} block, or C{None}.
    @ivar directive: where it was written.
    """

    interval: float = 5.0
    fails: int = 1
    passes: int = 1
    uri: str = "/"
    match: Optional[str] = None
    directive: Optional[Directive] = attr.ib(default=None, eq=False, repr=False)


def parseHealthCheck(directive: Directive) -> HealthCheckSpec:
    """
    Parse C{health_check [interval=T] [fails=N] [passes=N] [uri=/path]
    [match=NAME]}.

    @raise ConfigError: C{invalid parameter} for anything else or a bad
        value.
    """
    values: Dict[str, Any] = {}
    for arg in directive.args:
        key, sep, value = arg.partition("=")
        try:
            if not sep or key in values:
                raise ValueError
            if key == "interval":
                values[key] = parseTime(value)
                if values[key] <= 0:
                    raise ValueError
            elif key in ("fails", "passes"):
                values[key] = parseInt(value)
                if values[key] < 1:
                    raise ValueError
            elif key == "uri":
                if not value.startswith("/") or any(c in value for c in " \r\n"):
                    raise ValueError
                values[key] = value
            elif key == "match":
                if not value:
                    raise ValueError
                values[key] = value
            else:
                raise ValueError
        except ValueError:
            raise directive.error(f'invalid parameter "{arg}"')
    return HealthCheckSpec(directive=directive, **values)


class _PeerHealth:
    """
    One peer's record in one L{HealthCheck}.

    @ivar healthy: the peer's state in this check.
    @ivar fails: failed probes in a row.
    @ivar passes: good probes in a row.
    @ivar probe: the probe in flight, or C{None}.
    """

    def __init__(self) -> None:
        """
        Healthy until probes say otherwise (nginx Plus without
        C{mandatory}).
        """
        self.healthy = True
        self.fails = 0
        self.passes = 0
        self.probe: Optional[_Probe] = None


@implementer(IHealthChecker)
class HealthCheck:
    """
    Probes every peer (but C{down} ones) of an upstream group at an
    interval, and takes peers out of rotation or back in through
    L{Peer.setCheckFailed}.

    Every C{interval}, each peer whose previous probe has finished gets a
    C{GET uri HTTP/1.1} on a connection of its own; a probe still in
    flight (a hanging peer) is not doubled, and ends as a failure at its
    connect or read timeout.

    @ivar upstream: the group.
    @ivar spec: the parsed directive.
    @ivar match: what a good answer is.
    @ivar connectTimeout: the probe's connect timeout.
    @ivar readTimeout: the probe's read timeout.
    """

    log = Logger()

    def __init__(self, upstream: Upstream, spec: HealthCheckSpec,
                 match: Optional[Match] = None, connectTimeout: float = 60.0,
                 readTimeout: float = 60.0, reactor: Any = None,
                 connect: Optional[Callable[[Peer, float], "Deferred[Any]"]] = None) -> None:
        """
        Build the check; nothing happens until L{start} (so C{-t} never
        probes).

        @param upstream: the group whose peers are probed.
        @param spec: the C{health_check} parameters.
        @param match: the C{match} block, or C{None} for 2xx/3xx.
        @param connectTimeout: the location's C{proxy_connect_timeout}
            (the interval when smaller).
        @param readTimeout: the location's C{proxy_read_timeout} (the
            interval when smaller).
        @param reactor: the clock and the connector.
        @param connect: C{(peer, timeout) -> Deferred[(protocol, reused)]},
            by default a new connection from
            L{twisted_rproxy.upstream.pool.ConnectionPool.connect}.
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.upstream = upstream
        self.spec = spec
        self.match = match if match is not None else DEFAULT_MATCH
        self.connectTimeout = min(connectTimeout, spec.interval) if connectTimeout else spec.interval
        self.readTimeout = min(readTimeout, spec.interval) if readTimeout else spec.interval
        if connect is None:
            from .pool import ConnectionPool

            connect = ConnectionPool(reactor).connect
        self._connect = connect
        self.peers: Dict[Peer, _PeerHealth] = {p: _PeerHealth() for p in upstream.peers if not p.down}
        self._loop: Optional[LoopingCall] = None
        host = upstream.name.encode("latin-1")
        self._request = (
            b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            % (spec.uri.encode("latin-1"), host)
        )

    def connectWith(self, connect: Callable[[Peer, float], "Deferred[Any]"]) -> None:
        """
        Probe through C{connect} instead (the proxy_ssl module's TLS
        connections, for a check in an C{https} location).
        """
        self._connect = connect

    @property
    def running(self) -> bool:
        """
        Whether probes are being scheduled.
        """
        return self._loop is not None

    def start(self) -> None:
        """
        Probe every peer now, then every C{interval}.
        """
        if self._loop is not None:
            return
        self._loop = LoopingCall(self.probeAll)
        self._loop.clock = self._reactor
        self._loop.start(self.spec.interval, now=True).addErrback(
            lambda failure: self.log.failure("health checks stopped", failure)
        )

    def stop(self) -> None:
        """
        Stop probing: cancel the schedule and every probe in flight, and
        put the peers this check took out back in (a reload's new check
        starts from healthy, as a new nginx Plus zone does).
        """
        if self._loop is not None:
            if self._loop.running:
                self._loop.stop()
            self._loop = None
        for peer, health in self.peers.items():
            probe, health.probe = health.probe, None
            if probe is not None:
                probe.cancel()
            peer.setCheckFailed(self, False)

    def probeAll(self) -> None:
        """
        Start a probe of each peer whose last one has finished.
        """
        self._followPeers()
        for peer, health in self.peers.items():
            if health.probe is None:
                try:
                    self.probe(peer)
                except Exception:
                    # One broken probe must not end the schedule of all.
                    health.probe = None
                    self.log.failure("health check of {peer} failed", peer=peer.name)

    def _followPeers(self) -> None:
        """
        Keep to the group's peers as they are now: a re-resolution
        (L{twisted_rproxy.upstream.resolver.UpstreamResolver}) may have
        added peers, which start healthy and are probed from now on, or
        removed some, whose probes are cancelled.
        """
        current = [p for p in self.upstream.peers if not p.down]
        if len(current) == len(self.peers) and all(p in self.peers for p in current):
            return
        for peer in [p for p in self.peers if p not in current]:
            probe = self.peers.pop(peer).probe
            if probe is not None:
                probe.cancel()
            peer.setCheckFailed(self, False)
        for peer in current:
            if peer not in self.peers:
                self.peers[peer] = _PeerHealth()

    def probe(self, peer: Peer) -> "Deferred[Optional[str]]":
        """
        Send one probe to C{peer} (callers make sure none is in flight).

        @return: a Deferred firing with C{None} for a good answer or the
            reason it failed, after the peer's state is updated.
        """
        health = self.peers[peer]
        probe = health.probe = _Probe(self, peer)
        d = probe.start()

        def done(reason: Optional[str]) -> Optional[str]:
            if health.probe is probe:
                health.probe = None
                self._record(peer, health, reason)
            return reason

        return d.addCallback(done)

    def _record(self, peer: Peer, health: _PeerHealth, reason: Optional[str]) -> None:
        """
        Count one probe's outcome, and change the peer's state after
        C{fails} failures or C{passes} passes in a row.
        """
        if reason is None:
            health.fails = 0
            health.passes += 1
            if not health.healthy and health.passes >= self.spec.passes:
                health.healthy = True
                peer.setCheckFailed(self, False)
                self.log.warn(
                    'peer {peer} is healthy again (health check passed), '
                    'upstream "{upstream}", health check uri "{uri}"',
                    peer=peer.name, upstream=self.upstream.name, uri=self.spec.uri,
                )
        else:
            health.passes = 0
            health.fails += 1
            if health.healthy and health.fails >= self.spec.fails:
                health.healthy = False
                peer.setCheckFailed(self, True)
                self.log.warn(
                    'peer {peer} is unhealthy (health check failed: {reason}), '
                    'upstream "{upstream}", health check uri "{uri}"',
                    peer=peer.name, reason=reason, upstream=self.upstream.name,
                    uri=self.spec.uri,
                )


class _Probe:
    """
    One probe of one peer: connect, send the request, read the answer
    (the body only when a C{body} rule needs it) and judge it.  It is the
    handler of an L{twisted_rproxy.upstream.http1.UpstreamHTTPProtocol}.
    """

    def __init__(self, check: HealthCheck, peer: Peer) -> None:
        """
        @param check: the check this probe belongs to.
        @param peer: the peer to probe.
        """
        self.check = check
        self.peer = peer
        self.result: "Deferred[Optional[str]]" = Deferred()
        self._connecting: Optional[Deferred] = None
        self._protocol: Any = None
        self._status = 0
        self._headers: Sequence[Tuple[bytes, bytes]] = ()
        self._body = bytearray()

    def start(self) -> "Deferred[Optional[str]]":
        """
        @return: a Deferred firing with C{None} or the failure reason.
        """
        d = self._connecting = self.check._connect(self.peer, self.check.connectTimeout)
        d.addCallbacks(self._connected, self._connectFailed)
        return self.result

    def _connected(self, result: Tuple[Any, bool]) -> None:
        self._connecting = None
        protocol = self._protocol = result[0]
        if self.result.called:
            self._close()
            return
        protocol.startRequest(b"GET", self.check._request, self, self.check.readTimeout)

    def _connectFailed(self, failure: Failure) -> None:
        self._connecting = None
        if failure.check(UpstreamError):
            self._finish(str(failure.value))
        elif not self.result.called:
            self._finish(failure.getErrorMessage())

    def responseHead(self, head: Any) -> None:
        """
        The status and headers arrived: judge them now unless a C{body}
        rule must see the body.
        """
        self._status = head.status
        self._headers = head.headers
        if not self.check.match.needsBody:
            self._judge()

    def responseBody(self, data: bytes) -> None:
        """
        Keep the first L{MAX_BODY} bytes; judge once that much came.
        """
        self._body += data
        if len(self._body) >= MAX_BODY:
            del self._body[MAX_BODY:]
            self._judge()

    def responseDone(self, reusable: bool) -> None:
        """
        The whole answer came: judge it.
        """
        self._judge()

    def responseFailed(self, error: UpstreamError, gotBytes: bool) -> None:
        """
        The connection broke, timed out or answered something invalid.
        """
        self._finish(str(error))

    def _judge(self) -> None:
        if self.result.called:
            return
        self._finish(self.check.match.failure(self._status, self._headers, bytes(self._body)))

    def _finish(self, reason: Optional[str]) -> None:
        self._close()
        if not self.result.called:
            self.result.callback(reason)

    def _close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.abandon()
            if protocol.transport is not None:
                protocol.transport.loseConnection()

    def cancel(self) -> None:
        """
        The check stopped: drop the connection (or the attempt), report
        nothing.
        """
        self.result.callback("cancelled")
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.abandon()
            if protocol.transport is not None:
                protocol.transport.abortConnection()
