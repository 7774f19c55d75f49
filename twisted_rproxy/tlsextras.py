# -*- test-case-name: tests.unit.test_tlsextras -*-
"""
The server TLS settings beyond a certificate and its protocols: client
certificates (C{ssl_client_certificate}, C{ssl_verify_client},
C{ssl_verify_depth}), OCSP stapling from a file (C{ssl_stapling_file}),
and key exchange parameters (C{ssl_dhparam}, C{ssl_ecdh_curve}).  They are
applied to the context L{makeContext <twisted_rproxy.tls.makeContext>}
made, when the config is compiled, so a bad file fails C{-t} at its
directive.

Client certificates are judged as nginx's C{ngx_http_ssl_module} does:
the handshake accepts any certificate (OpenSSL's verify callback only
notes the error) and each request then checks the verify result, so a
client with no or a bad certificate gets nginx's 400 page rather than a
bare handshake failure.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any, Optional, Tuple

import attr
from OpenSSL import SSL

from .phases import POST_READ, LocalReply
from .tls import ListenerTLS, TLSLoadError, _reasons, clearOpenSSLErrors

__all__ = [
    "ClientCertificateFilter",
    "VerifyingListenerTLS",
    "ServerTLSExtras",
    "applyExtras",
    "clientVerify",
    "peerCertificate",
    "verifyResult",
]

#: C{ssl_verify_client} values.
VERIFY_CLIENT = ("off", "on", "optional", "optional_no_ca")

#: The errors C{optional_no_ca} lets through (nginx's
#: C{ngx_ssl_verify_error_optional}): an issuer that is unknown or untrusted.
_NO_CA_ERRORS = frozenset({
    2,   # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
    18,  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19,  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21,  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
    27,  # X509_V_ERR_CERT_UNTRUSTED
})


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ServerTLSExtras:
    """
    What is added to one server's context; part of its cache key.

    @ivar verifyClient: one of L{VERIFY_CLIENT}.
    @ivar clientCertificate: CAs whose names are sent to clients and that
        verify their certificates (C{ssl_client_certificate}), absolute.
    @ivar trustedCertificate: CAs that verify without being advertised
        (C{ssl_trusted_certificate}), absolute.
    @ivar verifyDepth: C{ssl_verify_depth}.
    @ivar stapling: C{ssl_stapling}.
    @ivar staplingFile: a DER OCSP response to staple (C{ssl_stapling_file}).
    @ivar staplingVerify: C{ssl_stapling_verify}, for fetched responses.
    @ivar dhparam: DH parameters for DHE ciphers (C{ssl_dhparam}).
    @ivar ecdhCurve: C{ssl_ecdh_curve}; C{"auto"} is OpenSSL's list.
    """

    verifyClient: str = "off"
    clientCertificate: Optional[str] = None
    trustedCertificate: Optional[str] = None
    verifyDepth: int = 1
    stapling: bool = False
    staplingFile: Optional[str] = None
    staplingVerify: bool = False
    dhparam: Optional[str] = None
    ecdhCurve: str = "auto"


#: nginx's (OpenSSL's) curve names and cryptography's classes for them.
_CURVES = {
    "prime256v1": "SECP256R1",
    "p-256": "SECP256R1",
    "secp256r1": "SECP256R1",
    "secp384r1": "SECP384R1",
    "p-384": "SECP384R1",
    "secp521r1": "SECP521R1",
    "p-521": "SECP521R1",
    "secp256k1": "SECP256K1",
}


def _curve(name: str) -> Any:
    """
    @return: the cryptography curve C{name} names.
    @raise TLSLoadError: an unknown curve, or a list of several.
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    if ":" in name:
        raise TLSLoadError(
            f'a list of curves ("{name}") in "ssl_ecdh_curve" is not supported by '
            "twisted_rproxy: name one curve, or auto",
            "ssl_ecdh_curve",
        )
    found = _CURVES.get(name.lower())
    if found is None:
        raise TLSLoadError(f'Unknown curve name "{name}"', "ssl_ecdh_curve")
    return getattr(ec, found)()


