"""
Autobahn peers for the WebSocket relay's integration tests, each run as a
subprocess (never on twisted_rproxy):

    python -m tests.integration.wspeers echo [deflate|tls:CERT:KEY]
        An echo server on 127.0.0.1 (accepting permessage-deflate offers
        with C{deflate}; speaking wss with the PEM files of
        C{tls:CERT:KEY}): prints C{LISTENING <port>}, C{EXT <names>} for
        each connection's extensions (C{-}: none), echoes
        every message as it came (text or binary), selects subprotocol
        C{chat} when offered, answers the text C{close-me} with a close
        4001 C{server bye}, drops its TCP connection without a close frame
        on the text C{die} (a backend dying mid-connection), sends
        C{flood-N} as N binary messages of 64 KiB as fast as its socket
        takes them, answers a client's close with its code and
        reason, prints C{CLOSED <code> <reason>} for each close a client
        starts and C{REPLY <code> <reason>} for each reply to its own and C{FRAMES <size> <count>} for each
        message (how many frames it came in).

    python -m tests.integration.wspeers many URL N K
        Opens N connections (at most 50 handshakes in progress at once),
        prints C{OPEN N} (or a JSON line with C{failed} and stops when a
        connection fails before opening), waits for C{go} on stdin,
        then each connection sends K numbered messages at once and checks
        their echoes come back complete and in order; prints one JSON line.

    python -m tests.integration.wspeers client URL SCENARIO
        Connects with subprotocols C{chat, other}, 4 KiB automatic
        fragmentation, runs C{SCENARIO} and prints one JSON line of what
        it saw: C{echo} sends text and binary messages of 1 byte to 1 MiB
        and compares the echoes, then closes with 4000 C{client bye};
        C{big} does the same with messages up to 16 MiB; C{server-close}
        asks the server to close; C{backend-dies} asks it to drop its
        connection; C{too-big-N} sends one binary message of N bytes;
        C{burst-N} sends N small text messages at once and closes with
        1000 once all are echoed;
        C{hold} prints C{OPEN} and waits for whatever close comes.  In
        scenario named C{deflate:SCENARIO} offers permessage-deflate.  In
        every scenario C{extensions} lists what was negotiated, and
        C{close} in the report is C{[wasClean, code,
        reason]} of the close the client saw.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any, List, Optional

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import reactor

SIZES = [1, 2, 125, 126, 65535, 65536, 100000, 1 << 20]
"""Message sizes around the frame-length encodings, up to 1 MiB."""

BIG_SIZES = [1, 126, 65536, 1 << 20, 16 << 20]
"""Message sizes for the C{big} scenario, up to 16 MiB."""


def randomText(rng: random.Random, size: int) -> bytes:
    """
    Exactly C{size} bytes of UTF-8 text with 2- and 3-byte characters (a
    random block of up to 64 KiB repeated, a character cut at the end
    padded with ASCII).
    """
    block = "".join(rng.choice("abc\u00e9\u20ac") for _ in range(min(size, 65536)))
    data = (block.encode("utf-8") * (size // max(len(block), 1) + 1))[:size]
    whole = data.decode("utf-8", "ignore").encode("utf-8")
    return whole + b"a" * (size - len(whole))


class EchoServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """
    Echoes messages; see the module docstring.
    """

    def onConnect(self, request: Any) -> Optional[str]:
        """
        @return: C{chat} when the client offered it.
        """
        return "chat" if "chat" in request.protocols else None

    def onOpen(self) -> None:
        """
        Print the extensions this connection negotiated: C{EXT -} for none.
        """
        names = [e.EXTENSION_NAME for e in self.websocket_extensions_in_use]
        print(f"EXT {','.join(names) or '-'}", flush=True)

    def onMessageFrameBegin(self, length: int) -> None:
        """
        Count the frames of the message in progress.
        """
        self.frames = getattr(self, "frames", 0) + 1
        super().onMessageFrameBegin(length)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """
        Echo, or close on C{close-me}.
        """
        print(f"FRAMES {len(payload)} {self.frames}", flush=True)
        self.frames = 0
        if not isBinary and payload == b"close-me":
            self.sendClose(4001, "server bye")
        elif not isBinary and payload == b"die":
            self.transport.abortConnection()
        elif not isBinary and payload.startswith(b"flood-"):
            self.flood = int(payload[6:])
            self.transport.registerProducer(self, True)
            self.resumeProducing()
        else:
            self.sendMessage(payload, isBinary)

    paused = True
    flood = 0

    def pauseProducing(self) -> None:
        """
        The socket is full: stop flooding until it drains.
        """
        self.paused = True

    def resumeProducing(self) -> None:
        """
        Flood until paused or done, then print C{FLOODED}.
        """
        self.paused = False
        chunk = b"f" * 65536
        while not self.paused and self.flood > 0 and self.state == self.STATE_OPEN:
            self.flood -= 1
            self.sendMessage(chunk, True)
        if self.flood == 0 and not self.paused:
            print("FLOODED", flush=True)
            self.flood = -1
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        """
        The connection is gone.
        """
        self.flood = -1

    def onCloseFrame(self, code: Optional[int], reasonRaw: Optional[bytes]) -> Any:
        """
        Report a close frame the client sent.
        """
        kind = "CLOSED" if self.state == self.STATE_OPEN else "REPLY"
        print(f"{kind} {code} {(reasonRaw or b'').decode()}", flush=True)
        return super().onCloseFrame(code, reasonRaw)


class ScenarioClientProtocol(WebSocketClientProtocol):  # type: ignore[misc]
    """
    Runs one scenario and reports it; see the module docstring.
    """

    scenario = "echo"

    def onOpen(self) -> None:
        """
        Start the scenario.
        """
        self.report: dict = {"protocol": self.websocket_protocol_in_use, "mismatches": [],
                             "extensions": [e.EXTENSION_NAME
                                            for e in self.websocket_extensions_in_use]}
        rng = random.Random(6)
        self.pending: List[Any] = []
        if self.scenario in ("echo", "big"):
            for size in SIZES if self.scenario == "echo" else BIG_SIZES:
                self.pending.append((randomText(rng, size), False))
                self.pending.append((rng.randbytes(size), True))
            self.report["sent"] = len(self.pending)
            self.report["echoed"] = 0
            self.sendMessage(*self.pending[0])
        elif self.scenario == "server-close":
            self.sendMessage(b"close-me", False)
        elif self.scenario == "backend-dies":
            self.sendMessage(b"die", False)
        elif self.scenario.startswith("burst-"):
            count = int(self.scenario[6:])
            self.pending = [(b"m%d" % i, False) for i in range(count)]
            self.report["sent"], self.report["echoed"] = count, 0
            for message in self.pending:
                self.sendMessage(*message)
        elif self.scenario.startswith("too-big-"):
            self.sendMessage(b"t" * int(self.scenario[8:]), True)
        else:
            print("OPEN", flush=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """
        Check an echo and send the next message, or close after the last.
        """
        if self.scenario.startswith("burst-"):
            self.report["echoed"] += 1
            if self.report["echoed"] == self.report["sent"]:
                self.sendClose(1000)
            return
        expected = self.pending.pop(0)
        if (payload, isBinary) != expected:
            self.report["mismatches"].append([len(expected[0]), len(payload), isBinary])
        self.report["echoed"] += 1
        if self.pending:
            self.sendMessage(*self.pending[0])
        else:
            self.sendClose(4000, "client bye")

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        """
        Print the report and stop.
        """
        report = getattr(self, "report", {})
        report["close"] = [wasClean, code, reason]
        print(json.dumps(report), flush=True)
        reactor.stop()


class ManyClientProtocol(WebSocketClientProtocol):  # type: ignore[misc]
    """
    One of the C{many} connections: once told to go, sends its C{count}
    numbered messages at once and checks each echo is the next in order.
    """

    count = 0

    def onOpen(self) -> None:
        """
        Count this connection open; the last one opened prints C{OPEN N}.
        """
        run = self.factory.run
        self.index = len(run["open"])
        self.expected = 0
        run["open"].append(self)
        run["connectNext"]()
        if len(run["open"]) == run["total"]:
            print(f"OPEN {run['total']}", flush=True)
            reactor.addReader(_StdinGo(run))

    def go(self) -> None:
        """
        Send every message without waiting for the echoes.
        """
        for i in range(self.count):
            self.sendMessage(b"%d-%d" % (self.index, i), False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """
        Check the echo's order; after the last, close.
        """
        run = self.factory.run
        if payload != b"%d-%d" % (self.index, self.expected):
            run["wrong"] += 1
        self.expected += 1
        run["echoed"] += 1
        if self.expected == self.count:
            self.sendClose(1000)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        """
        Count the close; the last one prints the report and stops.  A
        connection that closes before it opened ends the run.
        """
        run = self.factory.run
        if not hasattr(self, "index"):
            self.factory._failed(f"closed before opening: {wasClean} {code} {reason}")
            return
        run["closed"] += 1
        run["clean"] += 1 if (wasClean and code == 1000) else 0
        if not (wasClean and code == 1000):
            run.setdefault("unclean", {}).setdefault(f"{wasClean} {code} {reason}", 0)
            run["unclean"][f"{wasClean} {code} {reason}"] += 1
        if run["closed"] == run["total"]:
            report = {k: run[k] for k in ("total", "echoed", "wrong", "closed", "clean")}
            report["unclean"] = run.get("unclean", {})
            report["seconds"] = reactor.seconds() - run.get("started", reactor.seconds())
            print(json.dumps(report), flush=True)
            reactor.stop()


class _StdinGo:
    """
    Reads C{go} from stdin (the test has measured the idle connections),
    then starts every connection's messages.
    """

    def __init__(self, run: dict) -> None:
        self.run = run

    def fileno(self) -> int:
        return sys.stdin.fileno()

    def doRead(self) -> None:
        line = sys.stdin.readline()
        reactor.removeReader(self)
        if line.strip() == "go":
            self.run["started"] = reactor.seconds()
            for protocol in self.run["open"]:
                protocol.go()

    def connectionLost(self, reason: Any) -> None:
        pass

    def logPrefix(self) -> str:
        return "stdin"


class ManyClientFactory(WebSocketClientFactory):  # type: ignore[misc]
    """
    The C{many} connections' factory: a connection that fails before its
    handshake ends the run with a report saying why, at once, rather than
    leaving the test to wait for connections that will never open.
    """

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self._failed(str(reason.value))

    def _failed(self, why: str) -> None:
        print(json.dumps({"failed": why, "open": len(self.run["open"])}), flush=True)
        if reactor.running:
            reactor.stop()


#: How many C{many} handshakes may be in progress at once: a new connection
#: starts only when one opens, so a loaded machine slows the handshake
#: phase down instead of overflowing listen queues and timing out.
HANDSHAKE_WINDOW = 50


def many(url: str, total: int, count: int) -> None:
    """
    Open C{total} connections to C{url}, at most L{HANDSHAKE_WINDOW}
    handshakes at a time, and print C{OPEN N} once all are open; on C{go}
    from stdin each sends C{count} messages, and one JSON line reports
    echoes, reorderings and closes.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, total + 256)), hard))
    factory = ManyClientFactory(url)
    # A thousand closes at once on two shared cores: Autobahn's 1 s for
    # the close reply is a load test of its own.
    factory.setProtocolOptions(closeHandshakeTimeout=60, openHandshakeTimeout=60)
    factory.protocol = ManyClientProtocol
    ManyClientProtocol.count = count
    factory.run = {"total": total, "open": [], "echoed": 0, "wrong": 0, "closed": 0,
                   "clean": 0}
    host, _, port = url.split("/")[2].partition(":")
    started = [0]

    def connectNext() -> None:
        if started[0] < total:
            started[0] += 1
            reactor.connectTCP(host, int(port), factory, timeout=60)

    factory.run["connectNext"] = connectNext
    for _ in range(HANDSHAKE_WINDOW):
        connectNext()


