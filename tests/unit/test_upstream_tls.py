"""
Upstream TLS without a reactor: the proxy's client TLS layer and a
pyOpenSSL server paired over memory transports (C{iosim}), the handshake
judged as nginx judges it, the keepalive pool's keys, and the
C{proxy_ssl_*} config checks with their FILE:LINE errors.
"""

from __future__ import annotations

import shutil
import tempfile

from pathlib import Path
from typing import Any, List, Optional

from OpenSSL import SSL
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.integration.certs import CertificateAuthority
from tests.unit.configsupport import ConfigTestCase
from tests.unit.test_tls import contextMode
from twisted_rproxy.interfaces import IProxyModule
from twisted_rproxy.modules.proxyssl import ProxySSLModule
from twisted_rproxy.upstream.cluster import Peer, RoundRobinBalancer, Upstream
from twisted_rproxy.upstream.http1 import UpstreamError, UpstreamHTTPProtocol
from twisted_rproxy.upstream.pool import ConnectionPool
from twisted_rproxy.upstream.tls import (
    TLSUpstreamHTTPProtocol,
    UpstreamTLS,
    UpstreamTLSSettings,
    sniName,
)
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator



def _temporaryDirectory(case: SynchronousTestCase) -> Path:
    """
    @return: a directory removed after C{case}'s test (outside the source
        tree, which trial's C{mktemp} would write into under pytest).
    """
    directory = Path(tempfile.mkdtemp(prefix="rproxy-unit-"))
    case.addCleanup(shutil.rmtree, directory, True)
    return directory

class _SeenName:
    """
    Records the SNI name each server-side connection received.
    """

    def __init__(self) -> None:
        self.names: List[Optional[bytes]] = []

    def __call__(self, connection: SSL.Connection) -> None:
        self.names.append(connection.get_servername())


