"""
Tests for L{twisted_rproxy.variables} and the variables the built-in modules
provide: each must give nginx's value for the same request, because configs
copied from nginx put them in headers, logs and redirects.

Request-time variables are checked end to end: a location answers
C{return 200 "$var"} and the test reads the body of a request sent on an
in-memory connection.  Log-time variables (status, timings, upstream
attempts) are checked on a stand-in exchange with fixed values.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.configsupport import ConfigTestCase
from twisted_rproxy.plugins import builtinModules
from twisted_rproxy.variables import (
    ComplexValue,
    InvalidVariable,
    UnknownVariable,
    VariableSpec,
    VariableTable,
    parseValue,
    simple,
)


class RequestVariableTests(ConfigTestCase):
    """
    Variables of the request, through a real channel.
    """

    def answer(
        self,
        value: str,
        path: str = "/",
        host: Optional[str] = "localhost",
        headers: Sequence[Any] = (),
        serverExtra: str = "",
        httpExtra: str = "",
        **kwargs: Any,
    ) -> str:
        """
        @return: what C{value} evaluates to for one request, as the body of
            C{return 200 "value"} in a server named C{srv.example}.
        """
        escaped = value.replace('"', '\\"')
        config = self.compileHTTP(
            f"{httpExtra}\nserver {{ listen 127.0.0.1:8080; server_name srv.example alias.example;\n"
            f"{serverExtra}\n location / {{ return 200 \"{escaped}\"; }}\n}}"
        )
        return self.body(config, path, host=host, headers=headers, **kwargs)

    def test_host(self) -> None:
        """
        C{$host}: the Host header lowercased without its port.
        """
        self.assertEqual(self.answer("$host", host="WWW.Example.COM:8080"), "www.example.com")

    def test_hostWithoutHostHeader(self) -> None:
        """
        Without a Host header, C{$host} is the (first) server name.
        """
        self.assertEqual(self.answer("$host", host=None), "srv.example")

    def test_hostFromAbsoluteURI(self) -> None:
        """
        An absolute-form request target's host wins over the header.
        """
        self.assertEqual(
            self.answer("$host", path="http://Target.Example/x", host="other.example"),
            "target.example",
        )

    def test_clientAndServerAddresses(self) -> None:
        """
        C{$remote_addr}, C{$remote_port}, C{$server_addr}, C{$server_port}
        come from the connection's two ends.
        """
        self.assertEqual(
            self.answer(
                "$remote_addr $remote_port $server_addr $server_port",
                peer=("192.0.2.7", 50123),
                local=("127.0.0.1", 8080),
            ),
            "192.0.2.7 50123 127.0.0.1 8080",
        )

    def test_schemeAndServerName(self) -> None:
        """
        C{$scheme} is http on a plain listener; C{$server_name} is the
        first name of the server that answered, whatever name was asked.
        """
        self.assertEqual(self.answer("$scheme $server_name", host="alias.example"), "http srv.example")

    def test_uriVariables(self) -> None:
        """
        C{$request_uri} is the target as sent; C{$uri} decoded and
        normalised; C{$args} the raw query; C{$is_args} its C{?}.
        """
        self.assertEqual(
            self.answer(
                "$request_uri|$uri|$args|$is_args|$query_string",
                path="/a/./b/../%63?x=1&y=%20",
            ),
            "/a/./b/../%63?x=1&y=%20|/a/c|x=1&y=%20|?|x=1&y=%20",
        )
        self.assertEqual(self.answer("[$args][$is_args]", path="/plain"), "[][]")

    def test_argName(self) -> None:
        """
        C{$arg_NAME}: the raw value of the first argument of that name,
        compared without case; C{?name} with no C{=} does not count.
        """
        value = "[$arg_foo][$arg_bar][$arg_none][$arg_flag]"
        self.assertEqual(
            self.answer(value, path="/?flag&Foo=a%20b&foo=second&bar="), "[a%20b][][][]"
        )

    def test_requestMethodAndProtocol(self) -> None:
        """
        C{$request_method}, C{$server_protocol} and C{$request}.
        """
        self.assertEqual(
            self.answer("$request_method $server_protocol|$request", path="/p?q", method="DELETE"),
            "DELETE HTTP/1.1|DELETE /p?q HTTP/1.1",
        )

    def test_httpName(self) -> None:
        """
        C{$http_NAME}: underscores read as dashes, names compared without
        case; repeated headers joined with commas (cookies with
        semicolons).
        """
        self.assertEqual(
            self.answer(
                "[$http_x_custom_thing][$HTTP_USER_AGENT][$http_x_multi][$http_cookie][$http_missing]",
                headers=[
                    ("X-CUSTOM-Thing", "v1"),
                    ("user-agent", "ua/1"),
                    ("X-Multi", "a"),
                    ("x-multi", "b"),
                    ("Cookie", "a=1"),
                    ("Cookie", "b=2"),
                ],
            ),
            "[v1][ua/1][a, b][a=1; b=2][]",
        )

    def test_cookieName(self) -> None:
        """
        C{$cookie_NAME}: the named cookie's value, over every Cookie
        header, names compared without case as nginx does.
        """
        self.assertEqual(
            self.answer(
                "[$cookie_sid][$cookie_THEME][$cookie_none]",
                headers=[("Cookie", "a=1; sid=s-42"), ("Cookie", "Theme=dark")],
            ),
            "[s-42][dark][]",
        )

    def test_proxyAddXForwardedFor(self) -> None:
        """
        C{$proxy_add_x_forwarded_for}: the client's X-Forwarded-For plus
        its address, or only the address.
        """
        value = "$proxy_add_x_forwarded_for"
        self.assertEqual(self.answer(value, peer=("192.0.2.7", 1)), "192.0.2.7")
        self.assertEqual(
            self.answer(
                value,
                peer=("192.0.2.7", 1),
                headers=[("X-Forwarded-For", "203.0.113.1, 10.0.0.1"), ("X-Forwarded-For", "10.0.0.2")],
            ),
            "203.0.113.1, 10.0.0.1, 10.0.0.2, 192.0.2.7",
        )

    def test_bracedNameWithSuffix(self) -> None:
        """
        C{${var}suffix} ends the name at the brace; C{$var.suffix} at the
        first character that cannot be in a name; without braces the name
        runs on (C{$request_methodx} is another, unknown, variable).
        """
        self.assertEqual(
            self.answer("${request_method}x $request_method.x", method="GET"), "GETx GET.x"
        )
        error = self.httpError('server { return 200 "$request_methodx"; }')
        self.assertIn('unknown "request_methodx" variable', error)

    def test_regexLocationCaptures(self) -> None:
        """
        C{$1}..C{$9} are the regex location's groups; an absent group is
        empty.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080;\n"
            ' location ~ ^/img/(\\d+)x(\\d+)(/.*)?$ { return 200 "w=$1 h=$2 rest=$3 none=$9."; }\n'
            "}"
        )
        self.assertEqual(self.body(config, "/img/640x480/a.png"), "w=640 h=480 rest=/a.png none=.")
        self.assertEqual(self.body(config, "/img/1x2"), "w=1 h=2 rest= none=.")

    def test_caseInsensitiveNames(self) -> None:
        """
        Variable names are case-insensitive, as in nginx.
        """
        self.assertEqual(self.answer("$HOST $Request_Method", host="a.example"), "a.example GET")


