# -*- test-case-name: tests.integration.test_tls_client_auth -*-
"""
OCSP stapling fetched from the certificate's responder (C{ssl_stapling on}
without C{ssl_stapling_file}), as nginx's C{ngx_event_openssl_stapling.c}
does: nothing is fetched when the config is loaded (so C{-t} stays
offline); the first handshake that asks for a status starts a fetch and
is answered without one, and later handshakes get the response until it
is due for renewal (its C{nextUpdate}, else an hour).  A failed fetch is
logged and retried after five minutes.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from OpenSSL import SSL
from twisted.logger import Logger

__all__ = ["LiveStaple", "findIssuer", "responderURL", "stapleCallback", "verifyResponse"]

#: How long a response without C{nextUpdate} is kept, and how soon a
#: failed fetch is tried again (nginx's values).
_VALID = 3600.0
_RETRY = 300.0


def responderURL(certificate: Any) -> Optional[str]:
    """
    @return: the first OCSP responder URL in C{certificate}'s authority
        information access extension, or C{None}.
    """
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

    try:
        access = certificate.extensions.get_extension_for_oid(
            ExtensionOID.AUTHORITY_INFORMATION_ACCESS
        ).value
    except x509.ExtensionNotFound:
        return None
    for description in access:
        if description.access_method == AuthorityInformationAccessOID.OCSP:
            return str(description.access_location.value)
    return None


def findIssuer(certificate: Any, chain: Any, trusted: Any) -> Optional[Any]:
    """
    @return: the certificate that issued C{certificate}: from its own chain
        file first, then from C{ssl_trusted_certificate}; or C{None}.
    """
    for candidate in list(chain) + list(trusted):
        if candidate.subject == certificate.issuer:
            return candidate
    return None


def _signedBy(signer: Any, signature: bytes, data: bytes, hashAlgorithm: Any) -> bool:
    """
    @return: whether C{signer}'s key made C{signature} over C{data}.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    key = signer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashAlgorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashAlgorithm)
        else:
            key.verify(signature, data)  # Ed25519 / Ed448
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def verifyResponse(response: Any, certificate: Any, issuer: Any) -> Optional[str]:
    """
    C{ssl_stapling_verify}: check a successful response is about
    C{certificate} and signed by its issuer, or by a responder certificate
    the issuer signed for OCSP signing (RFC 6960's delegated responder).

    @return: why the response is refused, or C{None}.
    """
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if response.serial_number != certificate.serial_number:
        return "the response is for another certificate"
    signers = [issuer]
    for delegate in response.certificates:
        if delegate.issuer != issuer.subject or not _signedBy(
            issuer, delegate.signature, delegate.tbs_certificate_bytes,
            delegate.signature_hash_algorithm,
        ):
            continue
        try:
            usage = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in usage:
            signers.append(delegate)
    for signer in signers:
        if _signedBy(signer, response.signature, response.tbs_response_bytes,
                     response.signature_hash_algorithm):
            return None
    return "the response is not signed by the issuer or its OCSP responder"


