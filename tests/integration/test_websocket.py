"""
The WebSocket relay end to end: an Autobahn client -> C{python -m
twisted_rproxy} (docs/proxy.md's example: the seeds' WebSocket location
plus C{proxy_websocket_relay on}) -> an Autobahn echo server, all real processes on real sockets
(tests/integration/wspeers.py).  Nothing asserts a duration: each wait is a
process exit or a line polled with a deadline.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.integration.harness import (
    REPO_ROOT,
    RproxyRunner,
    StartupError,
    _readText,
    _spawn,
    _subprocessEnv,
    _terminate,
    freePort,
)
from tests.integration.test_docs import block, fill

DEADLINE = 60.0
"""How long a client scenario may take before the test fails."""

class EchoServer:
    """
    The Autobahn echo server as a subprocess.
    """

    def __init__(self) -> None:
        """Start it and wait for its C{LISTENING} line."""
        self.directory = Path(tempfile.mkdtemp(prefix="rproxy-wsecho-"))
        self.stdout = self.directory / "stdout.log"
        self.process = _spawn(
            [sys.executable, "-m", "tests.integration.wspeers", "echo"], REPO_ROOT,
            self.stdout, self.directory / "stderr.log", env=_subprocessEnv(),
            deathSignal=signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            match = re.search(r"LISTENING (\d+)", _readText(self.stdout))
            if match:
                self.port = int(match.group(1))
                return
            time.sleep(0.02)
        self.cleanup()
        raise StartupError("echo server did not start")

    def lines(self, kind: str) -> str:
        """The lines starting with C{kind} printed so far."""
        return "".join(line for line in _readText(self.stdout).splitlines(True)
                       if line.startswith(kind))

    def closes(self) -> str:
        """The C{CLOSED} lines printed so far."""
        return self.lines("CLOSED")

    def cleanup(self) -> None:
        """Stop it and remove its directory."""
        _terminate(self.process, signal.SIGTERM, timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    """One echo server per module."""
    server = EchoServer()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def proxy(echo: EchoServer, rproxyRunner: Callable[..., RproxyRunner]) -> RproxyRunner:
    """
    twisted_rproxy running docs/proxy.md's C{websocket-relay} example (the
    seeds' WebSocket location plus C{proxy_websocket_relay on}) in front of
    the echo server, so the page's config is the one shown to work.
    """
    text = fill(block("proxy.md", "websocket-relay").text,
                {"port": str(freePort()), "backend": str(echo.port)})
    return rproxyRunner(text)


def runClient(port: int, scenario: str) -> dict:
    """
    Run one client scenario through the proxy on C{port}.

    @return: the client's JSON report.
    """
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.wspeers", "client",
         f"ws://127.0.0.1:{port}/ws", scenario],
        cwd=str(REPO_ROOT), env=_subprocessEnv(), capture_output=True, timeout=DEADLINE)
    lines = [line for line in result.stdout.decode().splitlines() if line.startswith("{")]
    assert lines, result.stderr.decode()[-3000:]
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def waitFor(predicate: Callable[[], object], what: str) -> None:
    """Poll C{predicate} until true, or fail after the deadline."""
    deadline = time.monotonic() + 15
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def testEchoThroughRelay(echo: EchoServer, proxy: RproxyRunner) -> None:
    """
    Text and binary messages of 1 byte to 1 MiB, sent in 4 KiB fragments,
    come back identical; the backend's subprotocol reaches the client; the
    client's close 4000 with its reason reaches the backend, whose reply
    (the same code and reason) comes back.
    """
    report = runClient(proxy.port, "echo")
    assert report["protocol"] == "chat"
    assert report["mismatches"] == []
    assert report["echoed"] == report["sent"] == 16
    assert report["close"] == [True, 4000, "client bye"]
    waitFor(lambda: "CLOSED 4000 client bye" in echo.closes(), "the backend's close line")
    # The client sent the 1 MiB messages in 256 fragments; the relay
    # reassembled them and sent each message in one frame (the byte tunnel
    # would have passed the fragments through).
    frames = echo.lines("FRAMES").split()
    assert f"FRAMES {1 << 20} 1".split() == frames[frames.index(str(1 << 20)) - 1:][:3]
    assert set(frames[2::3]) == {"1"}


def testServerCloseCodeReachesClient(echo: EchoServer, proxy: RproxyRunner) -> None:
    """
    The backend's close 4001 with its reason reaches the client, and the
    client's reply (Autobahn's 1000) reaches the backend.
    """
    before = echo.lines("REPLY").count("\n")
    report = runClient(proxy.port, "server-close")
    assert report["protocol"] == "chat"
    assert report["close"] == [True, 4001, "server bye"]
    waitFor(lambda: echo.lines("REPLY").count("\n") > before, "the backend's reply line")
    assert echo.lines("REPLY").splitlines()[before:] == ["REPLY 1000 "]
