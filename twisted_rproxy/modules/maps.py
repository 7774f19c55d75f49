# -*- test-case-name: tests.unit.test_modules -*-
"""
C{map $source $variable { ... }}: variables whose value depends on another,
compiled at load into a dict lookup and ordered regexes.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config.ast import Directive
from ..config.registry import HTTP, DirectiveSpec, spec
from ..module import ProxyModule
from ..variables import ComplexValue


def _parseMap(directive: Directive) -> Directive:
    if not directive.args[1].startswith("$") or len(directive.args[1]) < 2:
        raise ValueError(f'invalid variable name "{directive.args[1]}"')
    for entry in directive.block or ():
        if entry.block is not None:
            raise entry.error(f'unexpected "{{" in map block')
        if entry.name == "hostnames" or entry.name == "volatile":
            if entry.args:
                raise entry.error(f'invalid number of the map parameters')
            continue
        if len(entry.args) != 1:
            raise entry.error("invalid number of the map parameters")
    return directive


class MapVariable:
    """
    Evaluates one C{map}: exact keys (compared without case, as nginx
    lowercases the source), then regexes in order, then C{default}.
    """

    def __init__(self, source: ComplexValue, exact: Dict[str, ComplexValue],
                 regexes: List[Tuple["re.Pattern[str]", ComplexValue]],
                 default: Optional[ComplexValue], hostnames: bool) -> None:
        self.source = source
        self.exact = exact
        self.regexes = regexes
        self.default = default
        self.hostnames = hostnames

    def __call__(self, exchange: Any) -> Optional[str]:
        """
        @return: the mapped value for this exchange.
        """
        key = self.source.evaluate(exchange)
        found = self.exact.get(key.lower())
        if found is None and self.hostnames:
            found = self._wildcard(key.lower())
        if found is not None:
            return found.evaluate(exchange)
        for pattern, value in self.regexes:
            match = pattern.search(key)
            if match is not None:
                return value.evaluate(exchange)
        if self.default is not None:
            return self.default.evaluate(exchange)
        return ""

    def _wildcard(self, host: str) -> Optional[ComplexValue]:
        parts = host.split(".")
        for i in range(1, len(parts)):
            found = self.exact.get("*." + ".".join(parts[i:]))
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
        map may use another's variable.
        """
        maps = compiler.httpConf.get("map") or []
        for directive in maps:
            compiler.variables.define(directive.args[1][1:], lambda e: "")
        for directive in maps:
            compiler.variables.define(directive.args[1][1:], self._build(directive, compiler))

    def _build(self, directive: Directive, compiler: Any) -> MapVariable:
        source = compiler.compileValue(directive.args[0], directive)
        exact: Dict[str, ComplexValue] = {}
        regexes = []
        default = None
        hostnames = False
        for entry in directive.block or ():
            if entry.name == "hostnames":
                hostnames = True
                continue
            if entry.name == "volatile":
                continue
            value = compiler.compileValue(entry.args[0], entry)
            key = entry.name
            if key == "default":
                if default is not None:
                    raise entry.error('duplicate default map parameter')
                default = value
            elif key.startswith("~"):
                flags = re.IGNORECASE if key.startswith("~*") else 0
                pattern = key[2:] if flags else key[1:]
                try:
                    regexes.append((re.compile(pattern.replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!"), flags), value))
                except re.error as e:
                    raise entry.error(f'invalid regex "{pattern}": {e}')
            else:
                if key.startswith("\\"):
                    key = key[1:]
                if hostnames and key.startswith("."):
                    exact.setdefault(key[1:].lower(), value)
                    key = "*" + key
                exact.setdefault(key.lower(), value)
        return MapVariable(source, exact, regexes, default, hostnames)
