# -*- test-case-name: tests.unit.test_proxy_request -*-
"""
C{proxy_pass} and the C{proxy_*} directives: compiles each location's proxy
settings once (URL, headers, timeouts, buffering, retries) into a
L{ProxyHandler} that runs a L{ProxyRequest} per exchange.
"""

from __future__ import annotations

from typing import Any, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import attr
from zope.interface import implementer

from ..config.ast import Directive
from ..config.registry import HTTP, LOCATION, MERGE_NONE, SERVER, DirectiveSpec, spec
from ..config.slots import flagSlot, numberSlot, sizeSlot, stringSlot, timeSlot
from ..config.values import parseSize
from ..interfaces import IContentHandler
from ..module import ProxyModule
from ..upstream.cluster import RoundRobinBalancer, Upstream
from ..upstream.proxyrequest import HOP_BY_HOP, ProxyRequest
from ..variables import ComplexValue, simple
from .upstream import STATE, resolvePeers

ALL = (HTTP, SERVER, LOCATION)

#: nginx's default proxy_set_header list, applied after the configured
#: ones and skipped where a configured header has the same name.
DEFAULT_HEADERS = (
    ("Host", "$proxy_host"),
    ("Connection", "close"),
    ("Content-Length", ""),  # set from the body actually sent
    ("Transfer-Encoding", ""),
    ("TE", ""),
    ("Keep-Alive", ""),
    ("Expect", ""),
    ("Upgrade", ""),
)

#: Response headers nginx does not pass to clients unless proxy_pass_header.
DEFAULT_HIDDEN = ("date", "server", "x-pad", "x-accel-expires", "x-accel-redirect",
                  "x-accel-limit-rate", "x-accel-buffering", "x-accel-charset")

NEXT_UPSTREAM = frozenset({
    "error", "timeout", "invalid_header", "http_500", "http_502", "http_503",
    "http_504", "http_403", "http_404", "http_429", "non_idempotent", "off",
})


def _parseProxyPass(directive: Directive) -> str:
    url = directive.args[0]
    if "$" not in url and not url.lower().startswith(("http://", "https://")):
        raise ValueError(f'invalid URL prefix in "{url}"')
    return url


def _parseHeader(directive: Directive) -> Tuple[str, str, Directive]:
    return (directive.args[0], directive.args[1], directive)


def _parseVersion(directive: Directive) -> bytes:
    if directive.args[0] not in ("1.0", "1.1"):
        raise ValueError(f'invalid value "{directive.args[0]}" in "{directive.name}" directive')
    return b"HTTP/" + directive.args[0].encode("ascii")


def _parseBuffers(directive: Directive) -> Tuple[int, int]:
    number, size = directive.args
    if not number.isdigit() or int(number) < 2:
        raise ValueError(f'invalid value "{number}" in "{directive.name}" directive')
    try:
        return (int(number), parseSize(size))
    except ValueError:
        raise ValueError(f'invalid value "{size}" in "{directive.name}" directive')


def _parseNextUpstream(directive: Directive) -> FrozenSet[str]:
    for arg in directive.args:
        if arg not in NEXT_UPSTREAM:
            raise ValueError(f'invalid value "{arg}"')
    if "off" in directive.args and len(directive.args) > 1:
        raise ValueError('invalid value "off"')
    return frozenset(directive.args) - {"off"}


