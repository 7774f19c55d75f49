# -*- test-case-name: tests.unit.test_h2channel -*-
"""
An HTTP/2 request head checked as RFC 9113 section 8 requires, and turned
into what an L{Exchange <twisted_rproxy.http.exchange.Exchange>} expects
of an HTTP/1.1 one: C{:authority} becomes Host, cookie crumbs are joined.
A malformed head is a stream error, so the codec resets only its stream.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

import attr

Headers = List[Tuple[bytes, bytes]]

#: A field name: tchar only, and lowercase (RFC 9113 8.2.1).
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
#: A value with no NUL, CR or LF and no surrounding whitespace.
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
#: Fields that only mean something for one HTTP/1.1 connection.
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})


class MalformedRequest(Exception):
    """
    The request head breaks RFC 9113; reset the stream with PROTOCOL_ERROR.
    """


@attr.s(frozen=True, slots=True, auto_attribs=True)
class H2Request:
    """
    A checked request head.

    @ivar headers: the regular fields, Host first when C{:authority} was sent.
    @ivar contentLength: the declared length, or C{None}.
    @ivar size: the head's size as HPACK-decoded text, for C{$request_length}.
    @ivar listSize: its size as C{SETTINGS_MAX_HEADER_LIST_SIZE} counts
        (32 bytes more per field, RFC 9113 6.5.2).
    """

    method: bytes
    path: bytes
    scheme: bytes
    headers: Headers
    contentLength: Optional[int]
    size: int
    listSize: int = 0


def requestFromHeaders(fields: Sequence[Tuple[bytes, bytes]]) -> H2Request:
    """
    Check a decoded request header block and build the request.

    @raise MalformedRequest: naming the rule broken.
    """
    pseudo = {}
    regular: Headers = []
    cookies: List[bytes] = []
    host: Optional[bytes] = None
    contentLength: Optional[int] = None
    size = 0
    for name, value in fields:
        size += len(name) + len(value) + 4
        if name[:1] == b":":
            if regular or cookies or host is not None:
                raise MalformedRequest(f"pseudo-header {name!r} after a regular field")
            if name not in _REQUEST_PSEUDO:
                raise MalformedRequest(f"unknown pseudo-header {name!r}")
            if name in pseudo:
                raise MalformedRequest(f"duplicate pseudo-header {name!r}")
            pseudo[name] = value
            continue
        if not _NAME.match(name):
            raise MalformedRequest(f"invalid field name {name!r}")
        if _BAD_VALUE.search(value):
            raise MalformedRequest(f"invalid value of {name!r}")
        if name in _CONNECTION_SPECIFIC:
            raise MalformedRequest(f"connection-specific field {name!r}")
        if name == b"te" and value.lower() != b"trailers":
            raise MalformedRequest("te other than trailers")
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            if host is not None:
                raise MalformedRequest("duplicate host")
            host = value
            continue
        if name == b"content-length":
            if not value.isdigit():
                raise MalformedRequest(f"invalid content-length {value!r}")
            length = int(value)
            if contentLength is not None and length != contentLength:
                raise MalformedRequest("conflicting content-length")
            if contentLength is not None:
                continue
            contentLength = length
        regular.append((name, value))
    method = pseudo.get(b":method")
    if not method:
        raise MalformedRequest("no :method")
    if method == b"CONNECT":
        if b":scheme" in pseudo or b":path" in pseudo or not pseudo.get(b":authority"):
            raise MalformedRequest("CONNECT needs :authority only")
        path = b"/"
        scheme = b""
    else:
        path = pseudo.get(b":path", b"")
        scheme = pseudo.get(b":scheme", b"")
        if not path or not scheme:
            raise MalformedRequest("no :path or :scheme")
        if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
            # RFC 9113 8.3.1: origin-form, or "*" for OPTIONS.
            raise MalformedRequest(f"invalid :path {path!r}")
    authority = pseudo.get(b":authority")
    if authority is not None:
        if b"@" in authority:
            raise MalformedRequest("userinfo in :authority")
        # :authority is the target's authority; a Host field that differs
        # is dropped for it, as nginx does.
        host = authority
    out: Headers = []
    if host is not None:
        out.append((b"host", host))
    out += regular
    if cookies:
        # RFC 9113 8.2.3: crumbs are joined for an HTTP/1.1 hop.
        out.append((b"cookie", b"; ".join(cookies)))
    listSize = size + 28 * len(fields)
    return H2Request(method, path, scheme, out, contentLength, size, listSize)