class MapVariableTests(ConfigTestCase):
    """
    C{map}: exact keys, regexes in order, C{default}, C{hostnames}, and maps
    of maps.
    """

    def mapped(self, maps: str, value: str, **kwargs: Any) -> str:
        """
        @return: C{value} evaluated for one request under C{maps}.
        """
        config = self.compileHTTP(
            f"{maps}\nserver {{ listen 127.0.0.1:8080;\n"
            f' location / {{ return 200 "{value}"; }}\n}}'
        )
        return self.body(config, **kwargs)

    def test_exactDefaultAndEmptyKey(self) -> None:
        """
        The issue's own map: a missing header is C{''}, anything else the
        default; exact keys compare without case.
        """
        maps = "map $http_upgrade $connection_upgrade { default upgrade; '' close; WebSocket ws; }"
        self.assertEqual(self.mapped(maps, "$connection_upgrade"), "close")
        self.assertEqual(
            self.mapped(maps, "$connection_upgrade", headers=[("Upgrade", "h2c")]), "upgrade"
        )
        self.assertEqual(
            self.mapped(maps, "$connection_upgrade", headers=[("Upgrade", "websocket")]), "ws"
        )

    def test_noDefaultIsEmpty(self) -> None:
        """
        Without C{default}, an unmatched value maps to the empty string.
        """
        self.assertEqual(self.mapped("map $uri $m { /x 1; }", "[$m]"), "[]")

    def test_regexesInOrderAfterExact(self) -> None:
        """
        Exact keys win; then the first matching regex (C{~} case-sensitive,
        C{~*} not), with its captures, named and numbered, in the value.
        """
        maps = (
            "map $uri $m {\n"
            "  default none;\n"
            "  /api/exact exact;\n"
            '  ~^/api/v(?<ver>\\d+)/(.*)$ "v$ver:$2";\n'
            "  ~*^/API/ caseless;\n"
            "  ~^/api/ never-reached-for-v1;\n"
            "}"
        )
        self.assertEqual(self.mapped(maps, "$m", path="/api/exact"), "exact")
        self.assertEqual(self.mapped(maps, "$m", path="/api/v2/users/1"), "v2:users/1")
        self.assertEqual(self.mapped(maps, "$m", path="/api/other"), "caseless")
        self.assertEqual(self.mapped(maps, "$m", path="/elsewhere"), "none")

    def test_mapCapturesDoNotClobberLocationCaptures(self) -> None:
        """
        Evaluating a map regex leaves the location's C{$1} as it was.
        """
        config = self.compileHTTP(
            "map $http_x_key $m { ~^(.)(.) $2$1; }\n"
            "server { listen 127.0.0.1:8080;\n"
            ' location ~ ^/(\\w+)$ { return 200 "$m $1"; }\n}'
        )
        self.assertEqual(self.body(config, "/loc", headers=[("X-Key", "ab")]), "ba loc")

    def test_hostnames(self) -> None:
        """
        With C{hostnames}: C{.example.com} matches the name and all its
        subdomains, C{*.} and C{.*} wildcards work, the longest wins, and
        a trailing dot is ignored.
        """
        maps = (
            "map $host $site {\n"
            "  hostnames;\n"
            "  default other;\n"
            "  .example.com example;\n"
            "  *.shop.example.com shop;\n"
            "  www.example.* www-any;\n"
            "  exact.example.com exact;\n"
            "}"
        )
        cases = {
            "example.com": "example",
            "a.b.example.com": "example",
            "x.shop.example.com": "shop",
            "www.example.org": "www-any",
            "exact.example.com": "exact",
            "example.com.": "example",
            "example.net": "other",
        }
        for host, expected in cases.items():
            self.assertEqual(self.mapped(maps, "$site", host=host), expected, host)

    def test_mapOfAMapDeclaredLater(self) -> None:
        """
        A map whose key or value uses a map declared after it.
        """
        maps = (
            "map $tier $limit { default 10; gold 1000; }\n"
            'map $http_x_plan $tier { default bronze; premium gold; }\n'
            'map $uri $label { default "$tier/$limit"; }'
        )
        self.assertEqual(self.mapped(maps, "$label"), "bronze/10")
        self.assertEqual(self.mapped(maps, "$label", headers=[("X-Plan", "premium")]), "gold/1000")

    def test_sourceWithSeveralVariables(self) -> None:
        """
        The source of a map is a complex value.
        """
        maps = 'map "$request_method:$uri" $m { default no; "POST:/form" yes; }'
        self.assertEqual(self.mapped(maps, "$m", path="/form", method="POST"), "yes")
        self.assertEqual(self.mapped(maps, "$m", path="/form"), "no")


