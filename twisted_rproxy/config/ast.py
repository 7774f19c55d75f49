# -*- test-case-name: tests.unit.test_config_parser -*-
"""
The parsed, not yet compiled, form of an nginx-syntax config: a tree of
directives that each remember where they were written.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import attr


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Directive:
    """
    One directive as written: C{name arg1 arg2;} or C{name args { ... }}.

    @ivar name: the directive name, e.g. C{"proxy_pass"}.
    @ivar args: the arguments with quotes removed and escapes resolved.
    @ivar block: the child directives when the directive has a C{{...}} block,
        else C{None}.  An empty block is an empty tuple.
    @ivar filename: the file the directive was read from.
    @ivar line: the 1-based line of the directive's name.
    """

    name: str
    args: Tuple[str, ...]
    block: Optional[Tuple["Directive", ...]]
    filename: str
    line: int

    def error(self, message: str) -> "Exception":
        """
        Build a L{ConfigError} located at this directive.
        """
        from .errors import ConfigError

        return ConfigError(message, self.filename, self.line)


def treeToData(tree: Sequence[Directive]) -> List[Any]:
    """
    @return: C{tree} as JSON-ready lists, so a master can hand the very
        config it checked to its workers instead of having them read files
        that may have changed since.
    """
    return [
        [d.name, list(d.args), None if d.block is None else treeToData(d.block), d.filename, d.line]
        for d in tree
    ]


def treeFromData(data: Sequence[Any]) -> Tuple[Directive, ...]:
    """
    @return: the directive tree L{treeToData} described.
    """
    return tuple(
        Directive(name, tuple(args), None if block is None else treeFromData(block), filename, line)
        for name, args, block, filename, line in data
    )
