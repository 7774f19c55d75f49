"""
Tests for the small built-in modules: C{return}, C{add_header},
C{error_page}, C{access_log}/C{log_format} and C{error_log}.  Each is
checked by what a client or an operator sees: the response, or the lines
in the log files.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, List

from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.configsupport import ConfigTestCase
from twisted_rproxy.errorlog import ErrorLogObserver, formatLine
from twisted_rproxy.modules.accesslog import LogFile
from twisted_rproxy.service import ProxyService

#: One line of nginx's combined format, with the fields tests look at.
COMBINED = re.compile(
    r'^(?P<addr>\S+) - (?P<user>\S+) \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$'
)


class ReturnTests(ConfigTestCase):
    """
    C{return CODE [TEXT|URL]} and C{return URL}.
    """

    def serve(self, location: str, serverExtra: str = "") -> Any:
        """
        @return: a config with C{location} as the body of C{location /}.
        """
        return self.compileHTTP(
            f"server {{ listen 127.0.0.1:8080; server_name srv.example; {serverExtra}\n"
            f" location / {{ {location} }}\n}}"
        )

    def test_text(self) -> None:
        """
        A text body, with the default_type as Content-Type and a length.
        """
        response = self.get(self.serve('default_type text/x-test; return 200 "hello\\n";'))
        self.assertEqual((response.status, response.body), (200, b"hello\n"))
        self.assertEqual(response.header("Content-Type"), "text/x-test")
        self.assertEqual(response.header("Content-Length"), "6")

    def test_textWithErrorCode(self) -> None:
        """
        A text given with an error code is sent as is, not the error page.
        """
        response = self.get(self.serve('return 403 "go away";'))
        self.assertEqual((response.status, response.body), (403, b"go away"))

    def test_codeOnly(self) -> None:
        """
        An error code alone sends nginx's page; 204 or 200 alone an empty
        body.
        """
        response = self.get(self.serve("return 404;"))
        self.assertEqual(response.status, 404)
        self.assertIn(b"<title>404 Not Found</title>", response.body)
        response = self.get(self.serve("return 204;"))
        self.assertEqual((response.status, response.body), (204, b""))

    def test_redirectRelative(self) -> None:
        """
        A redirect to a path is made absolute with the request's host and
        port, as nginx's absolute_redirect does.
        """
        response = self.get(self.serve("return 301 /new$uri;"), "/old", host="a.example:8080")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header("Location"), "http://a.example:8080/new/old")
        self.assertIn(b"301 Moved Permanently", response.body)

    def test_redirectURLOnly(self) -> None:
        """
        C{return URL} is a 302.
        """
        response = self.get(self.serve("return https://$host$request_uri;"), "/p?q=1", host="a.example")
        self.assertEqual((response.status, response.header("Location")), (302, "https://a.example/p?q=1"))

    def test_redirectWithoutURL(self) -> None:
        """
        C{return 301;} sends the page with no (empty) Location header.
        """
        response = self.get(self.serve("return 301;"))
        self.assertEqual(response.status, 301)
        self.assertIsNone(response.header("Location"))

    def test_close(self) -> None:
        """
        C{return 444} closes the connection without any response.
        """
        responses = self.exchange(self.serve("return 444;"), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(responses, [])

    def test_serverLevel(self) -> None:
        """
        A server-level return answers before locations are matched.
        """
        config = self.serve('return 200 "location";', serverExtra='return 418 "server";')
        self.assertEqual(self.get(config).status, 418)

    def test_invalidCode(self) -> None:
        """
        A code that is neither a number nor a URL, and one over 999.
        """
        for args, shown in (("abc", "abc"), ("1000 x", "1000")):
            error = self.httpError(f"server {{ return {args}; }}")
            self.assertEqual(error, f'invalid return code "{shown}" in {self.confPath}:5')


class AddHeaderTests(ConfigTestCase):
    """
    C{add_header NAME VALUE [always]}.
    """

    def test_successOnlyUnlessAlways(self) -> None:
        """
        Without C{always} a header goes on 2xx/3xx responses only.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080;\n"
            " add_header X-Plain p; add_header X-Always a always;\n"
            ' location /ok { return 200 ok; }\n location /redirect { return 302 /x; }\n'
            ' location /bad { return 500 bad; }\n}'
        )
        for path, plain in (("/ok", "p"), ("/redirect", "p"), ("/bad", None)):
            response = self.get(config, path)
            self.assertEqual(response.header("X-Plain"), plain, path)
            self.assertEqual(response.header("X-Always"), "a", path)

    def test_variablesAndEmptyValues(self) -> None:
        """
        Values are evaluated per request; an empty result adds nothing.
        """
        config = self.compileHTTP(
            "server { listen 127.0.0.1:8080;\n"
            " add_header X-Host $host; add_header X-Maybe $http_x_in; add_header X-Id id-${request_method};\n"
            " location / { return 200 ok; }\n}"
        )
        response = self.get(config, host="a.example")
        self.assertEqual(response.header("X-Host"), "a.example")
        self.assertEqual(response.header("X-Id"), "id-GET")
        self.assertNotIn("x-maybe", [n.lower() for n, _v in response.headers])
        response = self.get(config, headers=[("X-In", "given")])
        self.assertEqual(response.header("X-Maybe"), "given")

    def test_invalidParameter(self) -> None:
        """
        A third argument other than C{always}.
        """
        self.assertEqual(
            self.httpError("add_header X y sometimes;"),
            f'invalid parameter "sometimes" in {self.confPath}:5',
        )


