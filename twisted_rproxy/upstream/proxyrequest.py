# -*- test-case-name: tests.unit.test_proxy_request -*-
"""
One proxied request: builds the upstream request as nginx's proxy module
does, picks peers and retries per C{proxy_next_upstream}, and relays the
response with backpressure both ways (nginx's C{ngx_http_upstream.c} in
small).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http.exchange import absoluteURL
from ..http.parser import fieldValues, headerLowers
from .body import RequestBody
from .cluster import Peer, RoundRobinBalancer, Upstream, splitHostPort
from .http1 import UpstreamError

#: Hop-by-hop headers (RFC 9110 7.6.1) never passed in either direction.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate",
})
NON_IDEMPOTENT = frozenset({b"POST", b"LOCK", b"PATCH"})
#: Characters nginx's NGX_ESCAPE_URI leaves alone in a path.
_SAFE_PATH = "/:@!$&'()*+,;=-._~"


class Attempt:
    """
    One try at one peer, for C{$upstream_*} variables.
    """

    __slots__ = ("addr", "status", "start", "connectTime", "headerTime", "responseTime")

    def __init__(self, addr: str, start: float) -> None:
        self.addr = addr
        self.status: Optional[int] = None
        self.start = start
        self.connectTime: Optional[float] = None
        self.headerTime: Optional[float] = None
        self.responseTime: Optional[float] = None


def _headerTokens(values: List[bytes]) -> frozenset:
    """
    @return: the lowercased tokens of C{Connection} values.  Backends send
        the same one or two values on every response, so a single value's
        set is remembered (bounded, like C{normalizeHost}'s).
    """
    if len(values) == 1:
        cached = _TOKEN_SETS.get(values[0])
        if cached is not None:
            return cached
    tokens = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.add(token)
    result = frozenset(tokens)
    if len(values) == 1 and len(_TOKEN_SETS) < _TOKEN_SETS_MAX:
        _TOKEN_SETS[values[0]] = result
    return result


#: C{Connection} values seen, and their token sets (see L{_headerTokens}).
_TOKEN_SETS: Dict[bytes, frozenset] = {}
_TOKEN_SETS_MAX = 256


@implementer(IPushProducer)
class ProxyRequest:
    """
    The state of one exchange's trip to the backend.  It is the response
    producer the client side pauses, and the handler the upstream protocol
    reports to.
    """

    log = Logger()

    def __init__(self, handler: Any, exchange: Any) -> None:
        self.handler = handler
        self.settings = handler.settings
        self.exchange = exchange
        self.reactor = handler.reactor
        self.upstream: Any = handler.target.upstream
        self.protocol: Any = None
        self.peer: Any = None
        self.attempt: Optional[Attempt] = None
        self.tried: List[Any] = []
        self.body: Optional[RequestBody] = None
        self.streaming = False
        self.requestSent = False
        self.done = False
        self.clientPaused = False
        self.upstreamPaused = False
        self.pausedBytes = 0
        self.started = self.reactor.seconds()
        self.uri = b""
        self.tunnel: Any = None
        self._connecting: Any = None
        self._chunkedUp = False
        self._bodySender: Optional[_BodySender] = None
        self._streamDone = False
        self._spillLogged = False
        self.buffering = self.settings.buffering
        self.reused = False
        self.scheme = handler.target.scheme
        #: The L{TLSTarget <twisted_rproxy.upstream.tls.TLSTarget>} of an
        #: https backend, else C{None}.
        self.tlsTarget: Any = None

    # -- starting -------------------------------------------------------

    def start(self) -> None:
        """
        Work out the target, then read the body (when buffering) or connect.
        """
        exchange = self.exchange
        target = self.handler.target
        if target.url is not None and not self._resolveVariableURL():
            return
        if target.url is None:
            exchange.proxyHost, exchange.proxyPort = target.proxyHost, target.proxyPort
        else:
            exchange.proxyHost, exchange.proxyPort = self.proxyHost, self.proxyPort
        if self.scheme == "https":
            self.tlsTarget = self._tlsTarget()
        exchange.notifyClientClosed(self.clientClosed)
        self.uri = self._requestURI()
        hasBody = exchange.channel.hasRequestBody(exchange) and self.settings.passRequestBody
        if not hasBody:
            self.connect()
            return
        chunked = exchange.header(b"transfer-encoding") is not None
        if self.settings.requestBuffering or (chunked and self.settings.version == b"HTTP/1.0"):
            self.body = RequestBody(self.settings.bodyBufferSize)
            exchange.readBody(self)
        else:
            self.streaming = True
            self.connect()

    def _tlsTarget(self) -> Any:
        """
        @return: the TLS target for this request's C{proxy_ssl_name}
            (default C{$proxy_host}), without its port, as nginx's
            C{ngx_http_upstream_ssl_name}.
        """
        handler = self.handler
        value = handler.tlsName
        name = value.static if value.static is not None else value.evaluate(self.exchange)
        if name.startswith("["):
            name = name[: name.find("]") + 1] if "]" in name else name
        else:
            name = name.partition(":")[0]
        return handler.tls.target(name)

    def _resolveVariableURL(self) -> bool:
        """
        Find the backend of a C{proxy_pass} URL with variables: a named
        C{upstream}, or (as nginx does without a resolver) a literal IP
        address or C{unix:} socket, used as a one-peer group for this
        request.

        @return: whether the request can go on; if not, a 502 was sent.
        """
        from ..modules.proxy import splitURL

        url = self.handler.target.url.evaluate(self.exchange)
        scheme, authority, uri = splitURL(url)
        upstream = None
        defaultPort = 443 if scheme == "https" else 80
        if scheme in ("http", "https"):
            upstream = self.handler.upstreams.get(authority)
            if upstream is None:
                upstream = _literalUpstream(authority, self.reactor, defaultPort)
        if upstream is None:
            if scheme in ("http", "https"):
                try:
                    host = splitHostPort(authority, defaultPort)[0]
                except ValueError:
                    host = authority
                message = f"no resolver defined to resolve {host}"
            else:
                message = f'invalid URL prefix in "{url}"'
            self._logRequest("error", message)
            self.exchange.sendLocalReply(502)
            return False
        self.upstream = upstream
        self.scheme = scheme
        from ..modules.proxy import hostAndPort

        self.proxyHost, self.proxyPort = hostAndPort(authority, scheme)
        self.variableURI = uri
        return True

    def _requestURI(self) -> bytes:
        exchange = self.exchange
        target = self.handler.target
        uri = target.uri if target.url is None else self.variableURI
        redirected = exchange.variableCache.get("_redirects")
        if uri is None:
            if not redirected:
                return exchange.originTarget
            path = exchange.path
        elif target.url is not None:
            return uri.encode("utf-8", "surrogateescape")
        elif target.prefix is not None and exchange.path.startswith(target.prefix):
            path = uri + exchange.path[len(target.prefix):]
        else:
            path = uri
        encoded = quote(path.encode("utf-8", "surrogateescape"), safe=_SAFE_PATH).encode("ascii")
        if exchange.args:
            return encoded + b"?" + exchange.args.encode("latin-1")
        return encoded

    # -- request body (buffered) ----------------------------------------

    def bodyReceived(self, data: bytes) -> None:
        """
        A piece of the client's body: keep it, or stream it on.
        """
        if self.body is not None:
            self.body.append(data)
            if self.body.inFile and not self._spillLogged:
                self._spillLogged = True
                self._logRequest(
                    "warn", "a client request body is buffered to a temporary file"
                )
        elif self.protocol is not None and not self.done:
            self.protocol.writeBody(b"%x\r\n%s\r\n" % (len(data), data) if self._chunkedUp else data)

    def bodyFinished(self) -> None:
        """
        The whole body is here: connect (buffering) or end the stream.
        """
        if self.done:
            return
        if self.body is not None:
            self.connect()
            return
        self._streamDone = True
        if self.protocol is not None:
            if self._chunkedUp:
                self.protocol.writeBody(b"0\r\n\r\n")
            self.protocol.bodySent()

    def bodyFailed(self, reason: Exception) -> None:
        """
        The client's body broke off: abandon the upstream request.
        """
        self._abandon()

    # -- connecting -----------------------------------------------------

    def connect(self) -> None:
        """
        Pick a peer and get a connection to it.
        """
        if self.done:
            return
        peer = self.upstream.balancer.pick(self.exchange, self.tried)
        if peer is None:
            self._logError(UpstreamError("error", "no live upstreams", "connecting to upstream"))
            self._finishWithError(502)
            return
        self.peer = peer
        self.tried.append(peer)
        self.requestSent = False
        peer.state.conns += 1  # the state itself: Peer.conns is a property
        self.attempt = Attempt(peer.name, self.reactor.seconds())
        self.exchange.upstreamAttempts.append(self.attempt)
        pool = self.handler.pool
        idle = pool.takeIdle(self.upstream, peer, self.tlsTarget)
        if idle is not None:
            self._connected((idle, True))
            return
        d = self._connecting = pool.connect(peer, self.settings.connectTimeout, self.tlsTarget)
        d.addCallbacks(self._connected, self._connectFailed)

    def _connected(self, result: Any) -> None:
        self._connecting = None
        protocol, reused = result
        if self.done:
            self.handler.pool.release(self.upstream, protocol, False)
            return
        self.protocol = protocol
        self.reused = reused
        # A pooled connection is handed over within connect(), in the
        # same event: no time has passed on the reactor's clock (nginx's
        # cached time says 0.000 too).
        self.attempt.connectTime = (  # type: ignore[union-attr]
            0.0 if reused else self.reactor.seconds() - self.attempt.start  # type: ignore[union-attr]
        )
        self._chunkedUp = False
        head = self._requestHead()
        self.requestSent = True
        protocol.startRequest(
            self.exchange.method, head, self, self.settings.readTimeout,
            self.settings.sendTimeout, bodyFollows=self.body is not None or self.streaming,
            headReadSize=self.settings.headReadSize,
        )
        if self.body is not None:
            self._bodySender = _BodySender(protocol, self.body.pieces())
            self._bodySender.start()
        elif self.streaming:
            protocol.transport.registerProducer(
                _ClientBodyPauser(self.exchange, protocol), True
            )
            self.exchange.readBody(self)

    def _connectFailed(self, failure: Failure) -> None:
        self._connecting = None
        if self.done:
            return
        if not failure.check(UpstreamError):
            self.log.failure("connecting to upstream failed", failure)
            failure = Failure(UpstreamError("error", failure.getErrorMessage(), "connecting to upstream"))
        self.responseFailed(failure.value, False)

    def _requestHead(self) -> bytes:
        exchange = self.exchange
        settings = self.settings
        lines = [exchange.method, b" ", self.uri, b" ", settings.version, b"\r\n"]
        length = None
        if self.body is not None:
            length = self.body.length
        elif self.streaming:
            declared = exchange.header(b"content-length")
            if declared is not None:
                length = int(declared)
            else:
                self._chunkedUp = True
        for kind, first, second in settings.headerPlan:
            if kind == 0:  # PLAN_STATIC: pre-encoded at load
                lines.append(first)
            elif kind == 1:  # PLAN_VALUE: evaluated now, omitted if empty
                text = second.evaluate(exchange)
                if text:
                    lines += (first, text.encode("latin-1", "replace"), b"\r\n")
            elif kind == 2:  # PLAN_LENGTH
                if length is not None:
                    lines.append(b"Content-Length: %d\r\n" % length)
            elif self._chunkedUp:  # PLAN_CHUNKED
                lines.append(b"Transfer-Encoding: chunked\r\n")
        if settings.passRequestHeaders:
            headers = exchange.requestHeaders
            lowers = [name.lower() for name, _value in headers]
            drop = settings.clientDrop
            if b"connection" in lowers:
                # Headers the client's Connection names are hop-by-hop too.
                drop = drop | _headerTokens(
                    [v for l, (_n, v) in zip(lowers, headers) if l == b"connection"]
                )
            for lower, (name, value) in zip(lowers, headers):
                if lower not in drop:
                    lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    # -- the response ---------------------------------------------------

    def responseHead(self, head: Any) -> None:
        """
        The backend answered: retry, intercept, upgrade, or relay the head.
        """
        exchange = self.exchange
        attempt = self.attempt
        assert attempt is not None
        attempt.status = head.status
        attempt.headerTime = self.reactor.seconds() - attempt.start
        status = head.status
        # Only 403, 404, 429 and 5xx have an http_ condition: a 2xx builds
        # no string.
        if status >= 403 and f"http_{status}" in self.settings.nextUpstream and self._mayRetry("http"):
            self._releaseConnection(False, failed=status not in (403, 404))
            self.connect()
            return
        if exchange.aborted:
            # Only with proxy_ignore_client_abort: the client is gone, but
            # the response is read to its end (and dropped) so the backend
            # finishes its work and its connection stays reusable.
            if status == 101:
                self.done = True
                self._releaseConnection(False, failed=False)
            return
        if self.settings.interceptErrors and status >= 300 and self._hasErrorPage(status):
            self._releaseConnection(False, failed=False)
            self._finishWithError(status)
            return
        # The parser lowered every name once, for this, _responseHeaders
        # and the codec's sendHead.
        lowers = head.lowers if head.lowers is not None else headerLowers(head)
        if b"x-accel-buffering" in lowers:
            for lower, (_name, value) in zip(lowers, head.headers):
                if lower == b"x-accel-buffering":
                    # The backend's own say, as nginx honours it per
                    # response (SSE and long polls set "no").
                    self.buffering = value.strip().lower() != b"no"
        headers, outLowers = self._responseHeaders(head, lowers)
        if status == 101:
            self._upgrade(head, headers)
            return
        exchange.setResponseProducer(self)
        exchange.startResponse(status, headers, head.reason or None, outLowers)

    def _hasErrorPage(self, status: int) -> bool:
        location = self.exchange.location
        pages = location.errorPages if location is not None else None
        return pages is not None and pages.handles(status)

    def _responseHeaders(
        self, head: Any, lowers: List[bytes]
    ) -> Tuple[List[Tuple[bytes, bytes]], List[bytes]]:
        """
        @param lowers: the lowercased names of C{head.headers}, in order.
        @return: the backend's headers as the client gets them: hidden and
            hop-by-hop ones (and those its Connection names) dropped, but
            a 101's Upgrade and Connection kept, and redirects rewritten;
            and their lowercased names.
        """
        settings = self.settings
        upgrade = head.status == 101
        headers = head.headers
        drop = settings.hidden if upgrade else settings.responseDrop
        if b"connection" in lowers:
            named = _headerTokens(fieldValues(headers, lowers, b"connection"))
            if upgrade:
                # "Connection: Upgrade" names the Upgrade header the client
                # needs to see in a 101.
                named -= {b"upgrade"}
            if not named <= drop:  # "keep-alive" is dropped anyway: no new set
                drop = drop | named
        if upgrade:
            drop = drop | (HOP_BY_HOP - {b"upgrade", b"connection"})
        out: List[Tuple[bytes, bytes]] = []
        outLowers: List[bytes] = []
        for lower, pair in zip(lowers, headers):
            if lower not in drop:
                out.append(pair)
                outLowers.append(lower)
        if settings.redirects and (b"location" in outLowers or b"refresh" in outLowers):
            for index, lower in enumerate(outLowers):
                if lower == b"location" or lower == b"refresh":
                    name, value = out[index]
                    out[index] = (name, self._rewriteRedirect(value, lower == b"refresh"))
        return out, outLowers

    def _rewriteRedirect(self, value: bytes, refresh: bool) -> bytes:
        """
        Apply the first C{proxy_redirect} whose prefix starts the URL: the
        whole C{Location} value, or what follows C{url=} in C{Refresh}, as
        nginx's C{ngx_http_proxy_rewrite_redirect} and C{_refresh} do.  A
        prefix met anywhere else in the value (a C{?next=http://...}
        parameter, say) is left alone.
        """
        text = value.decode("latin-1")
        index = 0
        if refresh:
            found = text.lower().find("url=")
            if found < 0:
                return value
            index = found + 4
        for prefix, replacement in self.settings.redirects:
            start = prefix.evaluate(self.exchange)
            if text.startswith(start, index):
                text = (text[:index] + replacement.evaluate(self.exchange)
                        + text[index + len(start):])
                if text[:1] == "/":
                    # nginx makes a Location that proxy_redirect turned
                    # relative absolute again (absolute_redirect on).
                    text = absoluteURL(self.exchange, text)
                return text.encode("latin-1")
        return value

    def responseBody(self, data: bytes) -> None:
        """
        Relay a piece of the body; pause the backend once the client is
        behind by more than the proxy buffers (or at once with buffering
        off).
        """
        if self.tunnel is not None:
            self.tunnel.write(data)
        else:
            self.exchange.write(data)
        if self.clientPaused and not self.upstreamPaused:
            self.pausedBytes += len(data)
            if self.pausedBytes >= self.settings.bufferBudget:
                self.upstreamPaused = True
                self.protocol.pauseProducing()

    def responseDone(self, reusable: bool) -> None:
        """
        The body is complete: give the connection back and end the response.
        """
        if self.tunnel is not None:
            self.tunnel.loseConnection()
            return
        self.attempt.responseTime = self.reactor.seconds() - self.attempt.start  # type: ignore[union-attr]
        # A backend may answer before it has read the whole request body;
        # the rest of that body would then be read as the next request.
        reusable = reusable and self._requestBodySent()
        self._releaseConnection(reusable, failed=False)
        self.done = True
        self._cleanup()
        self.exchange.finish()

    def _requestBodySent(self) -> bool:
        """
        Whether the whole request body has been handed to the backend
        connection.
        """
        if self.streaming:
            return self._streamDone
        if self._bodySender is not None:
            return self._bodySender.finished
        return True

    def responseFailed(self, error: UpstreamError, gotBytes: bool) -> None:
        """
        The backend failed: retry on the next peer when nginx would, else
        answer 502/504 (or cut the response short if it has begun).
        """
        if self.done:
            return
        if self.attempt is not None:
            self.attempt.responseTime = self.reactor.seconds() - self.attempt.start
            if self.attempt.status is None:
                self.attempt.status = error.status
        exchange = self.exchange
        self._logError(error)
        staleKeepalive = (
            self.protocol is not None and getattr(self, "reused", False)
            and not gotBytes and error.kind == "error"
        )
        self._releaseConnection(False, failed=not staleKeepalive)
        if not exchange.headSent:
            if staleKeepalive and self._replayable():
                self.tried.pop()  # a dead cached connection does not use up a try
                self.connect()
                return
            if self._mayRetry(error.kind):
                self.connect()
                return
            self._finishWithError(error.status)
            return
        self.done = True
        self._cleanup()
        exchange.abort()

    def _replayable(self) -> bool:
        """
        Whether the request may go to another peer: always when it never
        reached the failed one (a refused connect); once sent, not with an
        unbuffered body (it is gone) nor, unless C{non_idempotent}, for
        POST, LOCK and PATCH, which may have had an effect (nginx's rule).
        """
        if not self.requestSent:
            return True
        if self.streaming:
            return False
        return self.exchange.method not in NON_IDEMPOTENT or (
            "non_idempotent" in self.settings.nextUpstream
        )

    def _mayRetry(self, kind: str) -> bool:
        settings = self.settings
        if kind != "http" and kind not in settings.nextUpstream:
            return False
        if not self._replayable():
            return False
        tries = settings.nextUpstreamTries or self.upstream.triesDefault
        if len(self.tried) >= tries:
            return False
        if settings.nextUpstreamTimeout and (
            self.reactor.seconds() - self.started >= settings.nextUpstreamTimeout
        ):
            return False
        return True

    def _logError(self, error: UpstreamError) -> None:
        """
        Log a backend failure as nginx does: what failed, while doing what,
        then the request and the upstream URL.
        """
        exchange = self.exchange
        peer = self.channelPeer()
        self.log.error(
            '{error}, client: {client}, server: {server}, request: "{request}", '
            'upstream: "{scheme}://{upstream}{uri}", host: "{host}"',
            error=str(error),
            scheme=self.scheme,
            client=peer,
            server=exchange.server.primaryName if exchange.server else "",
            request=self._requestLine(),
            upstream=self.peer.name if self.peer is not None else self.upstream.name,
            uri=self.uri.decode("latin-1"),
            host=exchange.host,
        )

    def _logRequest(self, level: str, message: str) -> None:
        """
        Log C{message} with the client, server, request and host, as
        nginx's error log lines about a request end.
        """
        exchange = self.exchange
        getattr(self.log, level)(
            '{message}, client: {client}, server: {server}, request: "{request}", '
            'host: "{host}"',
            message=message,
            client=self.channelPeer(),
            server=exchange.server.primaryName if exchange.server else "",
            request=self._requestLine(),
            host=exchange.host,
        )

    def _requestLine(self) -> str:
        """
        @return: the client's request line, as error log lines quote it.
        """
        exchange = self.exchange
        return "%s %s %s" % (
            exchange.method.decode("latin-1"),
            exchange.rawURI.decode("latin-1"),
            exchange.version.decode("latin-1"),
        )

    def channelPeer(self) -> str:
        """
        @return: the client address for log lines.
        """
        return getattr(self.exchange.channel.clientAddress, "host", "unix:")

    # -- endings ------------------------------------------------------------

    def _releaseConnection(self, reusable: bool, failed: bool) -> None:
        protocol, self.protocol = self.protocol, None
        peer = self.peer
        if peer is not None:
            peer.state.conns -= 1
            self.upstream.balancer.release(peer, failed)
            self.peer = None
        if protocol is not None:
            if not reusable:
                # Stop its callbacks: a retry or an error page must never
                # receive the rest of this response.
                protocol.abandon()
            if self.upstreamPaused:
                self.upstreamPaused = False
                protocol.resumeProducing()
            if protocol.transport is not None:
                try:
                    protocol.transport.unregisterProducer()
                except RuntimeError:
                    pass
            self.handler.pool.release(self.upstream, protocol, reusable)
        else:
            self.peer = None

    def _finishWithError(self, status: int) -> None:
        self.done = True
        self._cleanup()
        self.exchange.sendLocalReply(status)

    def _cleanup(self) -> None:
        if self.body is not None:
            self.body.close()

    def _abandon(self) -> None:
        if self.done:
            return
        self.done = True
        if self._connecting is not None:
            self._connecting.cancel()
        protocol = self.protocol
        self._releaseConnection(False, failed=False)
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abortConnection()
        self._cleanup()

    def clientClosed(self) -> None:
        """
        The client went away: drop the upstream request, as nginx does
        with C{proxy_ignore_client_abort off}.
        """
        if self.tunnel is not None:
            self.tunnel.loseConnection()
            return
        if self.settings.ignoreClientAbort and self.protocol is not None:
            return
        self._abandon()

    # -- IPushProducer, seen by the client side -----------------------------

    def pauseProducing(self) -> None:
        """
        The client is slow to read.
        """
        self.clientPaused = True
        self.pausedBytes = 0
        unbuffered = not self.buffering or self.tunnel is not None
        if unbuffered and self.protocol is not None and not self.upstreamPaused:
            self.upstreamPaused = True
            self.protocol.pauseProducing()

    def resumeProducing(self) -> None:
        """
        The client caught up.
        """
        self.clientPaused = False
        if self.upstreamPaused and self.protocol is not None:
            self.upstreamPaused = False
            self.protocol.resumeProducing()

    def stopProducing(self) -> None:
        """
        The client connection is closing.
        """
        self._abandon()

    # -- upgrade ------------------------------------------------------------

    def _upgrade(self, head: Any, headers: list) -> None:
        """
        Hand both connections to the location's upgrade handler (a byte
        tunnel unless a module set another).
        """
        from ..http.tunnel import BYTE_TUNNEL

        exchange = self.exchange
        if exchange.header(b"upgrade") is None:
            self._releaseConnection(False, failed=True)
            self._finishWithError(502)
            return
        location = exchange.location
        handler = location.upgradeHandler if location is not None else None
        self.tunnel = (handler or BYTE_TUNNEL).startUpgrade(
            exchange, self.protocol, headers, self._tunnelClosed)
        # From here the client's bytes (those already read first) go to it.
        exchange.channel.enterTunnel(exchange, self.tunnel)
        # The client's socket filling up pauses reads from the backend.
        exchange.setResponseProducer(self)

    def _tunnelClosed(self) -> None:
        if not self.done:
            self.done = True
            self._releaseConnection(False, failed=False)


def _literalUpstream(authority: str, reactor: Any, defaultPort: int = 80) -> Optional[Upstream]:
    """
    A one-peer group for an address nginx can use without resolving it: a
    literal IPv4/IPv6 address (with an optional port) or C{unix:PATH}.

    @return: the group, or C{None} when C{authority} is a host name.
    """
    if authority.startswith("unix:"):
        peer = Peer(None, 0, authority[5:])
    else:
        try:
            host, port = splitHostPort(authority, defaultPort)
            ipaddress.ip_address(host)
        except ValueError:
            return None
        peer = Peer(host, port)
    return Upstream(authority, [peer], RoundRobinBalancer([peer], reactor), implicit=True)


@implementer(IPushProducer)
class _BodySender:
    """
    Writes a buffered request body to the backend as fast as its socket
    takes it.
    """

    def __init__(self, protocol: Any, pieces: Iterator[bytes]) -> None:
        self._protocol = protocol
        self._pieces = pieces
        self._paused = False
        self._stopped = False
        self.finished = False

    def start(self) -> None:
        """
        Register with the backend transport and start writing.
        """
        self._protocol.transport.registerProducer(self, True)
        self._pump()

    def _pump(self) -> None:
        while not self._paused and not self._stopped:
            piece = next(self._pieces, None)
            if piece is None:
                self._stopped = True
                self.finished = True
                transport = self._protocol.transport
                if transport is not None and transport.producer is self:
                    transport.unregisterProducer()
                self._protocol.bodySent()
                return
            self._protocol.writeBody(piece)

    def pauseProducing(self) -> None:
        """
        The backend's socket is full: C{proxy_send_timeout} runs.
        """
        self._paused = True
        self._protocol.sendBlocked()

    def resumeProducing(self) -> None:
        """
        The backend's socket drained.
        """
        self._paused = False
        self._protocol.sendUnblocked()
        self._pump()

    def stopProducing(self) -> None:
        """
        The backend connection closed.
        """
        self._stopped = True


@implementer(IPushProducer)
class _ClientBodyPauser:
    """
    Pauses reading the client's body while the backend's socket is full.
    """

    def __init__(self, exchange: Any, protocol: Any) -> None:
        self._exchange = exchange
        self._protocol = protocol

    def pauseProducing(self) -> None:
        """
        The backend is slow to take the body: C{proxy_send_timeout} runs.
        """
        self._exchange.pauseBody()
        self._protocol.sendBlocked()

    def resumeProducing(self) -> None:
        """
        The backend caught up.
        """
        self._protocol.sendUnblocked()
        self._exchange.resumeBody()

    def stopProducing(self) -> None:
        """
        Nothing to stop: the client side ends on its own.
        """
