# -*- test-case-name: tests.unit.test_variables -*-
"""
nginx variables (C{$host}, C{$http_user_agent}, C{$1} ...) compiled once at
config load into small callables, so a request never re-parses a value.
"""

from __future__ import annotations

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


class InvalidVariable(ValueError):
    """
    A value has a malformed variable reference (a bare C{$}, an unclosed
    brace left open after C{$}), which nginx refuses at load rather than sending as text.
    """


class VariableTable:
    """
    The variables known to one config: module-provided ones plus those a
    config defines (C{map}, regex named captures).

    Names are compared without case, as nginx lowercases every variable
    name when it registers or looks one up (C{$Host} is C{$host}).
    """

    def __init__(self, specs: Sequence[VariableSpec] = ()) -> None:
        """
        @param specs: the module-provided variables to start with.
        """
        self._exact: Dict[str, GetterFactory] = {}
        self._prefixes: List[Tuple[str, GetterFactory]] = []
        self._cache: Dict[str, Getter] = {}
        for s in specs:
            self.add(s)

    def add(self, variableSpec: VariableSpec) -> None:
        """
        Make a variable or prefix family available.
        """
        name = variableSpec.name.lower()
        if variableSpec.prefix:
            self._prefixes.append((name, variableSpec.factory))
            self._prefixes.sort(key=lambda p: -len(p[0]))
            # Getters built before this family existed may now resolve
            # differently; forget them all (this happens only at load).
            self._cache.clear()
        else:
            self._exact[name] = variableSpec.factory
            self._cache.pop(name, None)

    def define(self, name: str, getter: Getter) -> None:
        """
        Define a variable computed by config (C{map}), replacing any.

        Values compiled before the replacement keep the getter they
        resolved, so a variable that others may use before it is complete
        (one C{map} naming another) must be defined by an object whose
        contents are filled in later, not redefined.
        """
        self.add(simple(name, getter))

    def defines(self, name: str) -> bool:
        """
        @return: whether C{$name} itself is defined (not merely resolvable
            through a prefix family such as C{http_}).
        """
        return name.lower() in self._exact

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
        name = name.lower()
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
    """
    A getter for C{$1} .. C{$9}: the numbered group of the last regex that
    matched (a regex location, or a C{map} regex while its value is
    evaluated).
    """

    def get(exchange: Any) -> Optional[str]:
        """
        @return: capture C{n}, or C{None} when the regex had fewer groups.
        """
        captures = exchange.captures
        return captures[n - 1] if n <= len(captures) else None

    return get


def _isNameChar(ch: str) -> bool:
    """
    @return: whether C{ch} may appear in a variable name (nginx accepts
        ASCII letters, digits and C{_}).
    """
    return ch.isascii() and (ch.isalnum() or ch == "_")


Part = Union[str, Getter]


def parseValue(text: str) -> List[Tuple[str, str]]:
    """
    Split a value into literal text and variable references the way
    nginx's C{ngx_http_script_compile} does: C{$1}..C{$9} are captures,
    C{$name} runs over letters, digits and C{_}, and C{${name}} lets text
    follow a name directly.

    @return: C{("text", literal)}, C{("capture", digit)} and
        C{("variable", name)} pairs, in order.
    @raise InvalidVariable: for a C{$} with no name after it, or a brace
        left open after C{$}.
    """
    parts: List[Tuple[str, str]] = []
    literal: List[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$":
            literal.append(ch)
            i += 1
            continue
        i += 1
        if i == n:
            raise InvalidVariable(f'invalid variable name in "{text}"')
        if "1" <= text[i] <= "9":
            if literal:
                parts.append(("text", "".join(literal)))
                literal = []
            parts.append(("capture", text[i]))
            i += 1
            continue
        bracket = text[i] == "{"
        if bracket:
            i += 1
        start = i
        while i < n and _isNameChar(text[i]):
            i += 1
        name = text[start:i]
        if bracket:
            if i == n or text[i] != "}":
                raise InvalidVariable(
                    f'the closing bracket in "{name}" variable is missing'
                )
            i += 1
        if not name:
            raise InvalidVariable(f'invalid variable name in "{text}"')
        if literal:
            parts.append(("text", "".join(literal)))
            literal = []
        parts.append(("variable", name))
    if literal:
        parts.append(("text", "".join(literal)))
    return parts


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
        """
        Compile C{text} against C{table}.

        @raise UnknownVariable: a name C{table} cannot resolve.
        @raise InvalidVariable: a malformed reference.
        """
        self.text = text
        self.names: List[str] = []
        self.usesCaptures = False
        parts: List[Part] = []
        for kind, value in parseValue(text):
            if kind == "text":
                parts.append(value)
            elif kind == "capture":
                self.usesCaptures = True
                parts.append(_capture(int(value)))
                self.names.append(value)
            else:
                parts.append(table.getter(value))
                self.names.append(value.lower())
        if all(isinstance(p, str) for p in parts):
            self.static: Optional[str] = "".join(parts)  # type: ignore[arg-type]
        else:
            self.static = None
        self._parts = tuple(parts)

    @property
    def parts(self) -> Tuple[Part, ...]:
        """
        The compiled value: literal strings and getters, in order, for
        callers (the access log) that treat each variable's result
        themselves.
        """
        return self._parts

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
