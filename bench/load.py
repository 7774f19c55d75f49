# -*- test-case-name: tests.integration.test_bench -*-
"""
The load of each scenario: wrk (driven with a generated Lua script whose
C{done} hook prints the figures as JSON) for throughput and latency, and
small asyncio clients for what wrk cannot do: priming a proxy, holding
thousands of idle keepalive connections, and timing server-sent events.
All of it runs in the harness process or its children, on the load CPU.
"""

from __future__ import annotations

import asyncio
import json
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

_DONE_HOOK = r"""
done = function(summary, latency, requests)
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def wrkScript(postBytes: int = 0) -> str:
    """
    The Lua script for one wrk run: a POST of C{postBytes} bytes when
    non-zero (else wrk's default GET), plus the JSON-printing C{done} hook.

    @param postBytes: the request body size, 0 for GET.
    """
    request = ""
    if postBytes:
        request = (
            'wrk.method = "POST"\n'
            f'wrk.body = string.rep("x", {postBytes})\n'
            'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        )
    return request + _DONE_HOOK


def findWrk() -> Optional[str]:
    """The wrk binary, or None."""
    return shutil.which("wrk")


def findH2load() -> Optional[str]:
    """The h2load binary (Debian's nghttp2-client), or None."""
    return shutil.which("h2load")


_H2LOAD_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_H2LOAD_REQUEST_TIME = re.compile(
    r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)"
)
_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parseH2load(text: str) -> Dict[str, Any]:
    """
    The figures of one h2load run's output.

    @return: C{rps}, C{requests} (succeeded), C{mean_ms} and C{max_ms} of
        the time for a request (h2load gives no percentiles), C{errors}
        and C{error_total} (failed, errored and timed-out requests).
    @raise RuntimeError: the output has no summary.
    """
    finished = _H2LOAD_FINISHED.search(text)
    requests = _H2LOAD_REQUESTS.search(text)
    timing = _H2LOAD_REQUEST_TIME.search(text)
    if finished is None or requests is None or timing is None:
        raise RuntimeError(f"h2load printed no summary:\n{text}")
    failed, errored, timedOut = (int(requests.group(i)) for i in (5, 6, 7))
    return {
        "rps": float(finished.group(3)),
        "requests": int(requests.group(4)),
        "mean_ms": float(timing.group(5)) * _TO_MS[timing.group(6)],
        "max_ms": float(timing.group(3)) * _TO_MS[timing.group(4)],
        "errors": {"failed": failed, "errored": errored, "timeout": timedOut},
        "error_total": failed + errored + timedOut,
    }


def runH2load(url: str, connections: int, streams: int, duration: int,
              cpu: Optional[str] = None) -> Dict[str, Any]:
    """
    Run h2load for C{duration} seconds: C{connections} HTTP/2 connections
    with C{streams} requests in flight on each.

    @return: L{parseH2load}'s figures and C{raw} (the output).
    @raise RuntimeError: h2load is missing, failed, or printed no summary.
    """
    h2load = findH2load()
    if h2load is None:
        raise RuntimeError("h2load is not installed (apt-get install nghttp2-client)")
    command = [h2load, "-c", str(connections), "-m", str(streams), "-D", str(duration), url]
    if cpu is not None:
        command = ["taskset", "-c", cpu] + command
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    if result.returncode != 0:
        raise RuntimeError(f"h2load failed ({result.returncode}): {result.stdout}\n{result.stderr}")
    figures = parseH2load(result.stdout)
    figures["raw"] = result.stdout
    return figures


def runWrk(
    url: str,
    connections: int,
    duration: int,
    headers: Sequence[str] = (),
    postBytes: int = 0,
    cpu: Optional[str] = None,
    threads: int = 1,
    timeout: int = 10,
) -> Dict[str, Any]:
    """
    Run wrk once and return its figures.

    @param url: what to load.
    @param connections: concurrent client connections (-c).
    @param duration: seconds (-d).
    @param headers: extra request headers, each "Name: value" (-H).
    @param postBytes: send POSTs with a body this long instead of GETs.
    @param cpu: pin wrk to this CPU list with taskset.
    @param threads: wrk threads (-t); one for one load core.
    @param timeout: wrk's per-request timeout in seconds.
    @return: C{rps}, C{requests}, C{p50_ms}, C{p90_ms}, C{p99_ms},
        C{max_ms}, C{mean_ms}, C{errors} (a dict), C{error_total},
        C{transfer_mib_s} and C{raw} (wrk's text output).
    @raise RuntimeError: wrk failed or printed no figures.
    """
    wrk = findWrk()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrkScript(postBytes))
    try:
        command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                   f"--timeout={timeout}s", "--latency", "-s", script.name]
        for header in headers:
            command += ["-H", header]
        command.append(url)
        if cpu is not None:
            command = ["taskset", "-c", cpu] + command
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=duration + timeout + 30)
    finally:
        Path(script.name).unlink(missing_ok=True)
    match = re.search(r"^BENCHJSON (\{.*\})$", result.stdout, re.M)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}\n{result.stderr}")
    figures = json.loads(match.group(1))
    seconds = figures["duration_us"] / 1e6
    latency = figures["latency_us"]
    return {
        "rps": figures["requests"] / seconds if seconds else 0.0,
        "requests": figures["requests"],
        "p50_ms": latency["p50"] / 1000.0,
        "p90_ms": latency["p90"] / 1000.0,
        "p99_ms": latency["p99"] / 1000.0,
        "max_ms": latency["max"] / 1000.0,
        "mean_ms": latency["mean"] / 1000.0,
        "transfer_mib_s": figures["bytes"] / seconds / (1 << 20) if seconds else 0.0,
        "errors": figures["errors"],
        "error_total": sum(figures["errors"].values()),
        "raw": result.stdout,
    }


