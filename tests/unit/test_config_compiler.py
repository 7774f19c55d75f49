"""
Tests for L{twisted_rproxy.config.compiler}, L{twisted_rproxy.config.registry}
and the core directives: every config mistake must stop start-up with nginx's
own words at the right FILE:LINE, values must inherit from outer to inner
blocks by nginx's rules, and the configs people already have (a stock
nginx.conf, conf.d files, the issue's example) must load as written.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, List, Sequence

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.configsupport import ConfigTestCase, httpConfig
from twisted_rproxy.config.ast import Directive
from twisted_rproxy.config.compiler import Compiler
from twisted_rproxy.config.errors import ConfigError
from twisted_rproxy.config.registry import (
    HTTP,
    LOCATION,
    SERVER,
    UPSTREAM,
    DirectiveRegistry,
    spec,
)
from twisted_rproxy.module import ProxyModule
from twisted_rproxy.modules.rewrite import ReturnFilter
from twisted_rproxy.plugins import builtinModules
from twisted_rproxy.variables import VariableSpec, simple

from tests.issue_example import ISSUE_EXAMPLE


class ErrorTests(ConfigTestCase):
    """
    Each class of config error, worded as nginx words it, located at the
    directive's file and line.  L{httpConfig} puts its body on line 5.
    """

    def assertHTTPError(self, body: str, message: str, line: int = 5) -> None:
        """
        Compiling C{body} inside C{http {}} fails with exactly C{message}
        at nginx.conf:C{line}.
        """
        error = self.configError(httpConfig(body))
        self.assertEqual(error.message, message)
        self.assertEqual((error.filename, error.line), (self.confPath, line))
        self.assertEqual(str(error), f"{message} in {self.confPath}:{line}")

    def test_unknownDirective(self) -> None:
        """
        A directive no module declares is refused by name.
        """
        self.assertHTTPError(
            "server {\n listen 127.0.0.1:8080;\n bogus_directive on;\n}",
            'unknown directive "bogus_directive"',
            line=7,
        )

    def test_notAllowedHere(self) -> None:
        """
        A known directive in a context its module did not declare for it.
        """
        self.assertHTTPError(
            "server { location / { listen 8080; } }",
            '"listen" directive is not allowed here',
        )
        self.assertHTTPError("proxy_pass http://127.0.0.1:1;", '"proxy_pass" directive is not allowed here')

    def test_mainOnlyInHTTP(self) -> None:
        """
        A main-context directive written inside C{http}.
        """
        self.assertHTTPError("worker_processes 2;", '"worker_processes" directive is not allowed here')

    def test_invalidNumberOfArguments(self) -> None:
        """
        Too few or too many arguments for the declared arity.
        """
        self.assertHTTPError(
            "server { location / { proxy_pass; } }",
            'invalid number of arguments in "proxy_pass" directive',
        )
        self.assertHTTPError(
            "client_max_body_size 1m 2m;",
            'invalid number of arguments in "client_max_body_size" directive',
        )
        self.assertHTTPError(
            "server { location / { proxy_buffers 16 16k 1; } }",
            'invalid number of arguments in "proxy_buffers" directive',
        )

    def test_invalidSize(self) -> None:
        """
        A size that is not a number with an optional k/m/g suffix.
        """
        self.assertHTTPError(
            "client_max_body_size 10q;",
            'invalid value "10q" in "client_max_body_size" directive',
        )

    def test_invalidTime(self) -> None:
        """
        A time with an unknown unit.
        """
        self.assertHTTPError(
            "server { proxy_read_timeout 10x; }",
            'invalid value "10x" in "proxy_read_timeout" directive',
        )

    def test_invalidFlag(self) -> None:
        """
        A flag other than on/off (nginx accepts their case variants only).
        """
        self.assertHTTPError(
            "server { location / { proxy_buffering maybe; } }",
            'invalid value "maybe" in "proxy_buffering" directive, it must be "on" or "off"',
        )

    def test_invalidNumber(self) -> None:
        """
        A count that is not a plain decimal number.
        """
        self.assertHTTPError(
            "keepalive_requests -5;",
            'invalid value "-5" in "keepalive_requests" directive',
        )

    def test_duplicateScalar(self) -> None:
        """
        A directive that takes one value, set twice in one block.
        """
        self.assertHTTPError(
            "server {\n server_tokens off;\n server_tokens on;\n}",
            '"server_tokens" directive is duplicate',
            line=7,
        )

    def test_repeatableIsNotDuplicate(self) -> None:
        """
        Repeatable directives (add_header, proxy_set_header) may repeat.
        """
        self.compileHTTP(
            "server { listen 127.0.0.1:8080; add_header A 1; add_header B 2;"
            " location / { proxy_set_header A 1; proxy_set_header B 2; } }"
        )

    def test_duplicateHTTP(self) -> None:
        """
        Two C{http} blocks.
        """
        error = self.configError("events {}\nhttp {}\nhttp {}\n")
        self.assertEqual(str(error), f'"http" directive is duplicate in {self.confPath}:3')

    def test_duplicateDefaultServer(self) -> None:
        """
        Two servers claiming default_server for one address; the second is
        reported, with the address as nginx prints it.
        """
        self.assertHTTPError(
            "server { listen 8080 default_server; }\n"
            "server { listen 0.0.0.0:8080 default_server; }",
            "a duplicate default server for 0.0.0.0:8080",
            line=6,
        )

    def test_defaultServerPerAddress(self) -> None:
        """
        default_server on different addresses is no conflict.
        """
        self.compileHTTP(
            "server { listen 127.0.0.1:8080 default_server; }\n"
            "server { listen 127.0.0.1:8081 default_server; }"
        )

    def test_duplicateListenInOneServer(self) -> None:
        """
        The same address twice in one server.
        """
        self.assertHTTPError(
            "server {\n listen 127.0.0.1:8080;\n listen 127.0.0.1:8080;\n}",
            "a duplicate listen 127.0.0.1:8080",
            line=7,
        )

    def test_invalidListenPort(self) -> None:
        """
        A port out of range.
        """
        self.assertHTTPError(
            "server { listen 127.0.0.1:99999; }",
            'invalid port in "127.0.0.1:99999" of the "listen" directive',
        )

    def test_unknownVariableInProxySetHeader(self) -> None:
        """
        proxy_set_header naming a variable no module provides.
        """
        self.assertHTTPError(
            "server { location / {\n proxy_pass http://127.0.0.1:1;\n"
            " proxy_set_header X-Foo $foo;\n} }",
            'unknown "foo" variable',
            line=7,
        )

    def test_unknownVariableInInheritedProxySetHeader(self) -> None:
        """
        An inherited proxy_set_header is reported where it was written.
        """
        self.assertHTTPError(
            "proxy_set_header X-Foo $foo;\n"
            "server { location / { proxy_pass http://127.0.0.1:1; } }",
            'unknown "foo" variable',
        )

    def test_unknownVariableInReturn(self) -> None:
        """
        A return text with an unknown variable, in a location and at
        server level.
        """
        self.assertHTTPError(
            'server { location / { return 200 "x $foo"; } }', 'unknown "foo" variable'
        )
        self.assertHTTPError('server { return 302 http://$foo/; }', 'unknown "foo" variable')

    def test_unknownVariableInAddHeader(self) -> None:
        """
        An add_header value with an unknown variable.
        """
        self.assertHTTPError("server { add_header X ${foo}bar; }", 'unknown "foo" variable')

    def test_unknownVariableInUnusedLogFormat(self) -> None:
        """
        A log_format is checked even when no access_log uses it, as nginx
        does.
        """
        self.assertHTTPError("log_format mine '$remote_addr $foo';", 'unknown "foo" variable')

    def test_unknownVariableInAccessLogCondition(self) -> None:
        """
        The C{if=} condition of access_log is a value with variables too.
        """
        self.assertHTTPError(
            "server { access_log logs/a.log combined if=$foo; }", 'unknown "foo" variable'
        )

    def test_malformedVariable(self) -> None:
        """
        A bare C{$} and an unclosed C{$\\{} are refused, not sent as text.
        """
        self.assertHTTPError(
            'server { return 200 "costs 5$"; }', 'invalid variable name in "costs 5$"'
        )
        self.assertHTTPError(
            'server { return 200 "${host"; }',
            'the closing bracket in "host" variable is missing',
        )

    def test_zeroIsNotACapture(self) -> None:
        """
        Only C{$1}..C{$9} are captures: C{$0x} is a variable named C{0x}.
        """
        self.assertHTTPError(
            'server { location ~ (a) { return 200 "$0x"; } }', 'unknown "0x" variable'
        )

    def test_duplicateVariable(self) -> None:
        """
        A map or a regex named group may not hide a module's variable.
        """
        self.assertHTTPError("map $uri $host { default a; }", 'the duplicate "host" variable')
        self.assertHTTPError(
            "server { location ~ ^/(?<uri>.*)$ { } }", 'the duplicate "uri" variable'
        )
        self.assertHTTPError("map $uri $m {\n ~(?<Host>.) a;\n}", 'the duplicate "host" variable', line=6)

    def test_sharedCaptureNames(self) -> None:
        """
        Several regexes may name a group alike, and two maps may define one
        variable (the later wins), as in nginx.
        """
        config = self.compileHTTP(
            "map $uri $m { default first; }\nmap $uri $m { default second; }\n"
            "server { listen 127.0.0.1:8080;\n"
            ' location ~ ^/a/(?<id>.+)$ { return 200 "a $id $m"; }\n'
            ' location ~ ^/b/(?<id>.+)$ { return 200 "b $id"; }\n}'
        )
        self.assertEqual(self.body(config, "/a/1"), "a 1 second")
        self.assertEqual(self.body(config, "/b/2"), "b 2")

    def test_unknownLogFormat(self) -> None:
        """
        access_log naming a format never declared.
        """
        self.assertHTTPError(
            "server { access_log logs/a.log nosuchformat; }",
            'unknown log format "nosuchformat"',
        )

    def test_duplicateLogFormat(self) -> None:
        """
        Two log_formats with one name.
        """
        self.assertHTTPError(
            "log_format a '$uri';\nlog_format a '$uri';", 'duplicate "log_format" name "a"', line=6
        )

    def test_unopenableAccessLog(self) -> None:
        """
        An access log that cannot be opened is an error at load (nginx
        opens log files when it reads the config).
        """
        missing = os.path.join(self.prefix, "no", "such", "dir", "a.log")
        self.assertHTTPError(
            f"server {{ access_log {missing}; }}",
            f'open() "{missing}" failed (No such file or directory)',
        )

    def test_hostNotFoundInUpstream(self) -> None:
        """
        A proxy_pass or upstream server whose name does not resolve.
        """
        self.assertHTTPError(
            "server { location / { proxy_pass http://no-such-host.invalid; } }",
            'host not found in upstream "no-such-host.invalid"',
        )
        self.assertHTTPError(
            "upstream u {\n server no-such-host.invalid:81;\n}",
            'host not found in upstream "no-such-host.invalid:81"',
            line=6,
        )

    def test_proxyPassURIInRegexLocation(self) -> None:
        """
        proxy_pass with a URI part where nginx cannot know what to replace.
        """
        self.assertHTTPError(
            "server { location ~ ^/x { proxy_pass http://127.0.0.1:1/foo; } }",
            '"proxy_pass" cannot have URI part in location given by regular expression, '
            'or inside named location, or inside "if" statement, or inside '
            '"limit_except" block',
        )

    def test_duplicateLocation(self) -> None:
        """
        Two locations with one pattern in one server.
        """
        self.assertHTTPError(
            "server {\n location /a { }\n location /a { }\n}", 'duplicate location "/a"', line=7
        )

    def test_duplicateUpstream(self) -> None:
        """
        Two upstream blocks with one name.
        """
        self.assertHTTPError(
            "upstream u { server 127.0.0.1:1; }\nupstream u { server 127.0.0.1:2; }",
            'duplicate upstream "u"',
            line=6,
        )

    def test_mapErrors(self) -> None:
        """
        The map mistakes nginx refuses, each at the offending line.
        """
        self.assertHTTPError("map $uri mapped { default a; }", 'invalid variable name "mapped"')
        self.assertHTTPError(
            "map $uri $m {\n a;\n}", "invalid number of the map parameters", line=6
        )
        self.assertHTTPError(
            "map $uri $m {\n default a;\n default b;\n}",
            "duplicate default map parameter",
            line=7,
        )
        self.assertHTTPError(
            "map $uri $m {\n /a 1;\n /A 2;\n}", 'conflicting parameter "/A"', line=7
        )
        self.assertHTTPError("map $uri $m {\n /a $nope;\n}", 'unknown "nope" variable', line=6)
        self.assertHTTPError("map $nope $m { default a; }", 'unknown "nope" variable')
        error = self.httpError("map $uri $m {\n ~(unclosed 1;\n}")
        self.assertIn('invalid regex "(unclosed"', error)
        self.assertTrue(error.endswith(f"in {self.confPath}:6"), error)

    def test_errorInIncludedFile(self) -> None:
        """
        An error in an included file names that file and its line.
        """
        included = self.writeFile("conf.d/site.conf", "server {\n    listen 8080;\n    nope;\n}\n")
        error = self.configError("events {}\nhttp {\n    include conf.d/*.conf;\n}\n")
        self.assertEqual(str(error), f'unknown directive "nope" in {included}:3')

    def test_globalDirectiveDuplicate(self) -> None:
        """
        A C{-g} directive the file also sets is a duplicate, as in nginx.
        """
        error = self.configError(
            "pid logs/a.pid;\nevents {}\n", globalDirectives="pid logs/b.pid;"
        )
        self.assertEqual(str(error), f'"pid" directive is duplicate in {self.confPath}:1')

    def test_globalDirectiveError(self) -> None:
        """
        A mistake in C{-g} text is located in "command line".
        """
        error = self.configError("events {}\n", globalDirectives="daemon maybe;")
        self.assertEqual(
            str(error),
            'invalid value "maybe" in "daemon" directive, it must be "on" or "off" '
            "in command line:1",
        )

    def test_workerShutdownTimeout(self) -> None:
        """
        C{worker_shutdown_timeout} is read (the graceful stop's deadline),
        not ignored with a notice; unset it is C{None} (the service's own
        bound); a bad time is an error at its file:line.
        """
        config = self.compile("worker_shutdown_timeout 3s;\nevents {}\n")
        self.assertEqual(config.mainConf.get("worker_shutdown_timeout"), 3.0)
        self.assertEqual([n for n in config.notices if "worker_shutdown_timeout" in n], [])
        self.assertIsNone(self.compile("events {}\n").mainConf.get("worker_shutdown_timeout"))
        error = self.configError("events {}\nworker_shutdown_timeout soon;\n")
        self.assertEqual(
            str(error),
            f'invalid value "soon" in "worker_shutdown_timeout" directive in {self.confPath}:2')

    def test_conflictingServerNameIsAWarning(self) -> None:
        """
        One name on one address in two servers is nginx's warning, not an
        error; the first server keeps the name.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080; server_name a.example; return 200 first; }\n"
            "server { listen 127.0.0.1:8080; server_name a.example; return 200 second; }"
        )
        self.assertEqual(len(config.warnings), 1)
        self.assertIn('conflicting server name "a.example"', config.warnings[0])
        self.assertIn(f"{self.confPath}:6", config.warnings[0])
        self.assertEqual(self.body(config, host="a.example"), "first")

    def test_sameNameOnOtherAddressIsFine(self) -> None:
        """
        The same name on two different addresses is no conflict.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080; server_name a.example; }\n"
            "server { listen 127.0.0.1:8081; server_name a.example; }"
        )
        self.assertEqual(config.warnings, [])


class _Declares(ProxyModule):
    """
    A module declaring what it is given, for registry clash tests.
    """

    def __init__(self, name: str, specs: Sequence[Any] = (), variables: Sequence[Any] = ()) -> None:
        """Remember the name, directives and variables to declare."""
        self.name = name
        self._specs = list(specs)
        self._variables = list(variables)

    def directives(self) -> Sequence[Any]:
        """@return: the directives given."""
        return self._specs

    def variables(self) -> Sequence[Any]:
        """@return: the variables given."""
        return self._variables


class RegistryTests(SynchronousTestCase):
    """
    L{DirectiveRegistry}: who owns which directive where.
    """

    def test_clashNamesBothModules(self) -> None:
        """
        Two modules declaring one directive for one context is an error
        naming both, so the operator knows which plugin to remove.
        """
        registry = DirectiveRegistry()
        registry.add("proxy", spec("proxy_pass", [LOCATION], 1))
        error = self.assertRaises(
            ConfigError, registry.add, "team_feature", spec("proxy_pass", [SERVER, LOCATION], 1)
        )
        self.assertEqual(
            str(error),
            'directive "proxy_pass" is declared by both module "proxy" and module "team_feature"',
        )

    def test_clashThroughCompiler(self) -> None:
        """
        A plugin re-declaring a built-in directive stops the compiler
        before any config is read.
        """
        clash = _Declares("team_feature", [spec("add_header", [LOCATION], 2)])
        error = self.assertRaises(ConfigError, Compiler, builtinModules() + [clash])
        self.assertIn('"add_header"', str(error))
        self.assertIn('module "headers"', str(error))
        self.assertIn('module "team_feature"', str(error))

    def test_variableClashNamesBothModules(self) -> None:
        """
        Two modules providing one variable is an error naming both.
        """
        clash = _Declares("team_feature", variables=[simple("host", lambda e: "x")])
        error = self.assertRaises(ConfigError, Compiler, builtinModules() + [clash])
        self.assertEqual(
            str(error),
            'variable "$host" is declared by both module "http_core" and module "team_feature"',
        )

    def test_prefixFamilyIsNotAClash(self) -> None:
        """
        A variable named like a prefix family (C{http_}) is a different
        declaration from the family itself.
        """
        family = VariableSpec("http_", lambda n: lambda e: "", prefix=True)
        self.assertRaises(
            ConfigError, Compiler, builtinModules() + [_Declares("clash", variables=[family])]
        )
        Compiler(builtinModules() + [_Declares("ok", variables=[simple("http_", lambda e: "")])])

    def test_disjointContexts(self) -> None:
        """
        Like nginx's two C{server} directives, one name may be declared for
        disjoint contexts by two modules; the context picks.
        """
        registry = DirectiveRegistry()
        inHTTP = spec("server", [HTTP], 0, block=SERVER)
        inUpstream = spec("server", [UPSTREAM], (1, None))
        registry.add("http_core", inHTTP)
        registry.add("upstream", inUpstream)
        self.assertIs(registry.get("server", HTTP), inHTTP)
        self.assertIs(registry.get("server", UPSTREAM), inUpstream)
        self.assertIsNone(registry.get("server", LOCATION))
        self.assertEqual(registry.owner(inUpstream), "upstream")

    def test_checkReportsBlockShape(self) -> None:
        """
        A block directive without a block, and a simple one with a block.
        """
        registry = DirectiveRegistry()
        registry.add("m", spec("blocky", [HTTP], 0, block=SERVER))
        registry.add("m", spec("simple", [HTTP], 0))
        error = self.assertRaises(
            ConfigError, registry.check, Directive("blocky", (), None, "f.conf", 3), HTTP
        )
        self.assertEqual(str(error), 'directive "blocky" has no opening "{" in f.conf:3')
        error = self.assertRaises(
            ConfigError, registry.check, Directive("simple", (), (), "f.conf", 4), HTTP
        )
        self.assertEqual(str(error), 'directive "simple" is not terminated by ";" in f.conf:4')


class InheritanceTests(ConfigTestCase):
    """
    nginx's merge rules: lists replace, scalars inherit, some directives
    belong to their own block only.
    """

    def headerNames(self, response: Any) -> List[str]:
        """@return: the response's header names, lowercased, in order."""
        return [name.lower() for name, _value in response.headers]

    def test_addHeaderInnerReplacesOuter(self) -> None:
        """
        A location with its own add_header gets none of the server's; a
        location without one gets all of them.
        """
        config = self.compileHTTP(
            "add_header X-From-HTTP h always;\n"
            "server { listen 127.0.0.1:8080;\n"
            " add_header X-Server-A a; add_header X-Server-B b;\n"
            " location /own { add_header X-Location l; return 200 own; }\n"
            " location /inherit { return 200 inherit; }\n"
            "}"
        )
        own = self.get(config, "/own")
        self.assertEqual(own.header("X-Location"), "l")
        for name in ("x-server-a", "x-server-b", "x-from-http"):
            self.assertNotIn(name, self.headerNames(own))
        inherit = self.get(config, "/inherit")
        self.assertEqual(
            [(n, v) for n, v in inherit.headers if n.startswith("X-")],
            [("X-Server-A", "a"), ("X-Server-B", "b")],
        )

    def test_proxySetHeaderInnerReplacesOuter(self) -> None:
        """
        proxy_set_header lists replace as a whole too.
        """
        config = self.compileHTTP(
            "proxy_set_header X-Outer-1 1; proxy_set_header X-Outer-2 2;\n"
            "server { listen 127.0.0.1:8080;\n"
            " location /own { proxy_pass http://127.0.0.1:1; proxy_set_header X-Inner i; }\n"
            " location /inherit { proxy_pass http://127.0.0.1:1; }\n"
            "}"
        )
        server = config.servers[0]

        def configured(path: str) -> List[bytes]:
            settings = server.locations.match(path).payload.contentHandler.settings
            return [name for name, _lower, _value in settings.headers if name.startswith(b"X-")]

        self.assertEqual(configured("/own"), [b"X-Inner"])
        self.assertEqual(configured("/inherit"), [b"X-Outer-1", b"X-Outer-2"])

    def test_scalarsInherit(self) -> None:
        """
        A scalar set at http or server level applies in locations (and
        nested ones) that do not set it, and the innermost setting wins.
        """
        config = self.compileHTTP(
            "proxy_read_timeout 7s;\n"
            "server { listen 127.0.0.1:8080; client_max_body_size 5m;\n"
            " location /a { proxy_pass http://127.0.0.1:1;\n"
            "  location /a/b { proxy_pass http://127.0.0.1:1; proxy_read_timeout 9s; }\n"
            " }\n"
            "}"
        )
        locations = config.servers[0].locations
        outer = locations.match("/a").payload
        inner = locations.match("/a/b").payload
        self.assertEqual(outer.contentHandler.settings.readTimeout, 7.0)
        self.assertEqual(inner.contentHandler.settings.readTimeout, 9.0)
        self.assertEqual(outer.conf.get("client_max_body_size"), 5 * 1024 * 1024)
        self.assertEqual(inner.conf.get("client_max_body_size"), 5 * 1024 * 1024)
        self.assertEqual(outer.conf.source("proxy_read_timeout").line, 5)

    def test_defaultsBeneath(self) -> None:
        """
        Unset anywhere, a directive has its declared default.
        """
        config = self.compileHTTP("server { listen 127.0.0.1:8080; location / { } }")
        conf = config.servers[0].locations.match("/").payload.conf
        self.assertEqual(conf.get("client_max_body_size"), 1024 * 1024)
        self.assertFalse(conf.isSet("client_max_body_size"))

    def test_serverOnlyDirectiveSeenFromLocation(self) -> None:
        """
        A directive allowed only up to server level still reads the same
        from a location's conf (what code holding an exchange sees).
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080; client_header_timeout 5s; location / { } }"
        )
        conf = config.servers[0].locations.match("/").payload.conf
        self.assertEqual(conf.get("client_header_timeout"), 5.0)

    def test_returnNotInherited(self) -> None:
        """
        A location's return does not answer for its nested locations.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080;\n"
            " location /a { return 200 outer;\n  location /a/b { }\n }\n}"
        )
        self.assertEqual(self.body(config, "/a"), "outer")
        self.assertEqual(self.get(config, "/a/b").status, 404)
        nested = config.servers[0].locations.match("/a/b").payload
        self.assertFalse([f for f in nested.requestFilters if isinstance(f, ReturnFilter)])

    def test_serverReturnNotRepeatedPerLocation(self) -> None:
        """
        A server-level return runs once, before any location is chosen.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080; return 200 server; location / { } }"
        )
        self.assertEqual(self.body(config, "/"), "server")
        self.assertEqual(len(config.servers[0].requestFilters), 1)
        location = config.servers[0].locations.match("/").payload
        self.assertEqual(location.requestFilters, [])

    def test_proxyPassNotInherited(self) -> None:
        """
        A nested location without its own proxy_pass has no content
        handler (nginx would serve static files there).
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080;\n"
            " location /a { proxy_pass http://127.0.0.1:1;\n  location /a/b { }\n }\n}"
        )
        locations = config.servers[0].locations
        self.assertIsNotNone(locations.match("/a").payload.contentHandler)
        self.assertIsNone(locations.match("/a/b").payload.contentHandler)

    def test_listenAndServerNameNotInherited(self) -> None:
        """
        Server identity is not a location setting.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080; server_name a.example; location / { } }"
        )
        conf = config.servers[0].locations.match("/").payload.conf
        self.assertFalse(conf.isSet("listen"))
        self.assertFalse(conf.isSet("server_name"))


#: The example config of the issue, with its backends on fixed local ports.
EXAMPLE = ISSUE_EXAMPLE


class RealConfigTests(ConfigTestCase):
    """
    Configs as people write them load unchanged.
    """

    def test_issueExample(self) -> None:
        """
        The issue's example compiles; its listener, names and locations
        are what the text says.
        """
        config = self.compile(EXAMPLE)
        self.assertEqual(config.notices, [])
        self.assertEqual(config.warnings, [])
        [listener] = config.listeners
        self.assertEqual(listener.address.key, ("", 8080, None))
        self.assertEqual(listener.address.endpointDescription(), "tcp:8080:backlog=511")
        [server] = config.servers
        self.assertEqual(server.names, ("example.com", "www.example.com"))
        self.assertIs(listener.defaultServer, server)
        self.assertIs(listener.serverNames.match("www.example.com")[0], server)
        self.assertFalse(server.conf.get("server_tokens"))

        root = server.locations.match("/anything").payload
        self.assertEqual(root.name, "/")
        handler = root.contentHandler
        self.assertEqual(handler.target.upstream.name, "backend")
        self.assertEqual(handler.target.proxyHost, "backend")
        settings = handler.settings
        self.assertEqual(settings.version, b"HTTP/1.1")
        self.assertEqual(
            [(n, v.text) for n, _l, v in settings.headers][:5],
            [
                (b"Connection", ""),
                (b"Host", "$host"),
                (b"X-Real-IP", "$remote_addr"),
                (b"X-Forwarded-For", "$proxy_add_x_forwarded_for"),
                (b"X-Forwarded-Proto", "$scheme"),
            ],
        )
        self.assertEqual(
            (settings.connectTimeout, settings.sendTimeout, settings.readTimeout), (5.0, 30.0, 30.0)
        )
        self.assertTrue(settings.buffering)
        self.assertEqual(settings.bufferBudget, 16 * 16 * 1024 + 16 * 1024)

        api = server.locations.match("/api/users").payload
        self.assertEqual(api.name, "/api/")
        self.assertEqual(api.contentHandler.target.uri, "/")
        self.assertEqual(api.contentHandler.target.proxyHost, "127.0.0.1:8000")

        events = server.locations.match("/events/stream").payload
        self.assertEqual(events.name, "/events")
        self.assertFalse(events.contentHandler.settings.buffering)
        self.assertIs(events.contentHandler.target.upstream, handler.target.upstream)

        health = server.locations.match("/health").payload
        self.assertEqual(health.name, "= /health")
        self.assertIsNone(health.contentHandler)
        self.assertEqual(server.locations.match("/health/x").payload.name, "/")

        upstream = config.stateOf("upstream")["upstreams"]["backend"]
        self.assertEqual(upstream.keepalive, 32)

    def test_issueExampleAnswers(self) -> None:
        """
        The example's health check answers, with the server's always
        header, and server_tokens off hides the version.
        """
        config = self.compile(EXAMPLE)
        health = self.get(config, "/health", host="example.com")
        self.assertEqual((health.status, health.body), (200, b"ok\n"))
        self.assertEqual(health.header("X-Frame-Options"), "SAMEORIGIN")
        self.assertEqual(health.header("Server"), "twisted_rproxy")

    def copyStock(self) -> str:
        """
        Copy the stock /etc/nginx/nginx.conf, with its mime.types and
        modules-enabled, into the prefix, changing only file paths (to
        the copies, and logs and pid into the prefix).

        @return: the copied nginx.conf's path.
        """
        stock = "/etc/nginx/nginx.conf"
        if not os.path.exists(stock) or not os.path.exists("/etc/nginx/mime.types"):
            self.skipTest("no stock nginx config in /etc/nginx")
        with open(stock, encoding="utf-8") as f:
            text = f.read()
        shutil.copy("/etc/nginx/mime.types", os.path.join(self.prefix, "mime.types"))
        os.mkdir(os.path.join(self.prefix, "modules-enabled"))
        if os.path.isdir("/etc/nginx/modules-enabled"):
            for name in os.listdir("/etc/nginx/modules-enabled"):
                if name.endswith(".conf"):
                    shutil.copy(
                        os.path.join("/etc/nginx/modules-enabled", name),
                        os.path.join(self.prefix, "modules-enabled", name),
                    )
        for name in ("conf.d", "sites-enabled"):
            os.mkdir(os.path.join(self.prefix, name))
        text = text.replace("/etc/nginx/", self.prefix + "/")
        text = text.replace("/var/log/nginx/", self.prefix + "/logs/")
        text = text.replace("/run/nginx.pid", self.prefix + "/logs/nginx.pid")
        self.assertNotIn("/etc/", text)
        self.assertNotIn("/var/", text)
        return self.writeFile("nginx.conf", text)

    def test_stockNginxConf(self) -> None:
        """
        Debian's nginx.conf loads with only notices, one for each directive
        that means nothing here (user, sendfile and gzip tuning), each
        naming its file:line; the settings that do mean something (its
        C{ssl_protocols} and C{ssl_prefer_server_ciphers} among them) are
        read.
        """
        path = self.copyStock()
        config = self.compile(open(path, encoding="utf-8").read())
        self.assertEqual(config.warnings, [])
        # "worker_processes auto" is read and acted on (by the rproxy
        # command's master), so it is no notice.
        self.assertEqual([n for n in config.notices if "worker_processes" in n], [])
        notices = config.notices
        ignored = [n.split('"')[1] for n in notices]
        for name in ("user", "worker_connections", "sendfile", "tcp_nopush",
                     "types_hash_max_size", "types", "gzip"):
            self.assertIn(name, ignored)
        for name in ("worker_processes", "pid", "error_log", "access_log", "default_type",
                     "ssl_protocols", "ssl_prefer_server_ciphers"):
            self.assertNotIn(name, ignored)
        self.assertEqual(
            config.httpConf.get("ssl_protocols"), ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
        )
        self.assertTrue(config.httpConf.get("ssl_prefer_server_ciphers"))
        for notice in notices:
            self.assertRegex(notice, r"has no effect in twisted_rproxy and is ignored in /\S+:\d+$")
        self.assertIn(f"{path}:1", config.notices[ignored.index("user")])
        self.assertEqual(config.mainConf.get("worker_processes"), "auto")
        self.assertEqual(config.mainConf.get("pid"), self.prefix + "/logs/nginx.pid")
        self.assertEqual(config.httpConf.get("default_type"), "application/octet-stream")
        self.assertEqual(config.servers, [])

    def test_stockNginxConfWithSites(self) -> None:
        """
        The stock config with a conf.d file of bare server and upstream
        blocks, as a site package would drop in.
        """
        path = self.copyStock()
        self.writeFile(
            "conf.d/app.conf",
            "upstream app { server 127.0.0.1:9001; }\n"
            "server {\n    listen 127.0.0.1:8080;\n    server_name app.example;\n"
            "    location / { proxy_pass http://app; }\n}\n",
        )
        config = self.compile(open(path, encoding="utf-8").read())
        [server] = config.servers
        self.assertEqual(server.names, ("app.example",))
        self.assertEqual(server.source.filename, os.path.join(self.prefix, "conf.d", "app.conf"))
        handler = server.locations.match("/").payload.contentHandler
        self.assertEqual(handler.target.upstream.name, "app")

    def test_confDStyleFile(self) -> None:
        """
        A file of bare http-level blocks compiles as the inside of an
        implied C{http {}}, with main-context C{-g} directives beside it.
        """
        config = self.compile(
            "upstream app { server 127.0.0.1:9001; }\n"
            "map $host $tenant { default none; app.example app; }\n"
            "server { listen 127.0.0.1:8080; location / { return 200 $tenant; } }\n"
            "server { listen 127.0.0.1:8081; location / { proxy_pass http://app; } }\n",
            name="conf.d/site.conf",
            globalDirectives="daemon off; pid logs/site.pid;",
        )
        self.assertEqual(len(config.servers), 2)
        self.assertEqual([l.address.port for l in config.listeners], [8080, 8081])
        self.assertFalse(config.mainConf.get("daemon"))
        self.assertEqual(config.mainConf.get("pid"), "logs/site.pid")
        self.assertEqual(self.body(config, host="app.example"), "app")

    def test_confDStyleRefusesMainDirectives(self) -> None:
        """
        In a conf.d-style file a main-only directive is out of place.
        """
        error = self.configError("server { listen 8080; }\nworker_processes 2;\n", name="c.conf")
        self.assertEqual(
            str(error),
            '"worker_processes" directive is not allowed here in '
            f"{os.path.join(self.prefix, 'c.conf')}:2",
        )


class ListenerTests(ConfigTestCase):
    """
    Servers grouped by listen address, with default servers.
    """

    def test_wildcardSpellingsShareASocket(self) -> None:
        """
        C{listen 80}, C{*:80} and C{0.0.0.0:80} are one socket.
        """
        config = self.compileHTTP(
            "server { listen 8080; server_name a; }\n"
            "server { listen *:8080; server_name b; }\n"
            "server { listen 0.0.0.0:8080; server_name c; }"
        )
        [listener] = config.listeners
        self.assertEqual(listener.address.display(), "0.0.0.0:8080")

    def test_firstServerIsDefault(self) -> None:
        """
        Without default_server the first server of an address is the
        default; with it, the marked one.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080; server_name a; return 200 a; }\n"
            "server { listen 127.0.0.1:8080; server_name b; return 200 b; }\n"
            "server { listen 127.0.0.1:8081; server_name c; return 200 c; }\n"
            "server { listen 127.0.0.1:8081 default_server; server_name d; return 200 d; }"
        )
        first, second = config.listeners
        self.assertEqual(first.defaultServer.names, ("a",))
        self.assertEqual(second.defaultServer.names, ("d",))
        self.assertTrue(second.address.defaultServer)
        self.assertEqual(self.body(config, host="unknown.example", listener=1), "d")
        self.assertEqual(self.body(config, host="c", listener=1), "c")

    def test_listenDefaultsToPort80(self) -> None:
        """
        A server with no listen listens on *:80, as nginx run as root.
        """
        config = self.compileHTTP("server { server_name a; }")
        self.assertEqual(config.listeners[0].address.key, ("", 80, None))

    def test_listenForms(self) -> None:
        """
        The address forms of C{listen} become Twisted endpoint strings.
        """
        config = self.compileHTTP(
            "server { listen localhost:8080 backlog=64; }\n"
            "server { listen [::1]:8081 reuseport; }\n"
            "server { listen unix:/tmp/rproxy-test.sock; }"
        )
        descriptions = [l.address.endpointDescription() for l in config.listeners]
        self.assertEqual(
            descriptions,
            [
                "tcp:8080:interface=127.0.0.1:backlog=64",
                "tcp6:8081:interface=\\:\\:1:backlog=511",
                "unix:/tmp/rproxy-test.sock:backlog=511",
            ],
        )
        self.assertEqual(config.listeners[1].address.options, ("reuseport",))

    def test_specificAddressMergesIntoWildcard(self) -> None:
        """
        C{listen 8080} next to C{listen 127.0.0.2:8080} is one socket, the
        wildcard's, as in nginx; the specific address's servers, with its
        own default server, are chosen by the connection's local address.
        """
        config = self.compileHTTP(
            'server { listen 8080; server_name any; return 200 "any"; }\n'
            'server { listen 127.0.0.2:8080; server_name two; return 200 "two"; }\n'
            "server { listen 127.0.0.2:8080 default_server; server_name twodefault;"
            ' return 200 "twodefault"; }'
        )
        [listener] = config.listeners
        self.assertEqual(listener.address.key, ("", 8080, None))
        two = listener.forLocalAddress("127.0.0.2")
        self.assertEqual(two.address.display(), "127.0.0.2:8080")
        self.assertEqual(two.defaultServer.names, ("twodefault",))
        self.assertIs(listener.forLocalAddress("127.0.0.3"), listener)

        def body(local: str, host: str) -> str:
            return self.body(config, host=host, local=(local, 8080))

        self.assertEqual(body("127.0.0.2", "two"), "two")
        self.assertEqual(body("127.0.0.2", "unknown"), "twodefault")
        self.assertEqual(body("127.0.0.2", "any"), "twodefault")
        self.assertEqual(body("127.0.0.3", "unknown"), "any")
        self.assertEqual(body("127.0.0.3", "two"), "any")

    def test_mergedAddressUsesItsDefaultServerLimits(self) -> None:
        """
        Connection-level settings come from the default server of the
        address reached, not the wildcard's, as nginx reads them from
        C{hc->addr_conf->default_server} before any request.
        """
        config = self.compileHTTP(
            'server { listen 8080; return 200 "any"; }\n'
            "server { listen 127.0.0.2:8080; large_client_header_buffers 2 1k;"
            ' return 200 "two"; }'
        )
        path = "/" + "x" * 2000
        self.assertEqual(self.get(config, path, local=("127.0.0.2", 8080)).status, 414)
        self.assertEqual(self.body(config, path, local=("127.0.0.3", 8080)), "any")

    def test_specificIPv6AddressMergesIntoWildcard(self) -> None:
        """
        The same for IPv6: C{[::1]} (however spelled) shares C{[::]}, keyed
        as C{getsockname} spells it; the IPv4 wildcard stays a socket of
        its own, since families never share one.
        """
        config = self.compileHTTP(
            "server { listen 8080; server_name v4; }\n"
            "server { listen [::]:8080; server_name any; }\n"
            "server { listen [0:0::1]:8080; server_name one; }"
        )
        v4, v6 = config.listeners
        self.assertEqual(v4.address.key, ("", 8080, None))
        self.assertIsNone(v4.byLocalAddress)
        self.assertEqual(v6.address.key, ("::", 8080, None))
        self.assertEqual(v6.forLocalAddress("::1").defaultServer.names, ("one",))

    def test_differentPortsDoNotMerge(self) -> None:
        """
        Only addresses of the wildcard's own port are folded into it.
        """
        config = self.compileHTTP(
            "server { listen 8080; }\nserver { listen 127.0.0.1:8081; }"
        )
        self.assertEqual([l.address.port for l in config.listeners], [8080, 8081])
        self.assertIsNone(config.listeners[0].byLocalAddress)

    def test_bindKeepsItsOwnSocket(self) -> None:
        """
        C{bind}, or any socket option (nginx sets C{bind} for those too),
        keeps a specific address's own socket beside the wildcard, even
        when only one of its servers says so.
        """
        for option in ("bind", "reuseport", "backlog=64", "rcvbuf=64k"):
            config = self.compileHTTP(
                "server { listen 8080; }\n"
                "server { listen 127.0.0.1:8080; }\n"
                f"server {{ listen 127.0.0.1:8080 {option}; }}"
            )
            self.assertEqual(
                [l.address.display() for l in config.listeners],
                ["0.0.0.0:8080", "127.0.0.1:8080"],
                option,
            )
            self.assertIsNone(config.listeners[0].byLocalAddress)


