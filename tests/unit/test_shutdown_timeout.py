"""
C{worker_shutdown_timeout}: how long a graceful stop lets busy connections
run (a byte tunnel among them) before closing them, on a fake clock.
"""

from __future__ import annotations

from typing import Any, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tests.unit.configsupport import ConfigTestCase, httpConfig
from twisted_rproxy.service import ProxyService

SERVER = "server { listen 127.0.0.1:8080; location / { return 200; } }"


class AbortRecordingTransport(StringTransport):
    """
    A L{StringTransport} that remembers being aborted.
    """

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class ShutdownTimeoutTests(ConfigTestCase):
    """
    L{ProxyService.stopService} closes a busy connection at the deadline,
    not before.
    """

    def stopWithBusyConnection(self, mainExtra: str) -> Tuple[Any, AbortRecordingTransport]:
        """
        Start a service for a config with C{mainExtra}, open a connection
        that has sent nothing yet (busy: it came to be served), and stop.

        @return: the stop's Deferred and the connection's transport.
        """
        service = ProxyService(self.compile(httpConfig(SERVER, mainExtra)), self.reactor)
        service.startService()
        [factory] = service.factories.values()
        channel = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = AbortRecordingTransport()
        channel.makeConnection(transport)
        return service.stopService(), transport

    def assertClosedAt(self, mainExtra: str, deadline: float) -> None:
        """
        The stop aborts the busy connection C{deadline} seconds in, and
        only then ends.
        """
        stopped, transport = self.stopWithBusyConnection(mainExtra)
        self.reactor.advance(deadline - 0.1)
        self.assertFalse(transport.aborted)
        self.assertNoResult(stopped)
        self.reactor.advance(0.2)
        self.assertTrue(transport.aborted)
        self.successResultOf(stopped)

    def test_configuredDeadline(self) -> None:
        """
        C{worker_shutdown_timeout 3s}: the connection runs 3 s into the stop.
        """
        self.assertClosedAt("worker_shutdown_timeout 3s;", 3.0)

    def test_defaultDeadline(self) -> None:
        """
        Unset (nginx would wait without end), the service's 30 s bound.
        """
        self.assertClosedAt("", ProxyService.shutdownTimeout)
