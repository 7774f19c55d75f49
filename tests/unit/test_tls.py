"""
The ssl module's config checks and TLS contexts: certificates loaded and
checked at compile time with errors at the directive's FILE:LINE, nginx's
inheritance, the listen-level checks, and the SNI choice of context.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Tuple

from OpenSSL import SSL

from tests.integration.certs import CertificateAuthority
from tests.unit.configsupport import ConfigTestCase, httpConfig
from twisted_rproxy.tls import ListenerTLS
from twisted_rproxy.tlsconnection import ReusedBufferConnection


def contextMode(context: SSL.Context) -> int:
    """
    @return: C{context}'s OpenSSL mode bits.  C{SSL_CTX_set_mode} with
        nothing to add answers them; called through pyOpenSSL's binding,
        because its C{Context.set_mode} counts as changing a context that
        has made connections (a DeprecationWarning, later an error).
    """
    from OpenSSL._util import lib

    return int(lib.SSL_CTX_set_mode(context._context, 0))  # type: ignore[attr-defined]


class TLSConfigTestCase(ConfigTestCase):
    """
    A config test case with a CA and certificates for C{a.test} and
    C{b.test} in the prefix (as C{a.crt}/C{a.key}, C{b.crt}/C{b.key}).
    """

    def setUp(self) -> None:
        """Make the CA and both certificates."""
        super().setUp()
        prefix = Path(self.prefix)
        self.ca = CertificateAuthority(prefix / "ca")
        self.ca.issue(["a.test"], prefix / "a.crt", prefix / "a.key")
        self.ca.issue(["b.test"], prefix / "b.crt", prefix / "b.key")

    def acceptTLS(self, config: str) -> Tuple[Any, Any, Any]:
        """
        Accept a connection on the first listener of C{config}'s http
        block, over a memory transport.

        @return: the connection's TLS layer, its transport (which declares
            C{ITCPTransport} on itself, as a TCP one would) and the reactor.
        """
        from twisted.internet.interfaces import ITCPTransport
        from twisted.internet.testing import MemoryReactorClock, StringTransport
        from zope.interface import directlyProvides, providedBy

        from twisted_rproxy.service import ProxyFactory

        class Transport(StringTransport):
            def getHandle(self) -> None:
                return None

        reactor = MemoryReactorClock()
        factory = ProxyFactory(self.compileHTTP(config).listeners[0], reactor)
        protocol = factory.buildProtocol(None)
        transport = Transport()
        directlyProvides(transport, providedBy(transport), ITCPTransport)
        protocol.makeConnection(transport)
        return protocol, transport, reactor

    def lineOf(self, text: str, needle: str) -> int:
        """
        @return: the 1-based line of C{httpConfig(text)} holding C{needle}.
        """
        for number, line in enumerate(httpConfig(text).splitlines(), 1):
            if needle in line:
                return number
        raise AssertionError(f"{needle!r} not in the config")

    def assertErrorAt(self, body: str, needle: str, message: str) -> None:
        """
        Compiling C{body} fails with C{message} at the line holding C{needle}.
        """
        error = self.httpError(body)
        self.assertIn(message, error)
        self.assertTrue(
            error.endswith(f"{self.confPath}:{self.lineOf(body, needle)}"), error
        )


class CertificateErrorTests(TLSConfigTestCase):
    """
    A certificate or key that cannot be used is an error at its directive.
    """

    def serverWith(self, certificate: str, key: str) -> str:
        """
        @return: an ssl server using C{certificate} and C{key}.
        """
        return f"""
    server {{
        listen 127.0.0.1:8443 ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
    }}
