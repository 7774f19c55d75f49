"""
Stopping as nginx does: C{quit} (SIGQUIT) lets in-flight responses finish
and closes idle keepalive connections; C{stop} (SIGTERM) closes at once.
"""

from __future__ import annotations

import signal
import socket
import time

from .harness import freePort, proxyConfig


def _startStream(port: int) -> socket.socket:
    """
    Open a streamed request (SSE, five events 0.2 s apart) and read its
    head, so it is surely in flight.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /sse?n=5&interval=0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def _readToClose(s: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _config(backend: object, port: int) -> str:
    return proxyConfig(
        port,
        f"location / {{ proxy_pass http://{backend.address}; proxy_buffering off; }}",  # type: ignore[attr-defined]
    )


def testQuitFinishesInFlightResponses(backend, rproxyRunner) -> None:
    """
    After SIGQUIT the streamed response still completes (its chunked
    terminator arrives), an idle keepalive connection is closed, new
    connections are refused, and the process exits 0.
    """
    port = freePort()
    runner = rproxyRunner(_config(backend, port))
    # A keepalive connection between requests: it has had its answer.
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    idle.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answered = b""
    while b"\r\n\r\n" not in answered or not answered.endswith(b"}\n"):
        chunk = idle.recv(65536)
        assert chunk, answered
        answered += chunk
    stream = _startStream(port)
    runner.process.send_signal(signal.SIGQUIT)
    assert idle.recv(1) == b""  # closed while idle
    body = _readToClose(stream)
    assert body.endswith(b"0\r\n\r\n"), body[-80:]
    assert body.count(b"data: ") == 5
    deadline = time.monotonic() + 10
    while runner.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.process.returncode == 0
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    assert refused


def testTermClosesAtOnce(backend, rproxyRunner) -> None:
    """
    After SIGTERM an in-flight stream is cut off: the client never sees
    the chunked terminator.
    """
    port = freePort()
    runner = rproxyRunner(_config(backend, port))
    stream = _startStream(port)
    runner.process.send_signal(signal.SIGTERM)
    body = _readToClose(stream)
    assert not body.endswith(b"0\r\n\r\n")
    assert body.count(b"data: ") < 5
