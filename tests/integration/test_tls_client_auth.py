"""
Client certificates, OCSP stapling and key-exchange settings on TLS
listeners, over real sockets: C{python -m twisted_rproxy} spoken to by
Python's C{ssl} module and C{openssl s_client}, with certificates (and an
OCSP response) made for this run.  The client-certificate cases are then
run through a real nginx on the same config, and must come out the same.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.integration.certs import CertificateAuthority
from tests.integration.harness import NginxRunner, RproxyRunner, findNginx, freePort
from tests.integration.harness import parseRawResponses, readUntilClosed

OPENSSL = shutil.which("openssl")

#: What the servers answer: every client-certificate variable.
_VARS = (
    '"verify=$ssl_client_verify|s_dn=$ssl_client_s_dn|i_dn=$ssl_client_i_dn|'
    'serial=$ssl_client_serial|fp=$ssl_client_fingerprint\\n"'
)

#: The names served on the client-certificate port, by ssl_verify_client.
_NAMES = {"off": "plain.test", "on": "on.test", "optional": "opt.test",
          "optional_no_ca": "noca.test"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """
    The CA, a server certificate for every test name, client certificates
    from the CA and from a stranger CA, an RSA server certificate (for
    DHE), an OCSP response for the server certificate and DH parameters.
    """
    directory = tmp_path_factory.mktemp("client-auth")
    ca = CertificateAuthority(directory / "ca")
    other = CertificateAuthority(directory / "other", commonName="stranger CA")
    server = ca.issue(list(_NAMES.values()) + ["staple.test", "curve.test"])
    staple = directory / "staple.der"
    staple.write_bytes(ca.ocspResponse(server[0]))
    dhparam = directory / "dhparam.pem"
    if OPENSSL is not None:
        subprocess.run(
            [OPENSSL, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
             "dh_param:ffdhe3072", "-out", str(dhparam)],
            check=True, capture_output=True, timeout=60,
        )
    return {
        "ca": ca.certPath,
        "otherCA": other.certPath,
        "server": server,
        "rsa": ca.issue(["rsa.test"], rsaKey=True),
        "client": ca.issue(["alice"], client=True),
        "stranger": other.issue(["mallory"], client=True),
        "staple": staple,
        "dhparam": dhparam,
        "caObject": ca,
    }


def clientAuthConfig(certs: Dict[str, Any], port: int) -> str:
    """
    @return: one port whose default server asks for no certificate and
        whose other servers (chosen by SNI) use each C{ssl_verify_client}
        mode: so the SNI switch must carry the mode over.
    """
    cert, key = certs["server"]
    servers = []
    for mode, name in _NAMES.items():
        extra = "" if mode == "off" else (
            f"ssl_verify_client {mode};\n        ssl_client_certificate {certs['ca']};"
        )
        default = " default_server" if mode == "off" else ""
        servers.append(f"""
    server {{
        listen 127.0.0.1:{port} ssl{default};
        server_name {name};
        {extra}
        location / {{ return 200 {_VARS}; }}
    }}""")
    return f"""
error_log logs/error.log info;
events {{}}
http {{
    access_log logs/access.log;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {cert};
    ssl_certificate_key {key};
{''.join(servers)}
}}
"""


def _context(certs: Dict[str, Any], client: Optional[str],
             version: Optional[ssl.TLSVersion] = None) -> ssl.SSLContext:
    """
    @return: a client context trusting the test CA, presenting the
        C{client} (C{"client"}, C{"stranger"}) certificate or none.
    """
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    if client is not None:
        cert, key = certs[client]
        context.load_cert_chain(str(cert), str(key))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def _get(port: int, name: str, context: ssl.SSLContext) -> Any:
    """
    @return: the response to C{GET /} for C{name} over TLS.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    with context.wrap_socket(sock, server_hostname=name) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode("ascii"))
        data = readUntilClosed(conn)
    responses = parseRawResponses(data)
    assert len(responses) == 1, data
    return responses[0]