"""

    def testMissingCertificate(self) -> None:
        """A certificate file that does not exist."""
        self.assertErrorAt(
            self.serverWith("missing.crt", "a.key"), "ssl_certificate missing.crt",
            f'cannot load certificate "{self.prefix}/missing.crt": No such file or directory',
        )

    def testMissingKey(self) -> None:
        """A key file that does not exist."""
        self.assertErrorAt(
            self.serverWith("a.crt", "missing.key"), "ssl_certificate_key missing.key",
            f'cannot load certificate key "{self.prefix}/missing.key": No such file',
        )

    def testUnreadableCertificate(self) -> None:
        """A certificate that is a directory cannot be read."""
        os.mkdir(os.path.join(self.prefix, "dir.crt"))
        self.assertErrorAt(
            self.serverWith("dir.crt", "a.key"), "ssl_certificate dir.crt",
            f'cannot load certificate "{self.prefix}/dir.crt": Is a directory',
        )

    def testCertificateNotPEM(self) -> None:
        """A certificate file without PEM text."""
        self.writeFile("junk.crt", "not a certificate\n")
        self.assertErrorAt(
            self.serverWith("junk.crt", "a.key"), "ssl_certificate junk.crt",
            f'cannot load certificate "{self.prefix}/junk.crt": no PEM certificate found',
        )

    def testBrokenPEM(self) -> None:
        """PEM armour around garbage is refused by OpenSSL, still at the directive."""
        self.writeFile(
            "broken.crt",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        error = self.httpError(self.serverWith("broken.crt", "a.key"))
        self.assertIn(f'cannot load certificate "{self.prefix}/broken.crt": ', error)
        self.assertTrue(error.endswith(f"{self.confPath}:8"), error)

    def testKeyNotPEM(self) -> None:
        """A key file that is a certificate, not a key."""
        self.assertErrorAt(
            self.serverWith("a.crt", "b.crt"), "ssl_certificate_key b.crt",
            f'cannot load certificate key "{self.prefix}/b.crt": no PEM private key found',
        )

    def testKeyMismatch(self) -> None:
        """The key of another certificate."""
        self.assertErrorAt(
            self.serverWith("a.crt", "b.key"), "ssl_certificate_key b.key",
            f'cannot load certificate key "{self.prefix}/b.key" for certificate '
            f'"{self.prefix}/a.crt": ',
        )

    def testExpiredCertificate(self) -> None:
        """
        A certificate past its notAfter is refused at its directive,
        saying when it expired.
        """
        prefix = Path(self.prefix)
        self.ca.issue(["old.test"], prefix / "old.crt", prefix / "old.key", expired=True)
        self.assertErrorAt(
            self.serverWith("old.crt", "old.key"), "ssl_certificate old.crt",
            f'certificate "{self.prefix}/old.crt" expired on ',
        )

    def testKeyWithoutCertificate(self) -> None:
        """ssl_certificate_key alone."""
        self.assertErrorAt(
            """
    server {
        listen 127.0.0.1:8443 ssl;
        ssl_certificate_key a.key;
    }
""",
            "ssl_certificate_key a.key",
            'no "ssl_certificate" is defined for the "ssl_certificate_key" "a.key"',
        )

    def testCertificateWithoutKey(self) -> None:
        """ssl_certificate alone."""
        self.assertErrorAt(
            """
    server {
        listen 127.0.0.1:8443 ssl;
        ssl_certificate a.crt;
    }
""",
            "ssl_certificate a.crt",
            'no "ssl_certificate_key" is defined for certificate "a.crt"',
        )

    def testHTTPLevelErrorAtItsLine(self) -> None:
        """An inherited certificate that is missing is reported where it is written."""
        self.assertErrorAt(
            """
    ssl_certificate nothere.crt;
    ssl_certificate_key a.key;
    server {
        listen 127.0.0.1:8443 ssl;
    }
""",
            "ssl_certificate nothere.crt",
            "cannot load certificate",
        )

    def testBadCiphers(self) -> None:
        """A cipher list OpenSSL rejects, at ssl_ciphers."""
        self.assertErrorAt(
            """
    server {
        listen 127.0.0.1:8443 ssl;
        ssl_certificate a.crt;
        ssl_certificate_key a.key;
        ssl_ciphers NOSUCHCIPHER;
    }
""",
            "ssl_ciphers",
            'SSL_CTX_set_cipher_list("NOSUCHCIPHER") failed',
        )

    def testBadProtocol(self) -> None:
        """An unknown ssl_protocols name."""
        self.assertErrorAt(
            """
    ssl_protocols TLSv1.2 TLSv9;
""",
            "ssl_protocols",
            'invalid value "TLSv9" in "ssl_protocols" directive',
        )

    def testBadSessionCache(self) -> None:
        """An ssl_session_cache nginx would refuse."""
        self.assertErrorAt(
            """
    ssl_session_cache shared:nosize;
""",
            "ssl_session_cache",
            'invalid session cache "shared:nosize"',
        )

    def testNotInLocation(self) -> None:
        """ssl_certificate belongs to http and server, as in nginx."""
        self.assertIn(
            '"ssl_certificate" directive is not allowed here',
            self.httpError(
                """
    server {
        location / { ssl_certificate a.crt; }
    }
