# -*- test-case-name: tests.unit.test_modules -*-
"""
C{map $source $variable { ... }}: variables whose value depends on another,
compiled at load into a dict lookup and ordered regexes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config.ast import Directive
from ..config.registry import HTTP, DirectiveSpec, spec
from ..http.routing import PcreError, PcreRegex, compilePcre
from ..module import ProxyModule
from ..variables import ComplexValue


def _parseMap(directive: Directive) -> Directive:
    """
    Check a C{map} block's shape (its values need the variable table, so
    they are compiled later, in L{MapModule.configure}).
    """
    if not directive.args[1].startswith("$") or len(directive.args[1]) < 2:
        raise ValueError(f'invalid variable name "{directive.args[1]}"')
    for entry in directive.block or ():
        if entry.block is not None:
            raise entry.error('unexpected "{" in map block')
        if entry.name in ("hostnames", "volatile") and not entry.args:
            continue
        if len(entry.args) != 1:
            raise entry.error("invalid number of the map parameters")
    return directive


class MapVariable:
    """
    Evaluates one C{map}: exact keys (compared without case, as nginx
    lowercases the source), then with C{hostnames} the longest wildcard
    (C{*.example.com}, then C{www.example.*}), then regexes in order, then
    C{default}.

    It is defined as a variable before its contents are compiled (see
    L{fill}), so a map can use a variable of a map declared after it.
    """

    def __init__(self, name: str) -> None:
        """
        An empty map named C{name}; L{fill} gives it its contents.
        """
        self.name = name
        self.source: Optional[ComplexValue] = None
        self.exact: Dict[str, ComplexValue] = {}
        self.prefixWildcards: Dict[str, ComplexValue] = {}
        self.suffixWildcards: Dict[str, ComplexValue] = {}
        self.regexes: List[Tuple[PcreRegex, ComplexValue]] = []
        self.default: Optional[ComplexValue] = None
        self.hostnames = False

    def fill(
        self,
        source: ComplexValue,
        exact: Dict[str, ComplexValue],
        prefixWildcards: Dict[str, ComplexValue],
        suffixWildcards: Dict[str, ComplexValue],
        regexes: List[Tuple[PcreRegex, ComplexValue]],
        default: Optional[ComplexValue],
        hostnames: bool,
    ) -> None:
        """
        Set the compiled contents.
        """
        self.source = source
        self.exact = exact
        self.prefixWildcards = prefixWildcards
        self.suffixWildcards = suffixWildcards
        self.regexes = regexes
        self.default = default
        self.hostnames = hostnames

    def __call__(self, exchange: Any) -> Optional[str]:
        """
        @return: the mapped value for this exchange.
        """
        if self.source is None:
            return ""
        key = self.source.evaluate(exchange)
        lowered = key.lower()
        if self.hostnames and lowered.endswith("."):
            lowered = lowered[:-1]
        found = self.exact.get(lowered)
        if found is None and self.hostnames:
            found = self._wildcard(lowered)
        if found is not None:
            return found.evaluate(exchange)
        for regex, value in self.regexes:
            match = regex.search(key)
            if match is not None:
                return self._withCaptures(exchange, match, value)
        if self.default is not None:
            return self.default.evaluate(exchange)
        return ""

    def _withCaptures(self, exchange: Any, match: Any, value: ComplexValue) -> str:
        """
        Evaluate C{value} with C{$1}..C{$9} bound to C{match}'s groups.  Its
        named groups stay set afterwards, as nginx's do; the numbered ones
        are put back, so a map looked up inside C{proxy_pass} does not
        change the C{$1} of the location's own regex.
        """
        if match.named:
            named = dict(exchange.namedCaptures)
            named.update(match.named)
            exchange.namedCaptures = named
        if not value.usesCaptures:
            return value.evaluate(exchange)
        saved = exchange.captures
        exchange.captures = match.captures
        try:
            return value.evaluate(exchange)
        finally:
            exchange.captures = saved

    def _wildcard(self, host: str) -> Optional[ComplexValue]:
        """
        @return: the value of the longest wildcard key matching C{host}:
            C{*.example.com} (or C{.example.com}) forms first, then
            C{www.example.*} forms, as nginx's combined hash searches.
        """
        parts = host.split(".")
        for i in range(1, len(parts)):
            found = self.prefixWildcards.get(".".join(parts[i:]))
            if found is not None:
                return found
        for i in range(len(parts) - 1, 0, -1):
            found = self.suffixWildcards.get(".".join(parts[:i]))
            if found is not None:
                return found
        return None


class MapModule(ProxyModule):
    """
    Declares C{map} and defines each mapped variable before locations are
    compiled.
    """

    name = "map"
    order = 50

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: C{map}.
        """
        return [spec("map", [HTTP], 2, block="raw", parse=_parseMap, multiple=True)]

    def configure(self, compiler: Any) -> None:
        """
        Define every mapped variable.  All names are defined first, so one
        map may use another's variable whichever comes first.
        """
        maps = compiler.httpConf.get("map") or []
        variables = []
        mapped = set()
        for directive in maps:
            name = directive.args[1][1:]
            lowered = name.lower()
            if (
                compiler.variables.defines(lowered)
                and lowered not in mapped
                and lowered not in compiler.captureVariables
            ):
                # nginx: a map may not hide a module's variable ($host).
                raise directive.error(f'the duplicate "{lowered}" variable')
            mapped.add(lowered)
            variable = MapVariable(name)
            compiler.variables.define(name, variable)
            variables.append((directive, variable))
        for directive, variable in variables:
            self._build(directive, variable, compiler)

    def _build(self, directive: Directive, variable: MapVariable, compiler: Any) -> None:
        """
        Compile one map's source, keys and values into C{variable}.
        """
        source = compiler.compileValue(directive.args[0], directive)
        hostnames = any(e.name == "hostnames" and not e.args for e in directive.block or ())
        exact: Dict[str, ComplexValue] = {}
        prefixWildcards: Dict[str, ComplexValue] = {}
        suffixWildcards: Dict[str, ComplexValue] = {}
        regexes: List[Tuple[PcreRegex, ComplexValue]] = []
        default = None
        for entry in directive.block or ():
            if entry.name in ("hostnames", "volatile") and not entry.args:
                continue
            key = entry.name
            if key == "default":
                if default is not None:
                    raise entry.error("duplicate default map parameter")
                default = compiler.compileValue(entry.args[0], entry)
                continue
            if key.startswith("~"):
                caseless = key.startswith("~*")
                pattern = key[2:] if caseless else key[1:]
                try:
                    regex = compilePcre(pattern, caseless)
                except PcreError as e:
                    raise entry.error(f'invalid regex "{pattern}": {e}')
                for group in regex.regex.groupindex:
                    compiler.defineCapture(group, entry)
                regexes.append((regex, compiler.compileValue(entry.args[0], entry)))
                continue
            value = compiler.compileValue(entry.args[0], entry)
            if key.startswith("\\"):
                key = key[1:]
            key = key.lower()
            if hostnames and key.startswith("*."):
                table, key = prefixWildcards, key[2:]
            elif hostnames and key.startswith("."):
                # ".example.com" is both example.com and *.example.com.
                table, key = prefixWildcards, key[1:]
                _add(exact, key, value, entry)
            elif hostnames and key.endswith(".*"):
                table, key = suffixWildcards, key[:-2]
            else:
                table = exact
            _add(table, key, value, entry)
        variable.fill(
            source, exact, prefixWildcards, suffixWildcards, regexes, default, hostnames
        )


def _add(table: Dict[str, ComplexValue], key: str, value: ComplexValue,
         entry: Directive) -> None:
    """
    Add a map key, refusing a repeat (even with the same value) as nginx
    does, since a silently ignored second line is a typo more often than
    not.
    """
    if key in table:
        raise entry.error(f'conflicting parameter "{entry.name}"')
    table[key] = value
