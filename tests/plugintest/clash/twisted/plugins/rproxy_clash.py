"""
A team plugin declaring a directive a built-in module already owns: start-up
must fail naming both modules.
"""

from typing import Sequence

from twisted_rproxy.config.registry import LOCATION, DirectiveSpec, spec
from twisted_rproxy.module import ProxyModule


class ClashingModule(ProxyModule):
    """
    Re-declares C{add_header}.
    """

    name = "team_clash"

    def directives(self) -> Sequence[DirectiveSpec]:
        """@return: a second C{add_header}."""
        return [spec("add_header", [LOCATION], 2)]


clash = ClashingModule()
