"""
A team's own feature, shipped as a plugin outside twisted_rproxy: the
C{x_team_header NAME VALUE;} directive (location context, repeatable)
adds a response header to every response of its location, and the
C{$team_name} variable names the team.  Nothing in the core knows about
it; C{twisted.plugin} finds this module on the path.
"""

from typing import Any, List, Sequence, Tuple

from zope.interface import implementer

from twisted_rproxy.config.ast import Directive
from twisted_rproxy.config.registry import LOCATION, DirectiveSpec, spec
from twisted_rproxy.interfaces import IResponseFilter
from twisted_rproxy.module import ProxyModule
from twisted_rproxy.variables import ComplexValue, VariableSpec, simple


@implementer(IResponseFilter)
class TeamHeaderFilter:
    """
    Adds the configured headers to every response head.
    """

    def __init__(self, headers: Sequence[Tuple[bytes, ComplexValue]]) -> None:
        """Keep the compiled (name, value) pairs."""
        self.headers = headers

    def responseHeaders(self, exchange: Any, status: int, headers: List[Any]) -> List[Any]:
        """@return: C{headers} plus this location's team headers."""
        for name, value in self.headers:
            headers.append((name, value.evaluate(exchange).encode("latin-1")))
        return headers


class TeamHeaderModule(ProxyModule):
    """
    Declares C{x_team_header} and C{$team_name}.
    """

    name = "team_header"
    order = 350

    def directives(self) -> Sequence[DirectiveSpec]:
        """@return: C{x_team_header}, kept as written to report errors at it."""
        return [spec("x_team_header", [LOCATION], 2, parse=lambda d: d, multiple=True)]

    def variables(self) -> Sequence[VariableSpec]:
        """@return: C{$team_name}."""
        return [simple("team_name", lambda exchange: "platform")]

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """Install the filter where the directive is set."""
        entries: List[Directive] = location.conf.get("x_team_header") or []
        if entries:
            location.responseFilters.append(
                TeamHeaderFilter(
                    [(d.args[0].encode("latin-1"), compiler.compileValue(d.args[1], d))
                     for d in entries]
                )
            )


teamHeader = TeamHeaderModule()
