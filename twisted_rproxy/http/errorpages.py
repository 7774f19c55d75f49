# -*- test-case-name: tests.unit.test_channel -*-
"""
Status reason phrases and the small HTML error pages nginx sends, so a
client sees the same 502 page shape whichever proxy answered.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Dict

from .._version import __version__

#: nginx's own wording where it differs from the RFC names
#: (ngx_http_status_lines and ngx_http_error_pages).
_EXTRA = {
    302: "Moved Temporarily",
    405: "Not Allowed",
    408: "Request Time-out",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    416: "Requested Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    494: "Request Header Or Cookie Too Large",
    499: "Client Closed Request",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}

#: nginx's internal statuses that are sent as 400 with a page of their
#: own (C{ngx_http_error_495_page} ...): an C{error_page} can catch each
#: by its own code, and one without C{=} answers 400 too.
SHOWN_AS_400 = {
    495: "The SSL certificate error",
    496: "No required SSL certificate was sent",
    497: "The plain HTTP request was sent to HTTPS port",
}

#: Where nginx's page names a status otherwise than its status line
#: (C{ngx_http_error_302_page} says "Found").
_PAGE_TITLES = {302: "Found"}

_reasons: Dict[int, bytes] = {}
_pages: Dict[tuple, bytes] = {}


def reasonPhrase(status: int) -> bytes:
    """
    @return: the reason phrase nginx uses for C{status}.
    """
    found = _reasons.get(status)
    if found is None:
        text = _EXTRA.get(status)
        if text is None:
            try:
                text = HTTPStatus(status).phrase
            except ValueError:
                text = ""
        found = _reasons[status] = text.encode("ascii")
    return found


def errorPage(status: int, serverTokens: bool) -> bytes:
    """
    @return: the HTML body of nginx's built-in page for C{status}, naming
        this software (with its version when C{server_tokens} is on).
    """
    key = (status, bool(serverTokens))
    page = _pages.get(key)
    if page is None:
        title = f"{status} {reasonPhrase(status).decode('ascii')}".strip()
        if status in _PAGE_TITLES:
            title = f"{status} {_PAGE_TITLES[status]}"
        heading = title
        text = SHOWN_AS_400.get(status)
        extra = ""
        if text is not None:
            title, heading, extra = f"400 {text}", "400 Bad Request", f"<center>{text}</center>\r\n"
        software = f"twisted_rproxy/{__version__}" if serverTokens else "twisted_rproxy"
        page = _pages[key] = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{heading}</h1></center>\r\n{extra}"
            f"<hr><center>{software}</center>\r\n</body>\r\n</html>\r\n"
        ).encode("ascii")
    return page