class CaptureVariableTests(ConfigTestCase):
    """
    Named groups of regex locations and server names are variables.
    """

    def test_namedLocationCapture(self) -> None:
        """
        C{(?<user>...)} in a location regex gives C{$user}.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080;\n"
            ' location ~ ^/u/(?<user>[^/]+)/(?P<rest>.*)$ { return 200 "$user:$rest:$1"; }\n'
            "}"
        )
        self.assertEqual(self.body(config, "/u/ann/x/y"), "ann:x/y:ann")

    def test_namedServerNameCapture(self) -> None:
        """
        C{server_name ~^(?<sub>.+)\\.example\\.com$} gives C{$sub}.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080; server_name ~^(?<sub>.+)\\.example\\.com$;\n"
            " location / { return 200 $sub; }\n}"
        )
        self.assertEqual(self.body(config, host="shop.example.com"), "shop")


class ServerNameTests(ConfigTestCase):
    """
    C{server_name} lines.
    """

    def test_repeatedLinesAccumulate(self) -> None:
        """
        Several server_name lines in one server add up, as in nginx; the
        first name is C{$server_name}.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080; server_name a.example;\n"
            " server_name b.example c.example; return 200 $server_name; }\n"
            "server { listen 127.0.0.1:8080; server_name other.example; return 200 other; }"
        )
        self.assertEqual(config.servers[0].names, ("a.example", "b.example", "c.example"))
        self.assertEqual(self.body(config, host="c.example"), "a.example")
        self.assertEqual(self.body(config, host="other.example"), "other")


class ReactorTests(SynchronousTestCase):
    """
    The reactor modules build runtime objects on.
    """

    def test_givenReactor(self) -> None:
        """
        The reactor given to the compiler is the one modules get.
        """
        clock = object()
        self.assertIs(Compiler(builtinModules(), reactor=clock).reactor, clock)

    def test_globalReactorByDefault(self) -> None:
        """
        With none given (the C{rproxy} command compiles before it runs a
        reactor), modules get the global reactor, never C{None}.
        """
        from twisted.internet import reactor

        self.assertIs(Compiler(builtinModules()).reactor, reactor)


class ConfLookupTests(SynchronousTestCase):
    """
    L{Conf.get} is a dict lookup that fetches a default once: what it
    answers, and that the block's own values stay what it sets.
    """

    def test_valuesDefaultsAndUnknownNames(self) -> None:
        """
        A set value wins; an unset directive gives its declared default
        (asked again, the same); a name no module declares gives C{None};
        none of that makes the directive count as set, or adds to the
        values an inner block inherits.
        """
        from twisted_rproxy.config.model import Conf

        registry = DirectiveRegistry()
        registry.add("m", spec("set_here", [LOCATION], 1, default=1))
        registry.add("m", spec("left_unset", [LOCATION], 1, default=[2]))
        conf = Conf({"set_here": 5}, registry, {})
        self.assertEqual(conf.get("set_here"), 5)
        self.assertEqual(conf.get("left_unset"), [2])
        self.assertIs(conf.get("left_unset"), conf.get("left_unset"))
        self.assertIsNone(conf.get("nobody_declares"))
        self.assertTrue(conf.isSet("set_here"))
        self.assertFalse(conf.isSet("left_unset"))
        self.assertFalse(conf.isSet("nobody_declares"))
        self.assertEqual(conf._values, {"set_here": 5})
