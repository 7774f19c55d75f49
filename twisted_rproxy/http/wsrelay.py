# -*- test-case-name: tests.unit.test_wsrelay -*-
"""
A WebSocket relay after a backend's C{101}: an Autobahn server-side protocol
faces the client, a client-side one faces the backend, and each message one
receives the other sends.

Both protocols start in Autobahn's C{STATE_OPEN}: the proxy already
forwarded the client's handshake and relayed the backend's 101, so neither
runs Autobahn's HTTP handshake.  L{_OpenedProtocol.enterOpen} does what
Autobahn's own handshake code does once the handshake succeeded
(C{WebSocketServerProtocol.succeedHandshake} and the end of
C{WebSocketClientProtocol.processHandshake}): state C{OPEN}, no message in
progress, protocol version 13, the negotiated subprotocol.

Extensions are negotiated with each side on its own (L{ExtensionNegotiation}
takes the client's offer off the request before it goes upstream): with
C{proxy_websocket_deflate on} the proxy accepts a client's permessage-deflate
offer itself and makes its own offer to the backend, so either side, both or
neither may compress, each with its own parameters and zlib state; with it
off, no extension is negotiated on either side.  A backend 101 carrying an
extension the proxy did not offer (or one it cannot parse) goes through the
byte tunnel, as before this relay existed.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple
from weakref import WeakKeyDictionary

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import (
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure
import attr
from zope.interface import implementer

from ..interfaces import IRequestFilter, IUpgradedPair, IUpgradeHandler, IWebSocketMessageFilter
from ..phases import PRECONTENT
from .tunnel import BYTE_TUNNEL, pauseClientWhileBackendFull

#: Close code sent to the client when the backend goes away without one.
CLOSE_BACKEND_LOST = 1011
#: Close code sent to the backend when the client goes away without one,
#: and to relayed clients when the proxy shuts down gracefully.
CLOSE_GOING_AWAY = 1001
#: Close code for a message over C{proxy_websocket_max_message_size}.
CLOSE_TOO_BIG = 1009

#: What an L{IWebSocketMessageFilter} returns to drop a message.
DROP = object()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class CloseWith:
    """
    What an L{IWebSocketMessageFilter} returns to close both sides.

    @ivar code: the close code (1000, 1008 policy violation, 3000-4999 ...).
    @ivar reason: the close reason (at most 123 bytes of UTF-8).
    """

    code: int = 1000
    reason: Optional[str] = None


_OPEN = WebSocketProtocol.STATE_OPEN
_CLOSED = WebSocketProtocol.STATE_CLOSED


class _OpenedProtocol:
    """
    What both relay protocols share: entering C{STATE_OPEN} directly, and
    handing messages and closes to the L{WebSocketRelay}.

    @ivar relay: the relay this side belongs to.
    """

    relay: "WebSocketRelay"
    state: int
    # Autobahn's, set by its protocol classes (annotations only).
    transport: Any
    failedByMe: bool
    message_data: Any
    message_is_binary: bool
    maxMessagePayloadSize: int
    wasMaxMessagePayloadSizeExceeded: bool
    _perMessageCompress: Any
    _inflated = 0
    send_queue: Any
    logOctets: bool
    trafficStats: Any

    def enterOpen(self, protocolInUse: Optional[str], compress: Any = None) -> None:
        """
        Finish what Autobahn's handshake would have: the connection is open
        with version 13 and C{protocolInUse}, compressed by C{compress}.

        @param protocolInUse: the C{Sec-WebSocket-Protocol} of the 101.
        @param compress: this side's Autobahn C{PerMessageDeflate}, or
            C{None} when this side negotiated no extension.
        """
        self.state = _OPEN
        self.websocket_version = 13
        self.websocket_protocol_in_use = protocolInUse
        self.websocket_extensions_in_use: list = [compress] if compress is not None else []
        self._perMessageCompress = compress
        self.inside_message = False
        self.current_frame = None
        self.http_headers: dict = {}

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """
        A whole message (reassembled from its fragments): to the other side.
        """
        self.relay.relayMessage(self, payload, isBinary)

    # The hot path, per message and per read: Autobahn's own versions also
    # build a Deferred for event listeners the relay never has, and format
    # colourised debug-log arguments (click.style) whether or not debug is
    # on; profiled, that was a fifth of the relay's CPU for small messages.

    def onMessageEnd(self) -> None:
        """
        Autobahn's end of a message, without firing its C{message} event
        (a Deferred per message, for listeners the relay has none of).
        """
        if not self.failedByMe:
            self.relay.relayMessage(self, b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def onMessageBegin(self, isBinary: bool) -> None:
        """
        A message starts: count its inflated size from zero.
        """
        super().onMessageBegin(isBinary)  # type: ignore[misc]
        self._inflated = 0

    def onMessageFrameData(self, payload: bytes) -> None:
        """
        Bound a compressed message by its inflated size (a small frame may
        inflate a thousandfold).  Autobahn before 25 checked only the
        frame lengths on the wire and cut inflated data off at the
        extension's limit without a word; the extension is therefore given
        one byte more than the limit (see L{_deflateLimit}) and the excess
        is refused here, with 1009, on every Autobahn version.
        """
        if self._perMessageCompress is not None and not self.failedByMe:
            self._inflated += len(payload)
            if 0 < self.maxMessagePayloadSize < self._inflated:
                self.wasMaxMessagePayloadSizeExceeded = True
                self._max_message_size_exceeded(  # type: ignore[attr-defined]
                    self._inflated, self.maxMessagePayloadSize,
                    f"inflated WebSocket message size {self._inflated} exceeds "
                    f"payload limit of {self.maxMessagePayloadSize} octets")
                return
        super().onMessageFrameData(payload)  # type: ignore[misc]

    def sendData(self, data: bytes, sync: bool = False, chopsize: Optional[int] = None) -> None:
        """
        Autobahn's C{sendData} for an open connection with nothing queued
        (the relay sets no chopsize and never syncs): write, count, and
        skip the eagerly formatted debug line.
        """
        if self.state != _OPEN or sync or chopsize or self.send_queue or self.logOctets:
            super().sendData(data, sync, chopsize)  # type: ignore[misc]
            return
        self.transport.write(data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)

    def onCloseFrame(self, code: Optional[int], reasonRaw: Optional[bytes]) -> Any:
        """
        A close frame.  One that starts a closing handshake, while the other
        side is open, goes on to the other side with its real code and
        reason, and the reply here waits for the other end's reply (so each
        end sees the other's close, as through a byte tunnel).  A reply to
        a close this side forwarded releases the reply held on the other
        side.
        """
        relay = self.relay
        if self.state == _OPEN and relay._other(self).state == _OPEN:
            self._holdReply = True
            try:
                result = super().onCloseFrame(code, reasonRaw)  # type: ignore[misc]
            finally:
                self._holdReply = False
            if self.heldReply:
                relay.relayClose(self, self.remoteCloseCode, self.remoteCloseReason)  # type: ignore[attr-defined]
            return result
        result = super().onCloseFrame(code, reasonRaw)  # type: ignore[misc]
        relay.releaseReply(self, self.remoteCloseCode, self.remoteCloseReason)  # type: ignore[attr-defined]
        return result

    _holdReply = False
    heldReply = False

    def sendCloseFrame(self, code: Optional[int] = None, reasonUtf8: Optional[bytes] = None,
                       isReply: bool = False) -> None:
        """
        Autobahn's close frame, except for the reply L{onCloseFrame} holds
        until the other end has replied.
        """
        if isReply and self._holdReply:
            self.heldReply = True
            return
        super().sendCloseFrame(code, reasonUtf8, isReply)  # type: ignore[misc]

    def dropConnection(self, abort: bool = False) -> None:
        """
        Autobahn's drop, except right after a held reply: the connection
        stays until the reply is sent.
        """
        if self._holdReply and self.heldReply:
            return
        super().dropConnection(abort)  # type: ignore[misc]

    def sendHeldReply(self, code: Optional[int], reason: Optional[str]) -> None:
        """
        Send the held close reply with C{code} and C{reason}; a server
        (the client-facing side) then drops the connection, as Autobahn
        does after its own replies.
        """
        self.heldReply = False
        if self.state != _OPEN:
            return
        reasonUtf8 = reason.encode("utf-8") if (reason and code is not None) else None
        self.sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=True)
        if self.factory.isServer:  # type: ignore[attr-defined]
            self.dropConnection(abort=False)

    def _fail_connection(self, code: int = 1001, reason: str = "going away") -> None:
        """
        Autobahn fails this side (a message over the size limit, invalid
        UTF-8, a bad frame): close it with C{code}, and the other side at
        once rather than after this side's closing handshake.  The sender
        of an oversized message gets 1009 and so does the other end, so
        both learn why.
        """
        open_ = self.state == _OPEN
        super()._fail_connection(code, reason)  # type: ignore[misc]
        if open_:
            self.relay.sideFailed(self, code)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        """
        The connection is gone.
        """
        self.relay.sideClosed(self, wasClean)


class ClientFacingProtocol(_OpenedProtocol, WebSocketServerProtocol):  # type: ignore[misc]
    """
    The server-side protocol on the client's connection.
    """


class BackendFacingProtocol(_OpenedProtocol, WebSocketClientProtocol):  # type: ignore[misc]
    """
    The client-side protocol on the backend's connection.
    """

    def startHandshake(self) -> None:
        """
        The proxy already forwarded the client's handshake: send none.
        """


def _factories(reactor: Any, maxMessageSize: int = 0) -> tuple:
    """
    @param maxMessageSize: the largest message either side may send, in
        bytes (C{0}: no limit); Autobahn checks each frame's declared
        length as its header arrives, so an oversized message is refused
        before it is buffered.
    @return: the server and client factories the relay protocols take
        their options from: no opening handshake timeout; a protocol error
        closed with a close frame (1002, 1007, 1009 ...) rather than by
        dropping the connection; 5 seconds for a peer to answer a close; no
        compression, no automatic fragmentation.
    """
    server = WebSocketServerFactory(reactor=reactor)
    server.setProtocolOptions(openHandshakeTimeout=0, echoCloseCodeReason=True,
                              closeHandshakeTimeout=5, failByDrop=False,
                              maxMessagePayloadSize=maxMessageSize)
    client = WebSocketClientFactory(reactor=reactor)
    client.setProtocolOptions(openHandshakeTimeout=0, echoCloseCodeReason=True,
                              closeHandshakeTimeout=5, serverConnectionDropTimeout=0,
                              failByDrop=False, maxMessagePayloadSize=maxMessageSize)
    return server, client


@implementer(IUpgradedPair)
class WebSocketRelay:
    """
    A client and a backend WebSocket connection joined message by message.

    @ivar clientSide: the L{ClientFacingProtocol}.
    @ivar backendSide: the L{BackendFacingProtocol}.
    @ivar exchange: the upgrade request.
    @ivar filterState: per-connection state for the message filters.
    """

    log = Logger()

    def __init__(self, channel: Any, upstream: Any, onClose: Callable[[], None],
                 factories: tuple, protocolInUse: Optional[str],
                 exchange: Any = None, filters: Sequence[Any] = (),
                 compress: Tuple[Any, Any] = (None, None)) -> None:
        """
        @param channel: the client's channel (its C{transport} is the socket).
        @param upstream: the backend's protocol (its C{transport} is the socket).
        @param onClose: called once, when either side has closed.
        @param factories: from L{_factories}.
        @param protocolInUse: the negotiated subprotocol, or C{None}.
        @param exchange: the upgrade request, for the filters.
        @param filters: L{IWebSocketMessageFilter}s, in order.
        @param compress: the client side's and the backend side's
            C{PerMessageDeflate} (or C{None}s), negotiated apart.
        """
        self.exchange = exchange
        self.filters = tuple(filters)
        self.filterState: dict = {}
        self.upstream = upstream
        self._onClose = onClose
        self.closed = False
        serverFactory, clientFactory = factories
        self.clientSide = ClientFacingProtocol()
        self.clientSide.factory = serverFactory
        self.clientSide.relay = self
        self.backendSide = BackendFacingProtocol()
        self.backendSide.factory = clientFactory
        self.backendSide.relay = self
        self.clientSide.makeConnection(channel.transport)
        self.backendSide.makeConnection(upstream.transport)
        self.clientSide.enterOpen(protocolInUse, compress[0])
        self.backendSide.enterOpen(protocolInUse, compress[1])

    # -- IUpgradedPair ------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Bytes from the backend: frames for the backend-facing protocol.
        """
        # Autobahn's adapter dataReceived only adds a debug line whose
        # arguments it formats every time.
        self.backendSide._dataReceived(data)

    def fromClient(self, data: bytes) -> None:
        """
        Bytes from the client: frames for the client-facing protocol; they
        restart C{proxy_read_timeout}, as in the byte tunnel.
        """
        if self.upstream.transport is not None:
            self.upstream.noteActivity()
        self.clientSide._dataReceived(data)

    def loseConnection(self) -> None:
        """
        The backend's connection closed; also called after L{clientLost}
        (the proxy drops its request when the client leaves), when the
        backend is still connected and its side is already closing.
        """
        if getattr(self.upstream, "connected", False):
            return
        self.backendSide.connectionLost(Failure(ConnectionLost()))

    def clientLost(self) -> None:
        """
        The client's connection closed.
        """
        self.clientSide.connectionLost(Failure(ConnectionDone()))

    # -- from the protocols -------------------------------------------------

    def _other(self, side: Any) -> Any:
        return self.backendSide if side is self.clientSide else self.clientSide

    def relayMessage(self, side: Any, payload: bytes, isBinary: bool) -> None:
        """
        Send C{side}'s message on the other side, if it is still open.
        """
        other = self._other(side)
        if other.state != _OPEN:
            return
        for messageFilter in self.filters:
            try:
                result = messageFilter.messageReceived(
                    self, payload, isBinary, side is self.clientSide)
            except Exception:
                # A team's bug closes this connection, not the proxy's others.
                self.log.failure("WebSocket message filter {filter!r} failed",
                                 filter=messageFilter)
                self.closeBoth(CLOSE_BACKEND_LOST, "message filter failed")
                return
            if result is None:
                continue
            if result is DROP:
                return
            if isinstance(result, CloseWith):
                self.closeBoth(result.code, result.reason)
                return
            payload, isBinary = result
        other.sendMessage(payload, isBinary)

    def closeBoth(self, code: int, reason: Optional[str]) -> None:
        """
        Start a closing handshake with C{code} and C{reason} on both sides
        (a filter's L{CloseWith}).
        """
        self._sendClose(self.clientSide, code, reason)
        self._sendClose(self.backendSide, code, reason)

    def relayClose(self, side: Any, code: Optional[int], reason: Optional[str]) -> None:
        """
        C{side}'s peer started a closing handshake: start one on the other
        side with the same code and reason.
        """
        self._sendClose(self._other(side), code, reason)

    def _sendClose(self, side: Any, code: Optional[int], reason: Optional[str]) -> None:
        """
        Start a closing handshake on C{side} if it is open.  Autobahn's
        C{sendClose} only takes the codes an application may send (1000,
        3000-4999); a proxy forwards any valid code (1001, 1008, 1011 ...),
        so this uses the frame-level C{sendCloseFrame}, as Autobahn's own
        close replies do.
        """
        if side.state != _OPEN:
            return
        reasonUtf8 = reason.encode("utf-8") if (reason and code is not None) else None
        side.sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=False)

    def sideFailed(self, side: Any, code: int) -> None:
        """
        Autobahn closed C{side} with C{code} for a fault of its peer: the
        other side gets 1009 for an oversized message, 1001 otherwise.
        """
        if code == CLOSE_TOO_BIG:
            self.log.info("WebSocket message over proxy_websocket_max_message_size")
            self._sendClose(self._other(side), CLOSE_TOO_BIG, "message too big")
        else:
            self._sendClose(self._other(side), CLOSE_GOING_AWAY, None)

    def goingAway(self) -> None:
        """
        The proxy is shutting down gracefully: close both sides with 1001,
        each side's closing handshake then ending its connection.
        """
        self._sendClose(self.clientSide, CLOSE_GOING_AWAY, "proxy shutting down")
        self._sendClose(self.backendSide, CLOSE_GOING_AWAY, None)

    def releaseReply(self, side: Any, code: Optional[int], reason: Optional[str]) -> None:
        """
        C{side}'s peer answered (or itself started) a close: the other side's
        held reply, if any, goes out with this code and reason.
        """
        other = self._other(side)
        if other.heldReply:
            other.sendHeldReply(code, reason)

    def sideClosed(self, side: Any, wasClean: bool) -> None:
        """
        One connection is gone: close the other with a close frame if it is
        still open (1011 to the client for a lost backend, 1001 to the
        backend for a lost client; a reply held for this side's answer goes
        out echoing the code it answers), and report the pair closed.
        """
        other = self._other(side)
        if other.heldReply:
            other.sendHeldReply(other.remoteCloseCode, other.remoteCloseReason)
        elif other.state == _OPEN:
            if side is self.backendSide:
                self.log.error(
                    "upstream closed the WebSocket without a close frame, upstream: {upstream}",
                    upstream=_address(self.upstream))
                self._sendClose(other, CLOSE_BACKEND_LOST, "upstream went away")
            else:
                self._sendClose(other, CLOSE_GOING_AWAY, None)
        if not self.closed:
            self.closed = True
            self._onClose()
            for messageFilter in self.filters:
                messageFilter.connectionClosed(self)