class _Attempt:
    """
    A stand-in for one upstream try, as the proxy records it.
    """

    def __init__(self, addr: str, status: Any, responseTime: Optional[float]) -> None:
        """Record the peer address, status and response time."""
        self.addr = addr
        self.status = status
        self.responseTime = responseTime
        self.connectTime = responseTime
        self.headerTime = responseTime


class _Exchange:
    """
    A finished exchange reduced to what log-time variables read.
    """

    def __init__(self, **attributes: Any) -> None:
        """Set the given attributes over neutral defaults."""
        self.status = 200
        self.startTime = 1000.0
        self.endTime: Optional[float] = 1000.0
        self.bodyBytesSent = 0
        self.bytesSent = 0
        self.upstreamAttempts: List[_Attempt] = []
        self.requestHeaders: List[Any] = []
        self.captures: Sequence[str] = ()
        self.namedCaptures: dict = {}
        self.__dict__.update(attributes)


def builtinTable() -> VariableTable:
    """
    @return: a table of every built-in module's variables.
    """
    return VariableTable([v for m in builtinModules() for v in m.variables()])


class LogTimeVariableTests(SynchronousTestCase):
    """
    Variables only meaningful once a response is under way or done.
    """

    def evaluate(self, text: str, exchange: Any) -> str:
        """
        @return: C{text} compiled against the built-in variables and
            evaluated for C{exchange}.
        """
        return ComplexValue(text, builtinTable()).evaluate(exchange)

    def test_status(self) -> None:
        """
        C{$status} is three digits.
        """
        self.assertEqual(self.evaluate("$status", _Exchange(status=404)), "404")
        self.assertEqual(self.evaluate("$status", _Exchange(status=0)), "000")

    def test_requestTime(self) -> None:
        """
        C{$request_time}: seconds from the first request byte to the last
        response byte, in whole milliseconds (truncated, as nginx counts).
        """
        exchange = _Exchange(startTime=1000.0, endTime=1001.2349)
        self.assertEqual(self.evaluate("$request_time", exchange), "1.234")
        exchange = _Exchange(startTime=1000.0, endTime=999.0)
        self.assertEqual(self.evaluate("$request_time", exchange), "0.000")

    def test_bodyBytesSent(self) -> None:
        """
        C{$body_bytes_sent} counts body bytes only; C{$bytes_sent} all.
        """
        exchange = _Exchange(bodyBytesSent=1234, bytesSent=1400)
        self.assertEqual(self.evaluate("$body_bytes_sent $bytes_sent", exchange), "1234 1400")

    def test_upstreamVariablesOverAttempts(self) -> None:
        """
        The C{$upstream_*} variables list every peer tried, comma-joined
        in order, as nginx does after C{proxy_next_upstream}.
        """
        exchange = _Exchange(
            upstreamAttempts=[
                _Attempt("127.0.0.1:8001", None, 0.012),
                _Attempt("127.0.0.1:8002", 200, 0.25),
            ]
        )
        self.assertEqual(
            self.evaluate("$upstream_addr|$upstream_status|$upstream_response_time", exchange),
            "127.0.0.1:8001, 127.0.0.1:8002|502, 200|0.012, 0.250",
        )

    def test_upstreamVariablesUnsetWithoutUpstream(self) -> None:
        """
        Without an upstream the variables are unset (empty here, C{-} in a
        log).
        """
        self.assertEqual(self.evaluate("[$upstream_addr][$upstream_status]", _Exchange()), "[][]")

    def test_proxyHost(self) -> None:
        """
        C{$proxy_host} is what the proxy module set for this request, and
        unset before a proxy_pass ran.
        """
        self.assertEqual(self.evaluate("$proxy_host", _Exchange(proxyHost="backend:8080")), "backend:8080")
        self.assertEqual(self.evaluate("[$proxy_host]", _Exchange()), "[]")