def _readStaple(path: str) -> bytes:
    """
    @return: the DER OCSP response in C{path}, checked to parse as one.
    @raise TLSLoadError: the file cannot be read or is not a response.
    """
    from cryptography.x509 import ocsp

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TLSLoadError(f'open() "{path}" failed ({e.strerror})', "ssl_stapling_file")
    try:
        ocsp.load_der_ocsp_response(data)
    except ValueError as e:
        raise TLSLoadError(f'd2i_OCSP_RESPONSE("{path}") failed ({e})', "ssl_stapling_file")
    return data


def _stapleCallback(connection: SSL.Connection, staple: Optional[bytes]) -> bytes:
    """
    OpenSSL's status callback: the stapled response for a client that asked.
    """
    return staple or b""


def applyExtras(context: SSL.Context, extras: ServerTLSExtras,
                certificates: Tuple[str, ...] = ()) -> Optional[str]:
    """
    Add C{extras} to a server context not yet used for a connection.

    @param certificates: the context's certificate files, whose responders
        C{ssl_stapling} without a file asks (L{twisted_rproxy.ocsp}).
    @return: why C{ssl_stapling} is ignored, when it is (nginx's notice).
    @raise TLSLoadError: with C{which} the directive to blame.
    """
    if extras.dhparam is not None:
        try:
            context.load_tmp_dh(extras.dhparam.encode("utf-8"))
        except (SSL.Error, OSError, ValueError) as e:
            reason = _reasons(e) if isinstance(e, SSL.Error) else str(e)
            raise TLSLoadError(
                f'PEM_read_bio_DHparams("{extras.dhparam}") failed ({reason})', "ssl_dhparam"
            )
    if extras.ecdhCurve.lower() != "auto":
        context.set_tmp_ecdh(_curve(extras.ecdhCurve))
    if extras.verifyClient != "off":
        for path, which in ((extras.clientCertificate, "ssl_client_certificate"),
                            (extras.trustedCertificate, "ssl_trusted_certificate")):
            if path is None:
                continue
            try:
                context.load_verify_locations(path)
                if which == "ssl_client_certificate":
                    context.load_client_ca(path.encode("utf-8"))
            except SSL.Error as e:
                raise TLSLoadError(
                    f'cannot load "{path}": {_reasons(e)}', which
                )
        context.set_verify(SSL.VERIFY_PEER, _noteError)
        # OpenSSL's own limit is copied into a connection from its first
        # context (the default server's) and pyOpenSSL cannot change it
        # after the SNI switch (no SSL_set_verify_depth), so OpenSSL gets a
        # loose one and _noteError applies the chosen context's.
        context.set_verify_depth(_OPENSSL_DEPTH)
        _DEPTHS[context] = extras.verifyDepth
        # A resumed session skips verification, and its result is not kept
        # (see verifyResult): every connection verifies afresh instead.
        context.set_options(SSL.OP_NO_TICKET)
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    if extras.stapling and extras.staplingFile is not None:
        context.set_ocsp_server_callback(_stapleCallback, _readStaple(extras.staplingFile))
    elif extras.stapling:
        from .ocsp import liveStaples, stapleCallback

        try:
            staples, ignored = liveStaples(certificates, extras.trustedCertificate,
                                           verify=extras.staplingVerify)
        except (OSError, ValueError) as e:
            raise TLSLoadError(f"cannot read the certificates for OCSP stapling: {e}",
                               "ssl_stapling")
        if staples:
            context.set_ocsp_server_callback(stapleCallback, staples)
        return ignored
    return None


#: The last error OpenSSL's callback reported per connection (pyOpenSSL
#: resets C{SSL_get_verify_result} to OK when the callback accepts).
_NOTED: "weakref.WeakKeyDictionary[SSL.Connection, int]" = weakref.WeakKeyDictionary()


