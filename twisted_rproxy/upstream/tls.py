# -*- test-case-name: tests.unit.test_upstream_tls -*-
"""
TLS to backends (C{proxy_pass https://...}): one client C{SSL.Context} per
distinct set of C{proxy_ssl_*} settings, made (and so checked) when the
config is compiled, and the connection creator Twisted's
L{TLSMemoryBIOFactory <twisted.protocols.tls.TLSMemoryBIOFactory>} asks for
each connection.

Verification follows nginx's C{ngx_ssl_verify_callback}: OpenSSL's callback
accepts every certificate and only remembers the error, and the chain and
the name are judged once the handshake is done, so the error log can say
exactly why (C{upstream SSL certificate verify error: (18:self-signed
certificate)}, C{upstream SSL certificate does not match "name"}).  The
name is checked with C{service_identity}, as Twisted's own TLS clients do.
"""

from __future__ import annotations

import ipaddress
import weakref
from typing import Any, Dict, Optional, Tuple

import attr
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ..tls import PROTOCOLS, TLSLoadError, _NO_VERSION, _reasons, clearOpenSSLErrors
from ..tlsconnection import newConnection
from .http1 import UpstreamError, UpstreamHTTPProtocol

__all__ = [
    "HANDSHAKE_STAGE",
    "TLSTarget",
    "TLSUpstreamHTTPProtocol",
    "UpstreamTLS",
    "UpstreamTLSSettings",
    "sniName",
    "verifyErrorString",
]

#: What nginx's error log says the proxy was doing when TLS failed.
HANDSHAKE_STAGE = "SSL handshaking to upstream"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class UpstreamTLSSettings:
    """
    What one client context is made from; equal settings share a context.

    @ivar verify: C{proxy_ssl_verify}.
    @ivar trusted: C{proxy_ssl_trusted_certificate}, absolute, or C{None}.
    @ivar certificate: C{proxy_ssl_certificate} (a client certificate to
        present), absolute, or C{None}.
    @ivar key: C{proxy_ssl_certificate_key}, absolute, or C{None}.
    @ivar protocols: C{proxy_ssl_protocols}.
    @ivar ciphers: C{proxy_ssl_ciphers}.
    @ivar verifyDepth: C{proxy_ssl_verify_depth}.
    @ivar serverName: C{proxy_ssl_server_name}: whether SNI is sent.
    @ivar sessionReuse: C{proxy_ssl_session_reuse}.
    """

    verify: bool = False
    trusted: Optional[str] = None
    certificate: Optional[str] = None
    key: Optional[str] = None
    protocols: Tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ciphers: str = "DEFAULT"
    verifyDepth: int = 1
    serverName: bool = False
    sessionReuse: bool = True


#: The last verification error OpenSSL reported for each connection, as
#: C{SSL_get_verify_result} would give it (pyOpenSSL does not expose that).
_VERIFY_ERRORS: "weakref.WeakKeyDictionary[SSL.Connection, int]" = weakref.WeakKeyDictionary()


def _rememberError(connection: SSL.Connection, certificate: Any, errno: int,
                   depth: int, ok: int) -> bool:
    """
    OpenSSL's verify callback: note a failure and carry on, so the
    handshake completes and the reason can be logged (nginx does the same).
    """
    if not ok:
        _VERIFY_ERRORS[connection] = errno
        clearOpenSSLErrors()
    return True


def verifyErrorString(errno: int) -> str:
    """
    @return: OpenSSL's text for an C{X509_V_ERR_*} code, as nginx logs it.
    """
    try:
        from OpenSSL._util import ffi, lib

        return str(ffi.string(lib.X509_verify_cert_error_string(errno)).decode("ascii"))
    except Exception:  # a pyOpenSSL without the binding: the number still helps
        return "certificate verify error"


def verifyResult(connection: SSL.Connection) -> Optional[int]:
    """
    @return: the verification error of C{connection}'s peer certificate, or
        C{None} when it verified (or was not asked to).
    """
    return _VERIFY_ERRORS.get(connection)


def sniName(name: str) -> Optional[bytes]:
    """
    @return: C{name} as sent in SNI, or C{None} where nginx sends none: IP
        addresses, and names ending in a dot.
    """
    if not name or name.endswith("."):
        return None
    try:
        ipaddress.ip_address(name.strip("[]"))
        return None
    except ValueError:
        pass
    return name.encode("idna") if not name.isascii() else name.encode("ascii")


