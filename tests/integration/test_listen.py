"""
C{listen} over real sockets: the IPv4 and IPv6 pair that Debian's default
site uses, and a clear start-up error for an address in use.
"""

from __future__ import annotations

import socket
import time
from typing import List, Tuple

import pytest

from .harness import freePort, portAccepts, proxyConfig, request


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
    # The runner waits for the IPv4 socket; give the IPv6 one the same
    # chance (a deadline bounds a failure, it is not a wait).
    deadline = time.monotonic() + 10
    while not portAccepts(port, "::1") and time.monotonic() < deadline:
        time.sleep(0.05)
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




def _mergedListenConfig(port: int) -> str:
    """
    Servers on one port under three addresses: the wildcard (C{listen P}),
    127.0.0.1 (proxyConfig's own server) and 127.0.0.2 with two servers,
    the second its default_server.  Each server names itself in the body.
    """
    return proxyConfig(
        port,
        'server_name one; location / { return 200 "one\\n"; }',
        httpExtra=f"""
    server {{
        listen {port};
        server_name any named;
        location / {{ return 200 "any\\n"; }}
    }}
    server {{
        listen 127.0.0.2:{port};
        server_name two;
        location / {{ return 200 "two\\n"; }}
    }}
    server {{
        listen 127.0.0.2:{port} default_server;
        server_name twodefault;
        location / {{ return 200 "twodefault\\n"; }}
    }}
""",
    )


_MERGED_CASES = [
    # (local address connected to, Host, body nginx gives)
    ("127.0.0.1", "unknown", "one"),
    ("127.0.0.1", "named", "one"),
    ("127.0.0.2", "two", "two"),
    ("127.0.0.2", "unknown", "twodefault"),
    ("127.0.0.2", "named", "twodefault"),
    ("127.0.0.3", "unknown", "any"),
    ("127.0.0.3", "two", "any"),
]
"""Each address sees only its own servers, with its own default server;
an address with no C{listen} of its own gets the wildcard's."""


def _answers(port: int) -> List[Tuple[str, str, str]]:
    """
    @return: the body (first line) for every case of L{_MERGED_CASES}.
    """
    return [
        (address, host, request(port, host=host, address=address).body.decode().strip())
        for address, host, _expected in _MERGED_CASES
    ]


def testSpecificAddressesShareTheWildcardSocket(rproxyRunner) -> None:
    """
    C{listen P} next to C{listen 127.0.0.1:P} and C{listen 127.0.0.2:P}
    starts (one socket, no "Address already in use") and picks each
    connection's servers by the address it reached, as nginx does.
    """
    port = freePort()
    rproxyRunner(_mergedListenConfig(port))
    assert _answers(port) == _MERGED_CASES


def testMergedAddressesMatchNginx(nginxRunner, rproxyRunner) -> None:
    """
    The same config under nginx answers every case the same way.
    """
    port = freePort()
    runner = nginxRunner(_mergedListenConfig(port))
    try:
        assert _answers(port) == _MERGED_CASES
    finally:
        runner.cleanup()
    rproxyRunner(_mergedListenConfig(port))
    assert _answers(port) == _MERGED_CASES


@pytest.mark.skipif(not _hasIPv6(), reason="no IPv6 loopback here")
def testIPv6SpecificAddressSharesTheWildcardSocket(rproxyRunner) -> None:
    """
    C{listen [::]:P} and C{listen [::1]:P} share the IPv6 wildcard socket;
    connections to ::1 get the ::1 server, and IPv4 (its own socket) the
    IPv4 one.
    """
    port = freePort()
    conf = proxyConfig(
        port,
        'location / { return 200 "v4\\n"; }',
        httpExtra=f"""
    server {{
        listen [::]:{port};
        location / {{ return 200 "v6any\\n"; }}
    }}
    server {{
        listen [::1]:{port};
        location / {{ return 200 "v6one\\n"; }}
    }}
""",
    )
    rproxyRunner(conf)
    assert request(port, address="::1").body == b"v6one\n"
    assert request(port, address="127.0.0.1").body == b"v4\n"


def testBindKeepsItsOwnSocket(rproxyRunner) -> None:
    """
    C{bind} asks for a socket of the address's own, so with the wildcard
    also bound start-up fails as nginx's does on Linux.
    """
    port = freePort()
    conf = proxyConfig(port, "location / { return 200; }").replace(
        f"listen 127.0.0.1:{port};", f"listen 127.0.0.1:{port} bind;\n        listen {port};"
    )
    runner = rproxyRunner(conf, start=False)
    assert runner.runToExit(timeout=20) == 1
    assert "failed (Address already in use)" in runner.stderr
