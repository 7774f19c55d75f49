"""
Client certificates, stapling and key-exchange settings without a
reactor: pyOpenSSL connections paired through memory BIOs, the request
check nginx makes, and the new C{ssl_*} directives' FILE:LINE errors.
"""

from __future__ import annotations

import shutil
import tempfile

from pathlib import Path
from typing import Optional, Tuple

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.certs import CertificateAuthority
from tests.unit.test_tls import TLSConfigTestCase
from twisted_rproxy.tls import TLSSettings, makeContext
from twisted_rproxy.tlsextras import (
    ClientCertificateFilter,
    ServerTLSExtras,
    applyExtras,
    clientVerify,
    serialText,
    verifyResult,
)



def _temporaryDirectory(case: SynchronousTestCase) -> Path:
    """
    @return: a directory removed after C{case}'s test (outside the source
        tree, which trial's C{mktemp} would write into under pytest).
    """
    directory = Path(tempfile.mkdtemp(prefix="rproxy-unit-"))
    case.addCleanup(shutil.rmtree, directory, True)
    return directory

def _pump(server: SSL.Connection, client: SSL.Connection) -> None:
    """
    Run the handshake of two memory-BIO connections to its end (and past
    it, so TLS 1.3's client certificate reaches the server).
    """
    for _ in range(20):
        for this, other in ((client, server), (server, client)):
            try:
                this.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                other.bio_write(this.bio_read(65536))
            except SSL.WantReadError:
                pass
    try:
        server.recv(1)
    except (SSL.WantReadError, SSL.ZeroReturnError):
        pass


class ClientVerifyTests(SynchronousTestCase):
    """
    The handshake accepts any client certificate; L{clientVerify} and
    L{ClientCertificateFilter} then judge it as nginx does.
    """

    def setUp(self) -> None:
        """
        A CA with a server certificate and a client one; a stranger CA with
        its own client certificate.
        """
        directory = _temporaryDirectory(self)
        self.ca = CertificateAuthority(directory / "ca")
        self.server = self.ca.issue(["a.test"])
        self.client = self.ca.issue(["alice"], client=True)
        self.stranger = CertificateAuthority(directory / "other", commonName="other").issue(
            ["mallory"], client=True
        )

    def connect(self, mode: str, certificate: Optional[Tuple[Path, Path]]) -> SSL.Connection:
        """
        @return: the server side after a handshake with C{ssl_verify_client
            mode} and a client presenting C{certificate}.
        """
        cert, key = self.server
        context = makeContext(TLSSettings(certificates=(str(cert),), keys=(str(key),)))
        applyExtras(context, ServerTLSExtras(verifyClient=mode,
                                             clientCertificate=str(self.ca.certPath)))
        clientContext = SSL.Context(SSL.TLS_CLIENT_METHOD)
        if certificate is not None:
            clientContext.use_certificate_chain_file(str(certificate[0]))
            clientContext.use_privatekey_file(str(certificate[1]))
        server = SSL.Connection(context, None)
        server.set_accept_state()
        client = SSL.Connection(clientContext, None)
        client.set_connect_state()
        _pump(server, client)
        return server

    def test_results(self) -> None:
        """
        C{NONE}, C{SUCCESS} or C{FAILED:reason}.
        """
        self.assertEqual(clientVerify(self.connect("optional", None)), "NONE")
        self.assertEqual(clientVerify(self.connect("optional", self.client)), "SUCCESS")
        self.assertEqual(
            clientVerify(self.connect("optional_no_ca", self.stranger)),
            "FAILED:self-signed certificate in certificate chain",
        )
        self.assertIsNone(clientVerify(None))

    def test_filterRefusals(self) -> None:
        """
        C{on} refuses no certificate and a bad one; C{optional} refuses
        only a bad one; C{optional_no_ca} lets an unknown issuer through.
        No certificate is nginx's internal 496, a bad one 495.
        """
        def refusal(mode: str, certificate: Optional[Tuple[Path, Path]]) -> Optional[int]:
            found = ClientCertificateFilter(mode).refusal(self.connect(mode, certificate))
            return None if found is None else found[1]

        self.assertEqual(refusal("on", None), 496)
        self.assertEqual(refusal("on", self.stranger), 495)
        self.assertIsNone(refusal("on", self.client))
        self.assertIsNone(refusal("optional", None))
        self.assertEqual(refusal("optional", self.stranger), 495)
        self.assertIsNone(refusal("optional_no_ca", self.stranger))

    def test_caNamesSent(self) -> None:
        """
        The CA names of C{ssl_client_certificate} are sent to the client.
        """
        cert, key = self.server
        context = makeContext(TLSSettings(certificates=(str(cert),), keys=(str(key),)))
        applyExtras(context, ServerTLSExtras(verifyClient="on",
                                             clientCertificate=str(self.ca.certPath)))
        server = SSL.Connection(context, None)
        server.set_accept_state()
        client = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
        client.set_connect_state()
        _pump(server, client)
        names = [n.commonName for n in client.get_client_ca_list()]
        self.assertEqual(names, ["rproxy test CA"])


