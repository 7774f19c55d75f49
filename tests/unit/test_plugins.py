"""
Tests for L{twisted_rproxy.plugins}: feature modules are found through
C{twisted.plugins} with no change to the core, the built-ins load exactly
like a team's plugin, and a plugin that cannot import, clashes or
misbehaves stops start-up with an error naming it.

The team plugins live in C{tests/plugintest/}; each test copies one to a
temporary directory and adds its C{twisted/plugins} to
C{twisted.plugins.__path__}, which is what Twisted does at import for every
C{sys.path} entry holding such a directory.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import List

import twisted.plugins
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from tests.unit.configsupport import ConfigTestCase
from twisted_rproxy.config.compiler import Compiler
from twisted_rproxy.config.errors import ConfigError
from twisted_rproxy.interfaces import IProxyModule
from twisted_rproxy.plugins import PluginError, builtinModules, loadModules

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugintest")

BUILTIN_NAMES = {
    "http_core", "map", "upstream", "rewrite", "error_page", "headers", "proxy", "log",
    "upstream_least_conn", "upstream_ip_hash", "upstream_hash", "upstream_random",
    "http_ssl", "websocket",
    "http2",
    "proxy_ssl",
}


class PluginTestCase(ConfigTestCase):
    """
    Installs fixture plugin directories for the length of one test.
    """

    def installPlugins(self, fixture: str) -> str:
        """
        Copy C{tests/plugintest/FIXTURE} under the prefix and make its
        C{twisted/plugins} part of the C{twisted.plugins} package until the
        test ends.

        @return: the copy's C{sys.path} entry.
        """
        entry = os.path.join(self.prefix, "pythonpath-" + fixture)
        shutil.copytree(os.path.join(FIXTURES, fixture), entry)
        pluginDir = os.path.join(entry, "twisted", "plugins")
        names = [f[:-3] for f in os.listdir(pluginDir) if f.endswith(".py")]
        twisted.plugins.__path__.append(pluginDir)

        def uninstall() -> None:
            """Forget the directory and the modules imported from it."""
            twisted.plugins.__path__.remove(pluginDir)
            for name in names:
                sys.modules.pop("twisted.plugins." + name, None)

        self.addCleanup(uninstall)
        return entry


class BuiltinTests(PluginTestCase):
    """
    The built-in modules, found the way any plugin is.
    """

    def test_builtinsDiscovered(self) -> None:
        """
        L{loadModules} finds every built-in through C{twisted.plugins},
        each providing L{IProxyModule} and C{IPlugin}.
        """
        modules = loadModules()
        self.assertEqual({m.name for m in modules}, BUILTIN_NAMES)
        for module in modules:
            verifyObject(IProxyModule, module)
            self.assertTrue(IPlugin.providedBy(module))

    def test_builtinModulesFresh(self) -> None:
        """
        L{builtinModules} makes new instances each call, with the same
        names as the discovered ones.
        """
        first, second = builtinModules(), builtinModules()
        self.assertEqual([m.name for m in first], [m.name for m in second])
        self.assertEqual({m.name for m in first}, BUILTIN_NAMES)
        for a, b in zip(first, second):
            self.assertIsNot(a, b)

    def test_discoveredCompile(self) -> None:
        """
        A config compiles with the discovered modules as with the
        built-in list.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080; location / { return 200 ok; } }",
            modules=loadModules(),
        )
        self.assertEqual(self.body(config), "ok")


class TeamPluginTests(PluginTestCase):
    """
    A team's plugin module adds a directive, a variable and a response
    filter with no change to the core.
    """

    def test_discovered(self) -> None:
        """
        The fixture plugin is found beside the built-ins.
        """
        self.installPlugins("feature")
        modules = loadModules()
        self.assertEqual({m.name for m in modules}, BUILTIN_NAMES | {"team_header"})

    def test_directiveWorks(self) -> None:
        """
        Its directive is accepted where it declared it, and its filter adds
        the header (with its own variable and core ones) to responses.
        """
        self.installPlugins("feature")
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080;\n"
            " location /team {\n"
            "  x_team_header X-Team $team_name;\n"
            "  x_team_header X-Team-Host team-$host;\n"
            "  return 200 ok;\n"
            " }\n"
            " location / { return 200 plain; }\n"
            "}",
            modules=loadModules(),
        )
        response = self.get(config, "/team/x", host="a.example")
        self.assertEqual(response.header("X-Team"), "platform")
        self.assertEqual(response.header("X-Team-Host"), "team-a.example")
        self.assertIsNone(self.get(config, "/").header("X-Team"))

    def test_directiveRules(self) -> None:
        """
        The core enforces the plugin's declaration: context, arity, and
        unknown variables, each at file:line.
        """
        self.installPlugins("feature")
        modules = loadModules()
        self.assertEqual(
            self.httpError("server { x_team_header A b; }", modules=modules),
            f'"x_team_header" directive is not allowed here in {self.confPath}:5',
        )
        self.assertEqual(
            self.httpError("server { location / { x_team_header A; } }", modules=modules),
            f'invalid number of arguments in "x_team_header" directive in {self.confPath}:5',
        )
        self.assertEqual(
            self.httpError("server { location / {\n x_team_header A $nope;\n} }", modules=modules),
            f'unknown "nope" variable in {self.confPath}:6',
        )

    def test_unknownWithoutThePlugin(self) -> None:
        """
        Without the plugin installed the directive is unknown.
        """
        self.assertEqual(
            self.httpError("server { location / { x_team_header A b; } }", modules=loadModules()),
            f'unknown directive "x_team_header" in {self.confPath}:5',
        )