"""
            ),
        )


class ListenSSLTests(TLSConfigTestCase):
    """
    C{listen ... ssl} needs a certificate for every server on the address.
    """

    def testNoCertificate(self) -> None:
        """nginx's error, at the listen directive."""
        self.assertErrorAt(
            """
    server {
        listen 127.0.0.1:8443 ssl;
        return 200;
    }
""",
            "listen 127.0.0.1:8443 ssl",
            'no "ssl_certificate" is defined for the "listen ... ssl" directive',
        )

    def testSecondServerWithoutCertificate(self) -> None:
        """
        A server sharing an ssl address without a certificate of its own is
        refused at its own listen, even when its listen lacks C{ssl} (the
        address is ssl once any listen says so, as in nginx).
        """
        self.assertErrorAt(
            """
    server {
        listen 127.0.0.1:8443 ssl;
        ssl_certificate a.crt;
        ssl_certificate_key a.key;
    }
    server {
        listen 127.0.0.1:8443;
        server_name other;
    }
""",
            "listen 127.0.0.1:8443;",
            'no "ssl_certificate" is defined for the "listen ... ssl" directive',
        )

    def testMixedWithWildcard(self) -> None:
        """A plain specific address served by an ssl wildcard socket is refused."""
        error = self.httpError(
            """
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    server {
        listen 8443 ssl;
    }
    server {
        listen 127.0.0.1:8443;
    }
"""
        )
        self.assertIn('the "ssl" parameter of "listen 127.0.0.1:8443" differs', error)

    def testPlainListenerHasNoTLS(self) -> None:
        """Certificates alone do not make a plain listener speak TLS."""
        config = self.compileHTTP(
            """
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    server {
        listen 127.0.0.1:8080;
    }
"""
        )
        self.assertFalse(config.listeners[0].ssl)
        self.assertIsNone(config.listeners[0].tls)

    def testSSLDoesNotBindItsOwnSocket(self) -> None:
        """
        C{ssl} is not a socket option: a specific ssl address beside an ssl
        wildcard of its port is served by the wildcard's socket.
        """
        config = self.compileHTTP(
            """
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    server {
        listen 8443 ssl;
    }
    server {
        listen 127.0.0.1:8443 ssl;
        server_name b.test;
        ssl_certificate b.crt;
        ssl_certificate_key b.key;
    }
"""
        )
        self.assertEqual(len(config.listeners), 1)
        tls = config.listeners[0].tls
        self.assertIsInstance(tls, ListenerTLS)
        servers = config.servers
        self.assertIs(tls.contextFor(b"b.test", "127.0.0.1"), tls.contexts[id(servers[1])])
        self.assertIs(tls.contextFor(b"b.test", "127.0.0.2"), tls.contexts[id(servers[0])])

    def testOtherFlagsStillRefused(self) -> None:
        """quic is not part of this: still refused (http2 is its own module)."""
        self.assertIn(
            'the "quic" parameter of "listen" is not supported yet',
            self.httpError("server { listen 8443 ssl quic; }"),
        )


class SNITests(TLSConfigTestCase):
    """
    The server name picks the context as the router picks the server.
    """

    CONFIG = """
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    server {
        listen 127.0.0.1:8443 ssl;
        server_name a.test;
    }
    server {
        listen 127.0.0.1:8443 ssl default_server;
        server_name *.b.test b.test;
        ssl_certificate b.crt;
        ssl_certificate_key b.key;
    }
"""

    def contexts(self) -> Tuple[Any, SSL.Context, SSL.Context]:
        """
        @return: the listener's L{ListenerTLS} and the contexts of the
            a.test and b.test servers.
        """
        config = self.compileHTTP(self.CONFIG)
        tls = config.listeners[0].tls
        a, b = config.servers
        return tls, tls.contexts[id(a)], tls.contexts[id(b)]

    def testExactName(self) -> None:
        """An exact name, compared without case and trailing dot."""
        tls, a, b = self.contexts()
        self.assertIs(tls.contextFor(b"a.test", None), a)
        self.assertIs(tls.contextFor(b"A.Test.", None), a)

    def testWildcard(self) -> None:
        """A leading wildcard matches as in server_name."""
        tls, a, b = self.contexts()
        self.assertIs(tls.contextFor(b"www.b.test", None), b)

    def testUnknownAndMissingNamesGetTheDefault(self) -> None:
        """No SNI, an unknown or an invalid name: the default server (b)."""
        tls, a, b = self.contexts()
        self.assertIs(tls.contextFor(None, None), b)
        self.assertIs(tls.contextFor(b"c.test", None), b)
        self.assertIs(tls.contextFor(b"bad/name", None), b)

    def testConnectionStartsWithDefault(self) -> None:
        """A new connection uses the default server's context until SNI."""
        tls, a, b = self.contexts()
        connection = tls.serverConnectionForTLS(None)
        self.assertIs(connection.get_context(), b)

    def testRecordBuffersReleased(self) -> None:
        """
        Every context frees a connection's record buffers when they are
        empty, as nginx's do (C{SSL_MODE_RELEASE_BUFFERS}): an idle TLS
        connection then holds none.
        """
        _, a, b = self.contexts()
        for context in (a, b):
            self.assertTrue(contextMode(context) & SSL.MODE_RELEASE_BUFFERS)

    def testSharedSettingsShareAContext(self) -> None:
        """Servers inheriting the same certificate share one loaded context."""
        config = self.compileHTTP(
            """
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    server { listen 127.0.0.1:8443 ssl; server_name one; }
    server { listen 127.0.0.1:8443 ssl; server_name two; }
"""
        )
        tls = config.listeners[0].tls
        one, two = config.servers
        self.assertIs(tls.contexts[id(one)], tls.contexts[id(two)])

    def testRelativePathsFromTheConfigDirectory(self) -> None:
        """
        Relative certificate paths resolve against the main config file's
        directory, as nginx's conf prefix.
        """
        os.mkdir(os.path.join(self.prefix, "conf"))
        self.ca.issue(
            ["c.test"],
            Path(self.prefix) / "conf" / "c.crt",
            Path(self.prefix) / "conf" / "c.key",
        )
        config = self.compile(
            httpConfig(
                """
    server {
        listen 127.0.0.1:8443 ssl;
        ssl_certificate c.crt;
        ssl_certificate_key c.key;
    }
"""
            ),
            name="conf/nginx.conf",
        )
        self.assertIsNotNone(config.listeners[0].tls)