def main(argv: List[str]) -> None:
    """
    Run the echo server or a client scenario.
    """
    if argv[0] == "echo":
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        factory = WebSocketServerFactory()
        factory.protocol = EchoServerProtocol
        # Generous close timers: the tests load two shared cores heavily.
        factory.setProtocolOptions(echoCloseCodeReason=True, closeHandshakeTimeout=60)
        if argv[1:] == ["deflate"]:
            from autobahn.websocket.compress import (
                PerMessageDeflateOffer,
                PerMessageDeflateOfferAccept,
            )

            def accept(offers: List[Any]) -> Any:
                for offer in offers:
                    if isinstance(offer, PerMessageDeflateOffer):
                        return PerMessageDeflateOfferAccept(offer)
                return None

            factory.setProtocolOptions(perMessageCompressionAccept=accept)
        if argv[1:2] and argv[1].startswith("tls:"):
            # wss: TLS with the given PEM certificate and key.
            from twisted.internet import ssl

            _, certPath, keyPath = argv[1].split(":")
            with open(keyPath, "rb") as key, open(certPath, "rb") as cert:
                identity = ssl.PrivateCertificate.loadPEM(key.read() + cert.read())
            port = reactor.listenSSL(0, factory, identity.options(), backlog=511,
                                     interface="127.0.0.1")
        else:
            # nginx's backlog rather than Twisted's 50: the proxy may open
            # many backend connections at once.
            port = reactor.listenTCP(0, factory, backlog=511, interface="127.0.0.1")
        print(f"LISTENING {port.getHost().port}", flush=True)
    elif argv[0] == "many":
        many(argv[1], int(argv[2]), int(argv[3]))
        reactor.callLater(300, reactor.stop)
    else:
        url, scenario = argv[1], argv[2]
        client = WebSocketClientFactory(url, protocols=["chat", "other"])
        # Autobahn waits 1 s for the close reply by default: behind 16 MiB
        # echoes on two loaded cores that is a load test, not a close test.
        client.setProtocolOptions(autoFragmentSize=4096, closeHandshakeTimeout=60,
                                  openHandshakeTimeout=60)
        if scenario.startswith("deflate:"):
            from autobahn.websocket.compress import (
                PerMessageDeflateOffer,
                PerMessageDeflateResponse,
                PerMessageDeflateResponseAccept,
            )

            scenario = scenario[8:]

            def acceptResponse(response: Any) -> Any:
                if isinstance(response, PerMessageDeflateResponse):
                    return PerMessageDeflateResponseAccept(response)
                return None

            client.setProtocolOptions(perMessageCompressionOffers=[PerMessageDeflateOffer()],
                                      perMessageCompressionAccept=acceptResponse)
        ScenarioClientProtocol.scenario = scenario
        client.protocol = ScenarioClientProtocol
        host, _, port = url.split("/")[2].partition(":")
        reactor.connectTCP(host, int(port), client)
        reactor.callLater(60, reactor.stop)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