def _address(protocol: Any) -> str:
    """
    C{host:port} of the peer of C{protocol}'s transport, for log lines.
    """
    transport = getattr(protocol, "transport", None)
    peer = transport.getPeer() if transport is not None else None
    return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"


#: Client offers taken off upgrade requests by L{ExtensionNegotiation},
#: for L{WebSocketRelayHandler.startUpgrade} to answer.
_clientOffers: "WeakKeyDictionary[Any, List[bytes]]" = WeakKeyDictionary()

#: What the proxy offers a backend with C{proxy_websocket_deflate on}:
#: permessage-deflate, letting the backend bound the proxy's window.
PROXY_DEFLATE_OFFER = PerMessageDeflateOffer().get_extension_string().encode("ascii")


def _parseExtensions(values: Sequence[bytes]) -> List[Tuple[str, dict]]:
    """
    C{Sec-WebSocket-Extensions} values as Autobahn's handshake parses them:
    C{(name, {param: [values]})} in order.
    """
    header = b", ".join(values).decode("latin-1")
    return WebSocketProtocol._parseExtensionsHeader(None, header)  # type: ignore[arg-type,no-any-return]


@implementer(IRequestFilter)
class ExtensionNegotiation:
    """
    On a relayed location, takes a WebSocket upgrade's extension offer off
    the request, so the backend only sees the proxy's own offer (or none),
    and keeps it for the relay to answer the client.
    """

    phase = PRECONTENT

    def __init__(self, deflate: bool) -> None:
        """
        @param deflate: C{proxy_websocket_deflate}: offer permessage-deflate
            to the backend.
        """
        self.deflate = deflate

    def requestHeaders(self, exchange: Any) -> None:
        """
        Replace the client's C{Sec-WebSocket-Extensions} with the proxy's.
        """
        upgrade = exchange.header(b"upgrade")
        if upgrade is None or upgrade.strip().lower() != b"websocket":
            return None
        headers = exchange.requestHeaders
        _clientOffers[exchange] = [v for n, v in headers
                                   if n.lower() == b"sec-websocket-extensions"]
        kept = [(n, v) for n, v in headers if n.lower() != b"sec-websocket-extensions"]
        if self.deflate:
            kept.append((b"Sec-WebSocket-Extensions", PROXY_DEFLATE_OFFER))
        exchange.requestHeaders = kept
        return None


