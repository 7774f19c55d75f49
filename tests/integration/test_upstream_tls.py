"""
Upstream TLS over real sockets: C{python -m twisted_rproxy} proxying with
C{proxy_pass https://...} to a real nginx that terminates TLS with
certificates made for this run, and reports what it saw of each
connection (the SNI name, the client certificate, the connection number
and how many requests it has carried).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

from tests.integration.certs import CertificateAuthority
from tests.integration.harness import NginxRunner, RproxyRunner, findNginx, freePort, request

pytestmark = pytest.mark.skipif(findNginx() is None, reason="nginx (the TLS backend) is not installed")

#: What the backend answers: everything a test needs to see about the
#: connection the proxy opened.
_REPORT = (
    '"$server_port sni=[$ssl_server_name] client=$ssl_client_verify '
    'dn=[$ssl_client_s_dn] proto=$ssl_protocol resumed=$ssl_session_reused conn=$connection '
    'req=$connection_requests\\n"'
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """
    The test CA with certificates for C{backend.test} and C{wrong.test} and
    a client certificate, plus a second, untrusted CA with its own client
    certificate.
    """
    directory = tmp_path_factory.mktemp("upstream-certs")
    ca = CertificateAuthority(directory / "ca")
    other = CertificateAuthority(directory / "other", commonName="other CA")
    return {
        "ca": ca.certPath,
        "otherCA": other.certPath,
        "backend": ca.issue(["backend.test"]),
        "wrong": ca.issue(["wrong.test"]),
        "client": ca.issue(["proxy-client"], client=True),
        "otherClient": other.issue(["stranger"], client=True),
    }


@pytest.fixture(scope="module")
def tlsBackend(certs: Dict[str, Any]) -> Iterator[Dict[str, int]]:
    """
    A real nginx with three TLS ports: C{good} (a backend.test certificate,
    client certificates optional), C{wrong} (a wrong.test certificate),
    and C{mtls} (backend.test, a client certificate required).
    """
    ports = {name: freePort() for name in ("good", "wrong", "mtls")}
    cert, key = certs["backend"]
    wrongCert, wrongKey = certs["wrong"]
    conf = f"""
events {{}}
http {{
    access_log off;
    keepalive_requests 1000;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {{
        listen 127.0.0.1:{ports['good']} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {certs['ca']};
        ssl_verify_client optional;
        location / {{ return 200 {_REPORT}; }}
    }}
    server {{
        listen 127.0.0.1:{ports['wrong']} ssl;
        ssl_certificate {wrongCert};
        ssl_certificate_key {wrongKey};
        location / {{ return 200 {_REPORT}; }}
    }}
    server {{
        listen 127.0.0.1:{ports['mtls']} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {certs['ca']};
        ssl_verify_client on;
        location / {{ return 200 {_REPORT}; }}
    }}
}}
"""
    runner = NginxRunner(conf)
    try:
        runner.start()
        yield ports
    finally:
        runner.cleanup()


def proxyConf(certs: Dict[str, Any], backend: Dict[str, int], port: int) -> str:
    """
    @return: the proxy's config, one location per case below; nginx runs
        the same text in the differential test.
    """
    good, wrong, mtls = backend["good"], backend["wrong"], backend["mtls"]
    clientCert, clientKey = certs["client"]
    otherCert, otherKey = certs["otherClient"]
    return f"""
