# -*- test-case-name: tests.unit.test_reactor -*-
"""
Tests for L{twisted_rproxy.reactor}: the proxy's own transports get their
events without Twisted's legacy log context, everything else with it, and
the C{rproxy} command runs on this reactor.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any, List, Optional

from twisted.internet.protocol import Protocol
from twisted.python import context, log
from twisted.trial.unittest import SynchronousTestCase

from twisted_rproxy.reactor import ProxyEPollReactor
from twisted_rproxy.transport import FlushingServer

from .test_transport import RecordingReactor


class SystemRecorder(Protocol):
    """Records the legacy log C{system} each read is delivered under."""

    def __init__(self) -> None:
        self.systems: List[Optional[str]] = []

    def dataReceived(self, data: bytes) -> None:
        logContext = context.get(log.ILogContext) or {}
        self.systems.append(logContext.get("system"))


class PlainReader:
    """
    A reader that is not one of the proxy's transports (as a listening
    port or the waker is not).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.systems: List[Optional[str]] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "plain"

    def doRead(self) -> None:
        self.sock.recv(100)
        logContext = context.get(log.ILogContext) or {}
        self.systems.append(logContext.get("system"))

    def connectionLost(self, reason: Any) -> None:
        pass


class DispatchTests(SynchronousTestCase):
    """
    L{ProxyEPollReactor.doPoll}.
    """

    def setUp(self) -> None:
        self.reactor = ProxyEPollReactor()
        self.addCleanup(self.reactor._poller.close)

    def pair(self) -> "tuple[socket.socket, socket.socket]":
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        return ours, theirs

    def test_proxyTransportsGetEventsWithoutLogContext(self) -> None:
        """
        A L{FlushingServer} reads without the C{system} Twisted's
        C{callWithLogger} would set; a plain reader keeps it.
        """
        ours, theirs = self.pair()
        protocol = SystemRecorder()
        transport = FlushingServer(ours, protocol, ("127.0.0.1", 1), None, 1, RecordingReactor())
        transport.reactor = self.reactor
        protocol.makeConnection(transport)
        self.reactor.addReader(transport)
        plainOurs, plainTheirs = self.pair()
        plain = PlainReader(plainOurs)
        self.reactor.addReader(plain)
        theirs.sendall(b"x")
        plainTheirs.sendall(b"y")
        self.reactor.doPoll(1)
        self.assertEqual(protocol.systems, ["-"])  # the default context, not a prefix
        self.assertEqual(plain.systems, ["plain"])

    def test_directBackendConnectionsToo(self) -> None:
        """
        A backend connection opened by L{connectTCP
        <twisted_rproxy.upstream.connect.connectTCP>} (a subclass of the
        proxy's client transport) also reads without the log context.
        """
        from twisted.internet.protocol import Factory

        from twisted_rproxy.upstream.connect import connectTCP

        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        protocol = SystemRecorder()
        connected: List[Any] = []
        connectTCP(self.reactor, "127.0.0.1", listener.getsockname()[1],
                   Factory.forProtocol(lambda: protocol)).addBoth(connected.append)
        accepted, _ = listener.accept()
        self.addCleanup(accepted.close)
        for _ in range(10):
            if connected:
                break
            self.reactor.doPoll(1)
            self.reactor.runUntilCurrent()
        self.assertEqual(connected, [protocol])
        accepted.sendall(b"x")
        self.reactor.doPoll(1)
        self.assertEqual(protocol.systems, ["-"])
        protocol.transport.abortConnection()
        self.reactor.doPoll(0)

    def test_eventForAForgottenDescriptorIsSkipped(self) -> None:
        """
        An event for a descriptor no longer among the reactor's selectables
        (removed by an earlier event of the same poll) is ignored.
        """
        ours, theirs = self.pair()
        plain = PlainReader(ours)
        self.reactor.addReader(plain)
        theirs.sendall(b"x")
        del self.reactor._selectables[ours.fileno()]
        self.reactor.doPoll(0)
        self.assertEqual(plain.systems, [])

    def test_timeoutNoneWaitsAndReturnsOnAnEvent(self) -> None:
        """
        C{doPoll(None)} blocks until an event, as Twisted's does.
        """
        ours, theirs = self.pair()
        plain = PlainReader(ours)
        self.reactor.addReader(plain)
        theirs.sendall(b"x")
        self.reactor.doPoll(None)
        self.assertEqual(plain.systems, ["plain"])


def pythonOutput(code: str) -> List[str]:
    """
    @return: the words a fresh interpreter prints running C{code}.
    """
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()


class InstallTests(SynchronousTestCase):
    """
    L{twisted_rproxy.reactor.installIfUnset}, in fresh interpreters.
    """

    def test_installsWhenNoReactorIs(self) -> None:
        """The global reactor becomes a L{ProxyEPollReactor}."""
        out = pythonOutput(
            "from twisted_rproxy.reactor import installIfUnset\n"
            "print(installIfUnset())\n"
            "from twisted.internet import reactor\n"
            "print(type(reactor).__name__)\n")
        self.assertEqual(out, ["True", "ProxyEPollReactor"])

    def test_keepsAnInstalledReactor(self) -> None:
        """An application's own reactor stays."""
        out = pythonOutput(
            "from twisted.internet import pollreactor\n"
            "pollreactor.install()\n"
            "from twisted_rproxy.reactor import installIfUnset\n"
            "print(installIfUnset())\n"
            "from twisted.internet import reactor\n"
            "print(type(reactor).__name__)\n")
        self.assertEqual(out, ["False", "PollReactor"])

    def test_commandInstallsItBeforeLoadingTheConfig(self) -> None:
        """
        C{rproxy} installs it before loading a config, which imports the
        global reactor.
        """
        out = pythonOutput(
            "import sys\n"
            "from twisted_rproxy import cli\n"
            "cli._load = lambda *a: (_ for _ in ()).throw(OSError('stop here'))\n"
            "cli.main(['-t', '-c', '/nonexistent'])\n"
            "from twisted.internet import reactor\n"
            "print(type(reactor).__name__)\n")
        self.assertEqual(out, ["ProxyEPollReactor"])