class VerifyDepthTests(SynchronousTestCase):
    """
    C{ssl_verify_depth} is applied by the verify callback for the context
    the connection has when it verifies (the SNI-chosen server's), since
    pyOpenSSL cannot set a connection's own OpenSSL depth.
    """

    def setUp(self) -> None:
        """
        A root, an intermediate under it, and a client certificate from
        each (the intermediate's client sending its chain).
        """
        directory = _temporaryDirectory(self)
        self.root = CertificateAuthority(directory / "root")
        middle = self.root.intermediate(directory / "middle", "middle")
        self.server = self.root.issue(["a.test"])
        self.direct = self.root.issue(["direct"], client=True)
        self.chained = middle.issue(["chained"], client=True)

    def context(self, depth: int) -> SSL.Context:
        """
        @return: a server context verifying clients with C{depth}.
        """
        cert, key = self.server
        context = makeContext(TLSSettings(certificates=(str(cert),), keys=(str(key),)))
        applyExtras(context, ServerTLSExtras(verifyClient="on", verifyDepth=depth,
                                             clientCertificate=str(self.root.certPath)))
        return context

    def verify(self, first: SSL.Context, chosen: SSL.Context,
               certificate: Tuple[Path, Path]) -> int:
        """
        @return: L{verifyResult} of a handshake that starts with C{first}
            and is switched to C{chosen}, as the SNI callback does.
        """
        from twisted_rproxy.tlsextras import copyVerifyMode

        server = SSL.Connection(first, None)
        server.set_accept_state()
        server.set_context(chosen)
        copyVerifyMode(server, chosen)
        clientContext = SSL.Context(SSL.TLS_CLIENT_METHOD)
        clientContext.use_certificate_chain_file(str(certificate[0]))
        clientContext.use_privatekey_file(str(certificate[1]))
        client = SSL.Connection(clientContext, None)
        client.set_connect_state()
        _pump(server, client)
        return verifyResult(server)

    def test_chosenDepthApplies(self) -> None:
        """
        Depth 0 refuses an intermediate, depth 1 takes it, whichever depth
        the first context had; a direct certificate passes both.
        """
        shallow, deep = self.context(0), self.context(1)
        self.assertEqual(self.verify(deep, shallow, self.chained), 20)
        self.assertEqual(self.verify(shallow, deep, self.chained), 0)
        self.assertEqual(self.verify(deep, shallow, self.direct), 0)
        self.assertEqual(self.verify(shallow, shallow, self.direct), 0)


class SerialTests(SynchronousTestCase):
    """
    L{serialText} prints serials as OpenSSL's C{i2a_ASN1_INTEGER} does.
    """

    def test_serials(self) -> None:
        """
        Upper-case hex of the DER content: a leading zero byte when the
        high bit is set.
        """
        self.assertEqual(serialText(0x1234), "1234")
        self.assertEqual(serialText(0x80), "0080")
        self.assertEqual(serialText(1), "01")