def _setProtocols(context: SSL.Context, protocols: Tuple[str, ...]) -> None:
    """
    Allow only the listed TLS versions, as C{ssl_protocols} does.
    """
    versions = sorted(PROTOCOLS[p] for p in protocols if p in PROTOCOLS)
    options = SSL.OP_NO_COMPRESSION | SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3
    if versions:
        context.set_min_proto_version(versions[0])
        context.set_max_proto_version(versions[-1])
        for version in range(versions[0], versions[-1] + 1):
            if version in _NO_VERSION and version not in versions:
                options |= _NO_VERSION[version]
    else:
        options |= SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1 | SSL.OP_NO_TLSv1_2 | SSL.OP_NO_TLSv1_3
    context.set_options(options)


def makeClientContext(settings: UpstreamTLSSettings) -> SSL.Context:
    """
    Build and check the client context for C{settings}.

    @raise TLSLoadError: with C{which} naming the directive to blame
        (C{"proxy_ssl_trusted_certificate"}, C{"proxy_ssl_certificate"},
        C{"proxy_ssl_certificate_key"} or C{"proxy_ssl_ciphers"}).
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    _setProtocols(context, settings.protocols)
    # As ngx_ssl_create: no record buffers held by a pooled idle connection.
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    try:
        context.set_cipher_list(settings.ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as e:
        reason = _reasons(e) if isinstance(e, SSL.Error) else "not ASCII"
        raise TLSLoadError(
            f'SSL_CTX_set_cipher_list("{settings.ciphers}") failed ({reason})',
            "proxy_ssl_ciphers",
        )
    if settings.certificate is not None:
        try:
            context.use_certificate_chain_file(settings.certificate)
        except SSL.Error as e:
            raise TLSLoadError(
                f'cannot load certificate "{settings.certificate}": {_reasons(e)}',
                "proxy_ssl_certificate",
            )
        try:
            context.use_privatekey_file(settings.key or "")
            context.check_privatekey()
        except SSL.Error as e:
            raise TLSLoadError(
                f'cannot load certificate key "{settings.key}": {_reasons(e)}',
                "proxy_ssl_certificate_key",
            )
    if settings.verify:
        try:
            context.load_verify_locations(settings.trusted)
        except SSL.Error as e:
            raise TLSLoadError(
                f'cannot load trusted certificate "{settings.trusted}": {_reasons(e)}',
                "proxy_ssl_trusted_certificate",
            )
        context.set_verify(SSL.VERIFY_PEER, _rememberError)
        context.set_verify_depth(settings.verifyDepth)
    else:
        context.set_verify(SSL.VERIFY_NONE)
    return context


class UpstreamTLS:
    """
    The TLS side of one set of C{proxy_ssl_*} settings: its context, and a
    L{TLSTarget} per name connected to.

    @ivar settings: the L{UpstreamTLSSettings}.
    @ivar context: the client C{SSL.Context}.
    """

    def __init__(self, settings: UpstreamTLSSettings) -> None:
        """
        @raise TLSLoadError: as L{makeClientContext}.
        """
        self.settings = settings
        self.context = makeClientContext(settings)
        self._targets: Dict[str, TLSTarget] = {}

    def target(self, name: str) -> "TLSTarget":
        """
        @param name: the C{proxy_ssl_name} value (any port stripped).
        @return: the one L{TLSTarget} for C{name}, so the keepalive pool can
            key idle connections by it.
        """
        found = self._targets.get(name)
        if found is None:
            found = self._targets[name] = TLSTarget(self, name)
        return found


@implementer(IOpenSSLClientConnectionCreator)
class TLSTarget:
    """
    Makes the client side of connections to backends under one name, and
    judges each handshake.  Hashed by identity: the pool's key for idle
    TLS connections, apart from plain ones and from other names.

    @ivar tls: the L{UpstreamTLS}.
    @ivar name: the name verified (and sent in SNI when configured).
    """

    def __init__(self, tls: UpstreamTLS, name: str) -> None:
        self.tls = tls
        self.name = name
        self.sni = sniName(name) if tls.settings.serverName else None
        #: The last session of each peer (C{proxy_ssl_session_reuse}).
        #: Kept per target, so a session is only resumed under the
        #: settings and name it was verified with.
        self.sessions: Dict[Any, SSL.Session] = {}

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        @return: a client connection, naming the backend by SNI if set,
            offering to resume the peer's last session.
        """
        connection = newConnection(self.tls.context)
        connection.set_app_data(tlsProtocol)
        if self.sni is not None:
            connection.set_tlsext_host_name(self.sni)
        if self.tls.settings.sessionReuse:
            peer = getattr(getattr(tlsProtocol, "wrappedProtocol", None), "peer", None)
            session = self.sessions.get(peer)
            if session is not None:
                connection.set_session(session)
        connection.set_connect_state()
        return connection

    def saveSession(self, peer: Any, connection: SSL.Connection) -> None:
        """
        Keep C{connection}'s session for the next connection to C{peer}.
        """
        if self.tls.settings.sessionReuse:
            session = connection.get_session()
            if session is not None:
                self.sessions[peer] = session

    def wrapFactory(self, factory: Any) -> TLSMemoryBIOFactory:
        """
        @return: C{factory} behind a TLS layer made by this target.
        """
        wrapped = TLSMemoryBIOFactory(self, True, factory)
        wrapped.noisy = False
        return wrapped

    def check(self, connection: SSL.Connection) -> Optional[str]:
        """
        @return: why the backend's certificate is refused, in nginx's
            words, or C{None} when it is accepted (always, without
            C{proxy_ssl_verify}).
        """
        if not self.tls.settings.verify:
            return None
        # A resumed session was verified, under this target's settings, by
        # the connection that saved it (sessions never cross targets); its
        # certificate's name is checked again below.
        errno = verifyResult(connection)
        if errno is not None:
            return f"upstream SSL certificate verify error: ({errno}:{verifyErrorString(errno)})"
        if connection.get_peer_certificate() is None:
            return "upstream sent no required SSL certificate"
        from service_identity import VerificationError
        from service_identity.pyopenssl import verify_hostname, verify_ip_address

        name = self.name.strip("[]")
        try:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                verify_hostname(connection, name)
            else:
                verify_ip_address(connection, name)
        except (VerificationError, ValueError):
            return f'upstream SSL certificate does not match "{self.name}"'
        return None

    def __repr__(self) -> str:
        return f"<TLSTarget {self.name!r} verify={self.tls.settings.verify}>"


