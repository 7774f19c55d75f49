#!/usr/bin/env python3
# -*- test-case-name: tests.integration.test_bench -*-
"""
The CPU a new backend connection costs the proxy: connections opened one
after another through the proxy's connection pool, on the real epoll
reactor, to a loopback listener in a child process that accepts and
closes them, each closed by the proxy once it is connected.

    python3 bench/connects.py [--connections N] [--repeat R] [--raw]

It prints the best of R runs in microseconds of CPU (user and system) per
connection.  With nginx's default upstream (no C{keepalive}) every proxied
request pays this once.  C{--raw} times the same system calls made
directly from Python with no Twisted at all (socket, connect, epoll,
getsockopt, shutdown, close): the floor.
"""

from __future__ import annotations

import argparse
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

ACCEPTOR = """
import socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
while True:
    connection, _ = listener.accept()
    connection.close()
"""
"""The child: accept each connection and close it at once."""


def startAcceptor() -> "tuple[socket.socket, subprocess.Popen[bytes]]":
    """
    @return: a listening socket on 127.0.0.1 and the child process that
        accepts on it.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    child = subprocess.Popen([sys.executable, "-c", ACCEPTOR, str(listener.fileno())],
                             pass_fds=[listener.fileno()])
    return listener, child


def rawRun(port: int, count: int) -> float:
    """
    Open and close C{count} connections with bare system calls.

    @return: CPU seconds taken.
    """
    poller = select.epoll()
    start = time.process_time()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        poller.register(sock.fileno(), select.EPOLLOUT | select.EPOLLIN)
        poller.poll(5)
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        poller.unregister(sock.fileno())
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    elapsed = time.process_time() - start
    poller.close()
    return elapsed


class _PoolLoop:
    """
    Connections through L{ConnectionPool.connect}, one after another:
    200 untimed, then C{repeat} timed runs of C{count}.

    @ivar runs: the CPU seconds of each timed run.
    """

    def __init__(self, reactor: Any, port: int, count: int, repeat: int) -> None:
        from twisted_rproxy.upstream.cluster import Peer
        from twisted_rproxy.upstream.pool import ConnectionPool

        self.reactor = reactor
        self.peer = Peer("127.0.0.1", port)
        self.pool = ConnectionPool(reactor)
        self.count, self.repeat = count, repeat
        self.runs: List[float] = []
        self.left = 200
        self.started = 0.0
        self.timed = False

    def next(self) -> None:
        """Open the next connection, or end a run."""
        if self.left == 0:
            if self.timed:
                self.runs.append(time.process_time() - self.started)
            if len(self.runs) == self.repeat:
                self.reactor.stop()
                return
            self.left, self.timed, self.started = self.count, True, time.process_time()
        self.left -= 1
        self.pool.connect(self.peer, 5.0).addCallbacks(self._connected, self._failed)

    def _connected(self, result: Any) -> None:
        protocol, _reused = result
        protocol.transport.loseConnection()
        self.reactor.callLater(0, self.next)

    def _failed(self, failure: Any) -> None:
        print(failure.getTraceback(), file=sys.stderr)
        self.reactor.stop()


def poolRuns(port: int, count: int, repeat: int) -> List[float]:
    """
    @return: the CPU seconds each of C{repeat} runs of C{count}
        connections took on the epoll reactor.
    """
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    loop = _PoolLoop(reactor, port, count, repeat)
    reactor.callWhenRunning(loop.next)
    reactor.run()
    if len(loop.runs) != repeat:
        raise SystemExit("a connection failed")
    return loop.runs


def main(argv: Any = None) -> None:
    """
    Time the connections and print microseconds of CPU per connection.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--raw", action="store_true",
                        help="bare system calls, no Twisted (the floor)")
    options = parser.parse_args(argv)
    listener, child = startAcceptor()
    port = listener.getsockname()[1]
    try:
        if options.raw:
            runs = [rawRun(port, options.connections) for _ in range(options.repeat)]
            what = "bare system calls"
        else:
            runs = poolRuns(port, options.connections, options.repeat)
            what = "ConnectionPool.connect"
    finally:
        child.kill()
        child.wait()
        listener.close()
    best = min(runs)
    print(f"{best / options.connections * 1e6:.1f} us CPU per connection ({what}, "
          f"best of {options.repeat} x {options.connections}, "
          f"{sys.implementation.name} {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
