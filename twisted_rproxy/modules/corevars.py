# -*- test-case-name: tests.unit.test_variables -*-
"""
The request variables of nginx's http core module, each a small getter over
an L{twisted_rproxy.http.exchange.Exchange}.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, List, Optional

from .._version import __version__
from ..variables import Getter, VariableSpec, simple


def _host(exchange: Any) -> str:
    """
    C{$host}: the normalised Host, else the server's first name.
    """
    return exchange.host or (exchange.server.primaryName if exchange.server else "")


def _remoteAddr(exchange: Any) -> str:
    """
    C{$remote_addr}: the client's address (C{unix:} for UNIX sockets).
    """
    peer = exchange.channel.clientAddress
    host = getattr(peer, "host", None)
    return host if host is not None else "unix:"


def _binaryRemoteAddr(exchange: Any) -> Optional[str]:
    """
    The client address as 4 or 16 raw bytes (one latin-1 character each),
    the compact key nginx's limit zones use.
    """
    host = getattr(exchange.channel.clientAddress, "host", None)
    if host is None:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.inet_pton(family, host).decode("latin-1")


def _remotePort(exchange: Any) -> str:
    """
    C{$remote_port}: the client's port, empty for UNIX sockets.
    """
    port = getattr(exchange.channel.clientAddress, "port", None)
    return "" if port is None else str(port)


def _serverAddr(exchange: Any) -> str:
    """
    C{$server_addr}: the local address the request arrived on.
    """
    return getattr(exchange.channel.serverAddress, "host", None) or "unix:"


def _serverPort(exchange: Any) -> str:
    """
    C{$server_port}: the local port the request arrived on.
    """
    port = getattr(exchange.channel.serverAddress, "port", None)
    return "" if port is None else str(port)


def _headerGetter(fullName: str) -> Getter:
    """
    C{$http_user_agent}: the request header, underscores read as dashes;
    repeated headers are joined as nginx 1.23+ does (C{; } for cookies).
    """
    wanted = fullName[5:].replace("_", "-").lower().encode("latin-1")
    separator = "; " if wanted == b"cookie" else ", "

    def get(exchange: Any) -> Optional[str]:
        values = [v for n, v in exchange.requestHeaders if n.lower() == wanted]
        if not values:
            return None
        if len(values) == 1:
            return values[0].decode("latin-1")
        return separator.join(v.decode("latin-1") for v in values)

    return get


def _argGetter(fullName: str) -> Getter:
    """
    C{$arg_name}: the raw (still percent-encoded) value of the first
    query argument with that name, compared without case as nginx does.
    Like nginx's C{ngx_http_arg}, only C{name=value} counts: a bare
    C{?name} leaves the variable unset.
    """
    wanted = fullName[4:].lower()

    def get(exchange: Any) -> Optional[str]:
        args = exchange.args
        if not args:
            return None
        for part in args.split("&"):
            key, sep, value = part.partition("=")
            if sep and key.lower() == wanted:
                return value
        return None

    return get


def _cookieGetter(fullName: str) -> Getter:
    """
    C{$cookie_name}: the value of the first cookie of that name, over
    every C{Cookie} header; names compare without case, as nginx's
    C{ngx_http_parse_multi_header_lines} does.
    """
    wanted = fullName[7:].lower()

    def get(exchange: Any) -> Optional[str]:
        for name, value in exchange.requestHeaders:
            if name.lower() != b"cookie":
                continue
            for part in value.decode("latin-1").split(";"):
                key, sep, cookieValue = part.strip().partition("=")
                if sep and key.lower() == wanted:
                    return cookieValue
        return None

    return get


def _requestLine(exchange: Any) -> str:
    """
    C{$request}: the request line as sent (method, target, version).
    """
    return "%s %s %s" % (
        exchange.method.decode("latin-1"),
        exchange.rawURI.decode("latin-1"),
        exchange.version.decode("latin-1"),
    )


def _header(name: bytes) -> Getter:
    """
    @return: a getter for one request header by lowercase name.
    """
    def get(exchange: Any) -> Optional[str]:
        value = exchange.header(name)
        return None if value is None else value.decode("latin-1")

    return get


def _timeLocal(exchange: Any) -> str:
    """
    C{$time_local}: the request start in the common log format.
    """
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(exchange.startTime))


def _timeISO(exchange: Any) -> str:
    """
    C{$time_iso8601}: the request start in ISO 8601 with the offset.
    """
    local = time.localtime(exchange.startTime)
    offset = time.strftime("%z", local)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + offset[:3] + ":" + offset[3:]


def _requestTime(exchange: Any) -> str:
    """
    C{$request_time}: whole milliseconds since the request began, shown as
    seconds; nginx truncates to the millisecond rather than rounding.
    """
    end = exchange.endTime or time.time()
    ms = max(0, int((end - exchange.startTime) * 1000))
    return "%d.%03d" % divmod(ms, 1000)


_HOSTNAME = socket.gethostname()


def coreVariables() -> List[VariableSpec]:
    """
    @return: the core variable declarations.
    """
    return [
        simple("host", _host),
        simple("remote_addr", _remoteAddr),
        simple("binary_remote_addr", _binaryRemoteAddr),
        simple("remote_port", _remotePort),
        simple("server_addr", _serverAddr),
        simple("server_port", _serverPort),
        simple("scheme", lambda e: e.channel.scheme),
        simple("https", lambda e: "on" if e.channel.scheme == "https" else ""),
        simple("server_name", lambda e: e.server.primaryName if e.server else ""),
        simple("request_uri", lambda e: e.originTarget.decode("latin-1")),
        simple("uri", lambda e: e.path),
        simple("document_uri", lambda e: e.path),
        simple("args", lambda e: e.args),
        simple("query_string", lambda e: e.args),
        simple("is_args", lambda e: "?" if e.args else ""),
        simple("request_method", lambda e: e.method.decode("latin-1")),
        simple("server_protocol", lambda e: e.version.decode("latin-1")),
        simple("request", _requestLine),
        simple("content_length", _header(b"content-length")),
        simple("content_type", _header(b"content-type")),
        simple("status", lambda e: "%03d" % e.status),
        simple("request_time", _requestTime),
        simple("body_bytes_sent", lambda e: str(e.bodyBytesSent)),
        simple("bytes_sent", lambda e: str(e.bytesSent)),
        simple("request_length", lambda e: str(e.requestLength)),
        simple("connection", lambda e: str(e.channel.connectionNumber)),
        simple("connection_requests", lambda e: str(e.channel.requestCount)),
        simple("time_local", _timeLocal),
        simple("time_iso8601", _timeISO),
        simple("msec", lambda e: "%.3f" % (e.endTime or time.time())),
        simple("hostname", lambda e: _HOSTNAME),
        simple("pid", lambda e: str(os.getpid())),
        simple("rproxy_version", lambda e: __version__),
        VariableSpec("http_", _headerGetter, prefix=True),
        VariableSpec("arg_", _argGetter, prefix=True),
        VariableSpec("cookie_", _cookieGetter, prefix=True),
    ]
