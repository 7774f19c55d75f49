"""
TLS termination over real sockets: C{python -m twisted_rproxy} with
C{listen ... ssl}, spoken to by Python's C{ssl} module and by
C{openssl s_client}, with certificates made for this run by a local CA
(tests/integration/certs.py).  Then one differential run of the same TLS
config through nginx.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import pytest

from tests.integration.certs import CertificateAuthority, commonNameOf
from tests.integration.harness import (
    NGINX_HTTP_HEAD,
    Backend,
    RawResponse,
    freePort,
    parseRawResponses,
    readUntilClosed,
)

OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """
    A CA and certificates for C{a.test} and C{b.test} (each also valid for
    C{www.} of its name), as absolute paths.
    """
    directory = tmp_path_factory.mktemp("certs")
    ca = CertificateAuthority(directory)
    a = ca.issue(["a.test", "www.a.test"])
    b = ca.issue(["b.test", "www.b.test"])
    return {"ca": ca.certPath, "a": a, "b": b, "ca_object": ca, "dir": directory}


def clientContext(
    certs: Dict[str, Any],
    version: Optional[ssl.TLSVersion] = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """
    @return: a client context trusting the test CA, pinned to C{version}.
    """
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if version is not None:
        context.minimum_version = version
        context.maximum_version = version
    return context


def tlsConnect(
    port: int,
    serverName: Optional[str],
    context: ssl.SSLContext,
    timeout: float = 10.0,
    session: Optional[ssl.SSLSession] = None,
) -> ssl.SSLSocket:
    """
    @return: a TLS connection to 127.0.0.1:C{port} sending C{serverName}
        by SNI (none when C{None}).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return context.wrap_socket(sock, server_hostname=serverName, session=session)
    except BaseException:
        sock.close()
        raise


def httpsRequest(
    port: int,
    serverName: Optional[str],
    context: ssl.SSLContext,
    path: str = "/",
    host: Optional[str] = None,
    headers: Tuple[Tuple[str, str], ...] = (),
) -> RawResponse:
    """
    One HTTP/1.1 request over TLS with C{Connection: close}.

    @param host: the Host header; default the server name.
    @return: the parsed response.
    """
    with tlsConnect(port, serverName, context) as conn:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host or serverName or 'localhost'}",
                 "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = readUntilClosed(conn)
    responses = parseRawResponses(data)
    assert len(responses) == 1, data
    return responses[0]


def handshakeFails(port: int, serverName: str, context: ssl.SSLContext) -> bool:
    """
    @return: whether a TLS handshake with C{context} is refused.
    """
    try:
        with tlsConnect(port, serverName, context):
            return False
    except (ssl.SSLError, ConnectionResetError, OSError):
        return True


def sClient(port: int, *args: str, stdin: bytes = b"") -> "subprocess.CompletedProcess[bytes]":
    """
    Run C{openssl s_client} against 127.0.0.1:C{port}.
    """
    assert OPENSSL is not None
    return subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20,
    )


def served(certs: Dict[str, Any], port: int, serverName: Optional[str]) -> str:
    """
    @return: the common name of the certificate the server sends for
        C{serverName} (not verified, so a wrong one shows as itself).
    """
    with tlsConnect(port, serverName, clientContext(certs, verify=False)) as conn:
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return commonNameOf(der)


def tlsConfig(certs: Dict[str, Any], servers: str, main: str = "") -> str:
    """
    @return: a whole config with C{servers} inside C{http {}}, the a.test
        certificate set at http level.
    """
    aCert, aKey = certs["a"]
    return f"""{main}
events {{}}

http {{
    access_log logs/access.log;
    ssl_certificate {aCert};
    ssl_certificate_key {aKey};
{servers}
}}
"""