class HandshakeTests(SynchronousTestCase):
    """
    L{TLSUpstreamHTTPProtocol} over a memory pair with a real TLS server.
    """

    def setUp(self) -> None:
        """
        A CA, a server certificate for C{backend.test}, and a client one.
        """
        self.directory = _temporaryDirectory(self)
        self.ca = CertificateAuthority(self.directory)
        self.cert, self.key = self.ca.issue(["backend.test"])
        self.clientCert, self.clientKey = self.ca.issue(["proxy"], client=True)
        self.seen = _SeenName()

    def serverContext(self, requireClient: bool = False) -> SSL.Context:
        """
        @return: the backend's context, noting SNI; optionally requiring a
            client certificate from the CA.
        """
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.use_certificate_chain_file(str(self.cert))
        context.use_privatekey_file(str(self.key))
        context.set_tlsext_servername_callback(self.seen)
        if requireClient:
            context.load_verify_locations(str(self.ca.certPath))
            context.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: bool(a[-1])
            )
        return context

    def handshake(self, settings: UpstreamTLSSettings, name: str,
                  requireClient: bool = False) -> Any:
        """
        @return: what the protocol's handshake Deferred gave: the protocol
            or a L{Failure}.
        """
        target = UpstreamTLS(settings).target(name)
        protocol = TLSUpstreamHTTPProtocol(Peer("127.0.0.1", 443), MemoryReactorClock(), target)
        results: List[Any] = []
        assert protocol.handshake is not None
        protocol.handshake.addBoth(results.append)
        serverContext = self.serverContext(requireClient)

        class ServerCreator:
            def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
                return SSL.Connection(serverContext, None)

        from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
        from zope.interface import directlyProvides

        creator = ServerCreator()
        directlyProvides(creator, IOpenSSLServerConnectionCreator)
        serverFactory = TLSMemoryBIOFactory(creator, False, Factory.forProtocol(Protocol))
        clientFactory = target.wrapFactory(Factory.forProtocol(lambda: protocol))
        server, client, pump = connectedServerAndClient(
            lambda: serverFactory.buildProtocol(None),
            lambda: clientFactory.buildProtocol(None),
        )
        pump.flush()
        self.assertEqual(len(results), 1)
        return results[0]

    def verified(self, **kwargs: Any) -> UpstreamTLSSettings:
        """
        @return: settings verifying against the test CA.
        """
        return UpstreamTLSSettings(verify=True, trusted=str(self.ca.certPath), **kwargs)

    def assertRefused(self, result: Any, message: str) -> None:
        """
        C{result} is an L{UpstreamError} failure with C{message}, at the
        handshake stage, counted as an C{error}.
        """
        self.assertIsInstance(result, Failure)
        result.trap(UpstreamError)
        self.assertEqual(result.value.kind, "error")
        self.assertEqual(str(result.value), f"{message} while SSL handshaking to upstream")

    def test_rightNameVerified(self) -> None:
        """
        A certificate for the name, from the trusted CA: the connection is
        handed out; no SNI is sent without C{proxy_ssl_server_name}.
        """
        result = self.handshake(self.verified(), "backend.test")
        self.assertIsInstance(result, TLSUpstreamHTTPProtocol)
        self.assertEqual(self.seen.names, [None])

    def test_connectionReusesBuffers(self) -> None:
        """
        The client side's OpenSSL connection reads and writes through the
        shared buffer (L{twisted_rproxy.tlsconnection}).
        """
        from twisted_rproxy.tlsconnection import ReusedBufferConnection

        result = self.handshake(self.verified(), "backend.test")
        self.assertIsInstance(result.transport.getHandle(), ReusedBufferConnection)

    def test_wrongNameRefused(self) -> None:
        """
        With verification, a certificate for another name is refused in
        nginx's words.
        """
        self.assertRefused(
            self.handshake(self.verified(), "other.test"),
            'upstream SSL certificate does not match "other.test"',
        )

    def test_wrongNameAcceptedUnverified(self) -> None:
        """
        Without C{proxy_ssl_verify} any certificate is accepted.
        """
        result = self.handshake(UpstreamTLSSettings(), "other.test")
        self.assertIsInstance(result, TLSUpstreamHTTPProtocol)

    def test_untrustedChainRefused(self) -> None:
        """
        A chain from a CA that is not trusted: OpenSSL's code and reason.
        """
        other = CertificateAuthority(self.directory / "other", commonName="other")
        settings = UpstreamTLSSettings(verify=True, trusted=str(other.certPath))
        self.assertRefused(
            self.handshake(settings, "backend.test"),
            "upstream SSL certificate verify error: (19:self-signed certificate in "
            "certificate chain)",
        )

    def test_serverNameSent(self) -> None:
        """
        C{proxy_ssl_server_name on} sends the name by SNI.
        """
        self.handshake(self.verified(serverName=True), "backend.test")
        self.assertEqual(self.seen.names, [b"backend.test"])

    def test_clientCertificate(self) -> None:
        """
        A backend requiring a client certificate accepts the configured
        one, and fails the handshake without it.
        """
        settings = UpstreamTLSSettings(
            certificate=str(self.clientCert), key=str(self.clientKey)
        )
        result = self.handshake(settings, "backend.test", requireClient=True)
        self.assertIsInstance(result, TLSUpstreamHTTPProtocol)
        # TLS 1.3: the client sees the refusal only after its handshake
        # ends, so pin TLS 1.2 to see it as a handshake failure.
        result = self.handshake(UpstreamTLSSettings(protocols=("TLSv1.2",)), "backend.test",
                                requireClient=True)
        self.assertIsInstance(result, Failure)
        self.assertIn("SSL_do_handshake() failed", str(result.value))

    def test_cancelAbortsTheHandshake(self) -> None:
        """
        C{proxy_connect_timeout} cancelling the handshake aborts the
        connection.
        """
        target = UpstreamTLS(UpstreamTLSSettings()).target("backend.test")
        protocol = TLSUpstreamHTTPProtocol(Peer("127.0.0.1", 443), MemoryReactorClock(), target)
        transport = StringTransport()
        protocol.makeConnection(transport)
        d = protocol.handshake
        assert d is not None
        results: List[Any] = []
        d.addErrback(results.append)
        d.cancel()
        self.assertTrue(transport.disconnecting)
        results[0].trap(CancelledError)

    def test_creatorInterface(self) -> None:
        """
        A target is an C{IOpenSSLClientConnectionCreator}, one per name.
        """
        tls = UpstreamTLS(UpstreamTLSSettings())
        self.assertTrue(verifyObject(IOpenSSLClientConnectionCreator, tls.target("a")))
        self.assertIs(tls.target("a"), tls.target("a"))
        self.assertIsNot(tls.target("a"), tls.target("b"))


