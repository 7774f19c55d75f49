"""
Autobahn peers for the WebSocket relay's integration tests, each run as a
subprocess (never on twisted_rproxy):

    python -m tests.integration.wspeers echo
        An echo server on 127.0.0.1: prints C{LISTENING <port>}, echoes
        every message as it came (text or binary), selects subprotocol
        C{chat} when offered, answers the text C{close-me} with a close
        4001 C{server bye}, answers a client's close with its code and
        reason, prints C{CLOSED <code> <reason>} for each close a client
        starts and C{REPLY <code> <reason>} for each reply to its own and C{FRAMES <size> <count>} for each
        message (how many frames it came in).

    python -m tests.integration.wspeers client URL SCENARIO
        Connects with subprotocols C{chat, other}, 4 KiB automatic
        fragmentation, runs C{SCENARIO} and prints one JSON line of what
        it saw: C{echo} sends text and binary messages of 1 byte to 1 MiB
        and compares the echoes, then closes with 4000 C{client bye};
        C{server-close} asks the server to close.
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


class EchoServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """
    Echoes messages; see the module docstring.
    """

    def onConnect(self, request: Any) -> Optional[str]:
        """
        @return: C{chat} when the client offered it.
        """
        return "chat" if "chat" in request.protocols else None

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
        else:
            self.sendMessage(payload, isBinary)

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
        self.report: dict = {"protocol": self.websocket_protocol_in_use, "mismatches": []}
        rng = random.Random(6)
        self.pending: List[Any] = []
        if self.scenario == "echo":
            for size in SIZES:
                text = "".join(rng.choice("abc\u00e9\u20ac") for _ in range(size))
                self.pending.append((text.encode("utf-8"), False))
                self.pending.append((rng.randbytes(size) if hasattr(rng, "randbytes")
                                     else bytes(rng.getrandbits(8) for _ in range(size)),
                                     True))
            self.report["sent"] = len(self.pending)
            self.report["echoed"] = 0
            self.sendMessage(*self.pending[0])
        else:
            self.sendMessage(b"close-me", False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """
        Check an echo and send the next message, or close after the last.
        """
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


def main(argv: List[str]) -> None:
    """
    Run the echo server or a client scenario.
    """
    if argv[0] == "echo":
        factory = WebSocketServerFactory()
        factory.protocol = EchoServerProtocol
        factory.setProtocolOptions(echoCloseCodeReason=True)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        print(f"LISTENING {port.getHost().port}", flush=True)
    else:
        url, scenario = argv[1], argv[2]
        client = WebSocketClientFactory(url, protocols=["chat", "other"])
        client.setProtocolOptions(autoFragmentSize=4096)
        ScenarioClientProtocol.scenario = scenario
        client.protocol = ScenarioClientProtocol
        host, _, port = url.split("/")[2].partition(":")
        reactor.connectTCP(host, int(port), client)
        reactor.callLater(60, reactor.stop)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
