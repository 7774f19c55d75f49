"""
A real HTTP backend for integration tests, built on plain twisted.web (never
on twisted_rproxy) so that what it reports about a proxied request is an
independent witness of what the proxy really sent upstream.

Run as a subprocess::

    python -m tests.integration.backend --port 0 --name ID [--unix PATH] [--host IP]

It prints C{LISTENING <port>} on stdout once bound to 127.0.0.1 (or the
C{--host} given) and serves
until killed.  Every path not listed below echoes the request as JSON, with
the request line and header lines exactly as they arrived on the wire (raw
order and case), because twisted.web itself canonicalises header names.
The echo also carries an C{X-Echo-Method} header, so a HEAD (no body) still
shows which method arrived; its C{connection} id is fixed-width so two runs
of one request give bodies of equal length.

Routes:
  - C{/status/NNN}: that status with a small body.
  - C{/sse?n=5&interval=0.1}: C{text/event-stream}, C{data: i} events
    C{interval} seconds apart, no Content-Length (chunked on HTTP/1.1).
  - C{/big?size=N}: N bytes in 64 KiB pieces from a push producer honouring
    backpressure, with Content-Length.
  - C{/chunked?n=3}: a body written in C{n} pieces without Content-Length.
  - C{/stall}: never answers.
  - C{/close}: closes the TCP connection without any response.
  - C{/garbage}: writes C{NOT HTTP AT ALL\\r\\n\\r\\n} raw, then closes.
  - C{/header?name=X&value=Y}: a response carrying that header (repeatable).
  - C{/redirect?to=URL}: 302 with that Location.
  - C{/keepalive-close}: a response with C{Connection: close}.
  - C{/sse-gated?key=K&n=3}: like C{/sse}, but after event 0 each next
    event waits for a C{/trigger?key=K} request, so a test knows the stream
    cannot have ended when it sees an event.
  - C{/trigger?key=K}: release the next event of the gated stream C{K}
    (404 if there is none), or the answer of the held request C{K}.
  - C{/hold?key=K}: sends nothing at all (not even a status line) until a
    C{/trigger?key=K}, then answers 200 C{released K}: a stalled backend
    that a test can release when it chooses.
  - C{/holding?key=K}: 200 while a C{/hold?key=K} request is waiting, else
    404, so a test knows the held request really reached the backend.
  - C{/pattern?size=N}: like C{/big}, but byte I of the body is C{I % 251},
    so a lost, repeated or reordered piece shows.
  - C{/truncate?size=N&send=M}: promises C{Content-Length: N}, sends M
    bytes, then closes (a backend dying mid-body).
  - C{/reset?only=NAME}: resets the TCP connection (RST) after reading the
    whole request, on every backend or only on the one called NAME (the
    others echo).
  - C{/close-if-reused}: on a connection's first request it echoes; on a
    later one it closes without answering, as a backend whose keepalive
    timer fired just as the proxy reused the connection.
  - C{/upgrade}: with an C{Upgrade} header, C{101 Switching Protocols}
    (saying in C{X-Echo-Connection} what Connection header arrived) then an
    echo of every byte; without one, the plain echo.
  - C{/health}: a health-check target answering C{200 ok} (JSON), or the
    status last set with C{/set-health?status=NNN} (with body C{fail}).
  - C{/set-health?status=NNN}: what C{/health} answers from now on.
  - C{/counts}: JSON of how many requests this backend received per path
    (C{paths}) and how many C{/health} answers it gave per status
    (C{health}), so a test counts what really reached each backend.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import struct
import sys
from typing import Any, Callable, Dict, List, Optional

from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.web import http, resource, server
from zope.interface import implementer

reactor: Any = _reactor

PIECE_SIZE = 64 * 1024
"""How much /big writes per piece, so backpressure has something to bite on."""

_connectionIds = itertools.count(1)
"""Source of per-TCP-connection ids, so tests can tell connection reuse apart."""

PATTERN_PERIOD = 251
"""/pattern repeats bytes 0..250: a prime period never lines up with pieces."""

_PATTERN = bytes(range(PATTERN_PERIOD)) * (PIECE_SIZE // PATTERN_PERIOD + 2)
"""Enough of the pattern to cut any piece from."""

_gates: Dict[str, List[Callable[[], None]]] = {}
"""Gated SSE streams by key: callbacks that send their next event."""

_health: Dict[str, int] = {"status": 200}
"""What /health answers; /set-health changes it."""

_received: Dict[str, int] = {}
"""Requests received per path, for /counts."""

_healthAnswers: Dict[str, int] = {}
"""/health answers given per status, for /counts."""


class RecordingRequest(server.Request):
    """
    A twisted.web request that also remembers its raw request line and raw
    header lines, because tests must see exactly what the proxy put on the
    wire (twisted.web's own view is already normalised).
    """

    rawRequestLine: bytes = b""
    rawHeaderLines: List[bytes]
    connectionId: int = 0
    requestNumber: int = 0

    def __init__(self, channel: http.HTTPChannel, *args: Any, **kwargs: Any) -> None:
        """Start with no captured header lines; number this request."""
        super().__init__(channel, *args, **kwargs)
        self.rawHeaderLines = []
        if isinstance(channel, RecordingChannel):
            channel.requestCount += 1
            self.connectionId = channel.connectionId
            self.requestNumber = channel.requestCount


class RecordingChannel(http.HTTPChannel):
    """
    An HTTPChannel that hands the raw bytes of each request line and header
    line to the request being parsed, and numbers connections and requests,
    so the echo route can report them verbatim.
    """

    connectionId: int = 0
    requestCount: int = 0

    def connectionMade(self) -> None:
        """Give this TCP connection its own id before any request arrives."""
        self.connectionId = next(_connectionIds)
        super().connectionMade()

    def lineReceived(self, line: bytes) -> None:
        """Capture the request line of each new request as received."""
        # HTTPChannel keeps "expecting a request line" in a name-mangled flag;
        # a request-line call only ever appends the new request (processing
        # starts later, on the blank line), so the new one is requests[-1].
        expectingRequestLine = getattr(self, "_HTTPChannel__first_line", 0)
        before = len(self.requests)
        super().lineReceived(line)
        if expectingRequestLine and len(self.requests) > before:
            request = self.requests[-1]
            if isinstance(request, RecordingRequest):
                request.rawRequestLine = line

    def headerReceived(self, line: bytes) -> bool:
        """Capture each header line (continuations already folded) raw."""
        if self.requests and isinstance(self.requests[-1], RecordingRequest):
            self.requests[-1].rawHeaderLines.append(line)
        result: bool = super().headerReceived(line)
        return result


class BackendSite(server.Site):
    """
    A Site whose connections are RecordingChannels; it skips twisted.web's
    HTTP/2-negotiating wrapper because the proxy only speaks HTTP/1.x upstream.
    """

    def __init__(self, root: resource.Resource) -> None:
        """Serve C{root} with recording requests."""
        super().__init__(root, requestFactory=RecordingRequest)

    def protocol(self) -> RecordingChannel:  # type: ignore[override]
        """Build the raw-recording channel for a new connection."""
        return RecordingChannel()


def _arg(request: server.Request, name: str, default: str) -> str:
    """Read one query argument as text, so route parameters are easy to use."""
    args: Dict[bytes, List[bytes]] = request.args or {}
    values = args.get(name.encode("ascii"))
    if not values:
        return default
    return values[0].decode("latin-1")


def _splitHeaderLine(line: bytes) -> List[str]:
    """Split a raw header line into [name, value] keeping the name's case."""
    name, _, value = line.partition(b":")
    return [name.decode("latin-1"), value.strip(b" \t").decode("latin-1")]


@implementer(IPushProducer)
class BigBodyProducer:
    """
    Writes C{size} bytes in 64 KiB pieces only while the transport wants more,
    so a proxy that does not read gets real TCP backpressure.
    """

    def __init__(self, request: server.Request, size: int) -> None:
        """Prepare to stream C{size} bytes to C{request}."""
        self.request = request
        self.remaining = size
        self.paused = False
        self.stopped = False
        self.scheduled = False

    def start(self) -> None:
        """Register as a streaming producer and begin writing."""
        self.request.registerProducer(self, True)
        self._schedule()

    def _schedule(self) -> None:
        """Write more on the next reactor turn, without re-entering."""
        if not self.scheduled and not self.stopped:
            self.scheduled = True
            reactor.callLater(0, self._writeSome)

    def _writeSome(self) -> None:
        """Write pieces until paused or done; a few per turn keeps it fair."""
        self.scheduled = False
        for _ in range(16):
            if self.paused or self.stopped:
                return
            if self.remaining <= 0:
                self.stopped = True
                self.request.unregisterProducer()
                self.request.finish()
                return
            piece = min(PIECE_SIZE, self.remaining)
            self.remaining -= piece
            self.request.write(b"x" * piece)
        self._schedule()

    def pauseProducing(self) -> None:
        """The transport is full: stop writing until resumed."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The transport drained: write more."""
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:
        """The connection went away: never write again."""
        self.stopped = True


class PatternBodyProducer(BigBodyProducer):
    """
    L{BigBodyProducer} writing the C{I % 251} pattern instead of C{x}, so a
    client can check every byte of a long body, not just its length.
    """

    def __init__(self, request: server.Request, size: int) -> None:
        """Prepare to stream C{size} pattern bytes to C{request}."""
        super().__init__(request, size)
        self.offset = 0

    def _writeSome(self) -> None:
        """Write pattern pieces until paused or done."""
        self.scheduled = False
        for _ in range(16):
            if self.paused or self.stopped:
                return
            if self.remaining <= 0:
                self.stopped = True
                self.request.unregisterProducer()
                self.request.finish()
                return
            piece = min(PIECE_SIZE, self.remaining)
            start = self.offset % PATTERN_PERIOD
            self.remaining -= piece
            self.offset += piece
            self.request.write(_PATTERN[start:start + piece])
        self._schedule()


class EchoProtocol(Protocol):
    """
    What an upgraded connection speaks: every byte straight back.
    """

    def dataReceived(self, data: bytes) -> None:
        """Echo C{data}."""
        self.transport.write(data)


class BackendResource(resource.Resource):
    """
    The single leaf resource: dispatches on the path so every route sees the
    raw request, whatever the method.
    """

    isLeaf = True

    def __init__(self, name: str) -> None:
        """Remember the backend name that the echo route reports."""
        super().__init__()
        self.name = name

    def render(self, request: server.Request) -> Any:
        """Pick the route for this request's path."""
        path = request.path.decode("latin-1")
        _received[path] = _received.get(path, 0) + 1
        routes: Dict[str, Callable[[server.Request], Any]] = {
            "/sse": self.renderSse,
            "/big": self.renderBig,
            "/chunked": self.renderChunked,
            "/stall": self.renderStall,
            "/close": self.renderClose,
            "/garbage": self.renderGarbage,
            "/header": self.renderHeader,
            "/redirect": self.renderRedirect,
            "/keepalive-close": self.renderKeepaliveClose,
            "/sse-gated": self.renderSseGated,
            "/trigger": self.renderTrigger,
            "/hold": self.renderHold,
            "/holding": self.renderHolding,
            "/pattern": self.renderPattern,
            "/truncate": self.renderTruncate,
            "/reset": self.renderReset,
            "/close-if-reused": self.renderCloseIfReused,
            "/upgrade": self.renderUpgrade,
            "/health": self.renderHealth,
            "/set-health": self.renderSetHealth,
            "/counts": self.renderCounts,
        }
        if path.startswith("/status/") and path[len("/status/") :].isdigit():
            return self.renderStatus(request, int(path[len("/status/") :]))
        route = routes.get(path)
        if route is not None:
            return route(request)
        return self.renderEcho(request)

    def echoDocument(self, request: server.Request) -> Dict[str, Any]:
        """Describe the request exactly as it arrived, for tests to compare."""
        assert isinstance(request, RecordingRequest)
        parts = request.rawRequestLine.split(b" ")
        method = parts[0] if parts else b""
        uri = parts[1] if len(parts) > 1 else b""
        version = parts[2] if len(parts) > 2 else b""
        body = request.content.read() if request.content is not None else b""
        return {
            "name": self.name,
            "method": method.decode("latin-1"),
            "uri": uri.decode("latin-1"),
            "version": version.decode("latin-1"),
            "headers": [_splitHeaderLine(line) for line in request.rawHeaderLines],
            "body": body.decode("latin-1"),
            "body_len": len(body),
            # A fixed-width string, so two runs of the same case produce
            # bodies of equal length even when the counter gains a digit.
            "connection": "conn-%06d" % (request.connectionId,),
            "requests_on_connection": request.requestNumber,
        }

    def renderEcho(self, request: server.Request) -> bytes:
        """Answer 200 with the JSON description of the request."""
        document = self.echoDocument(request)
        request.setHeader(b"Content-Type", b"application/json")
        # A HEAD response has no body, so say in a header what was received.
        request.setHeader(b"X-Echo-Method", document["method"].encode("latin-1"))
        return json.dumps(document).encode("utf-8") + b"\n"

    def renderStatus(self, request: server.Request, code: int) -> bytes:
        """Answer with an arbitrary status, so proxies' pass-through is testable."""
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"text/plain")
        if code in (204, 304) or code < 200:
            return b""
        return b"status %d\n" % (code,)

    def renderSse(self, request: server.Request) -> Any:
        """Stream server-sent events with pauses, to test unbuffered relaying."""
        count = int(_arg(request, "n", "5"))
        interval = float(_arg(request, "interval", "0.1"))
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-cache")
        state = {"gone": False}
        request.notifyFinish().addErrback(lambda _f: state.update(gone=True))

        def emit(i: int) -> None:
            """Write event C{i}, then schedule the next or finish."""
            if state["gone"]:
                return
            if i >= count:
                request.finish()
                return
            request.write(b"data: %d\n\n" % (i,))
            reactor.callLater(interval, emit, i + 1)

        # Send headers at once so a client sees the stream open immediately.
        request.write(b"")
        reactor.callLater(0, emit, 0)
        return server.NOT_DONE_YET

    def renderBig(self, request: server.Request) -> Any:
        """Stream a large body with backpressure and a Content-Length."""
        size = int(_arg(request, "size", str(1024 * 1024)))
        request.setHeader(b"Content-Type", b"application/octet-stream")
        request.setHeader(b"Content-Length", b"%d" % (size,))
        if request.method == b"HEAD":
            return b""
        producer = BigBodyProducer(request, size)
        request.notifyFinish().addErrback(lambda _f: producer.stopProducing())
        producer.start()
        return server.NOT_DONE_YET

    def renderChunked(self, request: server.Request) -> Any:
        """Write the body in pieces without Content-Length (chunked on 1.1)."""
        count = int(_arg(request, "n", "3"))
        request.setHeader(b"Content-Type", b"text/plain")
        state = {"gone": False}
        request.notifyFinish().addErrback(lambda _f: state.update(gone=True))

        def piece(i: int) -> None:
            """Write piece C{i}, then schedule the next or finish."""
            if state["gone"]:
                return
            if i >= count:
                request.finish()
                return
            request.write(b"chunk %d\n" % (i,))
            reactor.callLater(0.01, piece, i + 1)

        request.write(b"")
        reactor.callLater(0, piece, 0)
        return server.NOT_DONE_YET

    def renderStall(self, request: server.Request) -> Any:
        """Never answer, so read timeouts can be tested."""
        request.notifyFinish().addErrback(lambda _f: None)
        return server.NOT_DONE_YET

    def renderClose(self, request: server.Request) -> Any:
        """Drop the connection with no response at all (an upstream crash)."""
        request.notifyFinish().addErrback(lambda _f: None)
        transport: Any = request.channel.transport
        transport.loseConnection()
        return server.NOT_DONE_YET

    def renderGarbage(self, request: server.Request) -> Any:
        """Answer with bytes that are not HTTP, then close."""
        request.notifyFinish().addErrback(lambda _f: None)
        transport: Any = request.channel.transport
        transport.write(b"NOT HTTP AT ALL\r\n\r\n")
        transport.loseConnection()
        return server.NOT_DONE_YET

    def renderHeader(self, request: server.Request) -> bytes:
        """Answer with caller-chosen response headers (name/value pairs)."""
        args: Dict[bytes, List[bytes]] = request.args or {}
        names = args.get(b"name", [])
        values = args.get(b"value", [])
        for name, value in zip(names, values):
            request.responseHeaders.addRawHeader(name, value)
        request.setHeader(b"Content-Type", b"text/plain")
        return b"header\n"

    def renderRedirect(self, request: server.Request) -> bytes:
        """Answer 302 to a caller-chosen Location, to test proxy_redirect."""
        request.setResponseCode(302)
        request.setHeader(b"Location", _arg(request, "to", "/").encode("latin-1"))
        request.setHeader(b"Content-Type", b"text/plain")
        return b"redirect\n"

    def renderKeepaliveClose(self, request: server.Request) -> bytes:
        """Answer with Connection: close and really close afterwards."""
        request.setHeader(b"Connection", b"close")
        request.setHeader(b"Content-Type", b"text/plain")
        request.channel.persistent = False
        return b"closing\n"


    def renderSseGated(self, request: server.Request) -> Any:
        """
        An event stream that sends event 0 at once and each later event only
        when triggered, so "the first event arrived before the stream ended"
        is a fact, not a race.
        """
        key = _arg(request, "key", "default")
        count = int(_arg(request, "n", "3"))
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-cache")
        state = {"next": 0, "gone": False}

        def gone(_f: Any) -> None:
            """The client left: forget the gate."""
            state["gone"] = True
            _gates.pop(key, None)

        request.notifyFinish().addErrback(gone)

        def emit() -> None:
            """Send the next event, and finish after the last."""
            if state["gone"]:
                return
            request.write(b"data: %d\n\n" % (state["next"],))
            state["next"] += 1
            if state["next"] >= count:
                _gates.pop(key, None)
                request.finish()

        _gates[key] = [emit]
        emit()
        return server.NOT_DONE_YET

    def renderTrigger(self, request: server.Request) -> bytes:
        """Release the next event of a gated stream."""
        key = _arg(request, "key", "default")
        request.setHeader(b"Content-Type", b"text/plain")
        callbacks = _gates.get(key)
        if not callbacks:
            request.setResponseCode(404)
            return b"no such stream\n"
        callbacks[0]()
        return b"triggered\n"

    def renderHold(self, request: server.Request) -> Any:
        """
        Answer nothing until C{/trigger?key=K}, then 200 C{released K}: a
        stall that ends when the test says so, never on a clock.
        """
        key = _arg(request, "key", "default")

        def gone(_f: Any) -> None:
            """The proxy gave up on the request: forget the gate."""
            if _gates.get(key) == [release]:
                _gates.pop(key, None)

        def release() -> None:
            """Answer the held request now."""
            _gates.pop(key, None)
            request.setHeader(b"Content-Type", b"text/plain")
            body = b"released %s\n" % (key.encode("latin-1"),)
            request.setHeader(b"Content-Length", b"%d" % (len(body),))
            request.write(body)
            request.finish()

        request.notifyFinish().addErrback(gone)
        _gates[key] = [release]
        return server.NOT_DONE_YET

    def renderHolding(self, request: server.Request) -> bytes:
        """Say whether the held request C{key} is waiting (200) or not (404)."""
        key = _arg(request, "key", "default")
        request.setHeader(b"Content-Type", b"text/plain")
        if key not in _gates:
            request.setResponseCode(404)
            return b"not holding\n"
        return b"holding\n"

    def renderPattern(self, request: server.Request) -> Any:
        """Stream a checkable large body with backpressure."""
        size = int(_arg(request, "size", str(1024 * 1024)))
        request.setHeader(b"Content-Type", b"application/octet-stream")
        request.setHeader(b"Content-Length", b"%d" % (size,))
        if request.method == b"HEAD":
            return b""
        producer = PatternBodyProducer(request, size)
        request.notifyFinish().addErrback(lambda _f: producer.stopProducing())
        producer.start()
        return server.NOT_DONE_YET

    def renderTruncate(self, request: server.Request) -> Any:
        """Promise a body, send part of it, and close: a crash mid-body."""
        size = int(_arg(request, "size", "1000"))
        send = int(_arg(request, "send", "100"))
        request.notifyFinish().addErrback(lambda _f: None)
        transport: Any = request.channel.transport
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n" % (size,) + b"y" * send
        )
        transport.loseConnection()
        return server.NOT_DONE_YET

    def renderReset(self, request: server.Request) -> Any:
        """Reset the connection once the whole request has arrived."""
        only = _arg(request, "only", "")
        if only and only != self.name:
            return self.renderEcho(request)
        request.notifyFinish().addErrback(lambda _f: None)
        transport: Any = request.channel.transport
        # Linger 0: close() sends RST instead of FIN.
        transport.getHandle().setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        transport.abortConnection()
        return server.NOT_DONE_YET

    def renderCloseIfReused(self, request: server.Request) -> Any:
        """Echo on a fresh connection; on a reused one close unanswered."""
        assert isinstance(request, RecordingRequest)
        if request.requestNumber <= 1:
            return self.renderEcho(request)
        return self.renderClose(request)

    def renderUpgrade(self, request: server.Request) -> Any:
        """Switch protocols to an echo when asked to, else echo as JSON."""
        upgrade = request.getHeader(b"upgrade")
        if not upgrade:
            return self.renderEcho(request)
        request.notifyFinish().addErrback(lambda _f: None)
        channel: Any = request.channel
        transport: Any = channel.transport
        channel.setTimeout(None)
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\n"
            b"Connection: Upgrade\r\nX-Echo-Connection: %s\r\n\r\n"
            % (upgrade, request.getHeader(b"connection") or b"")
        )
        # From here on the socket belongs to the echo, not to twisted.web
        # (the way autobahn's WebSocketResource takes a connection over).
        echo = EchoProtocol()
        transport.protocol = echo
        echo.makeConnection(transport)
        transport.resumeProducing()
        return server.NOT_DONE_YET


    def renderHealth(self, request: server.Request) -> bytes:
        """Answer a health probe: 200 C{ok}, or the status set to fail."""
        status = _health["status"]
        _healthAnswers[str(status)] = _healthAnswers.get(str(status), 0) + 1
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return b'{"status": "ok"}\n' if status == 200 else b'{"status": "fail"}\n'

    def renderSetHealth(self, request: server.Request) -> bytes:
        """Choose what /health answers from now on."""
        _health["status"] = int(_arg(request, "status", "200"))
        request.setHeader(b"Content-Type", b"text/plain")
        return b"health %d\n" % (_health["status"],)

    def renderCounts(self, request: server.Request) -> bytes:
        """Report the requests received per path and /health answers."""
        request.setHeader(b"Content-Type", b"application/json")
        document = {"paths": _received, "health": _healthAnswers}
        return json.dumps(document).encode("utf-8") + b"\n"


def parseArguments(argv: Optional[List[str]]) -> argparse.Namespace:
    """Read the command line, matching the harness's invocation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="backend")
    parser.add_argument("--unix", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Bind, announce the port on stdout, and serve until killed."""
    options = parseArguments(argv)
    # Only warnings and errors go to stderr: access logs would just be noise.
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    fileObserver: Any = textFileLogObserver(sys.stderr)
    observer: Any = FilteringLogObserver(fileObserver, [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    site = BackendSite(BackendResource(options.name))
    port = reactor.listenTCP(options.port, site, interface=options.host)
    if options.unix:
        reactor.listenUNIX(options.unix, site)
    sys.stdout.write("LISTENING %d\n" % (port.getHost().port,))
    sys.stdout.flush()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
