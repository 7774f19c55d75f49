"""
Long-lived streams (issue 6): server-sent events with C{proxy_buffering
off} on the proxy's memory reactor, whose clock proves that
C{proxy_read_timeout} runs between events and not over the whole stream.
"""

from __future__ import annotations

from .test_proxy_request import BACKEND, ProxyTestCase

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")


def event(i: int) -> bytes:
    """
    Event C{i} as one HTTP/1.1 chunk.
    """
    data = b"data: %d\n\n" % (i,)
    return b"%x\r\n%s\r\n" % (len(data), data)


class EventStreamTests(ProxyTestCase):
    """
    An unbuffered event stream through the proxy.
    """

    CONFIG = f"""location / {{
        proxy_buffering off;
        proxy_read_timeout 60s;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://{BACKEND};
    }}"""

    def test_eachEventForwardedAsWritten(self) -> None:
        """
        Each event is on the client's socket as soon as the backend has
        written it, before the backend writes the next.
        """
        self.makeProxy(self.CONFIG)
        _, client = self.get("/events")
        backend = self.backend()
        backend.respond(HEAD)
        for i in range(5):
            backend.respond(event(i))
            self.assertTrue(client.value().endswith(b"data: %d\n\n\r\n" % (i,)), i)

    def test_readTimeoutBetweenEvents(self) -> None:
        """
        Events 59 s apart keep a stream with a 60 s C{proxy_read_timeout}
        open for ten minutes (far past the timeout in total), each reaching
        the client; then 60 s without one closes it, as an upstream read
        timeout.
        """
        self.makeProxy(self.CONFIG)
        _, client = self.get("/events")
        backend = self.backend()
        backend.respond(HEAD)
        for i in range(10):
            self.reactor.advance(59)
            backend.respond(event(i))
            self.assertIn(b"data: %d\n\n" % (i,), client.value())
        self.assertFalse(client.disconnecting or backend.closed)
        self.reactor.advance(59.9)
        self.assertFalse(client.disconnecting or backend.closed)
        self.reactor.advance(0.2)
        self.assertTrue(backend.closed)
        self.assertTrue(client.disconnecting or client.disconnected)
        # No terminating chunk: the client can tell the stream was cut.
        self.assertFalse(client.value().endswith(b"0\r\n\r\n"))
        self.assertLogged("upstream timed out (110: Connection timed out) while reading "
                          "upstream")

    def test_longPollAnsweredLate(self) -> None:
        """
        A long poll: the backend answers 59 s into a 60 s read timeout,
        and the client gets the whole response.
        """
        self.makeProxy(self.CONFIG)
        _, client = self.get("/poll")
        backend = self.backend()
        self.reactor.advance(59)
        backend.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnews")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 "))
        self.assertTrue(client.value().endswith(b"\r\n\r\nnews"))