class BrokenPluginTests(PluginTestCase):
    """
    Plugins that cannot be used stop start-up, naming themselves.
    """

    def test_importFails(self) -> None:
        """
        A plugin module raising on import is a L{PluginError} naming the
        module, its file and the exception, not a silently missing
        feature (C{getPlugins} would only log it).
        """
        entry = self.installPlugins("broken")
        error = self.assertRaises(PluginError, loadModules)
        message = str(error)
        self.assertIn('plugin module "twisted.plugins.rproxy_broken"', message)
        self.assertIn(os.path.join(entry, "twisted", "plugins", "rproxy_broken.py"), message)
        self.assertIn("TEAM_TOKEN is not set", message)
        # getCache logged the failure as it scanned; that is expected here.
        self.flushLoggedErrors(RuntimeError)

    def test_importFailsEveryTime(self) -> None:
        """
        The error repeats on the next scan (with the dropin cache written
        by the first), so a restart does not start without the plugin.
        """
        self.installPlugins("broken")
        self.assertRaises(PluginError, loadModules)
        self.assertRaises(PluginError, loadModules)
        self.flushLoggedErrors(RuntimeError)

    def test_clashingDirective(self) -> None:
        """
        A plugin re-declaring a built-in directive is refused when the
        compiler is built, naming both modules.
        """
        self.installPlugins("clash")
        error = self.assertRaises(ConfigError, Compiler, loadModules())
        self.assertEqual(
            str(error),
            'directive "add_header" is declared by both module "headers" and module "team_clash"',
        )

    def test_duplicateModuleName(self) -> None:
        """
        Two plugins with one module name.
        """
        self.writeFile(
            "dupe/twisted/plugins/rproxy_dupe.py",
            "from twisted_rproxy.module import ProxyModule\n"
            "class Dupe(ProxyModule):\n"
            "    '''Claims a built-in's name.'''\n"
            "    name = 'proxy'\n"
            "dupe = Dupe()\n",
        )
        self.addPluginDir(os.path.join(self.prefix, "dupe", "twisted", "plugins"), ["rproxy_dupe"])
        error = self.assertRaises(PluginError, loadModules)
        self.assertIn('two modules are named "proxy"', str(error))
        self.assertIn("twisted.plugins.rproxy_dupe", str(error))

    def test_notAModule(self) -> None:
        """
        An object claiming L{IProxyModule} without its methods.
        """
        self.writeFile(
            "bad/twisted/plugins/rproxy_hollow.py",
            "from zope.interface import implementer\n"
            "from twisted.plugin import IPlugin\n"
            "from twisted_rproxy.interfaces import IProxyModule\n"
            "@implementer(IPlugin, IProxyModule)\n"
            "class Hollow:\n"
            "    '''Declares the interface, implements nothing.'''\n"
            "    name = 'hollow'\n"
            "    order = 1\n"
            "hollow = Hollow()\n",
        )
        self.addPluginDir(os.path.join(self.prefix, "bad", "twisted", "plugins"), ["rproxy_hollow"])
        error = self.assertRaises(PluginError, loadModules)
        self.assertIn('plugin "hollow" in twisted.plugins.rproxy_hollow is not a valid IProxyModule', str(error))

    def test_builtinsMissing(self) -> None:
        """
        Scanning a package without the built-ins says how to install them.
        """
        root = os.path.join(self.prefix, "pkgroot")
        self.writeFile("pkgroot/rproxy_emptyplugins/__init__.py", '"""No plugins."""\n')
        sys.path.insert(0, root)
        self.addCleanup(sys.path.remove, root)
        self.addCleanup(sys.modules.pop, "rproxy_emptyplugins", None)
        import rproxy_emptyplugins  # type: ignore[import-not-found]

        error = self.assertRaises(PluginError, loadModules, rproxy_emptyplugins)
        self.assertIn("the built-in modules were not found", str(error))

    def test_staleBuiltinsFileFilledIn(self) -> None:
        """
        A plugin file that registers only some built-ins (an installed copy
        older than the running code) does not hide the others: they come
        from the running package.
        """
        root = os.path.join(self.prefix, "staleroot")
        self.writeFile("staleroot/rproxy_staleplugins/__init__.py", '"""Plugins."""\n')
        self.writeFile(
            "staleroot/rproxy_staleplugins/rproxy_builtins.py",
            "from twisted_rproxy.modules.core import HTTPCoreModule\n"
            "httpCore = HTTPCoreModule()\n",
        )
        sys.path.insert(0, root)
        self.addCleanup(sys.path.remove, root)
        for name in ("rproxy_staleplugins", "rproxy_staleplugins.rproxy_builtins"):
            self.addCleanup(sys.modules.pop, name, None)
        import rproxy_staleplugins  # type: ignore[import-not-found]

        self.assertEqual({m.name for m in loadModules(rproxy_staleplugins)}, BUILTIN_NAMES)

    def addPluginDir(self, pluginDir: str, names: List[str]) -> None:
        """
        Add a directory written by the test to C{twisted.plugins} until the
        test ends.
        """
        twisted.plugins.__path__.append(pluginDir)

        def uninstall() -> None:
            """Forget the directory and its modules."""
            twisted.plugins.__path__.remove(pluginDir)
            for name in names:
                sys.modules.pop("twisted.plugins." + name, None)

        self.addCleanup(uninstall)