class ComplexValueTests(SynchronousTestCase):
    """
    L{ComplexValue} and L{parseValue}: nginx's script compiler rules.
    """

    def test_parseValue(self) -> None:
        """
        Text, captures and names split as nginx splits them.
        """
        self.assertEqual(
            parseValue("a$1${name}b$x.y"),
            [
                ("text", "a"),
                ("capture", "1"),
                ("variable", "name"),
                ("text", "b"),
                ("variable", "x"),
                ("text", ".y"),
            ],
        )
        self.assertEqual(parseValue("$12"), [("capture", "1"), ("text", "2")])
        self.assertEqual(parseValue(""), [])

    def test_invalidReferences(self) -> None:
        """
        A trailing C{$}, a C{$} before a non-name character, an unclosed or
        empty brace.
        """
        for text in ("a$", "a$ b", "${}", "$-x"):
            self.assertRaises(InvalidVariable, parseValue, text)
        error = self.assertRaises(InvalidVariable, parseValue, "${abc")
        self.assertEqual(str(error), 'the closing bracket in "abc" variable is missing')

    def test_staticValue(self) -> None:
        """
        A value without variables is computed once.
        """
        value = ComplexValue("plain text", VariableTable())
        self.assertEqual(value.static, "plain text")
        self.assertEqual(value.evaluate(None), "plain text")
        self.assertEqual(value.names, [])

    def test_unknown(self) -> None:
        """
        An unknown name raises L{UnknownVariable} with the name.
        """
        error = self.assertRaises(UnknownVariable, ComplexValue, "x$nope", VariableTable())
        self.assertEqual(error.args, ("nope",))

    def test_unsetIsEmpty(self) -> None:
        """
        A getter returning C{None} contributes nothing.
        """
        table = VariableTable([simple("a", lambda e: None), simple("b", lambda e: "B")])
        value = ComplexValue("[$a][$b]", table)
        self.assertEqual(value.evaluate(None), "[][B]")
        self.assertEqual(value.names, ["a", "b"])
        self.assertFalse(value.usesCaptures)

    def test_captures(self) -> None:
        """
        C{$N} reads the exchange's captures.
        """
        value = ComplexValue("$2-$1-$3", VariableTable())
        self.assertTrue(value.usesCaptures)
        self.assertEqual(value.evaluate(_Exchange(captures=("a", "b"))), "b-a-")

    def test_prefixFamilies(self) -> None:
        """
        The longest matching prefix family builds the getter, called with
        the full lowercased name.
        """
        table = VariableTable(
            [
                VariableSpec("x_", lambda name: lambda e: "short:" + name, prefix=True),
                VariableSpec("x_long_", lambda name: lambda e: "long:" + name, prefix=True),
            ]
        )
        self.assertEqual(ComplexValue("$x_a", table).evaluate(None), "short:x_a")
        self.assertEqual(ComplexValue("$X_Long_B", table).evaluate(None), "long:x_long_b")
        self.assertFalse(table.has("x_"))

    def test_defineReplaces(self) -> None:
        """
        L{VariableTable.define} replaces a variable for values compiled
        afterwards.
        """
        table = VariableTable()
        table.define("v", lambda e: "one")
        first = ComplexValue("$v", table)
        table.define("v", lambda e: "two")
        self.assertEqual(first.evaluate(None), "one")
        self.assertEqual(ComplexValue("$v", table).evaluate(None), "two")