@pytest.fixture(scope="module")
def tlsProxy(certs: Dict[str, Any], backend: Backend) -> Iterator[Dict[str, Any]]:
    """
    One running proxy for the tests below:

      - C{main}: a.test (http-level certificate) and b.test (its own,
        default_server) on one port, proxying to the backend, with HSTS;
      - C{v12} / C{v13}: ports allowing only TLS 1.2 / only TLS 1.3;
      - C{plain}: the guides' redirect server.
    """
    from tests.integration.harness import RproxyRunner

    ports = {name: freePort() for name in ("main", "v12", "v13", "plain")}
    bCert, bKey = certs["b"]
    servers = f"""
    server {{
        listen 127.0.0.1:{ports['main']} ssl;
        server_name a.test www.a.test;
        add_header Strict-Transport-Security "max-age=31536000" always;

        location / {{
            proxy_pass http://127.0.0.1:{backend.port};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-TLS "$https|$ssl_protocol|$ssl_server_name|$ssl_cipher";
        }}

        location = /vars {{
            return 200 "$scheme $https $ssl_protocol $ssl_server_name\\n";
        }}
    }}

    server {{
        listen 127.0.0.1:{ports['main']} ssl default_server;
        server_name b.test *.b.test;
        ssl_certificate {bCert};
        ssl_certificate_key {bKey};
        return 200 "b\\n";
    }}

    server {{
        listen 127.0.0.1:{ports['v12']} ssl;
        ssl_protocols TLSv1.2;
        return 200 "v12 $ssl_protocol\\n";
    }}

    server {{
        listen 127.0.0.1:{ports['v13']} ssl;
        ssl_protocols TLSv1.3;
        return 200 "v13 $ssl_protocol\\n";
    }}

    server {{
        listen 127.0.0.1:{ports['plain']};
        return 301 https://$host$request_uri;
    }}
"""
    runner = RproxyRunner(tlsConfig(certs, servers))
    try:
        runner.start()
        yield {"ports": ports, "runner": runner}
    finally:
        runner.cleanup()


# -- protocols ---------------------------------------------------------------