def _deflateLimit(maxMessageSize: int) -> Optional[int]:
    """
    @return: the inflated bytes the deflate extension may produce for one
        message: one more than C{proxy_websocket_max_message_size}, so an
        oversized message is always seen as oversized (older Autobahn
        silently truncates at this limit) and refused, or C{None} for no
        limit.
    """
    return maxMessageSize + 1 if maxMessageSize else None


def _acceptClientOffer(offers: Sequence[bytes], maxMessageSize: int) -> Any:
    """
    @return: Autobahn's accept of the client's first valid
        permessage-deflate offer, or C{None}.
    """
    for name, params in _parseExtensions(offers):
        if name != "permessage-deflate":
            continue
        try:
            offer = PerMessageDeflateOffer.parse(params)
        except Exception:
            continue
        return PerMessageDeflateOfferAccept(offer, max_message_size=_deflateLimit(maxMessageSize))
    return None


def _backendDeflate(value: bytes, maxMessageSize: int) -> Any:
    """
    @return: the backend side's C{PerMessageDeflate} from the 101's
        C{Sec-WebSocket-Extensions}, or C{None} when it is anything but one
        valid permessage-deflate response.
    """
    extensions = _parseExtensions([value])
    if len(extensions) != 1 or extensions[0][0] != "permessage-deflate":
        return None
    try:
        response = PerMessageDeflateResponse.parse(extensions[0][1])
    except Exception:
        return None
    accept = PerMessageDeflateResponseAccept(response, max_message_size=_deflateLimit(maxMessageSize))
    return PerMessageDeflate.create_from_response_accept(False, accept)