# asyncio clients.


async def _readResponse(reader: asyncio.StreamReader) -> Tuple[int, bytes]:
    """
    Read one Content-Length-framed response: (status, body).  Enough for
    the backend's fixed bodies, which never come chunked.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return status, body


def _request(path: str) -> bytes:
    """A minimal keepalive GET."""
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode("ascii")


async def _prime(port: int, path: str, connections: int, requests: int) -> int:
    """Run C{requests} keepalive GETs on each of C{connections}; count 200s."""
    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ok = 0
        try:
            for _ in range(requests):
                writer.write(_request(path))
                status, _ = await _readResponse(reader)
                ok += status == 200
        finally:
            writer.close()
        return ok

    return sum(await asyncio.gather(*(one() for _ in range(connections))))


def prime(port: int, path: str = "/1k", connections: int = 20, requests: int = 10) -> int:
    """
    Warm a freshly started proxy (code paths, upstream keepalive pool)
    before it is measured.

    @return: how many requests got a 200.
    """
    async def bounded() -> int:
        try:
            return await asyncio.wait_for(_prime(port, path, connections, requests), 30)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            return 0

    return asyncio.run(bounded())


class IdleConnections:
    """
    N client connections to a proxy, each having done one keepalive GET
    and then left idle, held open until L{close}.  Plain non-blocking
    sockets and one selector: lighter than asyncio streams, so the client
    opens them faster than the proxies accept them.

    @ivar opened: connections that got their 200 and are held.
    @ivar failed: connections that could not be opened or answered.
    @ivar seconds: how long opening them all took.
    """

    def __init__(self, port: int, count: int, path: str = "/1k", parallel: int = 128,
                 stall: float = 5.0) -> None:
        """
        @param port: the proxy's port on 127.0.0.1.
        @param count: how many connections to open.
        @param path: what each requests once (its response must carry a
            Content-Length).
        @param parallel: connections being opened at once (keeps within
            the listen backlog, so no SYN is dropped and retried).
        @param stall: give up on the ones still pending once no connection
            has made progress for this many seconds (a proxy at its
            connection limit leaves the rest in its accept queue).
        """
        self.port = port
        self.count = count
        self.request = _request(path)
        self.parallel = parallel
        self.stall = stall
        self.opened = 0
        self.failed = 0
        self.seconds = 0.0
        self._held: List[socket.socket] = []

    def _start(self, selector: selectors.BaseSelector) -> None:
        """Begin one non-blocking connect."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        selector.register(sock, selectors.EVENT_WRITE, [b"", False])

    def _done(self, selector: selectors.BaseSelector, sock: socket.socket, ok: bool) -> None:
        """One connection finished its exchange: hold it, or count a failure."""
        selector.unregister(sock)
        if ok:
            self.opened += 1
            self._held.append(sock)
        else:
            self.failed += 1
            sock.close()

    def _step(self, selector: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        """Advance one connection: send the request, then read the response."""
        sock: socket.socket = key.fileobj  # type: ignore[assignment]
        state = key.data
        try:
            if not state[1]:
                sock.send(self.request)
                state[1] = True
                selector.modify(sock, selectors.EVENT_READ, state)
                return
            data = sock.recv(65536)
        except OSError:
            self._done(selector, sock, False)
            return
        if not data:
            self._done(selector, sock, False)
            return
        state[0] += data
        head, sep, body = state[0].partition(b"\r\n\r\n")
        if not sep:
            return
        match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        if match is None or len(body) >= int(match.group(1)):
            self._done(selector, sock, head.split(b" ", 2)[1:2] == [b"200"])

    def open(self) -> None:
        """Open all the connections (blocks until done or stalled)."""
        started = progress = time.monotonic()
        selector = selectors.DefaultSelector()
        begun = 0
        try:
            while (begun < self.count or selector.get_map()) and (
                    time.monotonic() - progress < self.stall):
                while begun < self.count and len(selector.get_map()) < self.parallel:
                    self._start(selector)
                    begun += 1
                events = selector.select(timeout=0.5)
                if events:
                    progress = time.monotonic()
                for key, _ in events:
                    self._step(selector, key)
        finally:
            for key in list(selector.get_map().values()):
                self._done(selector, key.fileobj, False)  # type: ignore[arg-type]
            selector.close()
        self.failed += self.count - begun
        self.seconds = time.monotonic() - started

    def close(self) -> None:
        """Close every held connection."""
        for sock in self._held:
            sock.close()
        self._held.clear()


class _ChunkedDecoder:
    """Incremental decoder of a chunked body (the proxies may re-chunk)."""

    _SIZE, _DATA, _CRLF = range(3)

    def __init__(self) -> None:
        """Start before the first chunk-size line."""
        self._buffer = b""
        self._state = self._SIZE
        self._remaining = 0
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        """Take raw bytes, return the body bytes they complete."""
        self._buffer += data
        out = []
        while not self.finished:
            if self._state == self._SIZE:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(self._buffer[:end].split(b";")[0], 16)
                self._buffer = self._buffer[end + 2:]
                self.finished = size == 0
                self._state, self._remaining = self._DATA, size
            elif self._state == self._DATA:
                piece = self._buffer[:self._remaining]
                if not piece:
                    break
                out.append(piece)
                self._buffer = self._buffer[len(piece):]
                self._remaining -= len(piece)
                if self._remaining == 0:
                    self._state = self._CRLF
            else:
                if len(self._buffer) < 2:
                    break
                self._buffer = self._buffer[2:]
                self._state = self._SIZE
        return b"".join(out)


async def _stream(port: int, count: int, intervalMs: int, delay: float
                  ) -> List[Tuple[int, int]]:
    """
    One SSE stream: [(emit_ns, arrival_ns)] per event received, until all
    C{count} came, the stream ended, or it ran 10 s past its schedule.
    """
    await asyncio.sleep(delay)
    deadline = time.monotonic() + count * intervalMs / 1000.0 + 10
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    events: List[Tuple[int, int]] = []
    try:
        writer.write(_request(f"/sse?count={count}&interval={intervalMs}"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if int(head.split(b" ", 2)[1]) != 200:
            return events
        chunked = re.search(rb"(?im)^transfer-encoding:\s*chunked", head) is not None
        decoder = _ChunkedDecoder() if chunked else None
        text = b""
        while len(events) < count:
            try:
                data = await asyncio.wait_for(reader.read(65536),
                                              max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            arrival = time.monotonic_ns()
            if not data:
                break
            text += decoder.feed(data) if decoder else data
            while b"\n\n" in text:
                event, text = text.split(b"\n\n", 1)
                if event.startswith(b"data: "):
                    events.append((int(event[6:]), arrival))
    finally:
        writer.close()
    return events


def _percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of C{values} (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))
    return ordered[index]


def measureStreams(port: int, streams: int, count: int, intervalMs: int) -> Dict[str, Any]:
    """
    Open C{streams} concurrent SSE streams through a proxy (their starts
    spread over one interval) and time every event.

    @param port: the proxy's port.
    @param streams: concurrent streams.
    @param count: events per stream.
    @param intervalMs: the backend's gap between events.
    @return: C{events}, C{expected}, C{events_per_s}, latency (arrival
        minus emit) C{p50_ms}/C{p99_ms}/C{max_ms}/C{mean_ms}, and
        C{jitter_p99_ms}: the 99th percentile of |inter-arrival gap minus
        inter-emit gap|, i.e. how much the proxy bunches events up.
    """
    async def run() -> List[List[Tuple[int, int]]]:
        spread = intervalMs / 1000.0 / max(1, streams)
        return await asyncio.gather(
            *(_stream(port, count, intervalMs, i * spread) for i in range(streams))
        )

    started = time.monotonic()
    results = asyncio.run(run())
    wall = time.monotonic() - started
    latencies: List[float] = []
    jitters: List[float] = []
    for events in results:
        latencies += [(arrival - emit) / 1e6 for emit, arrival in events]
        for (e0, a0), (e1, a1) in zip(events, events[1:]):
            jitters.append(abs((a1 - a0) - (e1 - e0)) / 1e6)
    received = sum(len(events) for events in results)
    return {
        "events": received,
        "expected": streams * count,
        "events_per_s": received / wall if wall else 0.0,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": max(latencies, default=0.0),
        "mean_ms": statistics.fmean(latencies) if latencies else 0.0,
        "jitter_p99_ms": _percentile(jitters, 0.99),
    }