@implementer(IHandshakeListener)
class TLSUpstreamHTTPProtocol(UpstreamHTTPProtocol):
    """
    An HTTP/1.1 backend connection over TLS: usable only once the handshake
    is done and the certificate accepted.

    @ivar tlsKey: the L{TLSTarget} it was made for (the pool's key).
    @ivar handshake: fires with this protocol when the connection is ready,
        or fails with an L{UpstreamError} saying why it is not.
    """

    def __init__(self, peer: Any, reactor: Any, target: TLSTarget) -> None:
        super().__init__(peer, reactor)
        self.tlsKey = target
        self.handshake: Optional[Deferred] = Deferred(self._cancelHandshake)
        self._sessionPending = False

    def _cancelHandshake(self, d: Deferred) -> None:
        """
        C{proxy_connect_timeout} ran out during the handshake: drop it.
        """
        self.handshake = None
        if self.transport is not None:
            self.transport.abortConnection()

    def handshakeCompleted(self) -> None:
        """
        Judge the certificate; hand the connection out, or refuse it.
        """
        d, self.handshake = self.handshake, None
        if d is None:
            return
        connection = self.transport.getHandle()
        refused = self.tlsKey.check(connection)
        if refused is None:
            self._sessionPending = True
            d.callback(self)
            return
        self.transport.abortConnection()
        d.errback(Failure(UpstreamError("error", refused, HANDSHAKE_STAGE)))

    def dataReceived(self, data: bytes) -> None:
        """
        Keep the session once the backend has spoken (a TLS 1.3 session
        ticket arrives after the handshake), then read the response.
        """
        if self._sessionPending:
            self._sessionPending = False
            self.tlsKey.saveSession(self.peer, self.transport.getHandle())
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        Lost before the handshake finished: fail the connect with OpenSSL's
        reason, as nginx's C{SSL_do_handshake() failed (...)} line.
        """
        d, self.handshake = self.handshake, None
        if d is not None:
            if reason is not None and reason.check(SSL.Error):
                message = f"SSL_do_handshake() failed ({_reasons(reason.value)})"
            else:
                message = "peer closed connection in SSL handshake"
            d.errback(Failure(UpstreamError("error", message, HANDSHAKE_STAGE)))
        super().connectionLost(reason)
