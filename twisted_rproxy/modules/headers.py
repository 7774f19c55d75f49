# -*- test-case-name: tests.unit.test_modules -*-
"""
C{add_header}: response headers from the config, added to successful
responses (or to all with C{always}), as nginx's headers filter does.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import attr

from ..config.ast import Directive
from ..config.registry import HTTP, LOCATION, SERVER, DirectiveSpec, spec
from ..http.exchange import ADD_HEADER_STATUSES
from ..module import ProxyModule
from ..variables import ComplexValue


def _parseAddHeader(directive: Directive) -> Tuple[Directive, bool]:
    """
    C{add_header NAME VALUE [always]}; the value is compiled later, when
    the variable table is complete.
    """
    if len(directive.args) == 3 and directive.args[2] != "always":
        raise ValueError(f'invalid parameter "{directive.args[2]}"')
    return (directive, len(directive.args) == 3)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AddHeaderFilter:
    """
    Appends configured headers to a response head.

    @ivar headers: C{(name, value, always)} triples.
    """

    headers: Tuple[Tuple[bytes, ComplexValue, bool], ...]

    def responseHeaders(self, exchange: Any, status: int, headers: List) -> List:
        """
        @return: C{headers} plus those whose condition holds and whose value
            is not empty.
        """
        success = status in ADD_HEADER_STATUSES
        for name, value, always in self.headers:
            if always or success:
                text = value.evaluate(exchange)
                if text:
                    headers.append((name, text.encode("latin-1")))
        return headers


class HeadersModule(ProxyModule):
    """
    Declares C{add_header}; an inner block with its own C{add_header}s
    replaces the outer set.
    """

    name = "headers"
    order = 300

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: C{add_header}.
        """
        return [
            spec("add_header", [HTTP, SERVER, LOCATION], (2, 3), parse=_parseAddHeader,
                 multiple=True)
        ]

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        Compile this location's inherited C{add_header} list.
        """
        entries = location.conf.get("add_header")
        if not entries:
            return
        compiled = tuple(
            (
                d.args[0].encode("latin-1"),
                compiler.compileValue(d.args[1], d),
                always,
            )
            for d, always in entries
        )
        location.responseFilters.append(AddHeaderFilter(compiled))