def _parseRedirect(directive: Directive) -> Tuple[str, ...]:
    if len(directive.args) == 1 and directive.args[0] not in ("default", "off"):
        raise ValueError(f'invalid parameter "{directive.args[0]}"')
    return directive.args


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ProxySettings:
    """
    A location's proxy configuration, compiled.

    @ivar headers: C{(name bytes, lowercase name, value)} in send order;
        values are compiled; empty results are not sent.
    @ivar overridden: lowercase names the client may not set directly.
    @ivar hidden: lowercase response header names not passed to clients.
    @ivar redirects: C{(prefix, replacement)} pairs for C{Location} and
        C{Refresh}.
    """

    version: bytes
    headers: Tuple[Tuple[bytes, bytes, ComplexValue], ...]
    overridden: FrozenSet[bytes]
    hidden: FrozenSet[bytes]
    redirects: Tuple[Tuple[ComplexValue, ComplexValue], ...]
    connectTimeout: float
    sendTimeout: float
    readTimeout: float
    buffering: bool
    bufferBudget: int
    #: C{proxy_buffer_size}: the most read from the backend at once while
    #: its response head is awaited, as nginx reads the head into a buffer
    #: of that size.
    headReadSize: int
    requestBuffering: bool
    bodyBufferSize: int
    nextUpstream: FrozenSet[str]
    nextUpstreamTries: int
    nextUpstreamTimeout: float
    interceptErrors: bool
    ignoreClientAbort: bool
    passRequestHeaders: bool
    passRequestBody: bool
    #: Variables whose value is known when the config loads (C{$proxy_host}
    #: and C{$proxy_port} of a C{proxy_pass} URL without variables), as
    #: C{(name, value)} pairs: header values made only of them and text
    #: are written into the plan once instead of evaluated per request.
    fixedVariables: Tuple[Tuple[str, str], ...] = ()
    headerPlan: Tuple[Tuple[int, Any, Any], ...] = attr.ib(init=False, eq=False, repr=False)
    clientDrop: FrozenSet[bytes] = attr.ib(init=False, eq=False, repr=False)
    responseDrop: FrozenSet[bytes] = attr.ib(init=False, eq=False, repr=False)
    """C{hidden} plus the hop-by-hop names: what a response (other than a
    101) never passes on, tested with one lookup per header."""

    def __attrs_post_init__(self) -> None:
        """
        Compile the header list once: static lines pre-encoded, empty static
        values dropped, only variable values left to evaluate per request.
        """
        object.__setattr__(self, "headerPlan", headerPlan(self.headers, dict(self.fixedVariables)))
        object.__setattr__(self, "clientDrop", self.overridden | HOP_BY_HOP)
        object.__setattr__(self, "responseDrop", self.hidden | HOP_BY_HOP)


#: Kinds of step in L{ProxySettings.headerPlan}.
PLAN_STATIC, PLAN_VALUE, PLAN_LENGTH, PLAN_CHUNKED = range(4)


def headerPlan(
    headers: Sequence[Tuple[bytes, bytes, ComplexValue]],
    fixed: Optional[Mapping[str, str]] = None,
) -> Tuple[Tuple[int, Any, Any], ...]:
    """
    @param fixed: variable values known at load time (see
        L{ProxySettings.fixedVariables}).
    @return: the steps that write the configured request headers: a
        pre-encoded line, a name with a value to evaluate, or the body
        framing headers (whose value depends on the body actually sent).
    """
    plan: List[Tuple[int, Any, Any]] = []
    for name, lower, value in headers:
        static = value.static if value.static is not None else _fixedValue(value, fixed)
        if lower == b"content-length":
            plan.append((PLAN_LENGTH, None, None))
        elif lower == b"transfer-encoding":
            plan.append((PLAN_CHUNKED, None, None))
        elif static is not None:
            if static:
                line = b"%s: %s\r\n" % (name, static.encode("latin-1", "replace"))
                if plan and plan[-1][0] == PLAN_STATIC:
                    plan[-1] = (PLAN_STATIC, plan[-1][1] + line, None)
                else:
                    plan.append((PLAN_STATIC, line, None))
        else:
            plan.append((PLAN_VALUE, name + b": ", value))
    return tuple(plan)


def proxyHostVariable(exchange: Any) -> Optional[str]:
    """
    C{$proxy_host}: the host (and port, if not the default) of the
    C{proxy_pass} URL.
    """
    return getattr(exchange, "proxyHost", None)


def proxyPortVariable(exchange: Any) -> Optional[str]:
    """
    C{$proxy_port}: the port of the C{proxy_pass} URL.
    """
    return getattr(exchange, "proxyPort", None)


