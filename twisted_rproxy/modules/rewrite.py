# -*- test-case-name: tests.unit.test_modules -*-
"""
C{return}: answer from the config with a status and a text or a redirect,
at server level (before a location is chosen) or in a location, as nginx's
rewrite module does.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import attr

from ..config.ast import Directive
from ..config.registry import LOCATION, MERGE_NONE, SERVER, DirectiveSpec, spec
from ..module import ProxyModule
from ..phases import REWRITE, SERVER_REWRITE, LocalReply
from ..variables import ComplexValue

REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: nginx's non-standard code: close the connection without a response.
CLOSE_CONNECTION = 444


def _parseReturn(directive: Directive) -> tuple:
    """
    C{return CODE [TEXT|URL]} or C{return URL} (a 302), as nginx reads
    them.

    @return: C{(code, text or None)}.
    """
    args = directive.args
    first = args[0]
    if first.isdigit():
        code = int(first)
        if code > 999:
            raise ValueError(f'invalid return code "{first}"')
        return (code, args[1] if len(args) > 1 else None)
    if len(args) == 1 and first.startswith(("http://", "https://", "$scheme")):
        return (302, first)
    raise ValueError(f'invalid return code "{first}"')


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ReturnFilter:
    """
    The C{return} directive as a request filter.

    @ivar code: the status.
    @ivar value: the text or redirect target, or C{None}.
    """

    phase: str
    code: int
    value: Optional[ComplexValue]

    def requestHeaders(self, exchange: Any) -> LocalReply:
        """
        @return: the configured reply.
        """
        if self.code == CLOSE_CONNECTION:
            exchange.status = CLOSE_CONNECTION
            exchange.abort()
            return None  # type: ignore[return-value]
        if self.value is None:
            # "return 301;" has no target: nginx sends its standard page
            # for the code and no Location header.
            return LocalReply(self.code)
        text = self.value.evaluate(exchange)
        if self.code in REDIRECTS:
            return LocalReply(self.code, b"", ((b"Location", text.encode("latin-1")),))
        return LocalReply(self.code, text.encode("utf-8", "surrogateescape"))


class RewriteModule(ProxyModule):
    """
    Declares C{return}.
    """

    name = "rewrite"
    order = 100

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: C{return}.
        """
        return [spec("return", [SERVER, LOCATION], (1, 2), parse=_parseReturn, merge=MERGE_NONE)]

    def _filter(self, conf: Any, phase: str, compiler: Any) -> Optional[ReturnFilter]:
        """
        @return: the L{ReturnFilter} of C{conf}'s own C{return} for
            C{phase}, or C{None} when it has none.
        """
        found = conf.get("return")
        if found is None:
            return None
        code, text = found
        value = None if text is None else compiler.compileValue(text, conf.source("return"))
        return ReturnFilter(phase, code, value)

    def configureServer(self, server: Any, compiler: Any) -> None:
        """
        A server-level C{return} answers before any location is chosen.
        """
        f = self._filter(server.conf, SERVER_REWRITE, compiler)
        if f is not None:
            server.requestFilters.append(f)

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        A location-level C{return} answers before its content handler.
        """
        if location.source is location.server.source:
            return  # the server's fallback location: handled at server level
        f = self._filter(location.conf, REWRITE, compiler)
        if f is not None:
            location.requestFilters.append(f)