#: Each verifying context's C{ssl_verify_depth}, which L{_noteError}
#: enforces for the context a connection has at verification time.
_DEPTHS: "weakref.WeakKeyDictionary[SSL.Context, int]" = weakref.WeakKeyDictionary()

#: The chain length OpenSSL itself allows (its default).
_OPENSSL_DEPTH = 100

#: What a chain longer than the limit fails with in a handshake: OpenSSL
#: stops building it at the limit, so the last certificate it kept has no
#: issuer: C{X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY}, "unable to get
#: local issuer certificate" (what nginx reports; C{openssl verify} says
#: "certificate chain too long" instead).
_CHAIN_TOO_LONG = 20


def _noteError(connection: SSL.Connection, certificate: Any, errno: int,
               depth: int, ok: int) -> bool:
    """
    The verify callback: accept, remembering why not, as nginx's does.
    It is called for each certificate of the chain OpenSSL built, from the
    trust anchor (the highest C{depth}) down to the client's (0); as with
    OpenSSL's own limit, C{ssl_verify_depth N} allows N intermediates, so
    the anchor at most at depth N+1.
    """
    if not ok:
        _NOTED[connection] = errno
        # Accepting leaves what OpenSSL found on its error queue (3.3 does:
        # "asn1 encoding routines / EVP lib" for a certificate signed by a
        # stranger CA named like ours), where pyOpenSSL reads it at the next
        # recv as a failure and the connection dies without its 400 page.
        clearOpenSSLErrors()
    else:
        limit = _DEPTHS.get(connection.get_context())
        if limit is not None and depth > limit + 1:
            _NOTED[connection] = _CHAIN_TOO_LONG
    return True


def copyVerifyMode(connection: SSL.Connection, context: SSL.Context) -> None:
    """
    After the SNI callback switched C{connection} to C{context}, take that
    context's client verification too (OpenSSL keeps the first context's,
    which is why nginx's C{ngx_http_ssl_servername} copies it).
    """
    mode = context.get_verify_mode()
    if mode == SSL.VERIFY_NONE:
        connection.set_verify(SSL.VERIFY_NONE)
    else:
        connection.set_verify(mode, _noteError)
        # The options came from the first context: no ticket that would let
        # a later connection skip this verification (see verifyResult).
        _setConnectionOptions(connection, SSL.OP_NO_TICKET)


def _setConnectionOptions(connection: SSL.Connection, options: int) -> None:
    """
    Add C{options} to one connection: C{Connection.set_options} where
    pyOpenSSL has it (26 and later), else OpenSSL's C{SSL_set_options}
    through pyOpenSSL's binding (pyOpenSSL 25, as on PyPy 3.9, where the
    missing method raised inside the SNI callback and failed the
    handshake of every client of a verifying server).
    """
    setOptions = getattr(connection, "set_options", None)
    if setOptions is not None:
        setOptions(options)
        return
    from OpenSSL._util import lib

    lib.SSL_set_options(connection._ssl, options)  # type: ignore[attr-defined]


def verifyResult(connection: SSL.Connection) -> int:
    """
    @return: the error OpenSSL found in the peer's certificate, or
        C{X509_V_OK} (0) when it verified or none was sent.  Taken from
        what the callback noted: pyOpenSSL clears OpenSSL's own result when
        the callback accepts, which is why L{applyExtras} turns session
        resumption off where client certificates are verified.
    """
    noted = _NOTED.get(connection)
    if noted is not None:
        return noted
    if _sessionReused(connection):
        # Nothing was verified on this connection, and what the first one
        # found is not known: fail closed.
        return _X509_V_ERR_UNSPECIFIED
    return 0


#: OpenSSL's C{X509_V_ERR_UNSPECIFIED}, "unspecified certificate verification error".
_X509_V_ERR_UNSPECIFIED = 1


def _sessionReused(connection: SSL.Connection) -> bool:
    """
    @return: whether C{connection} resumed a session (pyOpenSSL has no
        public call for C{SSL_session_reused}); C{True} if it cannot tell.
    """
    try:
        from OpenSSL._util import lib

        return bool(lib.SSL_session_reused(connection._ssl))  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return True


