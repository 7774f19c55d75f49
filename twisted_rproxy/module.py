# -*- test-case-name: tests.unit.test_plugins -*-
"""
A base class for feature plugins, so a module only writes the hooks it
needs.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.plugin import IPlugin
from zope.interface import implementer

from .config.registry import DirectiveSpec
from .interfaces import IProxyModule
from .variables import VariableSpec


@implementer(IPlugin, IProxyModule)
class ProxyModule:
    """
    An L{IProxyModule} with no directives, variables or handlers; subclass
    it and override what the feature needs.  It also provides C{IPlugin},
    which C{twisted.plugin} requires of anything it discovers.
    """

    name = "unnamed"
    order = 500

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: no directives.
        """
        return ()

    def variables(self) -> Sequence[VariableSpec]:
        """
        @return: no variables.
        """
        return ()

    def configure(self, compiler: Any) -> None:
        """
        No global objects to build.
        """

    def configureServer(self, server: Any, compiler: Any) -> None:
        """
        No server-level filters.
        """

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        No location filters or handler.
        """

    def configureListener(self, listener: Any, compiler: Any) -> None:
        """
        No listener settings.  Called, when a module has it, once per
        listening socket after every server is built (an optional hook
        beyond L{IProxyModule}, so older plugins still verify): the
        C{ssl} module attaches its TLS contexts here.

        @param listener: a L{twisted_rproxy.config.model.Listener}.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
