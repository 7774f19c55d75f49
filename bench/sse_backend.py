# -*- test-case-name: tests.integration.test_bench -*-
"""
The streaming backend of the SSE scenario: a small twisted.web server
whose C{/sse?count=N&interval=MS} sends N server-sent events, one every MS
milliseconds, each carrying the C{time.monotonic_ns()} at which it was
written.  CLOCK_MONOTONIC is system-wide on Linux, so the client compares
its own arrival times with those emit times directly.  nginx cannot
dribble a response out slowly by itself, hence this backend.

It also echoes WebSocket messages on C{/ws} (Autobahn's WebSocketResource)
for the WebSocket scenarios: every proxy gets the same echo backend.

Run: C{python -m bench.sse_backend --port PORT}.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List, Optional

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


def _intArg(request: Request, name: bytes, default: int) -> int:
    """A non-negative integer query argument, or C{default}."""
    args: Dict[bytes, List[bytes]] = request.args or {}
    values = args.get(name)
    if not values:
        return default
    return max(0, int(values[0]))


class EventStreamResource(Resource):
    """
    Streams C{count} events C{interval} ms apart, then finishes the
    response (chunked; twisted.web keeps the connection alive).
    """

    isLeaf = True

    def __init__(self, reactor: Any = None) -> None:
        """
        @param reactor: the clock that spaces the events (an
            L{IReactorTime}); the global reactor by default.
        """
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self._reactor = reactor

    def render_GET(self, request: Request) -> Any:
        """Start the stream; events follow from the reactor's timer."""
        count = _intArg(request, b"count", 100)
        interval = _intArg(request, b"interval", 20) / 1000.0
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        state = {"sent": 0, "call": None, "done": False}

        def stop(_: object = None) -> None:
            state["done"] = True
            call = state["call"]
            if call is not None and call.active():  # type: ignore[attr-defined]
                call.cancel()  # type: ignore[attr-defined]

        def emit() -> None:
            state["call"] = None
            if state["done"]:
                return
            request.write(b"data: %d\n\n" % time.monotonic_ns())
            state["sent"] += 1  # type: ignore[operator]
            if state["sent"] >= count:  # type: ignore[operator]
                state["done"] = True
                request.finish()
                return
            state["call"] = self._reactor.callLater(interval, emit)

        request.notifyFinish().addBoth(stop)
        if count == 0:
            return b""
        state["call"] = self._reactor.callLater(interval, emit)
        return NOT_DONE_YET


def webSocketEcho() -> Resource:
    """
    A WebSocket echo at C{/ws}: each message back as it came.
    """
    from autobahn.twisted.resource import WebSocketResource
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class Echo(WebSocketServerProtocol):  # type: ignore[misc]
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory()
    factory.protocol = Echo
    return WebSocketResource(factory)  # type: ignore[no-any-return]


def main(argv: Optional[List[str]] = None) -> None:
    """Listen on 127.0.0.1:PORT and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args(argv)

    from twisted.internet import reactor as globalReactor

    reactor: Any = globalReactor
    root = Resource()
    root.putChild(b"sse", EventStreamResource(reactor))
    root.putChild(b"ws", webSocketEcho())
    site = Site(root)
    site.displayTracebacks = False
    site.log = lambda request: None  # type: ignore[method-assign]
    reactor.listenTCP(options.port, site, backlog=511, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
