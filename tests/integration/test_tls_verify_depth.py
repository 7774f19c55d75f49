"""
C{ssl_verify_depth} of the server a client's SNI name selects, over real
sockets, then the same config through nginx: client certificates signed
by the root, by one intermediate and by two, against servers allowing 0,
1, 2 and 3 intermediates, where the default server (whose context the
connection starts with) allows more or fewer than the one chosen.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Dict

import pytest

from tests.integration.certs import CertificateAuthority
from tests.integration.harness import NGINX_HTTP_HEAD, NginxRunner, RproxyRunner, findNginx, freePort
from tests.integration.harness import parseRawResponses, readUntilClosed

#: Each port's servers: (name, ssl_verify_depth), the default first.
_PORTS = {
    "low": [("d1.test", 1), ("d2.test", 2), ("d0.test", 0)],
    "high": [("d3.test", 3), ("d1b.test", 1)],
}

#: The client certificates: signed by the root, under one intermediate, two.
_CLIENTS = ("direct", "one", "two")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """
    A root CA, intermediates under it, a server certificate for every name
    and a client chain file (leaf, then its intermediates) per client.
    """
    directory = tmp_path_factory.mktemp("verify-depth")
    root = CertificateAuthority(directory / "root")
    one = root.intermediate(directory / "one", "intermediate one")
    two = one.intermediate(directory / "two", "intermediate two")
    names = [name for servers in _PORTS.values() for name, _depth in servers]
    found: Dict[str, Any] = {"root": root.certPath, "server": root.issue(names)}
    for label, issuer, above in (("direct", root, []), ("one", one, []), ("two", two, [one])):
        cert, key = issuer.issue([f"client-{label}"], client=True)
        chain = directory / f"client-{label}.chain"
        chain.write_bytes(cert.read_bytes() + b"".join(ca.certPath.read_bytes() for ca in above))
        found[label] = (chain, key)
    return found


def depthConfig(certs: Dict[str, Any], ports: Dict[str, int]) -> str:
    """
    @return: the servers of L{_PORTS}, each answering (also for a 495,
        through C{error_page}) with its name and C{$ssl_client_verify}.
    """
    cert, key = certs["server"]
    blocks = []
    for port, servers in _PORTS.items():
        for index, (name, depth) in enumerate(servers):
            default = " default_server" if index == 0 else ""
            blocks.append(f"""
    server {{
        listen 127.0.0.1:{ports[port]} ssl{default};
        server_name {name};
        ssl_verify_client optional;
        ssl_verify_depth {depth};
        error_page 495 =200 /verify;
        location / {{
            return 200 "{name} $ssl_client_verify\\n";
        }}
    }}""")
    return NGINX_HTTP_HEAD + f"""    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_client_certificate {certs['root']};
{''.join(blocks)}
}}
"""


def _verify(port: int, name: str, certs: Dict[str, Any], client: str) -> str:
    """
    @return: the body of C{GET /} for C{name}, presenting C{client}'s chain.
    """
    context = ssl.create_default_context(cafile=str(certs["root"]))
    chain, key = certs[client]
    context.load_cert_chain(str(chain), str(key))
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    with context.wrap_socket(sock, server_hostname=name) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        data = readUntilClosed(conn)
    (response,) = parseRawResponses(data)
    assert response.status == 200, response
    return response.body.decode().strip()


def _observe(runner: Any, certs: Dict[str, Any]) -> Dict[str, str]:
    """
    @return: the answer to every client on every server name.
    """
    ports = {port: freePort() for port in _PORTS}
    server = runner(depthConfig(certs, ports))
    try:
        server.start()
        return {
            f"{name} {client}": _verify(ports[port], name, certs, client)
            for port, servers in _PORTS.items()
            for name, _depth in servers
            for client in _CLIENTS
        }
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def ours(certs: Dict[str, Any]) -> Dict[str, str]:
    """
    L{_observe} of twisted_rproxy.
    """
    return _observe(RproxyRunner, certs)


def testDepthOfTheServerSNIChose(ours: Dict[str, str]) -> None:
    """
    Each server allows as many intermediates as its C{ssl_verify_depth},
    whether the default server's is lower (C{d2.test}) or higher
    (C{d1b.test}); a longer chain fails as in nginx (OpenSSL stops
    building it at the limit, so its top has no issuer).
    """
    tooLong = "FAILED:unable to get local issuer certificate"
    allowed = {name: depth for servers in _PORTS.values() for name, depth in servers}
    for name, depth in allowed.items():
        for intermediates, client in enumerate(_CLIENTS):
            expected = "SUCCESS" if intermediates <= depth else tooLong
            assert ours[f"{name} {client}"] == f"{name} {expected}", (name, client)


@pytest.mark.skipif(findNginx() is None, reason="nginx is not installed")
def testSameAsNginx(ours: Dict[str, str], certs: Dict[str, Any]) -> None:
    """
    nginx (whose SNI callback sets the chosen server's depth) agrees on
    every server and client.
    """
    assert _observe(NginxRunner, certs) == ours