class ErrorPageTests(ConfigTestCase):
    """
    C{error_page CODE... [=[RESPONSE]] URI}.
    """

    def serve(self, errorPage: str) -> Any:
        """
        @return: a server whose C{/missing} location has no content (404)
            and whose C{/page} and C{@named} locations answer.
        """
        return self.compileHTTP(
            "server { listen 127.0.0.1:8080;\n"
            f" {errorPage}\n"
            " location /missing { }\n"
            ' location = /page { return 200 "page for $uri"; }\n'
            ' location @named { return 200 "named $uri"; }\n'
            "}"
        )

    def test_internalRedirectKeepsStatus(self) -> None:
        """
        C{error_page 404 /page} serves the page with the original status.
        """
        response = self.get(self.serve("error_page 404 /page;"), "/missing")
        self.assertEqual((response.status, response.body), (404, b"page for /page"))

    def test_changedStatus(self) -> None:
        """
        C{=200} answers with that status; a bare C{=} with the page's own.
        """
        response = self.get(self.serve("error_page 404 =200 /page;"), "/missing")
        self.assertEqual(response.status, 200)
        response = self.get(self.serve("error_page 404 = /page;"), "/missing")
        self.assertEqual(response.status, 200)

    def test_namedLocation(self) -> None:
        """
        A named location keeps the request's URI.
        """
        response = self.get(self.serve("error_page 404 @named;"), "/missing")
        self.assertEqual((response.status, response.body), (404, b"named /missing"))

    def test_externalRedirect(self) -> None:
        """
        A URL answers with a 302 to it (or the C{=} code if a redirect).
        """
        response = self.get(self.serve("error_page 404 http://elsewhere.example/;"), "/missing")
        self.assertEqual((response.status, response.header("Location")), (302, "http://elsewhere.example/"))
        response = self.get(self.serve("error_page 404 =301 http://elsewhere.example/;"), "/missing")
        self.assertEqual(response.status, 301)

    def test_invalid(self) -> None:
        """
        Codes out of 300..599 and a non-numeric C{=} are refused.
        """
        self.assertEqual(
            self.httpError("error_page 200 /x;"),
            f'value "200" must be between 300 and 599 in {self.confPath}:5',
        )
        self.assertEqual(
            self.httpError("error_page 404 =abc /x;"),
            f'invalid value "=abc" in {self.confPath}:5',
        )


