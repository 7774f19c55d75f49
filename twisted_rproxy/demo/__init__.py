# -*- test-case-name: tests.integration.test_cli -*-
"""
The demo a newcomer sees with no arguments: an embedded config and the
small backend it proxies to, served in the same process.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "demo.conf")
DEMO_BACKEND = "tcp:8081:interface=127.0.0.1"


class DemoBackend(Resource):
    """
    Answers every request with what the backend received, so the effect of
    C{proxy_set_header} is visible at once.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        """
        @return: a JSON description of the request as the backend saw it.
        """
        request.setHeader(b"Content-Type", b"application/json")
        seen = {
            "message": "Hello from the twisted_rproxy demo backend",
            "method": request.method.decode("latin-1"),
            "uri": request.uri.decode("latin-1"),
            "headers": {
                k.decode("latin-1"): [v.decode("latin-1") for v in vs]
                for k, vs in request.requestHeaders.getAllRawHeaders()
            },
        }
        return json.dumps(seen, indent=2).encode("utf-8") + b"\n"


def demoBackendService(reactor: Any = None) -> StreamServerEndpointService:
    """
    @return: a service serving L{DemoBackend} on 127.0.0.1:8081.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    site = Site(DemoBackend())
    site.noisy = False
    service = StreamServerEndpointService(serverFromString(reactor, DEMO_BACKEND), site)
    service.setName("demo backend")
    return service
