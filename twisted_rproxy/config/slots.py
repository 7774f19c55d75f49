# -*- test-case-name: tests.unit.test_config_compiler -*-
"""
Ready-made argument parsers for directive declarations, like nginx's
C{ngx_conf_set_*_slot} functions, each wording its error as nginx does.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .ast import Directive
from .values import parseFlag, parseInt, parseSize, parseTime

Parser = Callable[[Directive], Any]


def _one(convert: Callable[[str], Any]) -> Parser:
    """
    @return: a parser applying C{convert} to the single argument and
        wording its failure as nginx's slot functions do.
    """
    def parse(directive: Directive) -> Any:
        """
        Convert the argument or raise nginx's C{invalid value} error.
        """
        arg = directive.args[0]
        try:
            return convert(arg)
        except ValueError:
            raise ValueError(f'invalid value "{arg}" in "{directive.name}" directive')

    return parse


def flagSlot(directive: Directive) -> bool:
    """
    C{on} or C{off}.
    """
    return parseFlag(directive.args[0], directive.name)


sizeSlot = _one(parseSize)
sizeSlot.__doc__ = "A size such as C{16k} or C{1m}, in bytes."
timeSlot = _one(parseTime)
timeSlot.__doc__ = "A time such as C{500ms} or C{60s}, in seconds."
numberSlot = _one(parseInt)
numberSlot.__doc__ = "A non-negative integer."


def stringSlot(directive: Directive) -> str:
    """
    The single argument as written.
    """
    return directive.args[0]


def enumSlot(*choices: str) -> Parser:
    """
    @return: a parser accepting one of C{choices}.
    """

    def parse(directive: Directive) -> str:
        """
        Convert the argument or raise nginx's C{invalid value} error.
        """
        arg = directive.args[0]
        if arg not in choices:
            raise ValueError(f'invalid value "{arg}" in "{directive.name}" directive')
        return arg

    return parse


def timeOrOffSlot(directive: Directive) -> float:
    """
    A time, with C{off} meaning 0 (disabled).
    """
    if directive.args[0] == "off":
        return 0.0
    return timeSlot(directive)


def argsSlot(directive: Directive) -> Sequence[str]:
    """
    All arguments as written.
    """
    return directive.args
