#!/usr/bin/env python3
# -*- test-case-name: tests.integration.test_bench -*-
"""
The proxy's own work per request, without sockets: one keepalive client
and one pooled backend connection on memory transports, running the
benchmark's proxy config, so only twisted_rproxy's Python code is timed.

    python3 bench/inmemory.py [--requests N] [--repeat R] [--size 1k|64k] [--calls]

It prints the best of R runs in microseconds per request.  On a shared
machine wall-clock load tests (bench/run.py) swing by a third from run to
run; this figure moves by a few percent, so it is the one to compare
before and after a change to the hot path.  Under
C{valgrind --tool=callgrind} (with C{--instructions}) it counts
instructions instead, which do not depend on the machine's load at all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import MemoryReactorClock, StringTransport  # noqa: E402

from bench.configs import BODY_SIZES, proxyConfig  # noqa: E402
from twisted_rproxy.service import ProxyFactory, loadConfig  # noqa: E402

PORT, BACKEND, STREAM = 8080, 8081, 8082
"""The addresses in the config; nothing listens on them."""

REQUEST = b"GET /%s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
"""What wrk sends, per request."""


def response(size: str) -> bytes:
    """
    @return: the backend nginx's answer for C{/SIZE}, head and body.
    """
    body = b"x" * BODY_SIZES[size]
    return (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 19:00:00 GMT\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n"
        b"Last-Modified: Tue, 01 Dec 2026 18:00:00 GMT\r\nConnection: keep-alive\r\n"
        b'ETag: "6930e7a0-400"\r\nAccept-Ranges: bytes\r\n\r\n' % len(body)
    ) + body


class Pair:
    """
    One client connection through the proxy to one backend connection.
    """

    def __init__(self, size: str) -> None:
        self.reactor = MemoryReactorClock()
        # nginx's default keepalive_requests (1000) would close both
        # connections partway through a run; wrk simply reconnects.
        text = proxyConfig(PORT, BACKEND, STREAM, 1024).replace(
            "http {", "http {\n    keepalive_requests 1000000000;", 1).replace(
            "keepalive 32;", "keepalive 32;\n        keepalive_requests 1000000000;")
        self.prefix = tempfile.TemporaryDirectory(prefix="bench-inmemory-")  # removed on exit
        config = loadConfig(text=text, reactor=self.reactor, prefix=self.prefix.name)
        factory = ProxyFactory(config.listeners[0], self.reactor)
        address = IPv4Address("TCP", "127.0.0.1", 50000)
        self.channel = factory.buildProtocol(address)
        self.client = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", PORT), peerAddress=address)
        self.channel.makeConnection(self.client)
        self.request = REQUEST % size.encode("ascii")
        self.response = response(size)
        self.backend, self.upstream = self._firstRequest()

    def _firstRequest(self) -> Tuple[Any, StringTransport]:
        """
        Send one request, completing the backend connection it opens, so
        later requests reuse it from the keepalive pool.
        """
        self.channel.dataReceived(self.request)
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[-1]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        upstream = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(upstream)
        protocol.dataReceived(self.response)
        self._check(upstream)
        return protocol, upstream

    def _check(self, upstream: StringTransport) -> None:
        if not upstream.value().startswith(self.request.split(b" HTTP")[0]):
            raise SystemExit(f"backend saw {upstream.value()[:80]!r}")
        if not self.client.value().startswith(b"HTTP/1.1 200 "):
            raise SystemExit(f"client got {self.client.value()[:80]!r}")
        upstream.clear()
        self.client.clear()

    def run(self, count: int) -> float:
        """
        Proxy C{count} requests.

        @return: the CPU seconds it took.
        """
        channel, backend = self.channel, self.backend
        client, upstream = self.client, self.upstream
        request, answer = self.request, self.response
        start = time.process_time()
        for _ in range(count):
            channel.dataReceived(request)
            backend.dataReceived(answer)
            client.clear()
            upstream.clear()
        elapsed = time.process_time() - start
        channel.dataReceived(request)
        backend.dataReceived(answer)
        self._check(upstream)
        if len(self.reactor.tcpClients) != 1:
            raise SystemExit("the backend connection was not reused")
        return elapsed


def callsPerRequest(pair: Pair, count: int) -> float:
    """
    @return: the function calls cProfile counts per request (a run of
        C{count} requests less an empty run, so set-up is not counted).
    """
    import cProfile
    import pstats

    def calls(n: int) -> int:
        profile = cProfile.Profile()
        profile.enable()
        pair.run(n)
        profile.disable()
        return pstats.Stats(profile).total_calls  # type: ignore[attr-defined, no-any-return]

    pair.run(100)
    return (calls(count) - calls(0)) / count


def main(argv: Any = None) -> None:
    """
    Time the requests and print microseconds per request.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", choices=sorted(BODY_SIZES), default="1k")
    parser.add_argument("--instructions", action="store_true",
                        help="one untimed run (for callgrind's instruction count)")
    parser.add_argument("--calls", action="store_true",
                        help="print Python function calls per request (cProfile)")
    options = parser.parse_args(argv)
    pair = Pair(options.size)
    if options.calls:
        print(f"{callsPerRequest(pair, options.requests):.1f} Python calls per request "
              f"({options.size}, cProfile, builtins included)")
        return
    if options.instructions:
        pair.run(options.requests)
        return
    best = min(pair.run(options.requests) for _ in range(options.repeat))
    print(f"{best / options.requests * 1e6:.1f} us per request "
          f"({options.size}, best of {options.repeat} x {options.requests}, "
          f"{sys.implementation.name} {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