def testDefaultProtocolsAcceptTLS12And13(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """The default ssl_protocols (TLSv1.2 TLSv1.3) accept both."""
    port = tlsProxy["ports"]["main"]
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        response = httpsRequest(port, "a.test", clientContext(certs, version), "/vars")
        assert response.status == 200
        assert response.body == f"https on {name} a.test\n".encode()


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def testOldProtocolsRefused(tlsProxy: Dict[str, Any], flag: str) -> None:
    """
    TLS 1.0 and 1.1 are refused by default, even offered by a client
    that allows them (security level 0).
    """
    result = sClient(
        tlsProxy["ports"]["main"], flag, "-cipher", "DEFAULT@SECLEVEL=0",
        "-servername", "a.test",
    )
    output = result.stdout.decode("latin-1")
    assert result.returncode != 0, output
    assert "Cipher is (NONE)" in output or "alert" in output or "no protocols" in output, output


def testOnlyTLS12(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """ssl_protocols TLSv1.2: 1.3 is refused, 1.2 accepted."""
    port = tlsProxy["ports"]["v12"]
    assert handshakeFails(port, "a.test", clientContext(certs, ssl.TLSVersion.TLSv1_3))
    response = httpsRequest(port, "a.test", clientContext(certs, ssl.TLSVersion.TLSv1_2))
    assert response.body == b"v12 TLSv1.2\n"


def testOnlyTLS13(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """ssl_protocols TLSv1.3: 1.2 is refused, 1.3 accepted."""
    port = tlsProxy["ports"]["v13"]
    assert handshakeFails(port, "a.test", clientContext(certs, ssl.TLSVersion.TLSv1_2))
    response = httpsRequest(port, "a.test", clientContext(certs, ssl.TLSVersion.TLSv1_3))
    assert response.body == b"v13 TLSv1.3\n"


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def testOpenSSLClientProtocols(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """openssl s_client negotiates 1.2 and 1.3 where allowed, and no 1.3 on the 1.2 port."""
    ports = tlsProxy["ports"]
    for flag, expected in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        result = sClient(ports["main"], flag, "-servername", "a.test", "-CAfile",
                         str(certs["ca"]), "-verify_return_error")
        output = result.stdout.decode("latin-1")
        assert result.returncode == 0, output
        assert f"Protocol  : {expected}" in output or f"New, {expected}," in output, output
    refused = sClient(ports["v12"], "-tls1_3", "-servername", "a.test")
    assert refused.returncode != 0


# -- SNI -------------------------------------------------------------------------


def testSNIPicksTheCertificate(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """
    Two names on one port each get their own certificate (verified against
    the CA for the name); a wildcard name gets its server's.
    """
    port = tlsProxy["ports"]["main"]
    assert served(certs, port, "a.test") == "a.test"
    assert served(certs, port, "www.a.test") == "a.test"
    assert served(certs, port, "b.test") == "b.test"
    assert served(certs, port, "www.b.test") == "b.test"
    response = httpsRequest(port, "b.test", clientContext(certs))
    assert response.body == b"b\n"


def testUnknownOrNoSNIGetsTheDefault(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """An unknown name, and no name at all, get the default server's (b.test)."""
    port = tlsProxy["ports"]["main"]
    assert served(certs, port, "unknown.test") == "b.test"
    assert served(certs, port, None) == "b.test"


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def testSNIWithOpenSSLClient(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """openssl s_client sees the certificate of the name it sends."""
    port = tlsProxy["ports"]["main"]
    for name, subject in (("a.test", "CN = a.test"), ("b.test", "CN = b.test"),
                          ("nobody.test", "CN = b.test")):
        result = sClient(port, "-servername", name, "-CAfile", str(certs["ca"]))
        output = result.stdout.decode("latin-1")
        assert f"subject={subject}" in output.replace("subject=/CN=", "subject=CN = "), output
    noName = sClient(port, "-noservername")
    assert "subject=CN = b.test" in noName.stdout.decode("latin-1")


# -- requests over HTTPS ------------------------------------------------------------


def testProxiedRequestCarriesHTTPS(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """
    A proxied request over HTTPS reaches the backend with
    X-Forwarded-Proto https and the TLS variables; HSTS is on the answer.
    """
    port = tlsProxy["ports"]["main"]
    response = httpsRequest(port, "a.test", clientContext(certs, ssl.TLSVersion.TLSv1_2), "/x?y=1")
    assert response.status == 200, response
    import json

    echo = json.loads(response.body)
    headers = {name.lower(): value for name, value in echo["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    https, protocol, serverName, cipher = headers["x-tls"].split("|")
    assert (https, protocol, serverName) == ("on", "TLSv1.2", "a.test")
    assert cipher
    assert response.header("Strict-Transport-Security") == "max-age=31536000"


def testHSTSOnA404(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """add_header ... always puts HSTS on an error answer too."""
    port = tlsProxy["ports"]["main"]
    response = httpsRequest(port, "a.test", clientContext(certs), "/status/404")
    assert response.status == 404
    assert response.header("Strict-Transport-Security") == "max-age=31536000"


def testRedirectServer(tlsProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """The guides' port-80 server sends plain HTTP clients to https."""
    from tests.integration.harness import request

    response = request(tlsProxy["ports"]["plain"], path="/a/b?c=d", host="a.test")
    assert response.status == 301
    assert response.header("Location") == "https://a.test/a/b?c=d"


def testPlainHTTPOnTLSPortIs400(tlsProxy: Dict[str, Any]) -> None:
    """
    Plain HTTP sent to a TLS port is answered in plain text with nginx's
    400 for it (its internal 497), and the connection closed; the
    error_page cases and the comparison with nginx are in test_tls_errors.
    """
    from tests.integration.harness import rawExchange

    data = rawExchange(tlsProxy["ports"]["main"], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                       timeout=20)
    (response,) = parseRawResponses(data)
    assert response.status == 400
    assert response.header("Connection") == "close"
    assert b"The plain HTTP request was sent to HTTPS port" in response.body


# -- sessions --------------------------------------------------------------------------


def resumed(port: int, certs: Dict[str, Any]) -> bool:
    """
    @return: whether a second TLS 1.2 connection resumes the first's session.
    """
    context = clientContext(certs, ssl.TLSVersion.TLSv1_2)
    with tlsConnect(port, "a.test", context) as first:
        first.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        readUntilClosed(first)
        session = first.session
    with tlsConnect(port, "a.test", context, session=session) as second:
        return bool(second.session_reused)


@pytest.mark.parametrize(
    "settings, expected",
    [
        ("", True),
        ("ssl_session_tickets off;", False),
        ("ssl_session_tickets off; ssl_session_cache shared:SSL:1m;", True),
    ],
    ids=["tickets", "nothing", "cache"],
)
def testSessionResumption(
    rproxyRunner: Callable[..., Any], certs: Dict[str, Any], settings: str, expected: bool
) -> None:
    """
    Sessions resume by ticket by default, not at all with tickets off and
    no cache, and by session id with a cache.
    """
    port = freePort()
    conf = tlsConfig(certs, f"""
    {settings}
    server {{
        listen 127.0.0.1:{port} ssl;
        return 200 "ok\\n";
    }}
""")
    rproxyRunner(conf)
    assert resumed(port, certs) is expected


# -- start-up and workers ----------------------------------------------------------------


def testBadCertificateStopsStartup(rproxyRunner: Callable[..., Any], certs: Dict[str, Any]) -> None:
    """
    A key that does not match its certificate: the process does not
    start, and says which directive at FILE:LINE.
    """
    bCert, bKey = certs["b"]
    port = freePort()
    conf = tlsConfig(certs, f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate_key {bKey};
    }}
""")
    runner = rproxyRunner(conf, start=False)
    assert runner.runToExit() != 0
    line = conf.splitlines().index(f"        ssl_certificate_key {bKey};") + 1
    assert f"key values mismatch in {runner.confPath}:{line}" in runner.stderr


def testRSAAndECDSAOnOneServer(rproxyRunner: Callable[..., Any], certs: Dict[str, Any]) -> None:
    """
    A server with an ECDSA and an RSA certificate (two
    C{ssl_certificate} pairs) gives each client the one its cipher suites
    can use, and both answer.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    directory = certs["dir"]
    rsaCert, rsaKey = certs["ca_object"].issue(
        ["dual.test"], directory / "dual-rsa.crt", directory / "dual-rsa.key", rsaKey=True)
    ecCert, ecKey = certs["ca_object"].issue(
        ["dual.test"], directory / "dual-ec.crt", directory / "dual-ec.key")
    port = freePort()
    conf = tlsConfig(certs, f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {ecCert};
        ssl_certificate_key {ecKey};
        ssl_certificate {rsaCert};
        ssl_certificate_key {rsaKey};
        return 200 "$ssl_cipher\n";
    }}
""")
    rproxyRunner(conf)
    for cipher, keyType in [("ECDHE-ECDSA-AES128-GCM-SHA256", ec.EllipticCurvePublicKey),
                            ("ECDHE-RSA-AES128-GCM-SHA256", rsa.RSAPublicKey)]:
        context = clientContext(certs, ssl.TLSVersion.TLSv1_2)
        context.set_ciphers(cipher)
        with tlsConnect(port, "dual.test", context) as conn:
            leaf = x509.load_der_x509_certificate(conn.getpeercert(binary_form=True))
            assert isinstance(leaf.public_key(), keyType), cipher
            conn.sendall(b"GET / HTTP/1.1\r\nHost: dual.test\r\nConnection: close\r\n\r\n")
            (response,) = parseRawResponses(readUntilClosed(conn))
        assert response.status == 200
        assert response.body.decode().strip() == cipher


def testExpiredCertificateStopsStartup(
    rproxyRunner: Callable[..., Any], certs: Dict[str, Any]
) -> None:
    """
    An expired certificate: the process does not start, and the error
    names the file, its end date and the directive's FILE:LINE.
    """
    oldCert, oldKey = certs["ca_object"].issue(["old.test"], expired=True)
    port = freePort()
    conf = tlsConfig(certs, f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {oldCert};
        ssl_certificate_key {oldKey};
    }}
""")
    runner = rproxyRunner(conf, start=False)
    assert runner.runToExit() != 0
    line = conf.splitlines().index(f"        ssl_certificate {oldCert};") + 1
    assert f'certificate "{oldCert}" expired on ' in runner.stderr
    assert f"{runner.confPath}:{line}" in runner.stderr


def testWorkersServeTLS(rproxyRunner: Callable[..., Any], certs: Dict[str, Any]) -> None:
    """Workers serving on the master's inherited socket terminate TLS too."""
    port = freePort()
    conf = tlsConfig(certs, f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        return 200 "$scheme $pid\\n";
    }}
""", main="worker_processes 2;")
    runner = rproxyRunner(conf)
    pids = set()
    for _ in range(6):
        response = httpsRequest(port, "a.test", clientContext(certs))
        scheme, pid = response.body.decode().split()
        assert scheme == "https"
        pids.add(pid)
    assert str(runner.process.pid) not in pids


def testReloadLoadsNewCertificate(rproxyRunner: Callable[..., Any], certs: Dict[str, Any]) -> None:
    """
    A reload re-reads the certificate files: a renewed certificate is
    served to new connections on the same socket.
    """
    import signal
    import time

    directory: Path = certs["dir"] / "reload"
    ca: CertificateAuthority = certs["ca_object"]
    cert, key = ca.issue(["a.test"], directory / "site.crt", directory / "site.key")
    port = freePort()
    conf = f"""
events {{}}
http {{
    access_log logs/access.log;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        return 200 "ok\\n";
    }}
}}
"""
    runner = rproxyRunner(conf)
    assert served(certs, port, "a.test") == "a.test"
    ca.issue(["renewed.test"], cert, key)
    runner.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while served(certs, port, "a.test") != "renewed.test":
        assert time.monotonic() < deadline, runner.describe()
        time.sleep(0.05)


def testUnixSocketTLS(rproxyRunner: Callable[..., Any], certs: Dict[str, Any],
                      tmp_path: Path) -> None:
    """listen unix:PATH ssl terminates TLS on the UNIX socket."""
    path = tmp_path / "tls.sock"
    port = freePort()
    conf = tlsConfig(certs, f"""
    server {{
        listen unix:{path} ssl;
        listen 127.0.0.1:{port};
        return 200 "$scheme\\n";
    }}
""")
    rproxyRunner(conf)
    context = clientContext(certs)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        with context.wrap_socket(sock, server_hostname="a.test") as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            (response,) = parseRawResponses(readUntilClosed(conn))
    assert response.body == b"https\n"


# -- the same config through nginx ----------------------------------------------------


def differentialConfig(certs: Dict[str, Any], ports: Dict[str, int], backendPort: int) -> str:
    """
    @return: one TLS config both nginx and twisted_rproxy run: two names
        on one ssl port (one proxied with HSTS, one answering itself), a
        TLS 1.2-only port and the redirect server.
    """
    aCert, aKey = certs["a"]
    bCert, bKey = certs["b"]
    return NGINX_HTTP_HEAD + f"""
    ssl_certificate {aCert};
    ssl_certificate_key {aKey};
    ssl_protocols TLSv1.2 TLSv1.3;

    server {{
        listen 127.0.0.1:{ports['tls']} ssl;
        server_name a.test;
        add_header Strict-Transport-Security "max-age=31536000" always;

        location / {{
            proxy_pass http://127.0.0.1:{backendPort};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-TLS "$https|$ssl_protocol|$ssl_server_name|$ssl_cipher";
        }}

        location = /here {{
            return 200 "$scheme $https $ssl_protocol $ssl_server_name\\n";
        }}
    }}

    server {{
        listen 127.0.0.1:{ports['tls']} ssl;
        server_name b.test;
        ssl_certificate {bCert};
        ssl_certificate_key {bKey};
        return 200 "b $ssl_server_name\\n";
    }}

    server {{
        listen 127.0.0.1:{ports['v12']} ssl;
        ssl_protocols TLSv1.2;
        return 200 "v12 $ssl_protocol\\n";
    }}

    server {{
        listen 127.0.0.1:{ports['plain']};
        return 301 https://$host$request_uri;
    }}
}}
"""


def observeTLS(certs: Dict[str, Any], ports: Dict[str, int]) -> Dict[str, Any]:
    """
    @return: what one server did for each request that matters: status,
        the headers compared, the body (for the backend's echo, the headers
        it saw that TLS sets), and the certificate each name got.
    """
    from tests.integration.harness import request

    seen: Dict[str, Any] = {}
    compared = ("content-type", "location", "strict-transport-security")
    cases = [
        ("proxied", "a.test", "/echo?x=1", ssl.TLSVersion.TLSv1_2),
        ("proxied13", "a.test", "/echo", ssl.TLSVersion.TLSv1_3),
        ("local", "a.test", "/here", ssl.TLSVersion.TLSv1_3),
        ("error", "a.test", "/status/404", None),
        ("second name", "b.test", "/", None),
    ]
    for label, name, path, version in cases:
        response = httpsRequest(ports["tls"], name, clientContext(certs, version), path)
        body: Any = response.body
        if path.startswith("/echo"):
            import json

            echo = {n.lower(): v for n, v in json.loads(response.body)["headers"]}
            body = {n: echo.get(n) for n in ("host", "x-forwarded-proto", "x-tls")}
        seen[label] = (
            response.status,
            {n: response.header(n) for n in compared},
            body,
        )
    for name in ("a.test", "b.test", "unknown.test", None):
        seen[f"certificate for {name}"] = served(certs, ports["tls"], name)
    seen["1.3 on the 1.2 port"] = handshakeFails(
        ports["v12"], "a.test", clientContext(certs, ssl.TLSVersion.TLSv1_3)
    )
    seen["1.2 on the 1.2 port"] = httpsRequest(
        ports["v12"], "a.test", clientContext(certs, ssl.TLSVersion.TLSv1_2)
    ).body
    redirect = request(ports["plain"], path="/p?q=1", host="a.test")
    seen["redirect"] = (redirect.status, redirect.header("Location"))
    return seen


def testDifferentialAgainstNginx(
    nginxRunner: Callable[..., Any],
    rproxyRunner: Callable[..., Any],
    backend: Backend,
    certs: Dict[str, Any],
) -> None:
    """
    The same TLS config through nginx and twisted_rproxy: the same status,
    HSTS, Location and content type, the same TLS facts reaching the
    backend, the same certificate per server name, the same protocols.
    """
    observed = []
    for runner in (nginxRunner, rproxyRunner):
        ports = {name: freePort() for name in ("tls", "v12", "plain")}
        server = runner(differentialConfig(certs, ports, backend.port))
        try:
            observed.append(observeTLS(certs, ports))
        finally:
            server.stop()
    nginx, rproxy = observed
    assert nginx["proxied"][2]["x-forwarded-proto"] == "https"
    assert nginx["error"][1]["strict-transport-security"] == "max-age=31536000"
    assert rproxy == nginx
