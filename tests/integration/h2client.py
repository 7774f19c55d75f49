"""
A small blocking HTTP/2 client on the C{h2} library over a raw socket, for
tests that need what curl cannot do: malformed requests, flow-control
windows held shut on purpose, and the frames a server sends on shutdown.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)

Header = Tuple[bytes, bytes]


class Stream:
    """
    What one stream received.
    """

    def __init__(self, streamId: int) -> None:
        self.streamId = streamId
        self.headers: List[Header] = []
        self.body = bytearray()
        self.ended = False
        self.reset: Optional[int] = None

    @property
    def status(self) -> int:
        return int(dict(self.headers).get(b":status", b"0"))

    def header(self, name: bytes) -> Optional[bytes]:
        return dict(self.headers).get(name)


class H2Client:
    """
    One HTTP/2 connection (prior knowledge, or h2 by ALPN over TLS).

    @ivar autoAck: streams whose DATA is acknowledged as it arrives; the
        others keep their window shut until L{acknowledge}.
    """

    def __init__(
        self,
        port: int,
        tls: bool = False,
        timeout: float = 20.0,
        connectionWindow: int = 2**30,
    ) -> None:
        sock: Any = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.conn = H2Connection(
            H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
            )
        )
        self.conn.initiate_connection()
        # A wide connection window: a stream held shut must not hold the
        # others through the connection's window.
        self.conn.increment_flow_control_window(connectionWindow - 65535)
        self.streams: Dict[int, Stream] = {}
        self.held: Dict[int, int] = {}
        self.noAck: set = set()
        self.terminated: Optional[ConnectionTerminated] = None
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        path: str,
        method: str = "GET",
        authority: str = "localhost",
        headers: Sequence[Header] = (),
        body: Optional[bytes] = None,
        raw: Optional[Sequence[Header]] = None,
        send: bool = True,
    ) -> int:
        """
        Start a request; C{raw} replaces the whole header block as given.

        @return: its stream id.
        """
        streamId = self.conn.get_next_available_stream_id()
        if raw is None:
            block: List[Header] = [
                (b":method", method.encode()),
                (b":scheme", b"http"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
            ]
            block += list(headers)
        else:
            block = list(raw)
        self.streams[streamId] = Stream(streamId)
        self.conn.send_headers(streamId, block, end_stream=body is None)
        if body is not None:
            self.sendBody(streamId, body)
        if send:
            self.flush()
        return streamId

    def sendBody(self, streamId: int, body: bytes, end: bool = True) -> None:
        """
        Send C{body} as the windows allow, reading the server meanwhile.
        """
        view = memoryview(body)
        while view:
            window = self.conn.local_flow_control_window(streamId)
            size = min(window, self.conn.max_outbound_frame_size, len(view))
            if size <= 0:
                self.flush()
                self.readOnce()
                continue
            self.conn.send_data(streamId, bytes(view[:size]))
            view = view[size:]
        if end:
            self.conn.end_stream(streamId)
        self.flush()

    def readOnce(self) -> None:
        """
        Read from the socket once and record what the events say.
        """
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, ResponseReceived) and stream is not None:
                stream.headers = list(event.headers)
            elif isinstance(event, DataReceived):
                if stream is not None:
                    stream.body += event.data
                if event.stream_id in self.noAck:
                    self.held[event.stream_id] = (
                        self.held.get(event.stream_id, 0) + event.flow_controlled_length
                    )
                else:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(event, StreamEnded) and stream is not None:
                stream.ended = True
            elif isinstance(event, StreamReset) and stream is not None:
                stream.reset = event.error_code
            elif isinstance(event, ConnectionTerminated):
                self.terminated = event
                if event.error_code == 0:
                    # h2 closes its state machine on any GOAWAY, but a
                    # graceful one lets the streams it names finish, so
                    # this client goes on reading them.
                    self.conn.state_machine.state = ConnectionState.CLIENT_OPEN
        self.flush()

    def acknowledge(self, streamId: int) -> None:
        """
        Open a held stream's window by what it received, and stop holding.
        """
        self.noAck.discard(streamId)
        size = self.held.pop(streamId, 0)
        if size:
            self.conn.acknowledge_received_data(size, streamId)
        self.flush()

    def until(self, condition: Callable[[], bool]) -> None:
        """
        Read until C{condition()} holds (the socket timeout is the safety net).
        """
        while not condition():
            if self.closed:
                raise AssertionError("connection closed before the condition held")
            self.readOnce()

    def finished(self, streamId: int) -> Stream:
        """
        Read until stream C{streamId} ended or was reset.
        """
        stream = self.streams[streamId]
        self.until(lambda: stream.ended or stream.reset is not None)
        return stream

    def close(self) -> None:
        self.sock.close()