class ConfigTests(TLSConfigTestCase):
    """
    The new C{ssl_*} directives: errors at their FILE:LINE.
    """

    def server(self, extra: str) -> str:
        """
        @return: an ssl server with the a.test certificate and C{extra}.
        """
        return (
            "server {\n listen 127.0.0.1:8443 ssl;\n ssl_certificate a.crt;\n"
            " ssl_certificate_key a.key;\n " + extra + "\n}"
        )

    def test_verifyClientValue(self) -> None:
        """
        An unknown C{ssl_verify_client} value.
        """
        self.assertErrorAt(self.server("ssl_verify_client maybe;"), "maybe",
                           'invalid value "maybe" in "ssl_verify_client" directive')

    def test_verifyClientNeedsCAs(self) -> None:
        """
        C{on} without C{ssl_client_certificate}.
        """
        self.assertErrorAt(self.server("ssl_verify_client on;"), "ssl_verify_client",
                           "no ssl_client_certificate for ssl_verify_client")

    def test_optionalNoCANeedsNone(self) -> None:
        """
        C{optional_no_ca} may go without CAs, as in nginx.
        """
        self.compileHTTP(self.server("ssl_verify_client optional_no_ca;"))

    def test_missingClientCertificateFile(self) -> None:
        """
        A C{ssl_client_certificate} file that is missing.
        """
        self.assertErrorAt(
            self.server("ssl_verify_client on; ssl_client_certificate nope.pem;"),
            "nope.pem", 'cannot load "' + str(self.prefix) + '/nope.pem"')

    def test_curves(self) -> None:
        """
        One known curve is fine; a list or an unknown name is refused.
        """
        self.compileHTTP(self.server("ssl_ecdh_curve secp384r1;"))
        self.assertErrorAt(self.server("ssl_ecdh_curve X25519:prime256v1;"), "ssl_ecdh_curve",
                           "a list of curves")
        self.assertErrorAt(self.server("ssl_ecdh_curve nocurve;"), "ssl_ecdh_curve",
                           'Unknown curve name "nocurve"')

    def test_dhparam(self) -> None:
        """
        A DH parameters file that is not one.
        """
        self.assertErrorAt(self.server("ssl_dhparam a.key;"), "ssl_dhparam",
                           "PEM_read_bio_DHparams")

    def test_staplingFile(self) -> None:
        """
        A stapling file that is not an OCSP response; and C{ssl_stapling}
        without a file, for a certificate naming no responder, is nginx's
        notice, not an error.
        """
        self.assertErrorAt(self.server("ssl_stapling on; ssl_stapling_file a.crt;"),
                           "ssl_stapling_file", "d2i_OCSP_RESPONSE")
        config = self.compileHTTP(self.server("ssl_stapling on;"))
        self.assertTrue(any(
            '"ssl_stapling" ignored, no OCSP responder URL in the certificate' in n
            for n in config.notices), config.notices)

    def test_verifyAddsTheFilter(self) -> None:
        """
        A verifying server checks each request first, right after the
        check for plain HTTP on a TLS port (nginx's order in
        C{ngx_http_process_request}: 497 before 495/496).
        """
        from twisted_rproxy.tls import PlainHTTPFilter

        config = self.compileHTTP(self.server(
            "ssl_verify_client optional; ssl_client_certificate ca/ca.pem;"))
        filters = config.servers[0].requestFilters
        self.assertEqual([type(f) for f in filters][:2],
                         [PlainHTTPFilter, ClientCertificateFilter])


