# -*- test-case-name: tests.unit.test_channel -*-
"""
One request and its response as the rest of the proxy sees them: routing to
a server and location, the request phases, the content handler, response
filters, and the response head and body on their way to the codec.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._version import __version__
from ..interfaces import IExchange
from ..phases import LocalReply
from .errorpages import SHOWN_AS_400, errorPage, reasonPhrase
from .routing import normalizePath

Headers = List[Tuple[bytes, bytes]]

#: Statuses that C{add_header} without C{always} applies to (nginx).
ADD_HEADER_STATUSES = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})

#: The authority of an absolute-form target as nginx's request-line parser
#: accepts it: a name of letters, digits, "." and "-", or an IP literal in
#: brackets, then an optional port.
_ABSOLUTE_AUTHORITY_RE = re.compile(
    rb"(?:\[[0-9A-Za-z:._~!$&'()*+,;=-]*\]|[0-9A-Za-z.-]*)(?::[0-9]*)?"
)

#: Error pages after which nginx closes the connection rather than trust
#: it further (C{ngx_http_special_response_handler}).
CLOSING_ERRORS = frozenset({400, 413, 414, 495, 496, 497, 500, 501})


@implementer(IExchange)
class Exchange:
    """
    A request/response pair on a client connection.

    The codec (L{twisted_rproxy.http.channel.HTTPChannel}) builds it from a
    parsed head, calls L{dispatch}, feeds the request body, and is told the
    response through its C{sendHead}/C{sendBody}/C{responseDone} methods.

    @ivar status: the response status once started, else 0.
    @ivar upstreamAttempts: one record per upstream peer tried, for
        C{$upstream_*} variables and the access log.
    """

    log = Logger()
    # The state every request has, in slots: past 30 instance attributes
    # CPython 3.11 gives up its compact shared-key layout and makes a full
    # dict for each exchange, on every request.  Modules' own attributes
    # (C{proxyHost}, ...) still go to the instance dict.
    __slots__ = (
        "channel", "method", "rawURI", "version", "requestHeaders", "startTime",
        "path", "args", "host", "captures", "namedCaptures", "serverCaptures",
        "server", "location", "status", "responseHeaders", "bodyBytesSent",
        "bytesSent", "requestLength", "upstreamAttempts", "finished", "aborted",
        "headSent", "keepAlive", "hasBody", "originTarget", "statusOverride",
        "variableCache", "_bodyConsumer", "_bodyQueue", "_bodyDone", "_bodyError",
        "_responseProducer", "_closeCallbacks", "endTime", "responseLowers",
        "__dict__", "__weakref__",
    )

    def __init__(
        self,
        channel: Any,
        method: bytes,
        rawURI: bytes,
        version: bytes,
        requestHeaders: Headers,
        startTime: Optional[float] = None,
    ) -> None:
        self.channel = channel
        self.method = method
        self.rawURI = rawURI
        self.version = version
        self.requestHeaders = requestHeaders
        self.startTime = time.time() if startTime is None else startTime
        self.path = ""
        self.args = ""
        self.host = ""
        self.captures: Tuple[str, ...] = ()
        self.namedCaptures: Mapping[str, str] = {}
        self.serverCaptures: Mapping[str, str] = {}
        self.server: Any = None
        self.location: Any = None
        self.status = 0
        self.responseHeaders: Headers = []
        self.bodyBytesSent = 0
        self.bytesSent = 0
        self.requestLength = 0
        self.upstreamAttempts: List[Any] = []
        self.finished = False
        self.aborted = False
        self.headSent = False
        self.keepAlive = True
        self.hasBody = False
        self.originTarget = rawURI
        self.statusOverride: Optional[int] = None
        self.variableCache: dict = {}
        self._bodyConsumer: Any = None
        self._bodyQueue: List[bytes] = []
        self._bodyDone = False
        self._bodyError: Optional[Exception] = None
        self._responseProducer: Any = None
        self._closeCallbacks: List[Callable[[], None]] = []
        self.endTime: Optional[float] = None
        #: The lowercased names of C{responseHeaders} when the content
        #: handler gave them and no response filter ran, for the codec.
        self.responseLowers: Optional[List[bytes]] = None

    # -- request helpers --------------------------------------------------

    def header(self, lowerName: bytes) -> Optional[bytes]:
        """
        @return: the first value of request header C{lowerName}, or C{None}.
        """
        for name, value in self.requestHeaders:
            if len(name) == len(lowerName) and name.lower() == lowerName:
                return value
        return None

    def headerValues(self, lowerName: bytes) -> List[bytes]:
        """
        @return: every value of request header C{lowerName}, in order.
        """
        return [v for n, v in self.requestHeaders if n.lower() == lowerName]

    @property
    def conf(self) -> Any:
        """
        The directive values in force: the location's, or the server's
        before a location is chosen.
        """
        if self.location is not None:
            return self.location.conf
        if self.server is not None:
            return self.server.conf
        return self.channel.listener.defaultServer.conf

    # -- routing and phases ---------------------------------------------

    def route(self) -> Optional[int]:
        """
        Choose the virtual server and split the target, as nginx does
        before its phases run.

        @return: an error status when the request cannot be routed.
        """
        target = self.rawURI
        hostHeader = self.header(b"host")
        if target[:1] != b"/":
            # absolute-form (RFC 9112 3.2.2): the target's authority wins.
            scheme, sep, rest = target.partition(b"://")
            if not sep or scheme.lower() not in (b"http", b"https"):
                return 400
            match = _ABSOLUTE_AUTHORITY_RE.match(rest)  # matches, maybe empty
            end = match.end() if match is not None else 0
            if rest[end : end + 1] not in (b"", b"/", b"?"):
                # Userinfo, "#", "_" or an unclosed "[" in the authority:
                # nginx's request-line parser refuses these with 400.
                return 400
            hostHeader = rest[:end]
            # "http://host?q" means "/?q", as in nginx.
            target = rest[end:] if rest[end : end + 1] == b"/" else b"/" + rest[end:]
        listener = self.channel.listener
        if hostHeader is None:
            host: Optional[str] = ""
        else:
            host = self.channel.normalizeHost(hostHeader)
            if host is None:
                self.server = listener.defaultServer
                return 400
        self.host = host or ""
        self.server, self.serverCaptures = listener.serverNames.match(self.host)
        self.originTarget = target
        rawPath, _q, query = target.partition(b"?")
        path = normalizePath(rawPath)
        if path is None:
            return 400
        self.path = path
        self.args = query.decode("latin-1")
        return None

    def dispatch(self) -> None:
        """
        Run the request through routing, phase filters and the content
        handler.  Every failure becomes a local reply; nothing raises to the
        codec.
        """
        error = self.route()
        if error is not None:
            self.keepAlive = False
            self.sendLocalReply(error)
            return
        self._runFilters(self.server.requestFilters, 0, self._findLocation)

    def _findLocation(self) -> None:
        locations = self.server.locations
        if self.server.autoRedirects:
            # One search answers both nginx's auto_redirect ("/app" asks
            # for "location /app/") and which location serves the path.
            redirect, match = locations.find(self.path, _wantsRedirect)
            if redirect is not None:
                target = self.path + "/" + ("?" + self.args if self.args else "")
                self.sendRedirect(301, target)
                return
        else:
            match = locations.match(self.path)
        if match is None:
            self.location = None
            self.sendLocalReply(404)
            return
        self.location = match.payload
        self.captures = match.captures
        self.namedCaptures = match.named
        self.enterLocation()

    def enterLocation(self) -> None:
        """
        Run the chosen location's filters and its content handler; also the
        way back in after an internal redirect.
        """
        location = self.location
        maxBody = location.conf.get("client_max_body_size")
        if maxBody and self.channel.declaredBodyLength(self) > maxBody:
            self.keepAlive = False
            self.sendLocalReply(413)
            return
        self._runFilters(location.requestFilters, 0, self._content)

    def _runFilters(self, filters: Sequence[Any], index: int, then: Callable[[], None]) -> None:
        while index < len(filters):
            try:
                result = filters[index].requestHeaders(self)
            except Exception:
                self.log.failure("request filter {f!r} failed", f=filters[index])
                self.sendLocalReply(500)
                return
            index += 1
            if result is None:
                continue
            if isinstance(result, Deferred):
                result.addCallbacks(
                    self._filterResumed,
                    self._filterFailed,
                    callbackArgs=(filters, index, then),
                )
                return
            self._filterResumed(result, filters, index, then)
            return
        then()

    def _filterResumed(
        self, result: Any, filters: Sequence[Any], index: int, then: Callable[[], None]
    ) -> None:
        if self.finished or self.aborted:
            return
        if isinstance(result, LocalReply):
            self.sendLocalReply(result.status, result.body, result.headers)
            return
        self._runFilters(filters, index, then)

    def _filterFailed(self, failure: Failure) -> None:
        self.log.failure("request filter failed", failure)
        if not self.finished and not self.aborted:
            self.sendLocalReply(500)

    def _content(self) -> None:
        handler = self.location.contentHandler
        if handler is None:
            self.sendLocalReply(404)
            return
        try:
            result = handler.handle(self)
        except Exception:
            self._contentFailed(Failure())
            return
        # Deferred's metaclass is ABCMeta: test for None (what most
        # handlers return) before its slower isinstance.
        if result is not None and isinstance(result, Deferred):
            result.addErrback(self._contentFailed)

    def _contentFailed(self, failure: Failure) -> None:
        self.log.failure("content handler failed for {uri}", failure, uri=self.rawURI)
        if not self.headSent and not self.finished:
            self.sendLocalReply(500)
        elif not self.finished:
            self.abort()

    # -- request body ---------------------------------------------------

    def readBody(self, consumer: Any) -> None:
        """
        Deliver the request body to C{consumer} (C{bodyReceived(data)},
        C{bodyFinished()}, optional C{bodyFailed(reason)}); queued parts
        first.  Sends C{100 Continue} when the client asked for it.
        """
        self._bodyConsumer = consumer
        self.channel.bodyWanted(self)
        queued, self._bodyQueue = self._bodyQueue, []
        for data in queued:
            consumer.bodyReceived(data)
        if self._bodyError is not None:
            if hasattr(consumer, "bodyFailed"):
                consumer.bodyFailed(self._bodyError)
        elif self._bodyDone:
            consumer.bodyFinished()

    def bodyReceived(self, data: bytes) -> None:
        """
        Called by the codec with a piece of the request body.
        """
        self.requestLength += len(data)
        if self._bodyConsumer is not None:
            self._bodyConsumer.bodyReceived(data)
        else:
            self._bodyQueue.append(data)

    def bodyFinished(self) -> None:
        """
        Called by the codec when the request body is complete.
        """
        self._bodyDone = True
        if self._bodyConsumer is not None:
            self._bodyConsumer.bodyFinished()

    def bodyFailed(self, reason: Exception) -> None:
        """
        Called by the codec when the request body cannot complete (client
        gone, malformed chunk, too large).
        """
        self._bodyError = reason
        consumer = self._bodyConsumer
        if consumer is not None and hasattr(consumer, "bodyFailed"):
            consumer.bodyFailed(reason)

    @property
    def bodyComplete(self) -> bool:
        """
        Whether the whole request body has been received.
        """
        return self._bodyDone

    def pauseBody(self) -> None:
        """
        Stop reading the request body until L{resumeBody}.
        """
        self.channel.pauseBody(self)

    def resumeBody(self) -> None:
        """
        Read the request body again.
        """
        self.channel.resumeBody(self)

    # -- response -------------------------------------------------------

    def startResponse(
        self,
        status: int,
        headers: Headers,
        reason: Optional[bytes] = None,
        lowers: Optional[List[bytes]] = None,
    ) -> None:
        """
        Run the response filters over the head and hand it to the codec.

        @param lowers: the lowercased names of C{headers}, in order, when
            the caller has them, so the codec need not lower them again.
        """
        if self.headSent or self.aborted:
            raise RuntimeError("response already started")
        if self.statusOverride is not None:
            status, reason = self.statusOverride, None
        self.status = status
        location = self.location or self._fallback()
        filters = location.responseFilters
        if filters:
            lowers = None  # a filter may change the headers
            for f in filters:
                headers = f.responseHeaders(self, status, headers)
        self.responseHeaders = headers
        self.responseLowers = lowers
        self.headSent = True
        self.channel.sendHead(self, status, reason or reasonPhrase(status), headers)

    def _fallback(self) -> Any:
        server = self.server or self.channel.listener.defaultServer
        return server.fallbackLocation

    def write(self, data: bytes) -> None:
        """
        Send part of the response body.
        """
        # After finish() the connection may carry the next response: a late
        # write must not reach the wire.
        if data and not self.aborted and not self.finished:
            self.channel.sendBody(self, data)

    def finish(self) -> None:
        """
        End the response; the codec may go on to the next request.
        """
        if self.finished or self.aborted:
            return
        self.finished = True
        self._responseProducer = None
        # Only an unfinished exchange is told the client closed.  Letting go
        # of the callbacks (bound methods of the upstream request, which
        # holds this exchange) leaves no cycle, so the request's objects go
        # when the last reference does, not at a later garbage collection.
        self._closeCallbacks.clear()
        self.channel.responseDone(self)

    def abort(self) -> None:
        """
        Drop the client connection: the response cannot be completed.
        """
        if self.finished or self.aborted:
            return
        self.aborted = True
        self._responseProducer = None
        self.channel.abortExchange(self)

    def notifyClientClosed(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} if the client connection closes before the
        response is finished, so upstream work can be abandoned.
        """
        self._closeCallbacks.append(callback)

    def clientClosed(self) -> None:
        """
        Called by the codec when the client went away mid-exchange.
        """
        self._responseProducer = None
        callbacks, self._closeCallbacks = self._closeCallbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                self.log.failure("client-closed callback failed")

    def setResponseProducer(self, producer: Any) -> None:
        """
        Register the C{IPushProducer} of the response body; the codec
        pauses it while the client is slow to read.
        """
        self._responseProducer = producer
        self.channel.exchangeProducerChanged(self)

    @property
    def responseProducer(self) -> Any:
        """
        The producer feeding the response body, if any.
        """
        return self._responseProducer

    def sendLocalReply(
        self, status: int, body: bytes = b"", headers: Sequence[Tuple[bytes, bytes]] = ()
    ) -> None:
        """
        Answer with a response made here: C{return}, or an nginx-style error
        page when C{body} is empty and C{status} is an error.
        """
        if self.headSent or self.finished or self.aborted:
            if not self.finished:
                self.abort()
            return
        if not body and status in CLOSING_ERRORS:
            self.keepAlive = False
        if not body and status >= 300 and self._errorPageRedirect(status):
            return
        # nginx's absolute_redirect: a Location this proxy makes is sent
        # absolute (a backend's own relative Location is left alone).
        out = [
            (name, absoluteURL(self, value.decode("latin-1")).encode("latin-1"))
            if value[:1] == b"/" and name.lower() == b"location" else (name, value)
            for name, value in headers
        ]
        if not body and status >= 300 and status != 304:
            tokens = self.conf.get("server_tokens")
            body = errorPage(status, tokens)
            out.append((b"Content-Type", b"text/html"))
            if status in SHOWN_AS_400:
                status = 400
        elif body and not any(n.lower() == b"content-type" for n, _v in out):
            out.append((b"Content-Type", self.conf.get("default_type").encode("latin-1")))
        if status != 204 and status != 304 and (body or status >= 200):
            out.append((b"Content-Length", str(len(body)).encode("ascii")))
        self.startResponse(status, out)
        if body and self.method != b"HEAD":
            self.write(body)
        self.finish()

    def _errorPageRedirect(self, status: int) -> bool:
        # Like nginx with recursive_error_pages off: one error_page
        # redirect per request, so a failing error page cannot loop.
        pages = (self.location or self._fallback()).errorPages
        if pages is None or self.variableCache.get("_redirects", 0) >= 1:
            return False
        return pages.redirect(self, status)

    def sendRedirect(self, status: int, url: str) -> None:
        """
        Answer with a redirect to C{url}.
        """
        self.sendLocalReply(status, b"", ((b"Location", url.encode("latin-1")),))

    def internalRedirect(self, path: str, args: Optional[str] = None, method: Optional[bytes] = None) -> None:
        """
        Restart location selection for a new URI within the same server, as
        nginx's C{ngx_http_internal_redirect} (C{error_page}).
        """
        self.variableCache["_redirects"] = self.variableCache.get("_redirects", 0) + 1
        self.path = path
        if args is not None:
            self.args = args
        if method is not None:
            self.method = method
        for key in [k for k in self.variableCache if not k.startswith("_")]:
            del self.variableCache[key]
        self._findLocation()

    def enterNamedLocation(self, location: Any) -> None:
        """
        Continue in a named location (C{@name}), keeping the URI.
        """
        self.variableCache["_redirects"] = self.variableCache.get("_redirects", 0) + 1
        self.location = location
        self.enterLocation()

    # -- variables support ----------------------------------------------

    @property
    def requestTime(self) -> float:
        """
        Seconds since the request head arrived.
        """
        return time.time() - self.startTime


SERVER_SOFTWARE = f"twisted_rproxy/{__version__}"


def _wantsRedirect(location: Any) -> bool:
    return bool(location.autoRedirect)


def absoluteURL(exchange: Exchange, target: str) -> str:
    """
    Make a relative redirect absolute, as nginx's C{absolute_redirect on}
    does for every response: C{/path} becomes C{scheme://host[:port]/path},
    with the request's host and the port it arrived on.
    """
    channel = exchange.channel
    host = exchange.host or (exchange.server.primaryName if exchange.server else "")
    port = getattr(channel.serverAddress, "port", None)
    default = 443 if channel.scheme == "https" else 80
    suffix = "" if port in (None, default) else f":{port}"
    return f"{channel.scheme}://{host}{suffix}{target}"
