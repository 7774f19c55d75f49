# -*- test-case-name: tests.unit.test_tls -*-
"""
TLS termination with pyOpenSSL: one C{SSL.Context} per distinct set of
C{ssl_*} settings, loaded (and so checked) when the config is compiled, and
the connection creator a TLS listener hands to Twisted's
L{TLSMemoryBIOFactory <twisted.protocols.tls.TLSMemoryBIOFactory>}.  The
server name a client sends (SNI) picks the context of the virtual server
the router would pick for that name, as nginx's C{ngx_http_ssl_servername}
does; no name, or an unknown one, gets the default server's.
"""

from __future__ import annotations

import datetime
import weakref
from typing import Any, Dict, List, Optional, Tuple

import attr
from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IOpenSSLServerConnectionCreator, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from .http.routing import normalizeHost
from .tlsconnection import newConnection
from .transport import flushAfterReads

__all__ = [
    "PROTOCOLS",
    "ListenerTLS",
    "NoApplicationProtocol",
    "PlainHTTPFilter",
    "EndOfReadWrites",
    "ServerTLSFactory",
    "ServerTLSProtocol",
    "TLSLoadError",
    "TLSSettings",
    "alpnSelectCallback",
    "connectionInfo",
    "makeContext",
    "serverNameCallback",
    "startsTLS",
]

#: nginx's C{ssl_protocols} names and OpenSSL's version numbers, in order.
PROTOCOLS: Dict[str, int] = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}

#: The option that turns off each version when it is not listed.
_NO_VERSION = {
    SSL.TLS1_VERSION: SSL.OP_NO_TLSv1,
    SSL.TLS1_1_VERSION: SSL.OP_NO_TLSv1_1,
    SSL.TLS1_2_VERSION: SSL.OP_NO_TLSv1_2,
    SSL.TLS1_3_VERSION: SSL.OP_NO_TLSv1_3,
}

class TLSLoadError(Exception):
    """
    A certificate, key or setting could not be used.

    @ivar which: C{"certificate"}, C{"key"} or C{"ciphers"}: the directive
        the caller should blame.
    @ivar index: which certificate/key pair, from 0.
    """

    def __init__(self, message: str, which: str, index: int = 0) -> None:
        super().__init__(message)
        self.which = which
        self.index = index


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TLSSettings:
    """
    What one server's TLS context is made from; equal settings share one
    context.

    @ivar certificates: PEM files (leaf first, then its chain), absolute.
    @ivar keys: the private key of each certificate, absolute.
    @ivar protocols: the C{ssl_protocols} names allowed.
    @ivar ciphers: the OpenSSL cipher list for TLS 1.2 and below.
    @ivar preferServerCiphers: C{ssl_prefer_server_ciphers}.
    @ivar sessionTickets: C{ssl_session_tickets}.
    @ivar sessionTimeout: C{ssl_session_timeout}, in seconds.
    @ivar sessionCache: C{False} for C{ssl_session_cache off|none}.
    """

    certificates: Tuple[str, ...]
    keys: Tuple[str, ...]
    protocols: Tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ciphers: str = "HIGH:!aNULL:!MD5"
    preferServerCiphers: bool = False
    sessionTickets: bool = True
    sessionTimeout: int = 300
    sessionCache: bool = False


def _reasons(error: SSL.Error) -> str:
    """
    @return: OpenSSL's error queue as one readable line.
    """
    parts = []
    for entry in error.args[0] if error.args and isinstance(error.args[0], list) else ():
        if isinstance(entry, tuple) and len(entry) == 3:
            parts.append(str(entry[2]))
        else:
            parts.append(str(entry))
    return ", ".join(p for p in parts if p) or str(error) or "unknown error"