class VariablesOnPlainConnections(ConfigTestCase):
    """
    Over plain HTTP the TLS variables are empty and the scheme is http.
    """

    def testPlain(self) -> None:
        """$scheme, $https and the $ssl_* variables on a plain connection."""
        config = self.compileHTTP(
            """
    server {
        listen 127.0.0.1:8080;
        return 200 "[$scheme][$https][$ssl_protocol][$ssl_cipher][$ssl_server_name]";
    }
"""
        )
        self.assertEqual(self.body(config), "[http][][][][]")


class PlainHTTPOnTLSPortTests(TLSConfigTestCase):
    """
    The TLS layer of a connection tells a plain-text client by its first
    byte and lets the request through in clear, to be answered 497 (sent
    as 400) by the server its Host selects, with that server's
    C{error_page 497}.
    """

    CONFIG = """
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    server {
        listen 127.0.0.1:8443 ssl;
        server_name a.test;
        return 200 "tls\\n";
    }
    server {
        listen 127.0.0.1:8443 ssl;
        server_name b.test;
        error_page 497 https://$host$request_uri;
        return 200 "tls\\n";
    }
"""

    def connect(self, data: bytes) -> Any:
        """
        @return: the memory transport of a connection to the listener
            that received C{data} first.
        """
        protocol, transport, _ = self.acceptTLS(self.CONFIG)
        protocol.dataReceived(data)
        self.protocol = protocol
        return transport

    def testFirstByte(self) -> None:
        """A handshake record or an SSLv2-style hello is TLS; text is not."""
        from twisted_rproxy.tls import startsTLS

        self.assertTrue(startsTLS(0x16))
        self.assertTrue(startsTLS(0x80))
        self.assertFalse(startsTLS(ord("G")))
        self.assertFalse(startsTLS(0x15))

    def testPlainRequestIs400AndCloses(self) -> None:
        """nginx's page for 497, in clear, then the connection closes."""
        transport = self.connect(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        out = transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out)
        self.assertIn(b"<title>400 The plain HTTP request was sent to HTTPS port</title>", out)
        self.assertIn(b"\r\nConnection: close\r\n", out)
        self.assertTrue(transport.disconnecting)

    def testErrorPageOfTheHostsServer(self) -> None:
        """The server the Host names redirects by its own error_page 497."""
        transport = self.connect(b"GET /x?y=1 HTTP/1.1\r\nHost: b.test\r\n\r\n")
        out = transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 302 "), out)
        self.assertIn(b"\r\nLocation: https://b.test/x?y=1\r\n", out)

    def testTLSStaysTLS(self) -> None:
        """A ClientHello's first byte keeps the connection in TLS."""
        transport = self.connect(b"\x16\x03\x01\x00\x05hello")
        self.assertFalse(self.protocol.plain)
        self.assertNotIn(b"HTTP/1.1", transport.value())