class SNINameTests(SynchronousTestCase):
    """
    L{sniName}: what nginx would send by SNI.
    """

    def test_names(self) -> None:
        """
        Host names are sent; IP addresses and names ending in a dot are not.
        """
        self.assertEqual(sniName("backend.test"), b"backend.test")
        self.assertIsNone(sniName("127.0.0.1"))
        self.assertIsNone(sniName("[::1]"))
        self.assertIsNone(sniName("backend.test."))
        self.assertIsNone(sniName(""))


class PoolKeyTests(SynchronousTestCase):
    """
    The keepalive pool never hands a connection to a request that wants a
    different kind (plain or TLS) or a different TLS name.
    """

    def setUp(self) -> None:
        """
        A pool and a keepalive upstream on a memory reactor.
        """
        self.reactor = MemoryReactorClock()
        self.pool = ConnectionPool(self.reactor)
        self.peer = Peer("127.0.0.1", 8443)
        self.upstream = Upstream(
            "u", [self.peer], RoundRobinBalancer([self.peer], self.reactor), keepalive=4,
        )
        tls = UpstreamTLS(UpstreamTLSSettings(serverName=True))
        self.a, self.b = tls.target("a.test"), tls.target("b.test")

    def idle(self, target: Any) -> UpstreamHTTPProtocol:
        """
        @return: a connected protocol for C{target}, released to the pool.
        """
        if target is None:
            protocol = UpstreamHTTPProtocol(self.peer, self.reactor)
        else:
            protocol = TLSUpstreamHTTPProtocol(self.peer, self.reactor, target)
        protocol.makeConnection(StringTransport())
        self.pool.release(self.upstream, protocol, True)
        return protocol

    def test_keyedByTarget(self) -> None:
        """
        Each idle connection comes back only for its own target.
        """
        plain, forA = self.idle(None), self.idle(self.a)
        self.assertIsNone(self.pool.takeIdle(self.upstream, self.peer, self.b))
        self.assertIs(self.pool.takeIdle(self.upstream, self.peer, self.a), forA)
        self.assertIsNone(self.pool.takeIdle(self.upstream, self.peer, self.a))
        self.assertIs(self.pool.takeIdle(self.upstream, self.peer), plain)

    def test_newTLSConnectionWaitsForTheHandshake(self) -> None:
        """
        C{connect} with a target fires only once the handshake is judged,
        and an expired C{proxy_connect_timeout} fails it as a timeout.
        """
        results: List[Any] = []
        self.pool.connect(self.peer, 5, self.a).addBoth(results.append)
        factory = self.reactor.tcpClients[-1][2]
        wrapper = factory.buildProtocol(None)
        wrapper.makeConnection(StringTransport())
        self.assertEqual(results, [])
        self.reactor.advance(5)
        self.assertEqual(len(results), 1)
        results[0].trap(UpstreamError)
        self.assertEqual(results[0].value.kind, "timeout")


