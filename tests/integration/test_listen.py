"""
C{listen} over real sockets: the IPv4 and IPv6 pair that Debian's default
site uses, and a clear start-up error for an address in use.
"""

from __future__ import annotations

import socket

import pytest

from .harness import freePort, proxyConfig, request


def _hasIPv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _hasIPv6(), reason="no IPv6 loopback here")
def testIPv4AndIPv6OnOnePort(rproxyRunner) -> None:
    """
    C{listen P; listen [::]:P;} both bind (the IPv6 socket is IPv6-only, as
    nginx makes it) and each answers with its own client address.
    """
    port = freePort()
    conf = proxyConfig(
        port,
        'location / { return 200 "from $remote_addr\\n"; }',
    ).replace(f"listen 127.0.0.1:{port};", f"listen {port}; listen [::]:{port};")
    rproxyRunner(conf)
    with socket.create_connection(("::1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.endswith(b"from ::1\n")
    assert request(port, path="/").body == b"from 127.0.0.1\n"


def testAddressInUseIsAClearStartupError(rproxyRunner) -> None:
    """
    A port already taken stops start-up with nginx's wording, no traceback.
    """
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        runner = rproxyRunner(proxyConfig(port, "location / { return 200; }"), start=False)
        assert runner.runToExit(timeout=20) == 1
        assert f"bind() to 127.0.0.1:{port} failed (Address already in use)" in runner.stderr
        assert "Traceback" not in runner.stderr