def _headerValue(headers: list, lowerName: bytes) -> Optional[bytes]:
    for name, value in headers:
        if name.lower() == lowerName:
            return value
    return None


@implementer(IUpgradeHandler)
class WebSocketRelayHandler:
    """
    The upgrade handler of a location with C{proxy_websocket_relay on}:
    a L{WebSocketRelay} for a WebSocket upgrade without extensions, the
    byte tunnel for anything else.
    """

    def __init__(self, reactor: Any = None, filters: Sequence[Any] = (),
                 maxMessageSize: int = 0, deflate: bool = False) -> None:
        """
        @param reactor: for Autobahn's close-handshake timers.
        @param filters: L{IWebSocketMessageFilter}s every relayed message
            goes through, in order.
        @param maxMessageSize: C{proxy_websocket_max_message_size} (C{0}:
            no limit).
        @param deflate: C{proxy_websocket_deflate}: accept a client's
            permessage-deflate offer (its L{ExtensionNegotiation} offers
            the backend one).
        """
        self.filters = tuple(filters)
        self.maxMessageSize = maxMessageSize
        self.deflate = deflate
        for messageFilter in self.filters:
            if not IWebSocketMessageFilter.providedBy(messageFilter):
                raise TypeError(f"{messageFilter!r} does not provide IWebSocketMessageFilter")
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self._factories: Optional[tuple] = None

    def startUpgrade(self, exchange: Any, upstream: Any, headers: list,
                     onClose: Callable[[], None]) -> Any:
        """
        Send the 101 and join the connections, message by message when the
        upgrade is to WebSocket without extensions.

        @return: a L{WebSocketRelay} or the byte tunnel's pair.
        """
        upgrade = exchange.header(b"upgrade") or b""
        offers = _clientOffers.pop(exchange, None)
        backendExtensions = _headerValue(headers, b"sec-websocket-extensions")
        if upgrade.strip().lower() != b"websocket":
            return BYTE_TUNNEL.startUpgrade(exchange, upstream, headers, onClose)
        compress: Tuple[Any, Any] = (None, None)
        if backendExtensions:
            backendSide = None
            if offers is not None and self.deflate:
                backendSide = _backendDeflate(backendExtensions, self.maxMessageSize)
            if backendSide is None:
                # Not what the proxy offered: the two ends' business.
                return BYTE_TUNNEL.startUpgrade(exchange, upstream, headers, onClose)
            compress = (None, backendSide)
            headers = [(n, v) for n, v in headers if n.lower() != b"sec-websocket-extensions"]
        if offers and self.deflate:
            accept = _acceptClientOffer(offers, self.maxMessageSize)
            if accept is not None:
                compress = (PerMessageDeflate.create_from_offer_accept(True, accept), compress[1])
                headers = headers + [(b"Sec-WebSocket-Extensions",
                                      accept.get_extension_string().encode("ascii"))]
        if self._factories is None:
            self._factories = _factories(self._reactor, self.maxMessageSize)
        protocol = _headerValue(headers, b"sec-websocket-protocol")
        exchange.startResponse(101, headers)
        relay = WebSocketRelay(
            exchange.channel, upstream, onClose, self._factories,
            protocol.decode("latin-1").strip() if protocol else None,
            exchange, self.filters, compress)
        pauseClientWhileBackendFull(exchange, upstream)
        return relay

    def withFilter(self, messageFilter: Any) -> "WebSocketRelayHandler":
        """
        @return: a new handler with C{messageFilter} after this one's filters.
        """
        handler = WebSocketRelayHandler(self._reactor, self.filters + (messageFilter,),
                                        self.maxMessageSize, self.deflate)
        handler._factories = self._factories
        return handler