class AccessLogTests(ConfigTestCase):
    """
    C{access_log} and C{log_format}: what lands in the files.
    """

    def lines(self, name: str) -> List[str]:
        """
        @return: the lines of PREFIX/logs/C{name} (none if it is absent).
        """
        path = os.path.join(self.prefix, "logs", name)
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()

    def compileLogging(self, httpBody: str) -> Any:
        """
        Compile C{httpBody} inside C{http {}} with no C{access_log off}
        above it.
        """
        return self.compile(f"events {{}}\nhttp {{\n{httpBody}\n}}\n")

    def test_combinedByDefault(self) -> None:
        """
        With no access_log at all, requests go to logs/access.log under the
        prefix in the combined format.
        """
        config = self.compileLogging(
            'server { listen 127.0.0.1:8080; location / { return 200 "four"; } }'
        )
        self.get(
            config, "/path?q=1", headers=[("Referer", "http://r.example/"), ("User-Agent", 'ua "quoted"')],
            peer=("192.0.2.9", 4000),
        )
        [line] = self.lines("access.log")
        match = COMBINED.match(line)
        assert match is not None, line
        self.assertEqual(match.group("addr"), "192.0.2.9")
        self.assertEqual(match.group("user"), "-")
        self.assertEqual(match.group("request"), "GET /path?q=1 HTTP/1.1")
        self.assertEqual((match.group("status"), match.group("bytes")), ("200", "4"))
        self.assertEqual(match.group("referer"), "http://r.example/")
        self.assertEqual(match.group("agent"), "ua \\x22quoted\\x22")
        stamp = time.strptime(match.group("time"), "%d/%b/%Y:%H:%M:%S %z")
        self.assertGreater(stamp.tm_year, 2000)

    def test_customJSONFormat(self) -> None:
        """
        C{escape=json}: quotes, backslashes and control characters escaped
        as JSON; unset variables empty, so each line parses as JSON.
        """
        import json

        config = self.compileLogging(
            "log_format json escape=json '{\"uri\":\"$uri\",\"agent\":\"$http_user_agent\","
            "\"ref\":\"$http_referer\",\"status\":$status}';\n"
            "access_log logs/json.log json;\n"
            "server { listen 127.0.0.1:8080; location / { return 200 ok; } }"
        )
        self.get(config, "/a", headers=[("User-Agent", 'x "y" \\z\tw')])
        [line] = self.lines("json.log")
        self.assertEqual(
            json.loads(line), {"uri": "/a", "agent": 'x "y" \\z\tw', "ref": "", "status": 200}
        )
        self.assertIn("\\t", line)

    def test_condition(self) -> None:
        """
        C{if=}: a line only when the condition is neither empty nor C{0}.
        """
        config = self.compileLogging(
            "map $status $loggable { ~^2 0; default 1; }\n"
            "log_format short '$status $uri';\n"
            "access_log logs/errors.log short if=$loggable;\n"
            "server { listen 127.0.0.1:8080;\n"
            " location /ok { return 200 ok; }\n location /bad { return 503; }\n}"
        )
        for path in ("/ok", "/bad", "/ok", "/bad"):
            self.get(config, path)
        self.assertEqual(self.lines("errors.log"), ["503 /bad", "503 /bad"])

    def test_off(self) -> None:
        """
        C{access_log off} in a location stops its lines only.
        """
        config = self.compileLogging(
            "log_format short '$uri';\naccess_log logs/a.log short;\n"
            "server { listen 127.0.0.1:8080;\n"
            " location /quiet { access_log off; return 200 q; }\n"
            " location / { return 200 l; }\n}"
        )
        self.get(config, "/quiet")
        self.get(config, "/loud")
        self.assertEqual(self.lines("a.log"), ["/loud"])

    def test_innerListReplacesOuter(self) -> None:
        """
        A location's access_log list replaces the server's, like
        add_header; several in one block all get the line.
        """
        config = self.compileLogging(
            "log_format a 'a $uri'; log_format b 'b $uri';\n"
            "access_log logs/outer.log a;\n"
            "server { listen 127.0.0.1:8080;\n"
            " location /both { access_log logs/one.log a; access_log logs/two.log b; return 200 x; }\n"
            " location / { return 200 y; }\n}"
        )
        self.get(config, "/both")
        self.get(config, "/other")
        self.assertEqual(self.lines("one.log"), ["a /both"])
        self.assertEqual(self.lines("two.log"), ["b /both"])
        self.assertEqual(self.lines("outer.log"), ["a /other"])

    def test_oneFileTwoFormats(self) -> None:
        """
        Two formats writing one file share one descriptor and interleave
        whole lines in request order.
        """
        config = self.compileLogging(
            "log_format first '1 $uri'; log_format second '2 $uri';\n"
            "server { listen 127.0.0.1:8080;\n"
            " location /a { access_log logs/shared.log first; return 200 a; }\n"
            " location /b { access_log logs/shared.log second; return 200 b; }\n}"
        )
        self.get(config, "/a")
        self.get(config, "/b")
        self.get(config, "/a")
        self.assertEqual(self.lines("shared.log"), ["1 /a", "2 /b", "1 /a"])
        locations = config.servers[0].locations
        [a] = locations.match("/a").payload.logSinks
        [b] = locations.match("/b").payload.logSinks
        self.assertIs(a.logFile, b.logFile)

    def test_reloadSharesTheFile(self) -> None:
        """
        Compiling again (a reload) reuses the open file of a path rather
        than opening another descriptor.
        """
        text = "log_format s '$uri';\naccess_log logs/r.log s;\nserver { listen 127.0.0.1:8080; }"
        first = self.compileLogging(text)
        second = self.compileLogging(text)
        self.assertIs(
            list(first.stateOf("log")["files"].values())[0],
            list(second.stateOf("log")["files"].values())[0],
        )

    def test_reopenAfterRename(self) -> None:
        """
        After rotation renames the file, reopening (C{rproxy -s reopen})
        makes new lines go to a new file at the configured path.
        """
        config = self.compileLogging(
            "log_format s '$uri';\naccess_log logs/rot.log s;\n"
            "server { listen 127.0.0.1:8080; location / { return 200 x; } }"
        )
        self.get(config, "/before")
        path = os.path.join(self.prefix, "logs", "rot.log")
        os.rename(path, path + ".1")
        self.get(config, "/still-old-file")
        ProxyService(config, self.reactor).reopenLogs()
        self.get(config, "/after")
        self.assertEqual(self.lines("rot.log.1"), ["/before", "/still-old-file"])
        self.assertEqual(self.lines("rot.log"), ["/after"])

    def test_syslogRefused(self) -> None:
        """
        A syslog target is refused by name rather than opened as a file
        called C{syslog:...}.
        """
        self.assertEqual(
            self.httpError("access_log syslog:server=127.0.0.1;"),
            f'"access_log" to syslog is not supported by twisted_rproxy in {self.confPath}:5',
        )
        # error_log is only used in the main context (elsewhere it is
        # ignored with a notice), so that is where syslog is refused.
        self.assertEqual(
            str(self.configError("error_log syslog:server=127.0.0.1;\nevents {}\n")),
            f'"error_log" to syslog is not supported by twisted_rproxy in {self.confPath}:1',
        )
        self.assertEqual(sorted(os.listdir(self.prefix)), ["logs", "nginx.conf"])

    def test_invalidLogFormatEscape(self) -> None:
        """
        An escape other than default, json or none.
        """
        self.assertEqual(
            self.httpError("log_format x escape=xml '$uri';"),
            f'unknown log format escaping "xml" in {self.confPath}:5',
        )