#: The getters L{ProxySettings.fixedVariables} may stand in for, by name.
_FIXABLE = {"proxy_host": proxyHostVariable, "proxy_port": proxyPortVariable}


def _fixedValue(value: ComplexValue, fixed: Optional[Mapping[str, str]]) -> Optional[str]:
    """
    @return: C{value} worked out now, when its only variables are in
        C{fixed} (the default C{Host $proxy_host} is one), else C{None}.
        Each must still be this module's own getter: a C{map} that
        redefined C{$proxy_host} keeps being evaluated per request.
    """
    if not fixed or value.usesCaptures or not value.names:
        return None
    out = []
    names = iter(value.names)
    for part in value.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        name = next(names)
        if name not in fixed or part is not _FIXABLE.get(name):
            return None
        out.append(fixed[name])
    return "".join(out)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ProxyTarget:
    """
    The compiled C{proxy_pass} URL.

    @ivar upstream: the group to use, or C{None} when the URL has
        variables and is resolved per request.
    @ivar uri: the URI part (C{"/"} in C{http://b/}), or C{None}.
    @ivar proxyHost: the value of C{$proxy_host}.
    @ivar proxyPort: the value of C{$proxy_port}.
    @ivar url: the compiled URL when it has variables.
    @ivar prefix: the location prefix a URI part replaces.
    @ivar scheme: C{"http"} or C{"https"} (TLS to the backend); for a URL
        with variables, known only per request.
    """

    upstream: Optional[Upstream]
    uri: Optional[str]
    proxyHost: str
    url: Optional[ComplexValue]
    prefix: Optional[str]
    proxyPort: str = "80"
    scheme: str = "http"


@implementer(IContentHandler)
class ProxyHandler:
    """
    The content handler of a location with C{proxy_pass}.
    """

    def __init__(self, target: ProxyTarget, settings: ProxySettings, pool: Any,
                 upstreams: Any, reactor: Any) -> None:
        self.target = target
        self.settings = settings
        self.pool = pool
        self.upstreams = upstreams
        #: The L{UpstreamTLS <twisted_rproxy.upstream.tls.UpstreamTLS>} for
        #: C{https} backends and the compiled C{proxy_ssl_name}, set by the
        #: proxy_ssl module.
        self.tls: Any = None
        self.tlsName: Any = None
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor

    def handle(self, exchange: Any) -> None:
        """
        Proxy C{exchange} to the backend.
        """
        ProxyRequest(self, exchange).start()


def hostAndPort(authority: str, scheme: str = "http") -> Tuple[str, str]:
    """
    C{$proxy_host} and C{$proxy_port} for a C{proxy_pass} authority, as
    nginx computes them: the port is dropped from the host when it is the
    scheme's default (80, or 443 for https), an upstream name has that
    port, and a UNIX socket is C{localhost}.
    """
    default = "443" if scheme == "https" else "80"
    if authority.startswith("unix:"):
        return "localhost", ""
    hostPart, sep, port = authority.rpartition(":")
    if not sep or "]" in port:
        return authority, default
    if port == default:
        return hostPart, default
    return authority, port


def splitURL(url: str) -> Tuple[str, str, Optional[str]]:
    """
    Split C{http://host:port/uri} into scheme, authority and URI part.
    """
    scheme, _sep, rest = url.partition("://")
    if rest.startswith("unix:"):
        path, colon, uri = rest[5:].partition(":")
        return scheme.lower(), "unix:" + path, uri if colon else None
    slash = rest.find("/")
    if slash < 0:
        return scheme.lower(), rest, None
    return scheme.lower(), rest[:slash], rest[slash:]


