"""
Tests for L{twisted_rproxy.tlsconnection}: connections that read and write
through one shared buffer behave as pyOpenSSL's own, over memory BIOs.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, List, Tuple

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.certs import CertificateAuthority
from twisted_rproxy import tlsconnection
from twisted_rproxy.tlsconnection import BUFFER_SIZE, ReusedBufferConnection, newConnection, reusesBuffers


class CallsSeen:
    """
    Stands in for pyOpenSSL's binding in L{tlsconnection}: records which of
    its functions the module called, and calls the real ones.
    """

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.calls: List[str] = []

    def __getattr__(self, name: str) -> Any:
        function = getattr(self.lib, name)

        def call(*args: Any) -> Any:
            self.calls.append(name)
            return function(*args)

        return call


class ConnectionPairCase(SynchronousTestCase):
    """
    A server L{ReusedBufferConnection} and a pyOpenSSL client with a
    finished TLS handshake between them, over memory BIOs.
    """

    def setUp(self) -> None:
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, directory)
        ca = CertificateAuthority(directory / "ca")
        certificate, key = ca.issue(["a.test"])
        server = SSL.Context(SSL.TLS_METHOD)
        server.use_certificate_chain_file(str(certificate))
        server.use_privatekey_file(str(key))
        server.set_mode(SSL.MODE_RELEASE_BUFFERS)
        self.serverContext = server
        client = SSL.Context(SSL.TLS_METHOD)
        client.load_verify_locations(str(ca.certPath))
        client.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
        self.clientContext = client
        self.server, self.client = self.connect(newConnection(server), SSL.Connection(client, None))

    def connect(self, server: SSL.Connection, client: SSL.Connection) -> Tuple[Any, Any]:
        """
        @return: C{server} and C{client}, their handshake done.
        """
        server.set_accept_state()
        client.set_connect_state()
        for _ in range(10):
            done = 0
            for side in (client, server):
                try:
                    side.do_handshake()
                    done += 1
                except SSL.WantReadError:
                    pass
            self.pumpBetween(server, client)
            if done == 2:
                return server, client
        self.fail("the handshake did not finish")

    def pumpBetween(self, one: SSL.Connection, other: SSL.Connection) -> None:
        """Move the bytes each side wrote to the other until none are left."""
        moved = True
        while moved:
            moved = False
            for source, sink in ((one, other), (other, one)):
                try:
                    data = source.bio_read(2**15)
                except SSL.WantReadError:
                    continue
                sink.bio_write(data)
                moved = True

    def pump(self) -> None:
        """L{pumpBetween} this case's server and client."""
        self.pumpBetween(self.server, self.client)

    def readAll(self, side: SSL.Connection, size: int = 2**15) -> bytes:
        """
        @return: what C{side} reads, in C{size} steps, until it would block.
        """
        received = b""
        for _ in range(1000):
            try:
                received += side.recv(size)
            except SSL.WantReadError:
                return received
        self.fail("recv never ran out of bytes")

    def sendAll(self, side: SSL.Connection, data: bytes) -> None:
        """
        Send C{data} as Twisted's TLS layer does: C{send} again with the
        rest after each partial write (pyOpenSSL turns partial writes on,
        so a write ends at a record's 16 KiB).
        """
        sent = 0
        while sent < len(data):
            sent += side.send(data[sent:])

    def seeCalls(self) -> CallsSeen:
        """
        @return: the recorder standing in for the binding until the test ends.
        """
        seen = CallsSeen(tlsconnection._lib)
        self.patch(tlsconnection, "_lib", seen)
        return seen