events {{}}
http {{
    access_log logs/access.log;
    upstream pooled {{
        server 127.0.0.1:{good};
        keepalive 4;
    }}
    upstream failover {{
        server 127.0.0.1:{wrong};
        server 127.0.0.1:{good};
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_ssl_trusted_certificate {certs['ca']};
        proxy_ssl_protocols TLSv1.2 TLSv1.3;
        # nginx resumes a session saved by another location to the same
        # peer without verifying again (so /untrusted/ would pass there);
        # twisted_rproxy keeps sessions per location settings and name.
        # Off, both verify every handshake.
        proxy_ssl_session_reuse off;

        location /wrong-verified/ {{
            proxy_pass https://127.0.0.1:{wrong}/;
            proxy_ssl_verify on;
            proxy_ssl_name backend.test;
        }}
        location /wrong-unverified/ {{
            proxy_pass https://127.0.0.1:{wrong}/;
            proxy_ssl_name backend.test;
        }}
        location /right/ {{
            proxy_pass https://127.0.0.1:{good}/;
            proxy_ssl_verify on;
            proxy_ssl_name backend.test;
        }}
        location /untrusted/ {{
            proxy_pass https://127.0.0.1:{good}/;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {certs['otherCA']};
            proxy_ssl_name backend.test;
            proxy_ssl_session_reuse on;
        }}
        location /sni/ {{
            proxy_pass https://127.0.0.1:{good}/;
            proxy_ssl_verify on;
            proxy_ssl_name backend.test;
            proxy_ssl_server_name on;
        }}
        location /client-cert/ {{
            proxy_pass https://127.0.0.1:{mtls}/;
            proxy_ssl_certificate {clientCert};
            proxy_ssl_certificate_key {clientKey};
        }}
        location /no-client-cert/ {{
            proxy_pass https://127.0.0.1:{mtls}/;
        }}
        location /stranger-cert/ {{
            proxy_pass https://127.0.0.1:{mtls}/;
            proxy_ssl_certificate {otherCert};
            proxy_ssl_certificate_key {otherKey};
        }}
        location /tls12/ {{
            proxy_pass https://127.0.0.1:{good}/;
            proxy_ssl_protocols TLSv1.2;
        }}
        location /pool-a/ {{
            proxy_pass https://pooled/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_name a.test;
            proxy_ssl_server_name on;
        }}
        location /pool-b/ {{
            proxy_pass https://pooled/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_name b.test;
            proxy_ssl_server_name on;
        }}
        location /name-from-header/ {{
            proxy_pass https://127.0.0.1:{good}/;
            proxy_ssl_verify on;
            proxy_ssl_name $http_x_backend_name;
            proxy_ssl_server_name on;
        }}
        location /variable-url/ {{
            proxy_pass https://$arg_backend;
            proxy_ssl_verify on;
            proxy_ssl_name backend.test;
            proxy_ssl_server_name on;
        }}
        location /reuse/ {{
            proxy_pass https://127.0.0.1:{good}/;
            proxy_ssl_verify on;
            proxy_ssl_name backend.test;
            proxy_ssl_session_reuse on;
        }}
        location /failover/ {{
            proxy_pass https://failover/;
            proxy_ssl_verify on;
            proxy_ssl_name backend.test;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def proxy(certs: Dict[str, Any], tlsBackend: Dict[str, int]) -> Iterator[Dict[str, Any]]:
    """
    One twisted_rproxy running L{proxyConf}.
    """
    port = freePort()
    runner = RproxyRunner(proxyConf(certs, tlsBackend, port))
    try:
        runner.start()
        yield {"port": port, "runner": runner, "backend": tlsBackend}
    finally:
        runner.cleanup()


def _get(proxy: Dict[str, Any], path: str) -> Any:
    """
    @return: the proxy's response to C{GET path}.
    """
    return request(proxy["port"], path=path)


def _report(body: bytes) -> Dict[str, str]:
    """
    @return: the backend's C{key=value} report as a dict (plus C{port}).
    """
    text = body.decode("utf-8").strip()
    port, _, rest = text.partition(" ")
    fields = dict(re.findall(r"(\w+)=(\[[^\]]*\]|\S+)", rest))
    fields["port"] = port
    return {k: v.strip("[]") for k, v in fields.items()}


def _waitForLog(runner: RproxyRunner, text: str) -> str:
    """
    @return: the error log once it contains C{text} (it is written by the
        proxy as the request fails, before the 502 is sent).
    """
    log = runner.errorLog
    assert text in log, log
    return log


def testWrongNameRefusedWithVerifyOn(proxy: Dict[str, Any]) -> None:
    """
    A backend whose certificate is for another name is refused with
    C{proxy_ssl_verify on}: a 502, and the reason in the error log.
    """
    response = _get(proxy, "/wrong-verified/")
    assert response.status == 502
    log = _waitForLog(
        proxy["runner"],
        'upstream SSL certificate does not match "backend.test" while SSL handshaking to upstream',
    )
    assert f'upstream: "https://127.0.0.1:{proxy["backend"]["wrong"]}/"' in log


def testWrongNameAcceptedWithVerifyOff(proxy: Dict[str, Any]) -> None:
    """
    Without C{proxy_ssl_verify} (nginx's default) the same backend is used.
    """
    response = _get(proxy, "/wrong-unverified/")
    assert response.status == 200, response
    assert _report(response.body)["port"] == str(proxy["backend"]["wrong"])


def testRightNameAcceptedWithVerifyOn(proxy: Dict[str, Any]) -> None:
    """
    A certificate for the C{proxy_ssl_name}, from the trusted CA, passes;
    without C{proxy_ssl_server_name} no SNI is sent (nginx's default).
    """
    response = _get(proxy, "/right/")
    assert response.status == 200, response
    assert _report(response.body)["sni"] == ""


def testUntrustedIssuerRefused(proxy: Dict[str, Any]) -> None:
    """
    A certificate from a CA not in C{proxy_ssl_trusted_certificate} is
    refused with OpenSSL's reason, as nginx words it (the backend sends its
    CA along, hence "self-signed certificate in certificate chain").
    """
    response = _get(proxy, "/untrusted/")
    assert response.status == 502
    _waitForLog(
        proxy["runner"],
        "upstream SSL certificate verify error: (19:self-signed certificate in certificate "
        "chain) while SSL handshaking to upstream",
    )


def testServerNameSentWhenOn(proxy: Dict[str, Any]) -> None:
    """
    C{proxy_ssl_server_name on} sends the C{proxy_ssl_name} by SNI.
    """
    response = _get(proxy, "/sni/")
    assert response.status == 200, response
    assert _report(response.body)["sni"] == "backend.test"


def testClientCertificatePresented(proxy: Dict[str, Any]) -> None:
    """
    C{proxy_ssl_certificate} is presented to a backend that requires one,
    and the backend verifies it against its CA.
    """
    response = _get(proxy, "/client-cert/")
    assert response.status == 200, response
    report = _report(response.body)
    assert report["client"] == "SUCCESS"
    assert report["dn"] == "CN=proxy-client"


def testNoClientCertificateRefusedByBackend(proxy: Dict[str, Any]) -> None:
    """
    Without C{proxy_ssl_certificate}, the backend (nginx with
    C{ssl_verify_client on}) answers its own 400, which is passed on.
    """
    response = _get(proxy, "/no-client-cert/")
    assert response.status == 400
    assert b"No required SSL certificate was sent" in response.body


def testUntrustedClientCertificateRefusedByBackend(proxy: Dict[str, Any]) -> None:
    """
    A client certificate from another CA is presented, and refused.
    """
    response = _get(proxy, "/stranger-cert/")
    assert response.status == 400
    assert b"The SSL certificate error" in response.body


def testProtocolsLimitTheVersion(proxy: Dict[str, Any]) -> None:
    """
    C{proxy_ssl_protocols TLSv1.2} makes the backend connection TLS 1.2;
    the backend's own C{$ssl_protocol} tells.
    """
    response = _get(proxy, "/tls12/")
    assert response.status == 200, response
    assert _report(response.body)["proto"] == "TLSv1.2"
    assert _report(_get(proxy, "/right/").body)["proto"] == "TLSv1.3"


def testKeepaliveReuseOverTLS(proxy: Dict[str, Any]) -> None:
    """
    With C{keepalive}, a TLS connection carries the next request too; a
    different C{proxy_ssl_name} never gets a connection made for another
    name, so each name keeps its own SNI.
    """
    first = _report(_get(proxy, "/pool-a/").body)
    other = _report(_get(proxy, "/pool-b/").body)
    second = _report(_get(proxy, "/pool-a/").body)
    assert first["sni"] == second["sni"] == "a.test"
    assert other["sni"] == "b.test"
    assert second["conn"] == first["conn"]
    assert int(second["req"]) == int(first["req"]) + 1
    assert other["conn"] != first["conn"]


def testNameWithVariables(proxy: Dict[str, Any]) -> None:
    """
    C{proxy_ssl_name} may hold variables: evaluated per request, verified
    and sent by SNI; a name the certificate lacks is refused.
    """
    response = request(proxy["port"], path="/name-from-header/",
                       headers=[("X-Backend-Name", "backend.test")])
    assert response.status == 200, response
    assert _report(response.body)["sni"] == "backend.test"
    response = request(proxy["port"], path="/name-from-header/",
                       headers=[("X-Backend-Name", "wrong.test")])
    assert response.status == 502


def testVariableURL(proxy: Dict[str, Any]) -> None:
    """
    An C{https://} URL with variables (a literal address, as nginx allows
    without a resolver) is reached over TLS.
    """
    good = proxy["backend"]["good"]
    response = _get(proxy, f"/variable-url/?backend=127.0.0.1:{good}")
    assert response.status == 200, response
    report = _report(response.body)
    assert (report["port"], report["sni"]) == (str(good), "backend.test")


def testSessionReuse(proxy: Dict[str, Any]) -> None:
    """
    C{proxy_ssl_session_reuse on}: a new connection resumes the session of
    the last one to that peer (the backend's C{$ssl_session_reused}); off
    (the other locations here), every handshake is full.
    """
    first = _report(_get(proxy, "/reuse/").body)
    second = _report(_get(proxy, "/reuse/").body)
    assert first["conn"] != second["conn"]
    assert second["resumed"] == "r", second
    assert _report(_get(proxy, "/right/").body)["resumed"] == "."
    assert _report(_get(proxy, "/right/").body)["resumed"] == "."
    # A session verified under one location's settings is never offered
    # under another's: the untrusted issuer is still refused.
    assert _get(proxy, "/untrusted/").status == 502


def testVerifyFailureIsAFailedAttempt(proxy: Dict[str, Any]) -> None:
    """
    A refused certificate counts as an C{error} for C{proxy_next_upstream}:
    the request goes on to the next peer, which passes.
    """
    response = _get(proxy, "/failover/")
    assert response.status == 200, response
    assert _report(response.body)["port"] == str(proxy["backend"]["good"])


def testVerifyWithoutTrustedCertificateIsAConfigError(
    rproxyRunner: Callable[..., Any], tmp_path: Path
) -> None:
    """
    As nginx: C{proxy_ssl_verify on} needs C{proxy_ssl_trusted_certificate},
    reported at the directive's line.
    """
    conf = f"""events {{}}
http {{
    server {{
        listen 127.0.0.1:{freePort()};
        location / {{
            proxy_pass https://127.0.0.1:1/;
            proxy_ssl_verify on;
        }}
    }}
}}
"""
    runner = rproxyRunner(conf, start=False)
    assert runner.runToExit(timeout=60) != 0
    output = runner.stderr + runner.errorLog
    assert 'no "proxy_ssl_trusted_certificate" for "proxy_ssl_verify"' in output
    assert "nginx.conf:7" in output, output


def testDifferentialAgainstNginx(proxy: Dict[str, Any], certs: Dict[str, Any]) -> None:
    """
    nginx on the same config gives the same status and the same backend
    report (connection numbers aside) for every case, and logs the same
    verification errors.  Keepalive across two SNI names is left out on
    purpose: nginx's cache is per upstream only, so it would hand a
    connection made for one name to the other.
    """
    port = freePort()
    nginx = NginxRunner(proxyConf(certs, proxy["backend"], port))
    paths = ["/wrong-verified/", "/wrong-unverified/", "/right/", "/untrusted/", "/sni/",
             "/client-cert/", "/no-client-cert/", "/stranger-cert/", "/tls12/", "/pool-a/",
             "/failover/", f"/variable-url/?backend=127.0.0.1:{proxy['backend']['good']}"]

    def outcome(listenPort: int, path: str) -> Any:
        response = request(listenPort, path=path)
        if response.status != 200:
            return response.status
        report = _report(response.body)
        del report["conn"], report["req"]
        return response.status, report

    try:
        nginx.start()
        for path in paths:
            assert outcome(proxy["port"], path) == outcome(port, path), path
        for line in (
            'upstream SSL certificate does not match "backend.test" while SSL handshaking '
            "to upstream",
            "upstream SSL certificate verify error: (19:self-signed certificate in "
            "certificate chain) while SSL handshaking to upstream",
        ):
            assert line in nginx.errorLog, nginx.errorLog
            assert line in proxy["runner"].errorLog
    finally:
        nginx.cleanup()


def testHealthChecksProbeOverTLS(rproxyRunner: Callable[..., Any], certs: Dict[str, Any],
                                 tlsBackend: Dict[str, int]) -> None:
    """
    C{health_check} in an C{https} location probes over TLS with the
    location's verification: the backend with the right certificate stays
    in rotation (a plain HTTP probe of a TLS port would fail it), the one
    with the wrong name is marked unhealthy, in nginx's words.
    """
    import time

    good, wrong = tlsBackend["good"], tlsBackend["wrong"]
    port = freePort()
    runner = rproxyRunner(f"""error_log logs/error.log warn;
events {{}}
http {{
    upstream checked {{
        server 127.0.0.1:{good};
        server 127.0.0.1:{wrong};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass https://checked;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {certs['ca']};
            proxy_ssl_name backend.test;
            health_check interval=1s fails=1 passes=1;
        }}
    }}
}}
""")
    deadline = time.monotonic() + 30
    unhealthy = (f'peer 127.0.0.1:{wrong} is unhealthy (health check failed: upstream SSL '
                 'certificate does not match "backend.test" while SSL handshaking to upstream)')
    while unhealthy not in runner.errorLog:
        assert time.monotonic() < deadline, runner.errorLog
        time.sleep(0.05)
    assert f"peer 127.0.0.1:{good} is unhealthy" not in runner.errorLog
    for _ in range(4):
        response = request(port, path="/")
        assert response.status == 200
        assert _report(response.body)["port"] == str(good)
