# -*- test-case-name: tests.unit.test_modules -*-
"""
C{error_page}: replace an error response by an internal redirect to another
URI or named location, or by an external redirect, as nginx does.
"""

from __future__ import annotations

from typing import Any, FrozenSet, Optional, Sequence, Tuple

import attr

from ..config.ast import Directive
from ..config.registry import HTTP, LOCATION, SERVER, DirectiveSpec, spec
from ..http.errorpages import SHOWN_AS_400
from ..module import ProxyModule


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ErrorPage:
    """
    One C{error_page} directive.

    @ivar codes: the statuses it handles.
    @ivar override: C{None} to keep the original status, C{0} for C{=}
        (the status of the page's own response), else the new status.
    @ivar target: a URI, C{@name}, or an absolute URL.
    """

    codes: FrozenSet[int]
    override: Optional[int]
    target: str
    directive: Optional[Directive] = attr.ib(default=None, eq=False, repr=False)


def _parseErrorPage(directive: Directive) -> ErrorPage:
    """
    C{error_page CODE... [=[RESPONSE]] URI}, with nginx's checks on the
    codes.
    """
    args = list(directive.args)
    target = args.pop()
    override: Optional[int] = None
    if args and args[-1].startswith("="):
        text = args.pop()[1:]
        if text and not text.isdigit():
            raise ValueError(f'invalid value "={text}"')
        override = int(text) if text else 0
    if not args:
        raise ValueError('invalid number of arguments in "error_page" directive')
    codes = []
    for arg in args:
        if not arg.isdigit() or not 300 <= int(arg) <= 599 or arg == "499":
            raise ValueError(f'value "{arg}" must be between 300 and 599')
        codes.append(int(arg))
    return ErrorPage(frozenset(codes), override, target, directive)


def redirectForStatus(exchange: Any, status: int, pages: Sequence[ErrorPage],
                      targets: Optional[Sequence[Any]] = None) -> bool:
    """
    Apply the first C{error_page} for C{status}, if any.

    @param targets: each page's target compiled with its variables (as
        nginx's C{error_page} takes C{https://$host$request_uri}); default
        the targets as written.
    @return: whether the exchange was redirected (the caller must then not
        answer itself).
    """
    for index, page in enumerate(pages):
        if status not in page.codes:
            continue
        target = page.target if targets is None else targets[index].evaluate(exchange)
        if page.override is None:
            # nginx's 495-497 are internal: without "=" the page is a 400.
            exchange.statusOverride = 400 if status in SHOWN_AS_400 else status
        elif page.override:
            exchange.statusOverride = page.override
        else:
            exchange.statusOverride = None
        if target.startswith("@"):
            location = exchange.server.locations.named(target[1:])
            if location is None:
                return False
            exchange.enterNamedLocation(location)
            return True
        if target.startswith("/"):
            path, _q, args = target.partition("?")
            method = exchange.method if exchange.method == b"HEAD" else b"GET"
            exchange.internalRedirect(path, args if _q else "", method)
            return True
        code = page.override if page.override and page.override in (301, 302, 303, 307, 308) else 302
        exchange.statusOverride = None
        exchange.sendRedirect(code, target)
        return True
    return False


class ErrorPages:
    """
    A location's C{error_page} list, as the hook the exchange calls before
    it answers with an error.
    """

    def __init__(self, pages: Sequence[ErrorPage], compiler: Any = None) -> None:
        """
        @param compiler: compiles each target's variables (at its
            directive's file:line); without one, targets are literal.
        """
        self.pages = tuple(pages)
        self._codes = frozenset(code for page in pages for code in page.codes)
        self._targets: Optional[Tuple[Any, ...]] = None
        if compiler is not None:
            self._targets = tuple(
                compiler.compileValue(page.target, page.directive) for page in pages)

    def handles(self, status: int) -> bool:
        """
        @return: whether some C{error_page} covers C{status}.
        """
        return status in self._codes

    def redirect(self, exchange: Any, status: int) -> bool:
        """
        Apply the first matching C{error_page}.

        @return: whether the exchange was redirected.
        """
        if status not in self._codes:
            return False
        return redirectForStatus(exchange, status, self.pages, self._targets)


class ErrorPageModule(ProxyModule):
    """
    Declares C{error_page}.
    """

    name = "error_page"
    order = 150

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: C{error_page}.
        """
        return [
            spec("error_page", [HTTP, SERVER, LOCATION], (2, None), parse=_parseErrorPage,
                 multiple=True)
        ]

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        Give the location its inherited C{error_page} list as its hook.
        """
        pages = location.conf.get("error_page")
        if pages:
            location.errorPages = ErrorPages(pages, compiler)
