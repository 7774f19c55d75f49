# -*- test-case-name: tests.unit.test_h2channel -*-
"""
The http2 module (nginx's C{ngx_http_v2_module}): C{http2 on} (nginx
1.25.1+) and the C{http2} flag of C{listen} offer HTTP/2 on a listener
(ALPN C{h2} with TLS, the prior-knowledge preface without), and the
limits the codec in L{twisted_rproxy.http.h2channel} applies.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..config.ast import Directive
from ..config.registry import HTTP, LOCATION, SERVER, DirectiveSpec, spec
from ..config.slots import flagSlot, numberSlot, sizeSlot
from ..module import ProxyModule
from ..variables import VariableSpec, simple

_CONTEXTS = (HTTP, SERVER)

#: What h2 (and RFC 9113) allow for a frame's payload and a window.
_MIN_FRAME, _MAX_WINDOW = 1, 2**31 - 1



def _positive(parse: Any, low: int, high: int) -> Any:
    """
    @return: a parser of C{parse}'s values in C{low..high}, worded as
        nginx's bounds errors.
    """

    def check(directive: Directive) -> Any:
        value = parse(directive)
        if not low <= value <= high:
            raise ValueError(
                f'the value of "{directive.name}" must be between {low} and {high}'
            )
        return value

    return check


def _http2(exchange: Any) -> str:
    """
    C{$http2}, as nginx: the protocol of an HTTP/2 request, else empty.
    """
    if exchange.version != b"HTTP/2.0":
        return ""
    return "h2" if exchange.channel.scheme == "https" else "h2c"


class HTTP2Module(ProxyModule):
    """
    HTTP/2 towards clients.
    """

    name = "http2"
    order = 6

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: C{http2} and the C{http2_*} limits implemented.
        """
        return [
            spec("http2", _CONTEXTS, 1, parse=flagSlot, default=False),
            spec("http2_max_concurrent_streams", _CONTEXTS, 1,
                 parse=_positive(numberSlot, 1, _MAX_WINDOW), default=128),
            spec("http2_chunk_size", _CONTEXTS + (LOCATION,), 1,
                 parse=_positive(sizeSlot, _MIN_FRAME, 16777215), default=8192),
            spec("http2_body_preread_size", _CONTEXTS, 1,
                 parse=_positive(sizeSlot, 0, _MAX_WINDOW), default=65536),
            # nginx's per-worker read buffer: reads here are what the
            # reactor hands over, so it is accepted with a notice.
            spec("http2_recv_buffer_size", [HTTP], 1, ignored=True),
        ]

    def variables(self) -> Sequence[VariableSpec]:
        """
        @return: C{$http2}: C{h2} over TLS, C{h2c} in clear, else empty.
        """
        return [simple("http2", _http2)]

    def configureListener(self, listener: Any, compiler: Any) -> None:
        """
        Offer HTTP/2 on a socket where a C{listen} of it says C{http2} or
        its default server says C{http2 on} (nginx decides per address by
        the default server too), and on each address view merged into it.
        """
        views = [listener] + list((listener.byLocalAddress or {}).values())
        for view in views:
            key = view.address.key
            view.http2 = bool(view.defaultServer.conf.get("http2")) or any(
                address.http2
                for server in view.servers
                for address in server.listens
                if address.key == key
            )