class HTTPProxyModule(ProxyModule):
    """
    Declares the C{proxy_*} directives and variables.
    """

    name = "proxy"
    order = 400

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: the proxy directives.
        """
        return [
            spec("proxy_pass", [LOCATION], 1, parse=_parseProxyPass, merge=MERGE_NONE),
            spec("proxy_set_header", ALL, 2, parse=_parseHeader, multiple=True),
            spec("proxy_http_version", ALL, 1, parse=_parseVersion, default=b"HTTP/1.0"),
            spec("proxy_hide_header", ALL, 1, parse=stringSlot, multiple=True),
            spec("proxy_pass_header", ALL, 1, parse=stringSlot, multiple=True),
            spec("proxy_redirect", ALL, (1, 2), parse=_parseRedirect, multiple=True),
            spec("proxy_intercept_errors", ALL, 1, parse=flagSlot, default=False),
            spec("proxy_connect_timeout", ALL, 1, parse=timeSlot, default=60.0),
            spec("proxy_send_timeout", ALL, 1, parse=timeSlot, default=60.0),
            spec("proxy_read_timeout", ALL, 1, parse=timeSlot, default=60.0),
            spec("proxy_buffering", ALL, 1, parse=flagSlot, default=True),
            spec("proxy_request_buffering", ALL, 1, parse=flagSlot, default=True),
            spec("proxy_buffer_size", ALL, 1, parse=sizeSlot, default=4096),
            spec("proxy_buffers", ALL, 2, parse=_parseBuffers, default=(8, 4096)),
            spec("proxy_busy_buffers_size", ALL, 1, parse=sizeSlot, default=8192),
            spec("proxy_max_temp_file_size", ALL, 1, parse=sizeSlot, default=1 << 30),
            spec("proxy_temp_file_write_size", ALL, 1, parse=sizeSlot, default=8192),
            spec("proxy_next_upstream", ALL, (1, None), parse=_parseNextUpstream,
                 default=frozenset({"error", "timeout"})),
            spec("proxy_next_upstream_tries", ALL, 1, parse=numberSlot, default=0),
            spec("proxy_next_upstream_timeout", ALL, 1, parse=timeSlot, default=0.0),
            spec("proxy_ignore_client_abort", ALL, 1, parse=flagSlot, default=False),
            spec("proxy_pass_request_headers", ALL, 1, parse=flagSlot, default=True),
            spec("proxy_pass_request_body", ALL, 1, parse=flagSlot, default=True),
            spec("proxy_socket_keepalive", ALL, 1, ignored=True),
            spec("proxy_headers_hash_max_size", ALL, 1, ignored=True),
            spec("proxy_headers_hash_bucket_size", ALL, 1, ignored=True),
        ]

    def variables(self) -> Sequence[Any]:
        """
        @return: C{$proxy_host}, C{$proxy_port},
            C{$proxy_add_x_forwarded_for}.
        """
        return [
            simple("proxy_host", proxyHostVariable),
            simple("proxy_port", proxyPortVariable),
            simple("proxy_add_x_forwarded_for", _addForwardedFor),
        ]

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        Build the location's L{ProxyHandler} when it has C{proxy_pass}.
        """
        conf = location.conf
        url = conf.get("proxy_pass")
        if url is None:
            return
        directive = conf.source("proxy_pass")
        state = compiler.state[STATE]
        target = self._target(url, directive, location, compiler, state["upstreams"])
        settings = self._settings(conf, target, location, compiler)
        location.contentHandler = ProxyHandler(
            target, settings, state["pool"], state["upstreams"], compiler.reactor
        )
        if location.modifier in ("", "^~") and location.pattern.endswith("/"):
            location.autoRedirect = True

    def _target(self, url: str, directive: Directive, location: Any, compiler: Any,
                upstreams: Any) -> ProxyTarget:
        prefix = location.pattern if location.modifier in ("", "^~", "=") else None
        if "$" in url:
            return ProxyTarget(None, None, "", compiler.compileValue(url, directive), prefix)
        scheme, authority, uri = splitURL(url)
        if uri is not None and location.modifier in ("~", "~*", "@"):
            raise directive.error(
                '"proxy_pass" cannot have URI part in location given by regular '
                'expression, or inside named location, or inside "if" statement, '
                'or inside "limit_except" block'
            )
        upstream = upstreams.get(authority)
        if upstream is None:
            if authority.startswith("unix:"):
                peers = resolvePeers(authority, directive)
            else:
                peers = resolvePeers(authority, directive, 443 if scheme == "https" else 80)
            upstream = Upstream(authority, peers, RoundRobinBalancer(peers, compiler.reactor),
                                implicit=True)
        host, port = hostAndPort(authority, scheme)
        return ProxyTarget(upstream, uri, host, None, prefix, port, scheme)

    def _settings(self, conf: Any, target: ProxyTarget, location: Any,
                  compiler: Any) -> ProxySettings:
        configured = conf.get("proxy_set_header") or []
        seen = set()
        headers = []
        for name, value, directive in configured:
            lower = name.lower().encode("latin-1")
            seen.add(lower)
            headers.append((name.encode("latin-1"), lower, compiler.compileValue(value, directive)))
        for name, value in DEFAULT_HEADERS:
            lower = name.lower().encode("latin-1")
            if lower not in seen:
                seen.add(lower)
                headers.append((name.encode("latin-1"), lower, compiler.compileValue(value, None)))
        passed = {h.lower().encode("latin-1") for h in conf.get("proxy_pass_header") or ()}
        hidden = {h.encode("latin-1") for h in DEFAULT_HIDDEN} - passed
        hidden |= {h.lower().encode("latin-1") for h in conf.get("proxy_hide_header") or ()}
        number, size = conf.get("proxy_buffers")
        return ProxySettings(
            version=conf.get("proxy_http_version"),
            headers=tuple(headers),
            overridden=frozenset(seen),
            hidden=frozenset(hidden),
            redirects=self._redirects(conf, target, location, compiler),
            connectTimeout=conf.get("proxy_connect_timeout"),
            sendTimeout=conf.get("proxy_send_timeout"),
            readTimeout=conf.get("proxy_read_timeout"),
            buffering=conf.get("proxy_buffering"),
            bufferBudget=number * size + conf.get("proxy_buffer_size"),
            headReadSize=conf.get("proxy_buffer_size"),
            requestBuffering=conf.get("proxy_request_buffering"),
            bodyBufferSize=conf.get("client_body_buffer_size"),
            nextUpstream=conf.get("proxy_next_upstream"),
            nextUpstreamTries=conf.get("proxy_next_upstream_tries"),
            nextUpstreamTimeout=conf.get("proxy_next_upstream_timeout"),
            interceptErrors=conf.get("proxy_intercept_errors"),
            ignoreClientAbort=conf.get("proxy_ignore_client_abort"),
            passRequestHeaders=conf.get("proxy_pass_request_headers"),
            passRequestBody=conf.get("proxy_pass_request_body"),
            fixedVariables=(
                (("proxy_host", target.proxyHost), ("proxy_port", target.proxyPort))
                if target.url is None else ()
            ),
        )

    def _redirects(self, conf: Any, target: ProxyTarget, location: Any,
                   compiler: Any) -> Tuple[Tuple[ComplexValue, ComplexValue], ...]:
        entries: List[Tuple[str, ...]] = conf.get("proxy_redirect") or [("default",)]
        out = []
        for entry in entries:
            if entry == ("off",):
                return ()
            if entry == ("default",):
                if target.url is not None or location.modifier in ("~", "~*", "@"):
                    continue
                url = conf.get("proxy_pass")
                if target.uri is not None:
                    pair = (url, location.pattern)
                else:
                    pair = (url + "/", "/")
                out.append((compiler.compileValue(pair[0], None), compiler.compileValue(pair[1], None)))
            else:
                source = conf.source("proxy_redirect")
                out.append((compiler.compileValue(entry[0], source), compiler.compileValue(entry[1], source)))
        return tuple(out)


def _addForwardedFor(exchange: Any) -> str:
    remote = exchange.channel.clientAddress
    address = getattr(remote, "host", None) or "unix:"
    values = exchange.headerValues(b"x-forwarded-for")
    if not values:
        return address
    return ", ".join(v.decode("latin-1") for v in values) + ", " + address