class LiveStaple:
    """
    The current OCSP response of one certificate, fetched on demand.

    @ivar url: the responder.
    @ivar response: the DER response to staple, or C{b""}.
    """

    log = Logger()

    def __init__(self, certificate: Any, issuer: Any, url: str, reactor: Any = None,
                 verify: bool = False) -> None:
        """
        @param certificate: the leaf (a C{cryptography} certificate).
        @param issuer: its issuer's certificate.
        @param verify: C{ssl_stapling_verify}: staple only responses
            L{verifyResponse} accepts.
        """
        self.verify = verify
        self.certificate = certificate
        self.issuer = issuer
        self.url = url
        self.response = b""
        self._reactor = reactor
        self._refreshAt = 0.0
        self._fetching = False

    def current(self) -> bytes:
        """
        @return: the response to staple now (maybe C{b""}); start a fetch
            when there is none yet or it is due for renewal.
        """
        reactor = self._getReactor()
        if not self._fetching and reactor.seconds() >= self._refreshAt:
            self._fetching = True
            self.fetch().addBoth(self._fetched)
        return self.response

    def _getReactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def request(self) -> bytes:
        """
        @return: the DER OCSP request for the certificate.
        """
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509 import ocsp

        built = ocsp.OCSPRequestBuilder().add_certificate(
            self.certificate, self.issuer, hashes.SHA1()
        ).build()
        return built.public_bytes(serialization.Encoding.DER)

    def fetch(self) -> Any:
        """
        POST the request to the responder.

        @return: a Deferred firing with the response body.
        """
        from twisted.web.client import Agent, readBody
        from twisted.web.client import FileBodyProducer
        from twisted.web.http_headers import Headers
        from io import BytesIO

        agent = Agent(self._getReactor(), connectTimeout=60, pool=_quietPool(self._getReactor()))
        d = agent.request(
            b"POST", self.url.encode("ascii"),
            Headers({b"Content-Type": [b"application/ocsp-request"]}),
            FileBodyProducer(BytesIO(self.request())),
        )

        def body(response: Any) -> Any:
            if response.code != 200:
                raise ValueError(f"OCSP responder sent status {response.code}")
            return readBody(response)

        d.addCallback(body)
        return d

    def _fetched(self, result: Any) -> None:
        """
        Keep a successful response until its renewal time; log a failure.
        """
        from cryptography.x509 import ocsp

        self._fetching = False
        now = self._getReactor().seconds()
        refreshAt = now + _RETRY
        try:
            if not isinstance(result, bytes):
                raise ValueError(result.getErrorMessage())
            parsed = ocsp.load_der_ocsp_response(result)
            if parsed.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                raise ValueError(f"OCSP response not successful ({parsed.response_status.name})")
            if self.verify:
                refused = verifyResponse(parsed, self.certificate, self.issuer)
                if refused is not None:
                    raise ValueError(f"OCSP response verify error: {refused}")
            nextUpdate = parsed.next_update_utc
            self.response = result
            if nextUpdate is not None:
                import time

                refreshAt = now + max(_RETRY, min(nextUpdate.timestamp() - time.time(), _VALID))
            else:
                refreshAt = now + _VALID
        except Exception as e:
            self.log.error('OCSP responder "{url}" failed: {reason}', url=self.url, reason=str(e))
        self._refreshAt = refreshAt


def _quietPool(reactor: Any) -> Any:
    """
    @return: a one-off HTTP connection pool whose factory does not log a
        line per connection, as Twisted's does.
    """
    from twisted.web.client import HTTPConnectionPool

    base: Any = HTTPConnectionPool._factory

    class QuietFactory(base):  # type: ignore[misc,valid-type]
        noisy = False

    pool = HTTPConnectionPool(reactor, persistent=False)
    pool._factory = QuietFactory
    return pool


def stapleCallback(connection: SSL.Connection,
                   staples: Optional[Dict[bytes, LiveStaple]]) -> bytes:
    """
    OpenSSL's status callback for fetched responses: the staple of the
    certificate this handshake uses.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        certificate = connection.get_certificate(as_cryptography=True)
        if certificate is None or not staples:
            return b""
        staple = staples.get(certificate.public_bytes(Encoding.DER))
        return b"" if staple is None else staple.current()
    except Exception:
        # A raising status callback would fail the client's handshake.
        LiveStaple.log.failure("OCSP stapling failed")
        return b""


def liveStaples(certificatePaths: Tuple[str, ...], trustedPath: Optional[str],
                reactor: Any = None,
                verify: bool = False) -> Tuple[Dict[bytes, LiveStaple], Optional[str]]:
    """
    @return: a staple per certificate that names a responder and whose
        issuer is known, keyed by its DER bytes; and, when none can be
        stapled, nginx's reason.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    trusted = []
    if trustedPath is not None:
        with open(trustedPath, "rb") as f:
            trusted = x509.load_pem_x509_certificates(f.read())
    staples: Dict[bytes, LiveStaple] = {}
    reason = None
    for path in certificatePaths:
        with open(path, "rb") as f:
            chain = x509.load_pem_x509_certificates(f.read())
        leaf = chain[0]
        url = responderURL(leaf)
        if url is None:
            reason = f'no OCSP responder URL in the certificate "{path}"'
            continue
        issuer = findIssuer(leaf, chain[1:], trusted)
        if issuer is None:
            reason = f'issuer certificate not found for certificate "{path}"'
            continue
        staples[leaf.public_bytes(Encoding.DER)] = LiveStaple(leaf, issuer, url, reactor, verify)
    return staples, None if staples else reason
