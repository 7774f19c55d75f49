# -*- test-case-name: tests.integration.test_embedding -*-
"""
A C{twisted.web} resource that proxies per a location block, for apps that
already run a C{Site}: the same content handlers and filters as the
standalone proxy, reached through an adapter that speaks to a twisted.web
C{Request} instead of the proxy's own HTTP channel.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from .http.exchange import Exchange
from .service import loadConfig

__all__ = ["LocationResource"]


class _RequestChannel:
    """
    The part of L{twisted_rproxy.http.channel.HTTPChannel} an L{Exchange}
    uses, implemented over one twisted.web request.
    """

    scheme = "http"
    connectionNumber = 0
    requestCount = 1

    def __init__(self, request: Any, server: Any) -> None:
        self.request = request
        self.clientAddress = request.getClientAddress()
        self.serverAddress = request.getHost()
        self.scheme = "https" if request.isSecure() else "http"
        self.listener = _Listener(server)

    def normalizeHost(self, raw: bytes) -> Optional[str]:
        """
        Host validation as the proxy's own channel does it.
        """
        from .http.routing import normalizeHost

        return normalizeHost(raw)

    def declaredBodyLength(self, exchange: Exchange) -> int:
        """
        The body twisted.web already read.
        """
        return exchange.requestLength

    def hasRequestBody(self, exchange: Exchange) -> bool:
        """
        Whether the request came with a body.
        """
        return exchange.hasBody

    def bodyWanted(self, exchange: Exchange) -> None:
        """
        twisted.web has already read (and answered 100-continue for) the body.
        """

    def pauseBody(self, exchange: Exchange) -> None:
        """
        The body is already in memory: nothing to pause.
        """

    resumeBody = pauseBody

    def sendHead(self, exchange: Exchange, status: int, reason: bytes, headers: list) -> None:
        """
        Copy the response head onto the twisted.web request.
        """
        request = self.request
        request.setResponseCode(status, reason)
        for name, value in headers:
            request.responseHeaders.addRawHeader(name, value)
        if not any(n.lower() == b"content-type" for n, _v in headers):
            # twisted.web would otherwise add its own text/html default.
            request.defaultContentType = None

    def sendBody(self, exchange: Exchange, data: bytes) -> None:
        """
        Write body bytes.
        """
        exchange.bodyBytesSent += len(data)
        self.request.write(data)

    def responseDone(self, exchange: Exchange) -> None:
        """
        Finish the twisted.web request.
        """
        if self.request.producer is not None:
            self.request.unregisterProducer()
        if not self.request.finished and not self.request._disconnected:
            self.request.finish()

    def abortExchange(self, exchange: Exchange) -> None:
        """
        Drop the connection: the response cannot complete.
        """
        self.request.transport.abortConnection()

    def exchangeProducerChanged(self, exchange: Exchange) -> None:
        """
        Let twisted.web pause the response source when the client is slow.
        """
        producer = exchange.responseProducer
        if producer is not None and self.request.producer is None:
            self.request.registerProducer(producer, True)


class _Listener:
    """
    The single-server listener the adapter routes through.
    """

    def __init__(self, server: Any) -> None:
        self.defaultServer = server
        self.serverNames = _OneServer(server)


class _OneServer:
    """
    A server-name table with one entry.
    """

    def __init__(self, server: Any) -> None:
        self._server = server

    def match(self, host: str) -> tuple:
        """
        @return: the only server.
        """
        return (self._server, {})


class LocationResource(Resource):
    """
    Proxies every request under it per one nginx location block.

        root.putChild(b"api", LocationResource(
            "proxy_pass http://127.0.0.1:8000/; proxy_set_header X-From web;",
            prefix="/api/"))

    @param locationBody: the directives inside C{location PREFIX { ... }}.
    @param prefix: the location's prefix, i.e. where the resource is mounted
        (it is the part a URI in C{proxy_pass} replaces, as in nginx).
    @param httpBody: extra http-level directives (C{upstream}, C{map}).
    """

    isLeaf = True

    def __init__(self, locationBody: str, prefix: str = "/", httpBody: str = "",
                 reactor: Any = None, modules: Optional[Sequence[Any]] = None) -> None:
        super().__init__()
        text = (
            f"http {{ access_log off; {httpBody}\n"
            f"server {{ location {prefix} {{\n{locationBody}\n}} }} }}"
        )
        self.config = loadConfig(text=text, reactor=reactor, modules=modules)
        self.virtualServer = self.config.servers[0]

    def render(self, request: Any) -> Any:
        """
        Run the location for this request and stream the answer.
        """
        channel = _RequestChannel(request, self.virtualServer)
        headers = list(request.requestHeaders.getAllRawHeaders())
        flat = [(name, value) for name, values in headers for value in values]
        version = request.clientproto if request.clientproto in (b"HTTP/1.0", b"HTTP/1.1") else b"HTTP/1.1"
        exchange = Exchange(channel, request.method, request.uri, version, flat)
        body = request.content.read() if request.content is not None else b""
        exchange.hasBody = bool(body) or exchange.header(b"content-length") is not None
        request.notifyFinish().addErrback(lambda _: exchange.clientClosed())
        if body:
            exchange.bodyReceived(body)
        exchange.bodyFinished()
        exchange.dispatch()
        return NOT_DONE_YET
