# -*- test-case-name: tests.unit.test_plugins -*-
"""
Finding feature modules: every L{IProxyModule} in the C{twisted.plugins}
namespace, so a team's module dropped into C{twisted/plugins/} is loaded
with no other change.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.plugin import getCache

from .interfaces import IProxyModule


class PluginError(Exception):
    """
    A plugin module failed to import, or two modules share a name.
    """


def loadModules(package: Any = None) -> List[Any]:
    """
    Load every L{IProxyModule} plugin.

    Unlike C{getPlugins}, which logs and skips a plugin that fails to
    import, a broken plugin here is an error naming it: a proxy that
    silently lacks a feature its config relies on is worse than one that
    refuses to start.

    @param package: the plugin package to scan (default
        C{twisted.plugins}); tests pass their own.
    @raise PluginError: for an import failure or a duplicate name.
    """
    if package is None:
        import twisted.plugins as package  # type: ignore[no-redef]
    found: dict = {}
    for moduleName, dropin in sorted(getCache(package).items()):
        for plugin in dropin.plugins:
            if IProxyModule not in plugin.provided:
                continue
            try:
                module = plugin.load()
            except Exception as e:
                raise PluginError(
                    f'plugin "{plugin.name}" in {dropin.moduleName} failed to load: {e!r}'
                ) from e
            _add(found, module, dropin.moduleName)
    if "http_core" not in found:
        raise PluginError(
            "the built-in modules were not found in twisted.plugins; is "
            "twisted_rproxy installed (pip install .)?"
        )
    return list(found.values())


def _add(found: dict, module: Any, where: Optional[str]) -> None:
    if module.name in found:
        raise PluginError(
            f'two modules are named "{module.name}" ({found[module.name]!r} and '
            f"{module!r} in {where})"
        )
    found[module.name] = module


def builtinModules(reactor: Any = None) -> List[Any]:
    """
    @return: new instances of the built-in modules, for embedding without a
        plugin scan and for tests.
    """
    from .modules.accesslog import AccessLogModule
    from .modules.core import HTTPCoreModule
    from .modules.errorpage import ErrorPageModule
    from .modules.headers import HeadersModule
    from .modules.maps import MapModule
    from .modules.proxy import HTTPProxyModule
    from .modules.rewrite import RewriteModule
    from .modules.upstream import UpstreamModule

    return [
        HTTPCoreModule(),
        MapModule(),
        UpstreamModule(),
        RewriteModule(),
        ErrorPageModule(),
        HeadersModule(),
        HTTPProxyModule(),
        AccessLogModule(),
    ]
