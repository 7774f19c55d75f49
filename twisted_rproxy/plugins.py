# -*- test-case-name: tests.unit.test_plugins -*-
"""
Finding feature modules: every L{IProxyModule} in the C{twisted.plugins}
namespace, so a team's module dropped into C{twisted/plugins/} is loaded
with no other change.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List, Optional

from twisted.plugin import getCache
from twisted.python.modules import getModule
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

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
    refuses to start.  C{getCache} leaves a module that fails to import
    out of its cache, so every C{rproxy_*.py} module of the package (the
    naming the plugin how-to asks for) missing from the cache is imported
    here again to report why; other packages' broken plugins stay Twisted's
    business.

    A built-in that the scan did not find is taken from this package
    itself: an installed copy of C{rproxy_builtins.py} older than the code
    running (a checkout run beside an earlier install, whose plugin file
    shadows the checkout's) would otherwise hide a newer built-in.

    @param package: the plugin package to scan (default
        C{twisted.plugins}); tests pass their own.
    @raise PluginError: for an import failure, an object that does not
        provide L{IProxyModule}, or a duplicate name.
    """
    if package is None:
        import twisted.plugins as package  # type: ignore[no-redef]
    cache = getCache(package)
    _checkImports(package, cache)
    found: dict = {}
    for moduleName, dropin in sorted(cache.items()):
        for plugin in dropin.plugins:
            if IProxyModule not in plugin.provided:
                continue
            try:
                module = plugin.load()
            except Exception as e:
                raise PluginError(
                    f'plugin "{plugin.name}" in {dropin.moduleName} failed to load: {e!r}'
                ) from e
            try:
                verifyObject(IProxyModule, module)
            except Invalid as e:
                raise PluginError(
                    f'plugin "{plugin.name}" in {dropin.moduleName} is not a '
                    f"valid IProxyModule: {e}"
                ) from e
            _add(found, module, dropin.moduleName)
    if "http_core" not in found:
        raise PluginError(
            "the built-in modules were not found in twisted.plugins; is "
            "twisted_rproxy installed (pip install .)?"
        )
    for module in builtinModules():
        found.setdefault(module.name, module)
    return list(found.values())


def _checkImports(package: Any, cache: Dict[str, Any]) -> None:
    """
    Raise for the first C{rproxy_*} plugin module of C{package} that
    C{getCache} could not import.

    @raise PluginError: naming the module and the exception it raised.
    """
    for pluginModule in getModule(package.__name__).iterModules():
        key = pluginModule.name.split(".")[-1]
        if not key.startswith("rproxy_") or key in cache:
            continue
        try:
            importlib.import_module(pluginModule.name)
        except Exception as e:
            raise PluginError(
                f'plugin module "{pluginModule.name}" '
                f"({pluginModule.filePath.path}) failed to import: {e!r}"
            ) from e
        raise PluginError(
            f'plugin module "{pluginModule.name}" ({pluginModule.filePath.path}) '
            "could not be scanned for plugins"
        )


def _add(found: dict, module: Any, where: Optional[str]) -> None:
    """
    Add C{module} to C{found} by name.

    @raise PluginError: the name is taken, naming both modules.
    """
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
    from .modules.balancers import HashModule, IPHashModule, LeastConnModule, RandomModule
    from .modules.core import HTTPCoreModule
    from .modules.errorpage import ErrorPageModule
    from .modules.headers import HeadersModule
    from .modules.maps import MapModule
    from .modules.proxy import HTTPProxyModule
    from .modules.rewrite import RewriteModule
    from .modules.ssl import SSLModule
    from .modules.upstream import UpstreamModule
    from .modules.websocket import WebSocketModule
    from .modules.http2 import HTTP2Module
    from .modules.proxyssl import ProxySSLModule

    return [
        HTTPCoreModule(),
        MapModule(),
        UpstreamModule(),
        LeastConnModule(),
        IPHashModule(),
        HashModule(),
        RandomModule(),
        RewriteModule(),
        ErrorPageModule(),
        HeadersModule(),
        HTTPProxyModule(),
        AccessLogModule(),
        SSLModule(),
        WebSocketModule(),
        HTTP2Module(),
        ProxySSLModule(),
    ]