class ServerTLSConnectionTests(TLSConfigTestCase):
    """
    L{ServerTLSProtocol.makeConnection} and L{ServerTLSFactory}: a client
    connection's TLS layer, set up in fewer steps than Twisted's, ends in
    the same state and completes a handshake and a request.
    """

    CONFIG = PlainHTTPOnTLSPortTests.CONFIG

    def accept(self) -> Tuple[Any, Any, Any]:
        """
        @return: L{acceptTLS} of this case's config.
        """
        return self.acceptTLS(self.CONFIG)

    def testStateAfterMakeConnection(self) -> None:
        """
        The layer provides what its transport does, its OpenSSL connection
        has the layer as application data, the wrapped protocol is
        connected to the layer, and nothing is sent before the client's
        hello.  (L{testHandshakeAndRequest} shows the connection accepts.)
        """
        from twisted.internet.interfaces import ITCPTransport, ITransport

        from twisted_rproxy.tls import ServerTLSFactory, ServerTLSProtocol

        protocol, transport, _ = self.accept()
        self.assertIsInstance(protocol, ServerTLSProtocol)
        self.assertIsInstance(protocol.factory, ServerTLSFactory)
        self.assertTrue(ITCPTransport.providedBy(protocol))
        self.assertTrue(ITransport.providedBy(protocol))
        self.assertIs(protocol.transport, transport)
        self.assertTrue(protocol.connected)
        self.assertIn(protocol, protocol.factory.protocols)
        self.assertIs(protocol.getHandle().get_app_data(), protocol)
        self.assertIsInstance(protocol.getHandle(), ReusedBufferConnection)
        self.assertIs(protocol.wrappedProtocol.transport, protocol)
        self.assertEqual(transport.value(), b"")

    def handshake(self, protocol: Any, transport: Any, reactor: Any) -> Tuple[Any, Any]:
        """
        Complete a client's handshake with C{protocol} over C{transport}.

        @return: the client's OpenSSL connection, and a function that
            passes what each side wrote to the other.
        """
        context = SSL.Context(SSL.TLS_METHOD)
        context.load_verify_locations(str(self.ca.certPath))
        context.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
        client = SSL.Connection(context, None)
        client.set_tlsext_host_name(b"a.test")
        client.set_connect_state()

        def exchange() -> None:
            try:
                protocol.dataReceived(client.bio_read(65536))
            except SSL.WantReadError:
                pass
            reactor.advance(0)
            client.bio_write(transport.value())
            transport.clear()

        for _ in range(5):
            try:
                client.do_handshake()
                break
            except SSL.WantReadError:
                exchange()
        else:
            self.fail("the handshake did not finish")
        return client, exchange

    def testHandshakeAndRequest(self) -> None:
        """A client completes a handshake, sends a request, gets the answer."""
        protocol, transport, reactor = self.accept()
        client, exchange = self.handshake(protocol, transport, reactor)
        client.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        exchange()
        response = b""
        while True:
            try:
                response += client.recv(65536)
            except SSL.WantReadError:
                break
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"), response)
        self.assertTrue(response.endswith(b"\r\n\r\ntls\n"), response)

    def finalReads(self, closeFirst: bool, reason: Any) -> List[str]:
        """
        After a request on a completed handshake, lose the connection with
        C{reason}, the server having closed first if C{closeFirst}.

        @return: the final reads of what TLS received that Twisted made.
        """
        from twisted.python.failure import Failure

        protocol, transport, reactor = self.accept()
        client, exchange = self.handshake(protocol, transport, reactor)
        close = b"Connection: close\r\n" if closeFirst else b""
        client.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n" + close + b"\r\n")
        exchange()
        self.assertEqual(transport.disconnecting, closeFirst)
        reads: List[str] = []
        protocol._flushReceiveBIO = lambda: reads.append("read")
        channel = protocol.wrappedProtocol
        protocol.connectionLost(Failure(reason))
        self.assertTrue(channel.lost, "the channel was told")
        return reads

    def testNoFinalReadAfterOwnClose(self) -> None:
        """
        Closed cleanly after this side's close alert, the TLS layer reads
        nothing more from TLS before telling the channel.
        """
        from twisted.internet.error import ConnectionDone

        self.assertEqual(self.finalReads(True, ConnectionDone()), [])

    def testFinalReadOtherwise(self) -> None:
        """
        Closed by the client, or lost after this side's close, the TLS
        layer makes Twisted's final read.
        """
        from twisted.internet.error import ConnectionDone, ConnectionLost

        self.assertEqual(self.finalReads(False, ConnectionDone()), ["read"])
        self.assertEqual(self.finalReads(True, ConnectionLost()), ["read"])