class ReusedBufferConnectionTests(ConnectionPairCase):
    """
    L{ReusedBufferConnection}'s four methods: same bytes and errors as
    pyOpenSSL's, through the shared buffer where they can be.
    """

    def testMadeByDefault(self) -> None:
        """
        With the installed pyOpenSSL, L{newConnection} reuses the buffer.
        If a pyOpenSSL release drops the internals it needs, this fails
        rather than the proxy quietly losing the gain.
        """
        self.assertIsInstance(self.server, ReusedBufferConnection)
        self.assertTrue(reusesBuffers())

    def testRequestAndResponse(self) -> None:
        """
        What the client sends, the server reads; what the server sends,
        the client reads, through the shared buffer both ways.
        """
        seen = self.seeCalls()
        self.client.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.pump()
        self.assertEqual(self.readAll(self.server), b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(self.server.send(b"x" * 1024), 1024)
        self.pump()
        self.assertEqual(self.readAll(self.client), b"x" * 1024)
        self.assertEqual(
            sorted(set(seen.calls)), ["BIO_read", "BIO_write", "SSL_read", "SSL_write"]
        )

    def testManyRecords(self) -> None:
        """
        A write of several TLS records (40 KiB) reaches the other side
        whole, through reads smaller than what is waiting in the BIO.
        """
        body = bytes(range(256)) * 160
        self.assertEqual(self.server.send(body), 16384)
        self.sendAll(self.server, body[16384:])
        chunks = []
        while True:
            try:
                chunks.append(self.server.bio_read(4096))
            except SSL.WantReadError:
                break
        self.assertTrue(all(len(chunk) <= 4096 for chunk in chunks))
        self.assertGreater(len(chunks), 10)
        for chunk in chunks:
            self.client.bio_write(chunk)
        self.assertEqual(self.readAll(self.client), body)

    def testRecvHonoursSize(self) -> None:
        """C{recv(n)} returns at most C{n} bytes; the rest waits."""
        self.client.send(b"abcdefgh")
        self.pump()
        self.assertEqual(self.server.recv(3), b"abc")
        self.assertEqual(self.server.recv(100), b"defgh")

    def testReadsAreCopies(self) -> None:
        """
        Bytes returned by one read are not changed by the next, which
        reuses the buffer.
        """
        self.client.send(b"first")
        self.pump()
        first = self.server.recv(100)
        self.client.send(b"SECOND")
        self.pump()
        self.assertEqual(self.server.recv(100), b"SECOND")
        self.assertEqual(first, b"first")

    def testNothingToRead(self) -> None:
        """
        With nothing waiting, C{recv} and C{bio_read} raise
        C{WantReadError}, as pyOpenSSL's do.
        """
        self.assertRaises(SSL.WantReadError, self.server.recv, 100)
        self.assertRaises(SSL.WantReadError, self.server.bio_read, 100)

    def testPeerClosed(self) -> None:
        """After the peer's close_notify, C{recv} raises C{ZeroReturnError}."""
        self.client.shutdown()
        self.pump()
        self.assertRaises(SSL.ZeroReturnError, self.server.recv, 100)

    def testBadRecordIsAnError(self) -> None:
        """Garbage where a record should be fails with C{SSL.Error}."""
        self.server.bio_write(b"\x17\x03\x03\x00\x10" + b"\x00" * 16)
        self.assertRaises(SSL.Error, self.server.recv, 100)

    def testPeekGoesToPyOpenSSL(self) -> None:
        """C{recv} with C{MSG_PEEK} is pyOpenSSL's: it leaves the bytes."""
        self.client.send(b"peek")
        self.pump()
        seen = self.seeCalls()
        self.assertEqual(self.server.recv(100, socket.MSG_PEEK), b"peek")
        self.assertEqual(self.server.recv(100), b"peek")
        self.assertEqual(seen.calls, ["SSL_read"])

    def testLargeWriteGoesToPyOpenSSL(self) -> None:
        """
        A write larger than the buffer is pyOpenSSL's own (nothing is
        truncated), and arrives whole.
        """
        body = b"y" * (BUFFER_SIZE + 1)
        seen = self.seeCalls()
        self.assertEqual(self.server.send(body), 16384)
        self.assertNotIn("SSL_write", seen.calls)
        self.sendAll(self.server, body[16384:])
        self.pump()
        self.assertEqual(self.readAll(self.client), body)

    def testOtherBuffersGoToPyOpenSSL(self) -> None:
        """
        C{send} and C{bio_write} of a C{memoryview} or C{bytearray} are
        pyOpenSSL's, and work.
        """
        seen = self.seeCalls()
        self.assertEqual(self.server.send(memoryview(b"view")), 4)
        self.assertEqual(self.server.send(bytearray(b"array")), 5)
        record = self.server.bio_read(2**15)
        self.assertNotIn("SSL_write", seen.calls)
        self.client.bio_write(bytearray(record))
        self.assertEqual(self.readAll(self.client), b"viewarray")
        self.client.send(b"back")
        back = bytearray(self.client.bio_read(2**15))
        self.assertEqual(self.server.bio_write(back), len(back))
        self.assertNotIn("BIO_write", seen.calls)
        self.assertEqual(self.readAll(self.server), b"back")

    def testAsClient(self) -> None:
        """
        As the client side (proxy_ssl to a backend), it completes a
        handshake and an exchange with a pyOpenSSL server.
        """
        server, client = self.connect(SSL.Connection(self.serverContext, None),
                                      newConnection(self.clientContext))
        self.assertIsInstance(client, ReusedBufferConnection)
        client.send(b"ping")
        self.pumpBetween(server, client)
        self.assertEqual(self.readAll(server), b"ping")
        server.send(b"pong")
        self.pumpBetween(server, client)
        self.assertEqual(self.readAll(client), b"pong")


class NewConnectionTests(ConnectionPairCase):
    """
    L{newConnection}: what it makes where pyOpenSSL lacks the internals,
    and the memory it reports to PyPy's collector.
    """

    def testInstanceLacksInternals(self) -> None:
        """
        When the first connection made lacks an attribute the methods use,
        that and every later connection is a plain C{SSL.Connection}, and
        it says so once in the log.
        """
        self.patch(tlsconnection, "_connectionClass", None)
        self.patch(tlsconnection, "_INSTANCE_NEEDS", ("_ssl", "_not_in_pyopenssl"))
        logged: List[Any] = []
        self.patch(tlsconnection._log, "warn", lambda *a, **k: logged.append((a, k)))
        first = newConnection(self.serverContext)
        second = newConnection(self.serverContext)
        self.assertIs(type(first), SSL.Connection)
        self.assertIs(type(second), SSL.Connection)
        self.assertFalse(reusesBuffers())
        self.assertEqual(len(logged), 1)
        server, client = self.connect(first, SSL.Connection(self.clientContext, None))
        client.send(b"still works")
        self.pumpBetween(server, client)
        self.assertEqual(self.readAll(server), b"still works")

    def testClassLacksInternals(self) -> None:
        """Without the binding, no connection reuses the buffer."""
        self.patch(tlsconnection, "_lib", None)
        self.assertFalse(tlsconnection._classSupports())

    def testMemoryPressure(self) -> None:
        """
        Each connection made adds L{CONNECTION_PRESSURE} bytes to PyPy's
        memory pressure, so closed connections' OpenSSL memory counts
        towards the next major collection.
        """
        added: List[int] = []
        self.patch(tlsconnection, "CONNECTION_PRESSURE", 32768)
        self.patch(tlsconnection, "_addMemoryPressure", added.append)
        newConnection(self.serverContext)
        newConnection(self.clientContext)
        self.assertEqual(added, [32768, 32768])

    def testPressureOnlyOnPyPy(self) -> None:
        """Only PyPy is told: CPython frees connections by reference count."""
        try:
            import __pypy__  # noqa: F401
        except ImportError:
            self.assertEqual(tlsconnection.CONNECTION_PRESSURE, 0)
        else:
            self.assertEqual(tlsconnection.CONNECTION_PRESSURE, 32768)