class ConfigTests(ConfigTestCase):
    """
    The C{proxy_ssl_*} directives' checks, at the directive's FILE:LINE.
    """

    def test_provides(self) -> None:
        """
        The module is an C{IProxyModule}.
        """
        self.assertTrue(verifyObject(IProxyModule, ProxySSLModule()))

    def location(self, inner: str) -> str:
        """
        @return: a server with one https location holding C{inner}.
        """
        return (
            "server {\n listen 127.0.0.1:8080;\n location / {\n"
            "  proxy_pass https://127.0.0.1:8443;\n" + inner + "\n }\n}"
        )

    def test_verifyNeedsTrusted(self) -> None:
        """
        As nginx: verification without trusted certificates is an error.
        """
        error = self.httpError(self.location("  proxy_ssl_verify on;"))
        self.assertIn('no "proxy_ssl_trusted_certificate" for "proxy_ssl_verify"', error)
        self.assertTrue(error.endswith(":9"), error)

    def test_missingTrustedFile(self) -> None:
        """
        A trusted certificate file that is missing fails at its line.
        """
        error = self.httpError(self.location(
            "  proxy_ssl_verify on;\n  proxy_ssl_trusted_certificate missing.pem;"
        ))
        self.assertIn('cannot load trusted certificate', error)
        self.assertTrue(error.endswith(":10"), error)

    def test_certificateWithoutKey(self) -> None:
        """
        A client certificate needs its key.
        """
        error = self.httpError(self.location("  proxy_ssl_certificate client.crt;"))
        self.assertIn('no "proxy_ssl_certificate_key" is defined', error)

    def test_badProtocol(self) -> None:
        """
        An unknown protocol name.
        """
        error = self.httpError(self.location("  proxy_ssl_protocols TLSv9;"))
        self.assertIn('invalid value "TLSv9" in "proxy_ssl_protocols" directive', error)

    def test_badCiphers(self) -> None:
        """
        A cipher list OpenSSL refuses.
        """
        error = self.httpError(self.location("  proxy_ssl_ciphers NOTACIPHER;"))
        self.assertIn('SSL_CTX_set_cipher_list("NOTACIPHER") failed', error)
        self.assertTrue(error.endswith(":9"), error)

    def test_httpsDefaultPort(self) -> None:
        """
        C{https://host} means port 443, and C{$proxy_host} leaves it out.
        """
        config = self.compileHTTP(
            "server {\n listen 127.0.0.1:8080;\n location / { proxy_pass https://127.0.0.1; }\n}"
        )
        handler = config.servers[0].locations.match("/").payload.contentHandler
        self.assertEqual(handler.target.scheme, "https")
        self.assertEqual(handler.target.upstream.peers[0].port, 443)
        self.assertEqual(handler.target.proxyHost, "127.0.0.1")
        self.assertIsNotNone(handler.tls)

    def test_plainHasNoTLS(self) -> None:
        """
        An C{http://} location gets no TLS settings.
        """
        config = self.compileHTTP(
            "server {\n listen 127.0.0.1:8080;\n location / { proxy_pass http://127.0.0.1; }\n}"
        )
        handler = config.servers[0].locations.match("/").payload.contentHandler
        self.assertIsNone(handler.tls)

    def test_equalSettingsShareAContext(self) -> None:
        """
        Two locations with the same settings share one L{UpstreamTLS}.
        """
        config = self.compileHTTP(
            "server {\n listen 127.0.0.1:8080;\n"
            " location /a { proxy_pass https://127.0.0.1; }\n"
            " location /b { proxy_pass https://127.0.0.2; }\n}"
        )
        locations = config.servers[0].locations
        first = locations.match("/a").payload.contentHandler.tls
        second = locations.match("/b").payload.contentHandler.tls
        self.assertIs(first, second)

    def test_recordBuffersReleased(self) -> None:
        """
        The client context frees record buffers when they are empty, as
        nginx's does, so a pooled idle connection holds none.
        """
        config = self.compileHTTP(
            "server {\n listen 127.0.0.1:8080;\n"
            " location / { proxy_pass https://127.0.0.1; }\n}"
        )
        tls = config.servers[0].locations.match("/").payload.contentHandler.tls
        self.assertTrue(contextMode(tls.context) & SSL.MODE_RELEASE_BUFFERS)
