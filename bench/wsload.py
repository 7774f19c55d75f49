# -*- test-case-name: tests.integration.test_bench -*-
"""
The WebSocket load client: C{connections} raw-socket WebSocket clients in
one asyncio loop, each keeping C{window} small binary messages in flight
against an echo: send C{window} frames, wait until all C{window} echoes are
back, repeat, for C{seconds}.

It is deliberately cheap, so it is not what limits the figures: one masked
frame is built once and sent C{window} times per round, and an echo is
counted by bytes (every echo is the same unmasked frame, C{2 + size}
bytes), not parsed.  An echo's bytes arriving short or different counts as
an error; all of a round's echoes arriving in order is checked by their
total.  Latency is per round: from sending the C{window} frames to the
last echo.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any, Dict, List

from .load import _percentile


def _frame(size: int) -> bytes:
    """
    One masked binary frame of C{size} bytes (C{size} < 126).
    """
    key = os.urandom(4)
    payload = bytes(i % 251 for i in range(size))
    return bytes([0x82, 0x80 | size]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _echoOf(size: int) -> bytes:
    """
    The unmasked frame the echo sends back.
    """
    return bytes([0x82, size]) + bytes(i % 251 for i in range(size))


async def _client(port: int, path: str, size: int, window: int, stopAt: float,
                  stats: Dict[str, Any]) -> None:
    """
    One connection: handshake, then rounds until C{stopAt}, then a close.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        stats["errors"] += 1
        writer.close()
        return
    batch = _frame(size) * window
    expected = _echoOf(size) * window
    latencies: List[float] = stats["latencies"]
    try:
        while time.monotonic() < stopAt:
            started = time.monotonic()
            writer.write(batch)
            got = await reader.readexactly(len(expected))
            latencies.append(time.monotonic() - started)
            if got != expected:
                stats["errors"] += 1
                break
            stats["messages"] += window
        writer.write(bytes([0x88, 0x82]) + b"\0\0\0\0" + b"\x03\xe8")
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        stats["errors"] += 1
    finally:
        writer.close()


async def _run(port: int, path: str, connections: int, seconds: float, size: int,
               window: int) -> Dict[str, Any]:
    stats: Dict[str, Any] = {"messages": 0, "errors": 0, "latencies": []}
    stopAt = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(*(_client(port, path, size, window, stopAt, stats)
                           for _ in range(connections)))
    elapsed = time.monotonic() - started
    latencies = sorted(stats["latencies"])
    return {
        "messages": stats["messages"],
        "messages_per_s": stats["messages"] / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000 if latencies else None,
        "p99_ms": _percentile(latencies, 0.99) * 1000 if latencies else None,
        "connections": connections,
        "errors": stats["errors"],
    }


def measureWebSocketEcho(port: int, path: str, connections: int = 50, seconds: float = 5,
                         size: int = 64, window: int = 10) -> Dict[str, Any]:
    """
    Echo messages through the proxy on C{port} at C{path}.

    @return: C{messages} echoed, C{messages_per_s}, round latency
        C{p50_ms}/C{p99_ms}, C{connections}, C{errors}.
    """
    return asyncio.run(_run(port, path, connections, seconds, size, window))