class LogFileTests(ConfigTestCase):
    """
    L{LogFile} sharing by path.
    """

    def test_closedFileIsReopened(self) -> None:
        """
        A closed L{LogFile} is not handed out again.
        """
        path = os.path.join(self.prefix, "logs", "closed.log")
        first = LogFile.open(path)
        first.close()
        second = LogFile.open(path)
        self.assertIsNot(first, second)
        second.writeLine(b"x\n")
        second.close()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"x\n")


def _event(level: LogLevel, text: str, **extra: Any) -> dict:
    """
    @return: a Twisted log event at C{level} saying C{text}.
    """
    event = {"log_level": level, "log_format": text, "log_time": time.time()}
    event.update(extra)
    return event


class ErrorLogTests(ConfigTestCase):
    """
    C{error_log FILE [LEVEL]} and the nginx line format.
    """

    LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] (\d+)#(\d+): (.*)$")

    def observe(self, level: str, events: List[dict]) -> List[str]:
        """
        @return: the lines an observer at C{level} writes for C{events}.
        """
        path = os.path.join(self.prefix, "logs", "error.log")
        observer = ErrorLogObserver(path, level)
        observer._file = open(path, "a", buffering=1)
        try:
            for event in events:
                observer(event)
        finally:
            observer._file.close()
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()

    def test_levels(self) -> None:
        """
        C{warn} keeps warnings and worse; C{error} (the default) drops
        warnings; C{info} keeps info.
        """
        events = [
            _event(LogLevel.debug, "d"),
            _event(LogLevel.info, "i"),
            _event(LogLevel.warn, "w"),
            _event(LogLevel.error, "e"),
            _event(LogLevel.critical, "c"),
        ]
        lines = self.observe("warn", events)
        self.assertEqual([self.LINE.match(l).group(1) for l in lines], ["warn", "error", "crit"])
        os.unlink(os.path.join(self.prefix, "logs", "error.log"))
        lines = self.observe("error", events)
        self.assertEqual([self.LINE.match(l).group(4) for l in lines], ["e", "c"])
        os.unlink(os.path.join(self.prefix, "logs", "error.log"))
        self.assertEqual(len(self.observe("info", events)), 4)

    def test_lineFormat(self) -> None:
        """
        nginx's layout: date, time, [level], pid#tid, message.
        """
        stamp = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))
        line = formatLine(_event(LogLevel.error, "upstream {u} failed", u="b", log_time=stamp))
        match = self.LINE.match(line.rstrip("\n"))
        assert match is not None, line
        self.assertTrue(line.startswith("2026/01/02 03:04:05 [error] "))
        self.assertEqual(int(match.group(2)), os.getpid())
        self.assertEqual(match.group(4), "upstream b failed")

    def test_failureTraceback(self) -> None:
        """
        An event with a failure carries its traceback after the message.
        """
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        line = formatLine(_event(LogLevel.critical, "boom", log_failure=failure))
        self.assertTrue(line.split("\n")[0].endswith(": boom"))
        self.assertIn("ZeroDivisionError", line)

    def test_fromConfig(self) -> None:
        """
        The main-context error_log, relative to the prefix; the default
        when there is none; nothing when there is no default.
        """
        config = self.compile("error_log logs/e.log warn;\nevents {}\n")
        observer = ErrorLogObserver.fromConfig(config)
        assert observer is not None
        self.assertEqual(observer.path, os.path.join(self.prefix, "logs", "e.log"))
        self.assertEqual(observer.threshold, 3)
        bare = self.compile("events {}\n")
        self.assertIsNone(ErrorLogObserver.fromConfig(bare))
        fallback = ErrorLogObserver.fromConfig(bare, "logs/error.log")
        assert fallback is not None
        self.assertEqual(fallback.path, os.path.join(self.prefix, "logs", "error.log"))

    def test_invalidLevel(self) -> None:
        """
        A level nginx does not have.
        """
        error = self.configError("error_log logs/e.log verbose;\nevents {}\n")
        self.assertEqual(str(error), f'invalid log level "verbose" in {self.confPath}:1')
