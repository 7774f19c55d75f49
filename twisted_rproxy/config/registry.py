# -*- test-case-name: tests.unit.test_config_compiler -*-
"""
The directive registry: which module owns each directive, where it may be
written, how many arguments it takes, and how it inherits, like the
C{ngx_command_t} tables of nginx modules.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional

import attr

from .ast import Directive
from .errors import ConfigError

MAIN = "main"
EVENTS = "events"
HTTP = "http"
SERVER = "server"
LOCATION = "location"
UPSTREAM = "upstream"

#: Contexts whose settings flow into locations (nginx's http/srv/loc conf).
HTTP_LEVELS: FrozenSet[str] = frozenset({HTTP, SERVER, LOCATION})

#: How a directive's value passes from an outer block to an inner one.
MERGE_INHERIT = "inherit"  # the innermost block that sets it wins
MERGE_NONE = "none"  # applies only to the block it is written in


def takeArgs(directive: Directive) -> Any:
    """
    The default argument parser: the arguments as written.
    """
    return directive.args


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DirectiveSpec:
    """
    A declaration of one directive by the module that implements it.

    @ivar name: the directive name.
    @ivar contexts: the block types it may appear in.
    @ivar minArgs: the fewest arguments.
    @ivar maxArgs: the most arguments, C{None} for no limit.
    @ivar parse: turns the L{Directive} into a typed value, raising
        C{ValueError} (reported as an invalid value at file:line) or
        L{ConfigError}.
    @ivar multiple: may be repeated in one block; the value is then the list
        of parsed values, and an inner block's list replaces the outer one
        entirely, as nginx does for C{add_header} and C{proxy_set_header}.
    @ivar merge: L{MERGE_INHERIT} or L{MERGE_NONE}.
    @ivar default: the value when no block sets it.
    @ivar block: for a block directive, the context name of its children, or
        C{"raw"} when the owning module reads the children itself (C{map}).
    @ivar ignored: accepted and reported as having no effect here.
    """

    name: str
    contexts: FrozenSet[str]
    minArgs: int = 1
    maxArgs: Optional[int] = 1
    parse: Callable[[Directive], Any] = takeArgs
    multiple: bool = False
    merge: str = MERGE_INHERIT
    default: Any = None
    block: Optional[str] = None
    ignored: bool = False


def spec(
    name: str,
    contexts: Iterable[str],
    nargs: "int | tuple[int, Optional[int]]" = 1,
    **kwargs: Any,
) -> DirectiveSpec:
    """
    Shorthand for declaring a L{DirectiveSpec}: C{nargs} is an exact count
    or a C{(min, max)} pair.
    """
    lo: int
    hi: Optional[int]
    if isinstance(nargs, int):
        lo, hi = nargs, nargs
    else:
        lo, hi = nargs
    return DirectiveSpec(
        name=name, contexts=frozenset(contexts), minArgs=lo, maxArgs=hi, **kwargs
    )


class DirectiveRegistry:
    """
    All directives of all loaded modules, keyed by name.  As in nginx, two
    modules may declare the same name for disjoint contexts (C{server} in
    C{http} and in C{upstream}); the context picks the declaration.
    """

    def __init__(self) -> None:
        """
        Start empty; modules declare their directives with L{add}.
        """
        self._specs: Dict[str, List[DirectiveSpec]] = {}
        self._owners: Dict[int, str] = {}
        self._defaults: Dict[str, Any] = {}

    def add(self, owner: str, directiveSpec: DirectiveSpec) -> None:
        """
        Declare a directive for module C{owner}.

        @raise ConfigError: when another module already declares that name
            for one of the same contexts.
        """
        name = directiveSpec.name
        for other in self._specs.get(name, ()):
            if other.contexts & directiveSpec.contexts:
                raise ConfigError(
                    f'directive "{name}" is declared by both module '
                    f'"{self._owners[id(other)]}" and module "{owner}"'
                )
        self._specs.setdefault(name, []).append(directiveSpec)
        self._owners[id(directiveSpec)] = owner
        self._defaults.pop(name, None)

    def get(self, name: str, context: Optional[str] = None) -> Optional[DirectiveSpec]:
        """
        @return: the spec for C{name} in C{context} (or, with no context,
            the first declared), or C{None} when no module declares it.
        """
        found = self._specs.get(name)
        if not found:
            return None
        if context is None:
            return found[0]
        for candidate in found:
            if context in candidate.contexts:
                return candidate
        return None

    def defaultOf(self, name: str) -> Any:
        """
        @return: the default of directive C{name} (its first declaration's),
            or C{None} when no module declares it; remembered, since a
            config looks the same defaults up on every request.
        """
        try:
            return self._defaults[name]
        except KeyError:
            found = self.get(name)
            value = self._defaults[name] = None if found is None else found.default
            return value

    def owner(self, directiveSpec: DirectiveSpec) -> str:
        """
        @return: the name of the module that declared C{directiveSpec}.
        """
        return self._owners[id(directiveSpec)]

    def specs(self) -> Iterable[DirectiveSpec]:
        """
        @return: every declared directive.
        """
        for found in self._specs.values():
            yield from found

    def check(self, directive: Directive, context: str) -> DirectiveSpec:
        """
        Validate a directive's placement and arity, as nginx does before it
        calls a directive's handler.

        @raise ConfigError: unknown directive, wrong context, wrong arity.
        """
        if directive.name not in self._specs:
            raise directive.error(f'unknown directive "{directive.name}"')
        found = self.get(directive.name, context)
        if found is None:
            raise directive.error(f'"{directive.name}" directive is not allowed here')
        n = len(directive.args)
        if n < found.minArgs or (found.maxArgs is not None and n > found.maxArgs):
            raise directive.error(
                f'invalid number of arguments in "{directive.name}" directive'
            )
        if found.block is None and directive.block is not None:
            raise directive.error(
                f'directive "{directive.name}" is not terminated by ";"'
            )
        if found.block is not None and directive.block is None:
            raise directive.error(f'directive "{directive.name}" has no opening "{{"')
        return found