def _readPEM(path: str, what: str, label: str, which: str, index: int) -> bytes:
    """
    Read C{path}, checking that it holds PEM text of C{label}.

    @return: the file's bytes.
    @raise TLSLoadError: naming the file and the reason.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TLSLoadError(f'cannot load {what} "{path}": {e.strerror}', which, index)
    if b"-----BEGIN " not in data or label.encode("ascii") not in data:
        raise TLSLoadError(
            f'cannot load {what} "{path}": no PEM {label.lower()} found in the file',
            which,
            index,
        )
    return data


def _loadKey(path: str, certificate: str, index: int) -> Any:
    """
    Load an unencrypted PEM private key with C{cryptography}; an encrypted
    one is refused rather than prompting for a passphrase.

    @return: the key.
    @raise TLSLoadError: naming the file and the reason.
    """
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _readPEM(path, "certificate key", "PRIVATE KEY", "key", index)
    try:
        return load_pem_private_key(data, password=None)
    except (TypeError, ValueError) as e:
        raise TLSLoadError(
            f'cannot load certificate key "{path}" for certificate "{certificate}": {e}',
            "key",
            index,
        )


def clearOpenSSLErrors() -> None:
    """
    Empty this thread's OpenSSL error queue.  A verify callback that
    accepts a certificate OpenSSL refused must call it: OpenSSL 3.3 leaves
    the refusal's errors queued, and pyOpenSSL then reads them at the next
    C{recv} as a failure of that read, so the connection dies instead of
    getting the answer the callback chose to give (a 400 page, a 502 with
    the reason logged).
    """
    from OpenSSL._util import lib

    lib.ERR_clear_error()  # type: ignore[attr-defined]


def _checkNotExpired(data: bytes, path: str, index: int) -> None:
    """
    Refuse a leaf certificate past its C{notAfter}: every client would
    refuse it, so serving it is a site that looks up and answers nobody.
    (nginx loads one and leaves clients to fail; a start-up error that
    names the file is kinder.)  An unparsable one is left to OpenSSL,
    whose reasons are more precise.

    @raise TLSLoadError: naming the file and the date it expired.
    """
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificate(data)
    except ValueError:
        return
    notAfter = leaf.not_valid_after_utc
    if notAfter < datetime.datetime.now(datetime.timezone.utc):
        raise TLSLoadError(
            f'certificate "{path}" expired on {notAfter:%Y-%m-%d %H:%M:%S} UTC '
            f'(its notAfter)',
            "certificate",
            index,
        )


def makeContext(settings: TLSSettings, serverNameCallback: Any = None) -> SSL.Context:
    """
    Build and check the server context for C{settings}.

    @param serverNameCallback: set as the context's SNI callback.
    @raise TLSLoadError: a file is missing, unreadable, not PEM, a key does
        not match its certificate, or the cipher list is invalid.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    options = SSL.OP_NO_COMPRESSION | SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3
    if settings.preferServerCiphers:
        options |= SSL.OP_CIPHER_SERVER_PREFERENCE
    if not settings.sessionTickets:
        options |= SSL.OP_NO_TICKET
    versions = sorted(PROTOCOLS[name] for name in settings.protocols if name in PROTOCOLS)
    if versions:
        context.set_min_proto_version(versions[0])
        context.set_max_proto_version(versions[-1])
        for version in range(versions[0], versions[-1] + 1):
            if version in _NO_VERSION and version not in versions:
                options |= _NO_VERSION[version]
    else:
        # Only SSLv2/SSLv3 listed: nothing OpenSSL 3 still speaks.
        options |= SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1 | SSL.OP_NO_TLSv1_2 | SSL.OP_NO_TLSv1_3
    context.set_options(options)
    # As ngx_ssl_create: OpenSSL frees a connection's 16 KiB record buffers
    # whenever they are empty, so an idle or closed connection holds none
    # (on PyPy a closed one would keep them until the GC collects it).
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    context.set_timeout(settings.sessionTimeout)
    context.set_session_cache_mode(
        SSL.SESS_CACHE_SERVER if settings.sessionCache else SSL.SESS_CACHE_OFF
    )
    context.set_session_id(b"twisted_rproxy")
    try:
        context.set_cipher_list(settings.ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as e:
        reason = _reasons(e) if isinstance(e, SSL.Error) else "not ASCII"
        raise TLSLoadError(
            f'SSL_CTX_set_cipher_list("{settings.ciphers}") failed ({reason})', "ciphers"
        )
    for index, (certificate, keyPath) in enumerate(zip(settings.certificates, settings.keys)):
        _checkNotExpired(
            _readPEM(certificate, "certificate", "CERTIFICATE", "certificate", index),
            certificate, index)
        try:
            context.use_certificate_chain_file(certificate)
        except SSL.Error as e:
            raise TLSLoadError(
                f'cannot load certificate "{certificate}": {_reasons(e)}', "certificate", index
            )
        key = _loadKey(keyPath, certificate, index)
        try:
            context.use_privatekey(key)
            context.check_privatekey()
        except SSL.Error as e:
            raise TLSLoadError(
                f'cannot load certificate key "{keyPath}" for certificate "{certificate}": '
                f"{_reasons(e)}",
                "key",
                index,
            )
    if serverNameCallback is not None:
        context.set_tlsext_servername_callback(serverNameCallback)
    # Contexts are shared by listeners with and without http2, so the
    # callback asks the connection's listener.
    context.set_alpn_select_callback(alpnSelectCallback)
    return context


#: The L{ListenerTLS} that made each open connection, for the SNI callback
#: (Twisted keeps the connection's app data for its own protocol).
_MADE_BY: "weakref.WeakKeyDictionary[SSL.Connection, ListenerTLS]" = weakref.WeakKeyDictionary()


class NoApplicationProtocol(SSL.Error):
    """
    The client offered ALPN protocols and none is one we speak: raised from
    the ALPN callback, which makes pyOpenSSL answer
    C{SSL_TLSEXT_ERR_ALERT_FATAL}, so OpenSSL fails the handshake with the
    C{no_application_protocol} alert, as nginx 1.21.4+ does.  Twisted's
    TLS layer takes it as the handshake's failure (it is an C{SSL.Error},
    with its arguments shaped as OpenSSL's error queue).
    """


#: What nginx's C{ngx_http_ssl_alpn_select} offers, in its order of
#: preference (C{h2} first where HTTP/2 is on).
_ALPN_HTTP1 = (b"http/1.1", b"http/1.0", b"http/0.9")


def alpnSelectCallback(connection: SSL.Connection, offered: List[bytes]) -> Any:
    """
    ALPN: the first of C{h2} (when the connection's listener has HTTP/2
    on), C{http/1.1}, C{http/1.0}, C{http/0.9} the client offers, as
    nginx's C{SSL_select_next_proto} with its own list first.  A client
    offering none of them gets the handshake refused (nginx 1.21.4+);
    one sending no ALPN at all is not asked and speaks HTTP/1.1.

    @raise NoApplicationProtocol: nothing in common.
    """
    listenerTLS = _MADE_BY.get(connection)
    http2 = listenerTLS is not None and listenerTLS.listener.http2
    if http2 and b"h2" in offered:
        return b"h2"
    for protocol in _ALPN_HTTP1:
        if protocol in offered:
            return protocol
    # Shaped as OpenSSL's error queue, which Twisted's TLS layer reads.
    raise NoApplicationProtocol([(
        "SSL routines", "tls_handle_alpn",
        "no application protocol (client offered "
        + ", ".join(p.decode("latin-1") for p in offered) + ")")])


def serverNameCallback(connection: SSL.Connection) -> None:
    """
    The SNI callback of every context made here: switch C{connection} to
    the context of the server its name selects.
    """
    listenerTLS = _MADE_BY.get(connection)
    if listenerTLS is None:
        return
    try:
        listenerTLS.selectContext(connection, connection.get_app_data())
    except Exception:
        ListenerTLS.log.failure("choosing the TLS certificate failed")


@implementer(IOpenSSLServerConnectionCreator)
class ListenerTLS:
    """
    Makes the server side of each TLS connection of one listener: it starts
    with the default server's context, and the SNI callback moves it to the
    context of the server that owns the name sent.

    @ivar listener: the L{twisted_rproxy.config.model.Listener}.
    @ivar contexts: context of each server reachable on the listener, by
        C{id()} of the L{VirtualServer <twisted_rproxy.config.model.VirtualServer>}.
    """

    log = Logger()

    def __init__(self, listener: Any, contexts: Dict[int, SSL.Context]) -> None:
        """
        @param listener: the listener (with any views merged into it).
        @param contexts: as L{contexts}; every server on it must have one.
        """
        self.listener = listener
        self.contexts = contexts

    def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        """
        @return: a connection using the default server's context until the
            client's server name says otherwise.
        """
        context = self.contexts[id(self.listener.defaultServer)]
        connection = newConnection(context)
        _MADE_BY[connection] = self
        return connection

    def contextFor(self, serverName: Optional[bytes], localHost: Optional[str]) -> SSL.Context:
        """
        @param serverName: the SNI name as sent, or C{None}.
        @param localHost: the connection's local address, which picks the
            servers of a specific address merged into a wildcard socket.
        @return: the context of the server nginx's rules select for it.
        """
        listener = self.listener
        if localHost is not None:
            listener = listener.forLocalAddress(localHost)
        host = ""
        if serverName:
            host = normalizeHost(serverName) or ""
        server, _captures = listener.serverNames.match(host)
        return self.contexts.get(id(server)) or self.contexts[id(listener.defaultServer)]

    def selectContext(self, connection: SSL.Connection, protocol: Any) -> None:
        """
        Switch C{connection} to the context its server name selects.
        """
        localHost = None
        transport = getattr(protocol, "transport", None)
        if transport is not None and self.listener.byLocalAddress is not None:
            localHost = getattr(transport.getHost(), "host", None)
        context = self.contextFor(connection.get_servername(), localHost)
        if context is not connection.get_context():
            connection.set_context(context)


def connectionInfo(transport: Any) -> Optional[SSL.Connection]:
    """
    @return: the OpenSSL connection under a channel's transport, or C{None}
        for a plain connection.
    """
    getHandle = getattr(transport, "getHandle", None)
    if getHandle is None:
        return None
    handle = getHandle()
    return handle if isinstance(handle, SSL.Connection) else None



def startsTLS(first: int) -> bool:
    """
    @param first: the first byte a client sent.
    @return: whether it can start a TLS handshake (a handshake record,
        C{0x16}, or an SSLv2-style hello with the top bit set), as nginx's
        C{ngx_http_ssl_handshake} decides; anything else is plain text.
    """
    return first == 0x16 or bool(first & 0x80)


@attr.s(frozen=True, slots=True)
class PlainHTTPFilter:
    """
    Answers a plain-HTTP request that reached a TLS port with nginx's
    internal 497 (sent as C{400 The plain HTTP request was sent to HTTPS
    port} unless an C{error_page 497} catches it), before any other
    filter, as nginx's C{ngx_http_process_request} does.
    """

    phase: str = attr.ib(default="post_read")

    def requestHeaders(self, exchange: Any) -> Any:
        """
        @return: C{None} on TLS (or on a plain listener), else the 497.
        """
        channel = exchange.channel
        if channel.listener.tls is None or connectionInfo(channel.transport) is not None:
            return None
        from .phases import LocalReply

        exchange.log.info(
            "client sent plain HTTP request to HTTPS port while reading client "
            "request headers, client: {client}",
            client=getattr(channel.clientAddress, "host", "unix:"))
        exchange.keepAlive = False
        return LocalReply(497)


class EndOfReadWrites:
    """
    The small writes to one TLS connection, gathered and encrypted
    together, as Twisted's C{BufferingTLSTransport} does, but flushed when
    the reads that made them are done rather than on the next reactor turn.

    Twisted flushes with C{callLater(0)}: each response to an HTTPS client
    cost a timer, a reactor turn to encrypt it and another, with two
    C{epoll_ctl} calls, for the socket to take it.  During reads the flush
    is queued with L{flushAfterReads} instead: at the end of the reactor's
    batch of events under the proxy's reactor, so an HTTP/2 connection
    still gathers the responses of all the backend reads in the batch, or
    at the end of the read under another reactor.  What it writes to the
    socket goes out in the same pass.  Outside reads (a timer firing) it
    falls back to C{callLater(0)}.

    A class of its own rather than a subclass of Twisted's private
    C{_AggregateSmallWrites}, whose attributes differ between the Twisted
    versions supported (25.5 has no C{close}).
    """

    MAX_BUFFER_SIZE = 64_000
    """Buffered bytes past which a write is flushed at once (Twisted's)."""

    def __init__(self, write: Any, clock: IReactorTime) -> None:
        self._write = write
        self._clock = clock
        self._buffer: List[bytes] = []
        self._size = 0
        self._queued = False
        self._scheduled: Optional[IDelayedCall] = None

    def write(self, data: bytes) -> None:
        """
        Buffer C{data} and arrange for it to be flushed.

        Twisted buffers C{data + b""}: a C{TypeError} now for what is not
        bytes, and a copy of a mutable buffer.  On PyPy that also copies
        C{bytes}, so C{bytes} are kept as they are.
        """
        if type(data) is not bytes:
            data = data + b""
        self._buffer.append(data)
        self._size += len(data)
        if self._size > self.MAX_BUFFER_SIZE:
            self.flush()
        elif not self._queued and self._scheduled is None:
            if flushAfterReads(self):
                self._queued = True
            else:
                self._scheduled = self._clock.callLater(0, self._scheduledFlush)

    def flushAfterReads(self) -> None:
        """The reads that wrote are done: flush."""
        self._queued = False
        self.flush()

    def _scheduledFlush(self) -> None:
        """The reactor turn after a write made outside a read."""
        self._scheduled = None
        self.flush()

    def flush(self) -> None:
        """Encrypt and send what is buffered."""
        if self._buffer:
            data = b"".join(self._buffer)
            del self._buffer[:]
            self._size = 0
            self._write(data)

    def close(self) -> None:
        """Flush now and cancel a pending timer: the connection is lost."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self.flush()


class ServerTLSProtocol(BufferingTLSTransport):
    """
    The TLS layer of one client connection, closing as nginx does.

    Twisted's TLS transport sends its close alert only once no producer is
    registered, and then waits for the client's alert before closing the
    socket.  A channel stays registered as its transport's producer for the
    whole connection (TCP allows that), and nginx does not wait for the
    client's alert (C{SSL_set_quiet_shutdown} in C{ngx_ssl_shutdown}) so a
    client that never answers it cannot hold the connection open.  So
    L{loseConnection} unregisters the producer, sends the alert, and closes
    the socket once the alert is written.
    """

    #: Whether the client spoke plain text instead of TLS: then bytes pass
    #: through both ways, so it can be answered (see L{PlainHTTPFilter}).
    plain = False
    factory: "ServerTLSFactory"

    def __init__(
        self, factory: TLSMemoryBIOFactory, wrappedProtocol: Any, _connectWrapped: bool = True
    ) -> None:
        """
        Replace Twisted's write aggregator with one that flushes when the
        reads are done (L{EndOfReadWrites}).
        """
        super().__init__(factory, wrappedProtocol, _connectWrapped)
        self._aggregator = EndOfReadWrites(  # type: ignore[assignment]
            TLSMemoryBIOProtocol.write.__get__(self), factory._clock
        )
        self.write = self._aggregator.write  # type: ignore[method-assign]

    def makeConnection(self, transport: Any) -> None:
        """
        Do what Twisted's does, at less cost per accepted connection.

        Twisted declares the TCP transport's interfaces on this layer one
        at a time (each declaration replacing the last), then all of them
        again: 17 us of zope.interface on CPython for nine interfaces, about
        60 us in the profile of a connection per request.  One declaration gives
        the same result.  Twisted then takes a handshake step, which on a
        server only raises OpenSSL's want-read twice: nothing can be sent
        before the client's hello, whose arrival starts the handshake.
        """
        self._tlsConnection = self.factory.connectionFor(self)
        self._appSendBuffer = []
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        if self._connectWrapped:
            self.wrappedProtocol.makeConnection(self)

    def dataReceived(self, data: bytes) -> None:
        """
        Decide on the first byte whether the client speaks TLS at all.
        """
        if self.plain:
            self.wrappedProtocol.dataReceived(data)
            return
        if not self._began:
            self._began = True
            if not startsTLS(data[0]):
                self._goPlain()
                self.wrappedProtocol.dataReceived(data)
                return
        super().dataReceived(data)

    #: Whether the first bytes have arrived.
    _began = False

    def _goPlain(self) -> None:
        """
        Stop being TLS: writes go to the socket as they are, and the
        wrapped protocol learns it has a plain connection (C{http} scheme;
        a protocol selector then picks HTTP/1.x, as nginx does).
        """
        self.plain = True
        self.write = self._socket().write  # type: ignore[method-assign]
        wrapped = self.wrappedProtocol
        if hasattr(wrapped, "scheme"):
            wrapped.scheme = "http"
        plainConnection = getattr(wrapped, "plainConnection", None)
        if plainConnection is not None:
            plainConnection()

    def _socket(self) -> Any:
        """
        @return: the transport under TLS.
        """
        return self.transport

    def writeSequence(self, sequence: Any) -> None:
        """
        As C{write}.
        """
        if self.plain:
            self._socket().writeSequence(sequence)
        else:
            super().writeSequence(sequence)

    def getHandle(self) -> Any:
        """
        @return: the OpenSSL connection, or on a plain one the socket's
            handle (so L{connectionInfo} sees no TLS).
        """
        if self.plain:
            return self._socket().getHandle()
        return super().getHandle()

    def abortConnection(self) -> None:
        """
        Close at once (no TLS state to tear down on a plain connection).
        """
        if self.plain:
            self.disconnecting = True
            self._socket().abortConnection()
            return
        super().abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Skip Twisted's last read of what TLS received when nothing can come
        of it: on a plain connection, and when the socket closed cleanly
        after this side's own close (nginx reads nothing after its alert
        either).  That read, with the shutdown error it raises and the
        failure it builds, was 4 % of a connection per request.
        """
        if self.plain or (self.disconnecting and reason.check(ConnectionDone) is not None):
            self._lostTLSConnection = True
        super().connectionLost(reason)

    def loseConnection(self) -> None:
        """
        Send the close alert after any pending data, then close the socket.
        """
        if self.plain:
            if self._producer is not None and not self.disconnecting:
                self.unregisterProducer()
            self.disconnecting = True
            self._socket().loseConnection()
            return
        if self._producer is not None and not self.disconnecting:
            self.unregisterProducer()
        super().loseConnection()
        transport = self.transport
        if self.disconnecting and not self._appSendBuffer and transport is not None:
            transport.loseConnection()


class ServerTLSFactory(TLSMemoryBIOFactory):
    """
    Wraps client connections in L{ServerTLSProtocol}, each with an OpenSSL
    connection from C{creator} made here rather than through Twisted's
    private helper (its name and work differ between Twisted releases).
    """

    protocol = ServerTLSProtocol

    def __init__(self, creator: Any, wrappedFactory: Any, clock: Any = None) -> None:
        """
        @param creator: an L{IOpenSSLServerConnectionCreator}.
        @param wrappedFactory: the factory of the protocols wrapped.
        @param clock: the reactor whose time the write buffers use.
        """
        super().__init__(creator, False, wrappedFactory, clock=clock)
        self._serverCreator = creator

    def connectionFor(self, protocol: ServerTLSProtocol) -> SSL.Connection:
        """
        @return: C{protocol}'s OpenSSL connection, in the accepting state,
            with C{protocol} as its application data (as Twisted sets it).
        """
        connection = self._serverCreator.serverConnectionForTLS(protocol)
        connection.set_accept_state()
        connection.set_app_data(protocol)
        return connection
