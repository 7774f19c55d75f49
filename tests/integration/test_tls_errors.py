"""
nginx's TLS error statuses over real sockets, each run through nginx on
the same config too: a plain-HTTP request on a TLS port (internal 497),
a bad or missing client certificate (495, 496), each sent as 400 with its
own page unless an C{error_page} catches it; and a client whose ALPN
offers nothing we speak (the handshake fails with C{no_application_protocol}).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from tests.integration.certs import CertificateAuthority
from tests.integration.harness import NGINX_HTTP_HEAD, freePort, parseRawResponses, rawExchange
from tests.integration.test_tls import clientContext, httpsRequest
from tests.integration.test_tls_client_auth import _context, _get

OPENSSL = shutil.which("openssl")

#: The ports of L{errorsConfig}, by what their server does.
_PORTS = ("bare", "redirect", "redirect301", "internal", "certs", "login", "h2")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """
    A CA, a server certificate for C{a.test}, a client certificate it
    signed and one a stranger CA signed.
    """
    directory = tmp_path_factory.mktemp("tls-errors")
    ca = CertificateAuthority(directory / "ca")
    other = CertificateAuthority(directory / "other", commonName="stranger CA")
    return {
        "ca": ca.certPath,
        "a": ca.issue(["a.test"]),
        "client": ca.issue(["alice"], client=True),
        "stranger": other.issue(["mallory"], client=True),
    }


def errorsConfig(certs: Dict[str, Any], ports: Dict[str, int]) -> str:
    """
    @return: one config for nginx and twisted_rproxy: a TLS port with no
        C{error_page}, the guides' C{error_page 497} redirects (302 and
        C{=301}), an internal C{error_page 497 /uri}, client-certificate
        ports catching 495/496 or only 496, and an http2 port.
    """
    cert, key = certs["a"]
    return NGINX_HTTP_HEAD + f"""    ssl_certificate {cert};
    ssl_certificate_key {key};

    server {{
        listen 127.0.0.1:{ports['bare']} ssl;
        server_name a.test;
        return 200 "tls $scheme\\n";
    }}

    server {{
        listen 127.0.0.1:{ports['redirect']} ssl;
        server_name a.test;
        error_page 497 https://$host:$server_port$request_uri;
        return 200 "tls $scheme\\n";
    }}

    server {{
        listen 127.0.0.1:{ports['redirect301']} ssl;
        server_name a.test;
        error_page 497 =301 https://$host$request_uri;
        return 200 "tls $scheme\\n";
    }}

    server {{
        listen 127.0.0.1:{ports['internal']} ssl;
        server_name a.test;
        error_page 497 /plain;
        location = /plain {{
            return 200 "plain scheme=$scheme https=$https uri=$uri\\n";
        }}
        location / {{
            return 200 "tls $scheme\\n";
        }}
    }}

    server {{
        listen 127.0.0.1:{ports['certs']} ssl;
        server_name a.test;
        ssl_verify_client on;
        ssl_client_certificate {certs['ca']};
        error_page 495 496 =403 /certerror;
        location = /certerror {{
            return 403 "certificate: $ssl_client_verify\\n";
        }}
        location / {{
            return 200 "verified $ssl_client_verify\\n";
        }}
    }}

    server {{
        listen 127.0.0.1:{ports['login']} ssl;
        server_name a.test;
        ssl_verify_client on;
        ssl_client_certificate {certs['ca']};
        error_page 496 https://login.test/;
        return 200 "verified\\n";
    }}

    server {{
        listen 127.0.0.1:{ports['h2']} ssl http2;
        server_name a.test;
        return 200 "h2 port\\n";
    }}
}}
"""


def _normalized(body: bytes) -> bytes:
    """
    @return: C{body} without the server's name in an error page's footer.
    """
    return re.sub(rb"<hr><center>[^<]*</center>", b"<hr><center>SERVER</center>", body)


def _plain(port: int, path: str = "/p?q=1") -> Tuple[Any, ...]:
    """
    @return: what a plain HTTP/1.1 request on TLS port C{port} got: status,
        Location, Content-Type, Connection, body, and whether the server
        then closed (one response, nothing after it).
    """
    data = rawExchange(port, f"GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode("ascii"),
                       timeout=20)
    responses = parseRawResponses(data)
    assert len(responses) == 1, data
    (response,) = responses
    return (response.status, response.header("Location"), response.header("Content-Type"),
            response.header("Connection"), _normalized(response.body))


def _certificate(port: int, certs: Dict[str, Any], client: Optional[str]) -> Tuple[Any, ...]:
    """
    @return: status, Location and body of C{GET /} over TLS presenting
        C{client}'s certificate (or none).
    """
    response = _get(port, "a.test", _context(certs, client))
    return response.status, response.header("Location"), _normalized(response.body)


def _alpn(port: int, protocols: str) -> Tuple[bool, bool]:
    """
    @return: whether C{openssl s_client -alpn PROTOCOLS} completed the
        handshake, and whether it reported the C{no application protocol}
        alert.
    """
    assert OPENSSL is not None
    result = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.test",
         "-alpn", protocols],
        input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
    )
    text = result.stdout.decode("latin-1")
    completed = "Cipher is " in text and "Cipher is (NONE)" not in text
    return completed, "no application protocol" in text


def observe(certs: Dict[str, Any], ports: Dict[str, int]) -> Dict[str, Any]:
    """
    @return: what one server did in every case.
    """
    seen: Dict[str, Any] = {}
    for name in ("bare", "redirect", "redirect301", "internal"):
        seen[f"plain on {name}"] = _plain(ports[name])
    seen["plain / on bare"] = _plain(ports["bare"], "/")
    seen["plain on h2"] = _plain(ports["h2"])
    seen["TLS on bare"] = httpsRequest(ports["bare"], "a.test", clientContext(certs)).body
    seen["TLS on internal"] = httpsRequest(ports["internal"], "a.test", clientContext(certs)).body
    for client in (None, "client", "stranger"):
        seen[f"certs {client}"] = _certificate(ports["certs"], certs, client)
        seen[f"login {client}"] = _certificate(ports["login"], certs, client)
    if OPENSSL is not None:
        for protocols in ("spdy/3", "spdy/3,http/1.1", "h2", "http/1.0"):
            seen[f"alpn {protocols} on h2"] = _alpn(ports["h2"], protocols)
            seen[f"alpn {protocols} without"] = _alpn(ports["bare"], protocols)
    return seen


@pytest.fixture(scope="module")
def observed(certs: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """
    L{observe} run against twisted_rproxy and, when installed, nginx.
    """
    from tests.integration.harness import NginxRunner, RproxyRunner, findNginx

    results: Dict[str, Dict[str, Any]] = {}
    runners: List[Tuple[str, Callable[[str], Any]]] = [("rproxy", RproxyRunner)]
    if findNginx() is not None:
        runners.append(("nginx", NginxRunner))
    for label, make in runners:
        ports = {name: freePort() for name in _PORTS}
        runner = make(errorsConfig(certs, ports))
        try:
            runner.start()
            results[label] = observe(certs, ports)
            results[label]["ports"] = ports
        finally:
            runner.cleanup()
    return results


_PAGE_497 = (
    b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n"
    b"<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"
    b"<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
    b"<hr><center>SERVER</center>\r\n</body>\r\n</html>\r\n"
)


def testPlainHTTPOnTLSPortIs400(observed: Dict[str, Dict[str, Any]]) -> None:
    """
    A plain request on a TLS port (an http2 one too) gets nginx's 400 page
    for it, and the connection is closed; TLS on the same port still works.
    """
    ours = observed["rproxy"]
    assert ours["plain on bare"] == (400, None, "text/html", "close", _PAGE_497)
    assert ours["plain on h2"] == (400, None, "text/html", "close", _PAGE_497)
    assert ours["TLS on bare"] == b"tls https\n"


def testErrorPage497Redirects(observed: Dict[str, Dict[str, Any]]) -> None:
    """
    C{error_page 497 https://...} redirects with a 302, C{=301} with a 301,
    each to the https URL of the request.
    """
    ours = observed["rproxy"]
    port = ours["ports"]["redirect"]
    status, location, _type, connection, _body = ours["plain on redirect"]
    assert (status, location, connection) == (302, f"https://a.test:{port}/p?q=1", "close")
    status, location, _type, _connection, _body = ours["plain on redirect301"]
    assert (status, location) == (301, "https://a.test/p?q=1")


def testErrorPage497InternalRedirect(observed: Dict[str, Dict[str, Any]]) -> None:
    """
    C{error_page 497 /plain} (no C{=}) serves that location as a 400, with
    C{$scheme} http and C{$https} empty: the connection is not TLS.
    """
    status, _location, _type, _connection, body = observed["rproxy"]["plain on internal"]
    assert (status, body) == (400, b"plain scheme=http https= uri=/plain\n")
    assert observed["rproxy"]["TLS on internal"] == b"tls https\n"


def testErrorPage495And496(observed: Dict[str, Dict[str, Any]]) -> None:
    """
    C{error_page 495 496 =403 /certerror} catches a missing and a bad
    certificate; C{error_page 496 URL} redirects only a missing one, and a
    bad one still gets the 400 certificate-error page.
    """
    ours = observed["rproxy"]
    assert ours["certs None"] == (403, None, b"certificate: NONE\n")
    assert ours["certs client"] == (200, None, b"verified SUCCESS\n")
    status, _location, body = ours["certs stranger"]
    assert status == 403 and body.startswith(b"certificate: FAILED:"), body
    assert ours["login None"][:2] == (302, "https://login.test/")
    status, _location, body = ours["login stranger"]
    assert status == 400 and b"<title>400 The SSL certificate error</title>" in body


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def testALPNWithNothingInCommonFails(observed: Dict[str, Dict[str, Any]]) -> None:
    """
    Offering only C{spdy/3} fails the handshake with the
    C{no_application_protocol} alert, on an http2 port or not; offering
    it with C{http/1.1}, or C{http/1.0} alone, succeeds; C{h2} alone
    succeeds only where HTTP/2 is on.
    """
    ours = observed["rproxy"]
    assert ours["alpn spdy/3 on h2"] == (False, True)
    assert ours["alpn spdy/3 without"] == (False, True)
    assert ours["alpn spdy/3,http/1.1 on h2"] == (True, False)
    assert ours["alpn http/1.0 without"] == (True, False)
    assert ours["alpn h2 on h2"] == (True, False)
    assert ours["alpn h2 without"] == (False, True)


def testSameAsNginx(observed: Dict[str, Dict[str, Any]]) -> None:
    """
    nginx gives the same answers in every case (ports differ, so the
    redirect to C{$server_port} is compared without it).
    """
    if "nginx" not in observed:
        pytest.skip("nginx is not installed")
    ours, theirs = (dict(observed[label]) for label in ("rproxy", "nginx"))
    for seen in (ours, theirs):
        port = seen.pop("ports")["redirect"]
        status, location, *rest = seen["plain on redirect"]
        seen["plain on redirect"] = (status, location.replace(f":{port}/", ":PORT/"), *rest)
    assert ours == theirs
