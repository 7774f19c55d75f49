"""
Embedding twisted_rproxy in a Twisted program: the service, the factory on
an arbitrary endpoint, reload, and the twisted.web resource, each driven
over real loopback sockets with a real HTTP client (treq).
"""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_rproxy.service import ProxyFactory, loadConfig, makeProxyService
from twisted_rproxy.web import LocationResource

from .harness import freePort


class _Echo(Resource):
    """
    A backend that answers with the path and one request header it saw.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        """
        @return: C{PATH|X-From}.
        """
        seen = request.getHeader(b"x-from") or b"-"
        return request.uri + b"|" + seen


class _Static(Resource):
    """
    A plain page belonging to the embedding site itself.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        """
        @return: a fixed body.
        """
        return b"static page"


class EmbeddingTests(TestCase):
    """
    The three ways to embed the proxy, each proxying to an in-process
    twisted.web backend.
    """

    timeout = 30

    def setUp(self) -> defer.Deferred:
        """
        Start the backend on an ephemeral loopback port.
        """
        self.backend = reactor.listenTCP(0, Site(_Echo()), interface="127.0.0.1")
        self.addCleanup(self.backend.stopListening)
        self.backendAddress = f"127.0.0.1:{self.backend.getHost().port}"
        return defer.succeed(None)

    @defer.inlineCallbacks
    def _get(self, url: str, **kw: Any) -> Any:
        response = yield treq.get(url, persistent=False, **kw)
        body = yield response.content()
        return response, body

    @defer.inlineCallbacks
    def test_serviceFromConfigText(self) -> Any:
        """
        makeProxyService builds an IService from config text; started, it
        listens where the config says and proxies.
        """
        port = freePort()
        service = makeProxyService(text=f"""
            http {{ access_log off;
              server {{ listen 127.0.0.1:{port};
                location /app/ {{ proxy_pass http://{self.backendAddress}/;
                                  proxy_set_header X-From service; }} }} }}
        """, reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        response, body = yield self._get(f"http://127.0.0.1:{port}/app/hello?x=1")
        self.assertEqual((response.code, body), (200, b"/hello?x=1|service"))

    @defer.inlineCallbacks
    def test_reloadSwapsConfig(self) -> Any:
        """
        ProxyService.reload keeps the listening socket and serves the new
        config to new connections.
        """
        port = freePort()
        template = """http {{ access_log off; server {{ listen 127.0.0.1:{port};
            location / {{ return 200 "{text}"; }} }} }}"""
        service = makeProxyService(text=template.format(port=port, text="v1"), reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        _r, body = yield self._get(f"http://127.0.0.1:{port}/")
        self.assertEqual(body, b"v1")
        service.reload(loadConfig(text=template.format(port=port, text="v2"), reactor=reactor))
        _r, body = yield self._get(f"http://127.0.0.1:{port}/")
        self.assertEqual(body, b"v2")

    @defer.inlineCallbacks
    def test_factoryOnAnyEndpoint(self) -> Any:
        """
        ProxyFactory serves a compiled listener on an endpoint the
        embedding program chose, not the one in the config.
        """
        config = loadConfig(text=f"""
            http {{ access_log off; server {{ listen 127.0.0.1:1;
              location / {{ proxy_pass http://{self.backendAddress};
                            proxy_set_header X-From factory; }} }} }}
        """, reactor=reactor)
        factory = ProxyFactory(config.listeners[0], reactor)
        listening = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(listening.stopListening)
        response, body = yield self._get(f"http://127.0.0.1:{listening.getHost().port}/f")
        self.assertEqual((response.code, body), (200, b"/f|factory"))

    @defer.inlineCallbacks
    def test_locationResourceInASite(self) -> Any:
        """
        LocationResource proxies per a location block inside an existing
        Site; the prefix is replaced by proxy_pass's URI as in nginx, and
        the rest of the site is untouched.
        """
        root = Resource()
        root.putChild(b"static", _Static())
        root.putChild(b"api", LocationResource(
            f"proxy_pass http://{self.backendAddress}/v2/; proxy_set_header X-From web;"
            ' add_header X-Via rproxy;',
            prefix="/api/",
        ))
        site = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(site.stopListening)
        base = f"http://127.0.0.1:{site.getHost().port}"
        response, body = yield self._get(base + "/api/users?id=3")
        self.assertEqual((response.code, body), (200, b"/v2/users?id=3|web"))
        self.assertEqual(response.headers.getRawHeaders(b"x-via"), [b"rproxy"])
        _r, body = yield self._get(base + "/static")
        self.assertEqual(body, b"static page")

    @defer.inlineCallbacks
    def test_locationResourceBackendDown(self) -> Any:
        """
        A dead backend behind the resource is a 502 page, as in the proxy.
        """
        dead = freePort()
        root = Resource()
        root.putChild(b"api", LocationResource(f"proxy_pass http://127.0.0.1:{dead};", prefix="/api/"))
        site = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(site.stopListening)
        response, body = yield self._get(f"http://127.0.0.1:{site.getHost().port}/api/x")
        self.assertEqual(response.code, 502)
        self.assertIn(b"502 Bad Gateway", body)
