"""
Tests for the integration harness's own helpers, where a flaw shows up as
a flaky test elsewhere.
"""

from tests.integration.harness import freePort, portAccepts


def testFreePortsAreDistinct() -> None:
    """
    Ports asked for one after another are all different, even though the
    kernel may hand the same just-closed port to two binds in a row (a test
    once got one port for its plain and its TLS listener).
    """
    ports = [freePort() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    assert not any(portAccepts(port) for port in ports[:20])