def _fields(body: bytes) -> Dict[str, str]:
    """
    @return: the C{key=value|...} body as a dict.
    """
    return dict(part.split("=", 1) for part in body.decode("utf-8").strip().split("|"))


@pytest.fixture(scope="module")
def authProxy(certs: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """
    A twisted_rproxy running L{clientAuthConfig}.
    """
    port = freePort()
    runner = RproxyRunner(clientAuthConfig(certs, port))
    try:
        runner.start()
        yield {"port": port, "runner": runner}
    finally:
        runner.cleanup()


def _cases() -> List[Tuple[str, Optional[str]]]:
    """
    @return: every (ssl_verify_client mode, client certificate) pair.
    """
    return [(mode, client) for mode in _NAMES for client in (None, "client", "stranger")]


def _outcome(port: int, certs: Dict[str, Any], mode: str, client: Optional[str],
             version: Optional[ssl.TLSVersion] = None) -> Tuple[int, Any]:
    """
    @return: the status and, for a 200, the variables; for a 400, the
        page's title.
    """
    response = _get(port, _NAMES[mode], _context(certs, client, version))
    if response.status == 200:
        return 200, _fields(response.body)
    title = response.body.split(b"<title>")[1].split(b"</title>")[0].decode()
    return response.status, title


def testOnAcceptsTheCAsCertificate(authProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """
    C{ssl_verify_client on} with a certificate from the CA: the request
    passes, with the certificate's details in the variables.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    status, fields = _outcome(authProxy["port"], certs, "on", "client")
    assert status == 200
    assert fields["verify"] == "SUCCESS"
    assert fields["s_dn"] == "CN=alice"
    assert fields["i_dn"] == "CN=rproxy test CA"
    certificate = x509.load_pem_x509_certificate(Path(certs["client"][0]).read_bytes())
    assert fields["fp"] == certificate.fingerprint(hashes.SHA1()).hex()
    assert int(fields["serial"], 16) == certificate.serial_number


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def testOnRejectsOthers(authProxy: Dict[str, Any], certs: Dict[str, Any],
                        version: ssl.TLSVersion) -> None:
    """
    C{ssl_verify_client on}: another CA's certificate gets nginx's
    "The SSL certificate error" 400, no certificate "No required SSL
    certificate was sent"; both logged with the reason.
    """
    port = authProxy["port"]
    assert _outcome(port, certs, "on", "stranger", version) == (
        400, "400 The SSL certificate error")
    assert _outcome(port, certs, "on", None, version) == (
        400, "400 No required SSL certificate was sent")
    log = authProxy["runner"].errorLog
    assert ("client SSL certificate verify error: (19:self-signed certificate in "
            "certificate chain) while reading client request headers") in log
    assert "client sent no required SSL certificate while reading client request headers" in log


def testOptionalPassesWithoutACertificate(authProxy: Dict[str, Any],
                                          certs: Dict[str, Any]) -> None:
    """
    C{optional}: no certificate passes with C{NONE} and empty details; the
    CA's passes with C{SUCCESS}; another CA's is still refused (as nginx:
    only C{optional_no_ca} lets an unknown issuer through).
    """
    port = authProxy["port"]
    status, fields = _outcome(port, certs, "optional", None)
    assert status == 200
    assert fields == {"verify": "NONE", "s_dn": "", "i_dn": "", "serial": "", "fp": ""}
    assert _outcome(port, certs, "optional", "client")[1]["verify"] == "SUCCESS"
    assert _outcome(port, certs, "optional", "stranger") == (400, "400 The SSL certificate error")


def testOptionalNoCAPassesAStranger(authProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """
    C{optional_no_ca}: an unknown issuer passes, with C{FAILED:reason}.
    """
    status, fields = _outcome(authProxy["port"], certs, "optional_no_ca", "stranger")
    assert status == 200
    assert fields["verify"] == "FAILED:self-signed certificate in certificate chain"
    assert fields["s_dn"] == "CN=mallory"
    assert fields["i_dn"] == "CN=stranger CA"


def testDefaultServerAsksForNothing(authProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """
    The default server (C{off}) never asks, so a client's certificate is
    not sent and the variables say C{NONE}.
    """
    status, fields = _outcome(authProxy["port"], certs, "off", "client")
    assert status == 200
    assert fields["verify"] == "NONE"


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def testOpenSSLClientCertificate(authProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """
    C{openssl s_client -cert} is accepted by C{on}, and is told which CAs
    the server accepts.
    """
    cert, key = certs["client"]
    result = subprocess.run(
        [str(OPENSSL), "s_client", "-connect", f"127.0.0.1:{authProxy['port']}",
         "-servername", "on.test", "-cert", str(cert), "-key", str(key), "-quiet",
         "-CAfile", str(certs["ca"])],
        input=b"GET / HTTP/1.1\r\nHost: on.test\r\nConnection: close\r\n\r\n",
        capture_output=True, timeout=30,
    )
    assert b"verify=SUCCESS|s_dn=CN=alice" in result.stdout, result
    listing = subprocess.run(
        [str(OPENSSL), "s_client", "-connect", f"127.0.0.1:{authProxy['port']}",
         "-servername", "on.test", "-tls1_2"],
        input=b"", capture_output=True, timeout=30,
    )
    assert b"Acceptable client certificate CA names\nCN = rproxy test CA" in listing.stdout


def testVerifyClientNeedsACertificateList(rproxyRunner: Callable[..., Any],
                                          certs: Dict[str, Any]) -> None:
    """
    As nginx: C{ssl_verify_client on} without C{ssl_client_certificate} is
    a config error at its line.
    """
    cert, key = certs["server"]
    conf = f"""events {{}}
http {{
    server {{
        listen 127.0.0.1:{freePort()} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_verify_client on;
    }}
}}
"""
    runner = rproxyRunner(conf, start=False)
    assert runner.runToExit(timeout=60) != 0
    output = runner.stderr + runner.errorLog
    assert "no ssl_client_certificate for ssl_verify_client" in output
    assert "nginx.conf:7" in output, output


@pytest.mark.skipif(findNginx() is None, reason="nginx is not installed")
def testDifferentialAgainstNginx(authProxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """
    Every mode with every client certificate gives the same status and
    variables (or page title) from nginx as from twisted_rproxy.
    """
    port = freePort()
    nginx = NginxRunner(clientAuthConfig(certs, port))
    try:
        nginx.start()
        for mode, client in _cases():
            ours = _outcome(authProxy["port"], certs, mode, client)
            theirs = _outcome(port, certs, mode, client)
            assert ours == theirs, (mode, client)
    finally:
        nginx.cleanup()


# -- OCSP stapling, DH parameters, ECDH curve --------------------------------


def _sClient(port: int, *args: str) -> str:
    """
    @return: what C{openssl s_client} printed for one handshake.
    """
    result = subprocess.run(
        [str(OPENSSL), "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
    )
    return result.stdout.decode("latin-1")


@pytest.fixture(scope="module")
def extrasProxy(certs: Dict[str, Any]) -> Iterator[Dict[str, int]]:
    """
    A twisted_rproxy with a stapling server, a P-384-only server and two
    RSA servers, one with C{ssl_dhparam}.
    """
    ports = {name: freePort() for name in ("staple", "nostaple", "curve", "dh", "nodh")}
    cert, key = certs["server"]
    rsaCert, rsaKey = certs["rsa"]
    conf = f"""
events {{}}
http {{
    access_log logs/access.log;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    server {{
        listen 127.0.0.1:{ports['staple']} ssl;
        ssl_stapling on;
        ssl_stapling_file {certs['staple']};
        return 200 "stapled\\n";
    }}
    server {{
        listen 127.0.0.1:{ports['nostaple']} ssl;
        return 200 "plain\\n";
    }}
    server {{
        listen 127.0.0.1:{ports['curve']} ssl;
        ssl_ecdh_curve secp384r1;
        return 200 "curve\\n";
    }}
    server {{
        listen 127.0.0.1:{ports['dh']} ssl;
        ssl_certificate {rsaCert};
        ssl_certificate_key {rsaKey};
        ssl_protocols TLSv1.2;
        ssl_ciphers DHE-RSA-AES128-GCM-SHA256;
        ssl_dhparam {certs['dhparam']};
        return 200 "dh\\n";
    }}
    server {{
        listen 127.0.0.1:{ports['nodh']} ssl;
        ssl_certificate {rsaCert};
        ssl_certificate_key {rsaKey};
        ssl_protocols TLSv1.2;
        ssl_ciphers DHE-RSA-AES128-GCM-SHA256;
        return 200 "nodh\\n";
    }}
}}
"""
    runner = RproxyRunner(conf)
    try:
        runner.start()
        yield ports
    finally:
        runner.cleanup()


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def testStapledResponseReturnedWhenAsked(extrasProxy: Dict[str, int]) -> None:
    """
    C{openssl s_client -status} gets the C{ssl_stapling_file} response
    (good, for our certificate); a server without stapling sends none.
    """
    output = _sClient(extrasProxy["staple"], "-status", "-servername", "staple.test")
    assert "OCSP Response Status: successful (0x0)" in output, output
    assert "Cert Status: good" in output, output
    output = _sClient(extrasProxy["nostaple"], "-status", "-servername", "staple.test")
    assert "OCSP response: no response sent" in output, output


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
@pytest.mark.parametrize("flag", ["-tls1_2", "-tls1_3"])
def testECDHCurve(extrasProxy: Dict[str, int], flag: str) -> None:
    """
    C{ssl_ecdh_curve secp384r1}: the key exchange uses P-384, over TLS 1.2
    and 1.3 alike (the client offers X25519 first).
    """
    output = _sClient(extrasProxy["curve"], flag, "-servername", "curve.test")
    assert "Server Temp Key: ECDH, secp384r1, 384 bits" in output, output
    output = _sClient(extrasProxy["nostaple"], flag)
    assert "Server Temp Key: X25519" in output, output


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def testDHParam(extrasProxy: Dict[str, int]) -> None:
    """
    C{ssl_dhparam}: a TLS 1.2 client's DHE uses the file's 3072-bit
    group; without it (as nginx) a DHE-only server has no cipher to offer.
    (A client that also offers TLS 1.3 names FFDHE groups itself, and
    OpenSSL then picks one of those.)
    """
    flags = ("-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256")
    output = _sClient(extrasProxy["dh"], *flags)
    assert "Server Temp Key: DH, 3072 bits" in output, output
    assert "Cipher is DHE-RSA-AES128-GCM-SHA256" in output, output
    output = _sClient(extrasProxy["nodh"], *flags)
    assert "Cipher is (NONE)" in output, output


def testBadStaplingFileIsAConfigError(rproxyRunner: Callable[..., Any],
                                      certs: Dict[str, Any], tmp_path: Path) -> None:
    """
    A stapling file that is not a DER OCSP response fails start-up at its
    line; so does an unreadable DH parameters file.
    """
    cert, key = certs["server"]
    junk = tmp_path / "junk.der"
    junk.write_bytes(b"not an OCSP response")
    for directive, line in ((f"ssl_stapling on; ssl_stapling_file {junk};", "d2i_OCSP_RESPONSE"),
                            (f"ssl_dhparam {tmp_path / 'missing.pem'};", "PEM_read_bio_DHparams")):
        conf = f"""events {{}}
http {{
    server {{
        listen 127.0.0.1:{freePort()} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {directive}
    }}
}}
"""
        runner = rproxyRunner(conf, start=False)
        assert runner.runToExit(timeout=60) != 0
        output = runner.stderr + runner.errorLog
        assert line in output, output
        assert "nginx.conf:7" in output, output


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def testVerifyingServerDoesNotResume(authProxy: Dict[str, Any], certs: Dict[str, Any],
                                     version: ssl.TLSVersion) -> None:
    """
    A session from a server that verifies client certificates is never
    resumed (its verify result would not be known), while the default
    server's sessions are: so the check below can see a resumption.
    """
    port = authProxy["port"]

    def twice(name: str) -> bool:
        context = _context(certs, "client", version)
        session = None
        reused = []
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", port), timeout=20)
            with context.wrap_socket(sock, server_hostname=name, session=session) as conn:
                conn.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                             .encode("ascii"))
                while conn.recv(65536):
                    pass
                reused.append(conn.session_reused)
                session = conn.session
        return reused[1]

    assert twice(_NAMES["off"]) is True
    assert twice(_NAMES["optional_no_ca"]) is False
    assert twice(_NAMES["on"]) is False


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
@pytest.mark.parametrize("signer", ["issuer", "stranger"])
def testStaplingFetchedFromTheResponder(rproxyRunner: Callable[..., Any],
                                        tmp_path: Path, signer: str) -> None:
    """
    C{ssl_stapling on} without a file: the response is fetched from the
    responder the certificate names (a local C{openssl ocsp}), on the
    first handshake that asks, and stapled on later ones.  With
    C{ssl_stapling_verify on}, a response signed by the issuer is stapled,
    and one signed by a stranger's key is refused, with the reason logged.
    """
    import time

    from cryptography import x509

    responderPort = freePort()
    ca = CertificateAuthority(tmp_path / "ca")
    cert, key = ca.issue(["live.test"], ocspURL=f"http://127.0.0.1:{responderPort}")
    leaf = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    index = tmp_path / "index.txt"
    expiry = leaf.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    index.write_text(f"V\t{expiry}\t\t{leaf.serial_number:X}\tunknown\t/CN=live.test\n")
    signing = ca if signer == "issuer" else CertificateAuthority(tmp_path / "other", "stranger")
    signingKey = signing.writeKey(tmp_path / "signer.key")
    responderLog = tmp_path / "responder.log"
    with responderLog.open("wb") as logFile:
        responder = subprocess.Popen(
            [str(OPENSSL), "ocsp", "-index", str(index), "-port", str(responderPort),
             "-rsigner", str(signing.certPath), "-rkey", str(signingKey),
             "-CA", str(ca.certPath), "-nmin", "60"],
            stdout=logFile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        # Ready once it says so: a probe connection would hold this
        # one-connection-at-a-time responder until its read times out.
        deadline = time.monotonic() + 30
        while b"waiting for OCSP client" not in responderLog.read_bytes():
            assert time.monotonic() < deadline and responder.poll() is None, (
                responderLog.read_text())
            time.sleep(0.05)
        port = freePort()
        runner = rproxyRunner(f"""events {{}}
http {{
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_stapling on;
        ssl_stapling_verify on;
        return 200 "live\\n";
    }}
}}
""")
        if signer == "stranger":
            refused = ("OCSP response verify error: the response is not signed by the "
                       "issuer or its OCSP responder")
            while refused not in runner.errorLog:
                assert time.monotonic() < deadline, runner.errorLog
                _sClient(port, "-status", "-servername", "live.test")
                time.sleep(0.1)
            output = _sClient(port, "-status", "-servername", "live.test")
            assert "OCSP response: no response sent" in output, output
            return
        output = ""
        while time.monotonic() < deadline:
            output = _sClient(port, "-status", "-servername", "live.test")
            if "Cert Status: good" in output:
                break
            time.sleep(0.1)
        assert "OCSP Response Status: successful (0x0)" in output, output
        assert "Cert Status: good" in output, output
        assert b"Received request" in responderLog.read_bytes()
    finally:
        responder.terminate()
        responder.wait(timeout=10)
