#!/usr/bin/env python3
"""
What each idle keepalive client connection costs the proxy in memory,
measured without depending on the machine's load.

    python3 bench/idlemem.py [--connections N] [--top K] [--no-trace]

The proxy runs in this process on the real reactor (so its connections are
the real C{FlushingServer} transports); a child process opens N loopback
connections, makes one keepalive GET on each and leaves them idle.  Then
it prints the Python bytes the proxy holds per connection (tracemalloc,
after a collection: the same figure on every run), the biggest holders by
source line, and the RSS growth per connection.  C{--no-trace} leaves
tracemalloc off, so the RSS figure is not inflated by its bookkeeping.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

CONFIG = """
events {{ }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location / {{ {action} }}
    }}
}}
"""
"""With C{return 200} the proxy answers itself; with C{--proxy} each GET
goes through a keepalive upstream to the tests' backend, as bench/run.py's
idle scenarios do."""

UPSTREAM = "upstream backend {{ server {address}; keepalive 32; }}"

PROXY = 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'

CLIENT = """
import sys
sys.path.insert(0, {root!r})
from bench.load import IdleConnections
idle = IdleConnections({port}, {count}, path="/")
idle.open()
print("opened", idle.opened, idle.failed, flush=True)
sys.stdin.readline()
idle.close()
"""


def rssKiB() -> int:
    """
    @return: this process's VmRSS in KiB.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raiseFileLimit(count: int) -> None:
    """
    Allow C{count} connections plus some descriptors to spare.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is below {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def openIdle(port: int, count: int) -> "subprocess.Popen[str]":
    """
    Start the client process; it prints C{opened N FAILED} when done.
    """
    code = CLIENT.format(root=str(REPO_ROOT), port=port, count=count)
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: raiseFileLimit(count))


try:
    import tracemalloc
except ImportError:  # PyPy has none: RSS only there
    tracemalloc = None  # type: ignore[assignment]


def measure(count: int, top: int, trace: bool, backend: Any = None) -> Dict[str, Any]:
    """
    Serve, open C{count} idle connections, and measure.
    """
    trace = trace and tracemalloc is not None
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor, threads

    from twisted_rproxy.service import ProxyService, loadConfig

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from integration.harness import freePort

    raiseFileLimit(count)
    port = freePort()
    text = CONFIG.format(port=port, action=PROXY if backend else 'return 200 "ok";')
    if backend is not None:
        text = text.replace("http {", "http {\n    " + UPSTREAM.format(address=backend.address), 1)
    prefix = tempfile.TemporaryDirectory(prefix="bench-idle-")  # removed on exit
    config = loadConfig(text=text, reactor=reactor, prefix=prefix.name)
    service = ProxyService(config, reactor)
    service.startService()
    factory = next(f for f in service.factories.values()
                   if f.listener.address.port == port)
    result: Dict[str, Any] = {}

    def run() -> None:
        # One connection first, so lazily made caches are in the baseline.
        warm = openIdle(port, 1)
        assert warm.stdout is not None
        warm.stdout.readline()
        warm.communicate("\n")
        reactor.callFromThread(lambda: None)
        before = threads.blockingCallFromThread(reactor, snapshot)
        client = openIdle(port, count)
        assert client.stdout is not None
        line = client.stdout.readline().split()
        opened = int(line[1])
        # Let surplus upstream connections (beyond keepalive) finish
        # closing, so only what each idle client connection keeps counts.
        time.sleep(2)
        after = threads.blockingCallFromThread(reactor, snapshot)
        result.update(opened=opened, failed=int(line[2]), before=before, after=after)
        client.communicate("\n")
        reactor.callFromThread(reactor.stop)

    def snapshot() -> Dict[str, Any]:
        gc.collect()
        taken: Dict[str, Any] = {"rss": rssKiB(), "open": len(factory.openChannels())}
        if trace:
            taken["traced"] = tracemalloc.get_traced_memory()[0]
            taken["snapshot"] = tracemalloc.take_snapshot()
        return taken

    if trace:
        tracemalloc.start(1)
    reactor.callWhenRunning(lambda: reactor.callInThread(run))
    reactor.run()
    result["top"] = top
    return result


def main(argv: Any = None) -> None:
    """
    Measure and print per-connection figures.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--no-trace", action="store_true", help="RSS only")
    parser.add_argument("--proxy", action="store_true",
                        help="proxy each GET to a keepalive upstream (the tests' backend)")
    options = parser.parse_args(argv)
    backend = None
    if options.proxy:
        sys.path.insert(0, str(REPO_ROOT / "tests"))
        sys.path.insert(0, str(REPO_ROOT))
        from tests.integration.harness import Backend

        backend = Backend().start()
    try:
        r = measure(options.connections, options.top, not options.no_trace, backend)
    finally:
        if backend is not None:
            backend.cleanup()
    before, after, n = r["before"], r["after"], r["opened"]
    print(f"{n} idle connections held ({r['failed']} failed), "
          f"{after['open'] - before['open']} channels open, "
          f"{sys.implementation.name} {sys.version.split()[0]}")
    if n and "traced" in after:
        print(f"python bytes per connection (tracemalloc): "
              f"{(after['traced'] - before['traced']) / n:.0f}")
        stats = after["snapshot"].compare_to(before["snapshot"], "lineno")
        for stat in stats[:options.top]:
            frame = stat.traceback[0]
            name = os.path.relpath(frame.filename, REPO_ROOT) if str(REPO_ROOT) in frame.filename \
                else "/".join(Path(frame.filename).parts[-2:])
            print(f"  {stat.size_diff / n:7.1f} B/conn {stat.count_diff / n:5.2f} blocks/conn"
                  f"  {name}:{frame.lineno}")
    if n:
        print(f"RSS growth per connection: {(after['rss'] - before['rss']) / n:.2f} KiB"
              + (" (tracemalloc on: inflated; use --no-trace)" if "traced" in after else ""))


if __name__ == "__main__":
    main()
