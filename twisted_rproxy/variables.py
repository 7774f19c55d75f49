# -*- test-case-name: tests.unit.test_variables -*-
"""
nginx variables (C{$host}, C{$http_user_agent}, C{$1} ...) compiled once at
config load into small callables, so a request never re-parses a value.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import attr

#: A compiled variable: the exchange in, the value (or C{None}) out.
Getter = Callable[[Any], Optional[str]]

#: Builds a getter; called with the full variable name (so a prefix family
#: such as C{http_} sees C{http_user_agent}).
GetterFactory = Callable[[str], Getter]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class VariableSpec:
    """
    A variable a module provides.

    @ivar name: the name without C{$}; for a prefix family, the prefix
        (C{"http_"}).
    @ivar factory: builds the getter for one full name.
    @ivar prefix: whether C{name} is a prefix family.
    """

    name: str
    factory: GetterFactory
    prefix: bool = False


def simple(name: str, getter: Getter) -> VariableSpec:
    """
    Declare a variable whose getter needs no per-name setup.
    """
    return VariableSpec(name, lambda _full: getter)


class UnknownVariable(Exception):
    """
    A value refers to a variable no module provides.
    """


class VariableTable:
    """
    The variables known to one config: module-provided ones plus those a
    config defines (C{map}).
    """

    def __init__(self, specs: Sequence[VariableSpec] = ()) -> None:
        self._exact: Dict[str, GetterFactory] = {}
        self._prefixes: List[Tuple[str, GetterFactory]] = []
        self._cache: Dict[str, Getter] = {}
        for s in specs:
            self.add(s)

    def add(self, variableSpec: VariableSpec) -> None:
        """
        Make a variable or prefix family available.
        """
        if variableSpec.prefix:
            self._prefixes.append((variableSpec.name, variableSpec.factory))
            self._prefixes.sort(key=lambda p: -len(p[0]))
        else:
            self._exact[variableSpec.name] = variableSpec.factory
        self._cache.pop(variableSpec.name, None)

    def define(self, name: str, getter: Getter) -> None:
        """
        Define a variable computed by config (C{map}), replacing any.
        """
        self.add(simple(name, getter))

    def has(self, name: str) -> bool:
        """
        @return: whether C{$name} can be resolved.
        """
        try:
            self.getter(name)
        except UnknownVariable:
            return False
        return True

    def getter(self, name: str) -> Getter:
        """
        @return: the compiled getter of C{$name}.
        @raise UnknownVariable: when nothing provides it.
        """
        found = self._cache.get(name)
        if found is not None:
            return found
        factory = self._exact.get(name)
        if factory is None:
            for prefix, prefixFactory in self._prefixes:
                if name.startswith(prefix) and len(name) > len(prefix):
                    factory = prefixFactory
                    break
        if factory is None:
            raise UnknownVariable(name)
        found = self._cache[name] = factory(name)
        return found


def _capture(n: int) -> Getter:
    def get(exchange: Any) -> Optional[str]:
        captures = exchange.captures
        if n == 0:
            return exchange.path if captures else None
        return captures[n - 1] if n <= len(captures) else None

    return get


_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([0-9])|([A-Za-z0-9_]+))")


Part = Union[str, Getter]


class ComplexValue:
    """
    A config value with variables in it, like nginx's
    C{ngx_http_complex_value_t}: evaluated per request by joining static
    text and getter results.

    @ivar text: the value as written.
    @ivar static: the value when it has no variables, else C{None}.
    @ivar names: the variable names used, in order.
    """

    __slots__ = ("text", "static", "names", "_parts", "usesCaptures")

    def __init__(self, text: str, table: VariableTable) -> None:
        self.text = text
        self.names: List[str] = []
        self.usesCaptures = False
        parts: List[Part] = []
        pos = 0
        for match in _VARIABLE.finditer(text):
            if match.start() > pos:
                parts.append(text[pos : match.start()])
            braced, digit, plain = match.groups()
            if digit is not None:
                self.usesCaptures = True
                parts.append(_capture(int(digit)))
                self.names.append(digit)
            else:
                name = braced or plain
                parts.append(table.getter(name))
                self.names.append(name)
            pos = match.end()
        if pos < len(text):
            parts.append(text[pos:])
        if all(isinstance(p, str) for p in parts):
            self.static: Optional[str] = "".join(parts)  # type: ignore[arg-type]
        else:
            self.static = None
        self._parts = tuple(parts)

    def evaluate(self, exchange: Any) -> str:
        """
        @return: the value for this exchange; unset variables are empty.
        """
        if self.static is not None:
            return self.static
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            else:
                value = part(exchange)
                if value:
                    out.append(value)
        return "".join(out)