class LiveStapleTests(SynchronousTestCase):
    """
    L{twisted_rproxy.ocsp.LiveStaple}'s schedule on a L{Clock}: fetched on
    first use, kept until renewal, retried after a failure.  (The fetch
    itself, against a real C{openssl ocsp}, is in the integration tests.)
    """

    def setUp(self) -> None:
        """
        A staple whose fetches are Deferreds this test fires.
        """
        from twisted.internet.defer import Deferred
        from twisted.internet.task import Clock

        from twisted_rproxy.ocsp import LiveStaple

        directory = _temporaryDirectory(self)
        self.ca = CertificateAuthority(directory)
        cert, _key = self.ca.issue(["live.test"], ocspURL="http://127.0.0.1:1/")
        from cryptography import x509

        self.cert = cert
        leaf = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        self.clock = Clock()
        self.fetches: list = []
        fetches = self.fetches

        class Controlled(LiveStaple):
            def fetch(self) -> Deferred:
                d: Deferred = Deferred()
                fetches.append(d)
                return d

        self.staple = Controlled(leaf, self.ca.certificate, "http://127.0.0.1:1/", self.clock)

    def test_schedule(self) -> None:
        """
        No response on the first handshake (the fetch starts); the response
        once fetched, with no new fetch until an hour later; a failed fetch
        keeps the old response and is retried after five minutes.
        """
        from twisted.python.failure import Failure

        self.assertEqual(self.staple.current(), b"")
        self.assertEqual(len(self.fetches), 1)
        self.assertEqual(self.staple.current(), b"")
        self.assertEqual(len(self.fetches), 1)  # one fetch at a time
        response = self.ca.ocspResponse(self.cert)
        self.fetches[0].callback(response)
        self.assertEqual(self.staple.current(), response)
        self.clock.advance(3599)
        self.assertEqual(self.staple.current(), response)
        self.assertEqual(len(self.fetches), 1)
        self.clock.advance(1)
        self.assertEqual(self.staple.current(), response)
        self.assertEqual(len(self.fetches), 2)
        self.fetches[1].errback(Failure(ValueError("responder down")))
        self.clock.advance(299)
        self.staple.current()
        self.assertEqual(len(self.fetches), 2)
        self.clock.advance(1)
        self.assertEqual(self.staple.current(), response)
        self.assertEqual(len(self.fetches), 3)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_request(self) -> None:
        """
        The request names the certificate by its issuer and serial.
        """
        from cryptography.x509 import ocsp

        parsed = ocsp.load_der_ocsp_request(self.staple.request())
        self.assertEqual(parsed.serial_number, self.staple.certificate.serial_number)


class VerifyResponseTests(SynchronousTestCase):
    """
    L{twisted_rproxy.ocsp.verifyResponse} (C{ssl_stapling_verify}).
    """

    def setUp(self) -> None:
        """
        A CA with a certificate, and a stranger CA.
        """
        from cryptography import x509

        directory = _temporaryDirectory(self)
        self.ca = CertificateAuthority(directory / "ca")
        self.other = CertificateAuthority(directory / "other", commonName="other")
        self.certPath = self.ca.issue(["live.test"])[0]
        self.otherPath = self.ca.issue(["else.test"])[0]
        self.cert = x509.load_pem_x509_certificate(Path(self.certPath).read_bytes())

    def verify(self, der: bytes) -> Optional[str]:
        """
        @return: L{verifyResponse}'s verdict on C{der} for the certificate.
        """
        from cryptography.x509 import ocsp

        from twisted_rproxy.ocsp import verifyResponse

        return verifyResponse(ocsp.load_der_ocsp_response(der), self.cert, self.ca.certificate)

    def test_issuerSigned(self) -> None:
        """
        A response the issuer signed, about the certificate, is accepted.
        """
        self.assertIsNone(self.verify(self.ca.ocspResponse(self.certPath)))

    def test_strangerSigned(self) -> None:
        """
        A response signed by another CA is refused.
        """
        self.assertEqual(
            self.verify(self.other.ocspResponse(self.certPath)),
            "the response is not signed by the issuer or its OCSP responder",
        )

    def test_otherCertificate(self) -> None:
        """
        A response about another certificate is refused.
        """
        self.assertEqual(self.verify(self.ca.ocspResponse(self.otherPath)),
                         "the response is for another certificate")