def peerCertificate(connection: SSL.Connection) -> Any:
    """
    @return: the client's certificate as a C{cryptography} object, or
        C{None}.
    """
    certificate = connection.get_peer_certificate(as_cryptography=True)
    return certificate


def clientVerify(connection: Optional[SSL.Connection]) -> Optional[str]:
    """
    C{$ssl_client_verify}: C{NONE}, C{SUCCESS} or C{FAILED:reason}; unset
    on plain connections.
    """
    if connection is None:
        return None
    if connection.get_peer_certificate() is None:
        return "NONE"
    errno = verifyResult(connection)
    if errno == 0:
        return "SUCCESS"
    from .upstream.tls import verifyErrorString

    return "FAILED:" + verifyErrorString(errno)


def serialText(serial: int) -> str:
    """
    @return: a serial number as nginx prints it (OpenSSL's
        C{i2a_ASN1_INTEGER}: the DER content bytes in upper-case hex).
    """
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big").hex().upper()


def fingerprint(certificate: Any) -> str:
    """
    @return: the SHA-1 of the DER certificate in lower-case hex, as
        C{$ssl_client_fingerprint}.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha1(certificate.public_bytes(Encoding.DER)).hexdigest()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ClientCertificateFilter:
    """
    A server's C{ssl_verify_client} check, run on each request before any
    other (nginx does it in C{ngx_http_process_request}): a 400 for a bad
    certificate, or for none when one is required.

    @ivar mode: C{on}, C{optional} or C{optional_no_ca}.
    """

    mode: str
    phase: str = POST_READ

    def requestHeaders(self, exchange: Any) -> Optional[LocalReply]:
        """
        @return: C{None} to go on, or nginx's 495 or 496.
        """
        from .tls import connectionInfo

        connection = connectionInfo(exchange.channel.transport)
        if connection is None:
            return None
        refused = self.refusal(connection)
        if refused is None:
            return None
        message, status = refused
        exchange.log.info(
            "{message} while reading client request headers, client: {client}, "
            'server: {server}, request: "{request}", host: "{host}"',
            message=message,
            client=getattr(exchange.channel.clientAddress, "host", "unix:"),
            server=exchange.server.primaryName if exchange.server else "",
            request="%s %s %s" % (
                exchange.method.decode("latin-1"), exchange.rawURI.decode("latin-1"),
                exchange.version.decode("latin-1"),
            ),
            host=exchange.host,
        )
        exchange.keepAlive = False
        # nginx's internal 495/496: an error_page may catch them, else
        # they are sent as 400 with their own page.
        return LocalReply(status)

    def refusal(self, connection: SSL.Connection) -> Optional[Tuple[str, int]]:
        """
        @return: C{(log message, status)} when the request must be refused
            (495 for a bad certificate, 496 for none), else C{None}.
        """
        if connection.get_peer_certificate() is not None:
            errno = verifyResult(connection)
            if errno != 0 and not (self.mode == "optional_no_ca" and errno in _NO_CA_ERRORS):
                from .upstream.tls import verifyErrorString

                return (
                    f"client SSL certificate verify error: ({errno}:{verifyErrorString(errno)})",
                    495,
                )
            return None
        if self.mode == "on":
            return ("client sent no required SSL certificate", 496)
        return None


class VerifyingListenerTLS(ListenerTLS):
    """
    A L{ListenerTLS} whose SNI switch also carries the chosen server's
    client-certificate verification over to the connection.
    """

    def selectContext(self, connection: SSL.Connection, protocol: Any) -> None:
        """
        Switch C{connection} to the context its server name selects, with
        that context's C{ssl_verify_client}.
        """
        before = connection.get_context()
        super().selectContext(connection, protocol)
        after = connection.get_context()
        if after is not before:
            copyVerifyMode(connection, after)
