# -*- test-case-name: tests.unit.test_accesslog -*-
"""
C{access_log} and C{log_format}: one line per finished request, formatted
from variables compiled at load, like nginx's log module; and C{error_log},
whose settings the service turns into a log observer.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attr
from zope.interface import implementer

from ..config.ast import Directive
from ..config.registry import HTTP, LOCATION, MAIN, SERVER, DirectiveSpec, spec
from ..interfaces import ILogSink
from ..module import ProxyModule
from ..variables import ComplexValue, simple

COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status '
    '$body_bytes_sent "$http_referer" "$http_user_agent"'
)

ERROR_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")


def _escapeDefault(text: str) -> str:
    """
    Escape for the default log format escaping, as nginx's
    C{ngx_http_log_escape}: C{"}, C{\\}, control characters and bytes above
    0x7E become C{\\xXX}.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch == '"' or ch == "\\" or code < 32 or 126 < code < 256:
            out.append("\\x%02X" % code)
        elif code >= 256:
            # Text decoded as UTF-8 (the path): escape each of its bytes.
            out.extend("\\x%02X" % b for b in ch.encode("utf-8", "surrogateescape"))
        else:
            out.append(ch)
    return "".join(out)


_JSON_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _escapeJSON(text: str) -> str:
    """
    Escape for C{escape=json} as nginx's C{ngx_escape_json}: C{"} and
    C{\\} get a backslash, C{\\n \\r \\t \\b \\f} their short forms, other
    control characters C{\\u00XX}.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif code < 32:
            out.append(_JSON_SHORT.get(ch) or "\\u%04x" % code)
        else:
            out.append(ch)
    return "".join(out)


_ESCAPES = {"default": _escapeDefault, "json": _escapeJSON, "none": lambda t: t}

#: What an unset variable logs as, per escaping: nginx writes C{-}, except
#: with C{escape=json}, where it writes nothing so the field stays valid.
_UNSET = {"default": "-", "json": "", "none": "-"}


def _parseLogFormat(directive: Directive) -> Tuple[str, str, str, Directive]:
    """
    C{log_format NAME [escape=default|json|none] STRING...}: the strings
    are joined, as nginx joins them.
    """
    args = list(directive.args)
    name = args.pop(0)
    escape = "default"
    if args and args[0].startswith("escape="):
        escape = args.pop(0)[7:]
        if escape not in _ESCAPES:
            raise ValueError(f'unknown log format escaping "{escape}"')
    if not args:
        raise ValueError('invalid number of arguments in "log_format" directive')
    return (name, escape, "".join(args), directive)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AccessLogSpec:
    """
    One C{access_log} directive, parsed.
    """

    path: Optional[str]  # None for "off"
    formatName: str
    condition: Optional[str]
    directive: Directive


def _refuseSyslog(directive: Directive) -> None:
    """
    Refuse a C{syslog:} target by name: opened as a path it would quietly
    create a file called C{syslog:server=...} under the prefix.
    """
    if directive.args[0].startswith("syslog:"):
        raise ValueError(f'"{directive.name}" to syslog is not supported by twisted_rproxy')


def _parseAccessLog(directive: Directive) -> AccessLogSpec:
    """
    C{access_log off} or C{access_log PATH [FORMAT] [if=COND] [buffer=...]}.
    """
    args = directive.args
    if args[0] == "off":
        if len(args) != 1:
            raise ValueError(f'invalid parameter "{args[1]}"')
        return AccessLogSpec(None, "", None, directive)
    _refuseSyslog(directive)
    formatName = "combined"
    condition = None
    for arg in args[1:]:
        if arg.startswith("if="):
            condition = arg[3:]
        elif arg.startswith(("buffer=", "flush=", "gzip")):
            continue  # written line by line; buffering is an optimisation
        elif "=" in arg:
            raise ValueError(f'invalid parameter "{arg}"')
        else:
            formatName = arg
    return AccessLogSpec(args[0], formatName, condition, directive)


def _parseErrorLog(directive: Directive) -> Tuple[str, str]:
    """
    C{error_log PATH|stderr [LEVEL]}.
    """
    _refuseSyslog(directive)
    level = directive.args[1] if len(directive.args) > 1 else "error"
    if level not in ERROR_LEVELS:
        raise ValueError(f'invalid log level "{level}"')
    return (directive.args[0], level)


class LogFile:
    """
    An append-only log file shared by every format that names it; lines
    are written whole so concurrent writers never interleave a line.

    Use L{LogFile.open}: it hands out the one open L{LogFile} of a path
    while any config still uses it, so a reload neither opens a second
    descriptor per file nor leaves requests of the old config writing to a
    closed one, and C{-s reopen} reaches every config's lines.
    """

    _open: "weakref.WeakValueDictionary[str, LogFile]" = weakref.WeakValueDictionary()

    def __init__(self, path: str) -> None:
        """
        Open C{path} for appending, unbuffered so each line is written
        whole at once.
        """
        self.path = path
        self._file = open(path, "ab", buffering=0)

    @classmethod
    def open(cls, path: str) -> "LogFile":
        """
        @return: the open L{LogFile} for C{path}, opening it if no config
            holds it.
        @raise OSError: when the file cannot be opened.
        """
        found = cls._open.get(path)
        if found is None or found._file.closed:
            found = cls._open[path] = cls(path)
        return found

    def writeLine(self, line: bytes) -> None:
        """
        Append one line.
        """
        self._file.write(line)

    def reopen(self) -> None:
        """
        Reopen the path after log rotation (C{rproxy -s reopen}).
        """
        self._file.close()
        self._file = open(self.path, "ab", buffering=0)

    def close(self) -> None:
        """
        Close the file.
        """
        self._file.close()


@implementer(ILogSink)
class AccessLogSink:
    """
    Formats a finished exchange into one line of an access log.
    """

    def __init__(self, logFile: LogFile, parts: Sequence[Tuple[bool, Any]],
                 escape: Any, condition: Optional[ComplexValue],
                 unset: str = "-") -> None:
        """
        @param logFile: the shared file.
        @param parts: C{(isVariable, literal or getter)} pairs of the format.
        @param escape: escapes one variable value.
        @param condition: the C{if=} value, or C{None}.
        @param unset: what an unset variable writes.
        """
        self.logFile = logFile
        self._parts = parts
        self._escape = escape
        self._condition = condition
        self._unset = unset

    def log(self, exchange: Any) -> None:
        """
        Write C{exchange}'s line unless the C{if=} condition is empty or 0.
        """
        if self._condition is not None:
            value = self._condition.evaluate(exchange)
            if not value or value == "0":
                return
        out = []
        for isVariable, part in self._parts:
            if isVariable:
                value = part(exchange)
                out.append(self._escape(value) if value else self._unset)
            else:
                out.append(part)
        out.append("\n")
        self.logFile.writeLine("".join(out).encode("utf-8", "surrogateescape"))


class AccessLogModule(ProxyModule):
    """
    Declares C{log_format}, C{access_log} and C{error_log}.
    """

    name = "log"
    order = 900

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: the logging directives.
        """
        return [
            spec("log_format", [HTTP], (2, None), parse=_parseLogFormat, multiple=True),
            spec("access_log", [HTTP, SERVER, LOCATION], (1, None), parse=_parseAccessLog,
                 multiple=True),
            spec("error_log", [MAIN], (1, 2), parse=_parseErrorLog, multiple=True),
            # Per-block error logs: every message goes to the main one here.
            spec("error_log", [HTTP, SERVER, LOCATION], (1, 2), ignored=True),
        ]

    def variables(self) -> Sequence[Any]:
        """
        @return: C{$remote_user}, empty until an auth module sets it.
        """
        return [simple("remote_user", lambda e: getattr(e, "remoteUser", None))]

    def configure(self, compiler: Any) -> None:
        """
        Compile the named formats and prepare the shared files.
        """
        formats: Dict[str, Tuple[str, str, Optional[Directive]]] = {
            "combined": ("default", COMBINED, None)
        }
        for name, escape, text, directive in compiler.httpConf.get("log_format") or []:
            if name in formats:
                raise directive.error(f'duplicate "log_format" name "{name}"')
            formats[name] = (escape, text, directive)
        compiled = {}
        for name, (_escape, text, directive) in formats.items():
            # Every format is compiled here, used or not, so that an unknown
            # variable in one is an error at load, as in nginx.
            value = compiler.compileValue(text, directive)
            compiled[name] = tuple((not isinstance(p, str), p) for p in value.parts)
        compiler.state[self.name] = {
            "formats": formats,
            "files": {},
            "compiled": compiled,
            "errorLog": (compiler.mainConf.get("error_log") or [None])[0],
        }

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        Attach this location's access log sinks (inherited as a set).
        """
        entries: List[AccessLogSpec] = location.conf.get("access_log") or [
            AccessLogSpec("logs/access.log", "combined", None, None)  # type: ignore[arg-type]
        ]
        location.logSinks = [
            self._sink(entry, compiler) for entry in entries if entry.path is not None
        ]

    def _sink(self, entry: AccessLogSpec, compiler: Any) -> AccessLogSink:
        """
        Build the sink of one C{access_log}: its format, its condition and
        the shared file of its path.
        """
        state = compiler.state[self.name]
        found = state["formats"].get(entry.formatName)
        if found is None:
            raise _located(entry.directive, f'unknown log format "{entry.formatName}"')
        escape = found[0]
        parts = state["compiled"][entry.formatName]
        condition = None
        if entry.condition is not None:
            condition = compiler.compileValue(entry.condition, entry.directive)
        path = compiler.resolvePath(entry.path)
        logFile = state["files"].get(path)
        if logFile is None:
            try:
                logFile = state["files"][path] = LogFile.open(path)
            except OSError as e:
                raise _located(
                    entry.directive, f'open() "{path}" failed ({os.strerror(e.errno or 0)})'
                )
        return AccessLogSink(logFile, parts, _ESCAPES[escape], condition, _UNSET[escape])


def _located(directive: Optional[Directive], message: str) -> Exception:
    """
    @return: a L{ConfigError} at C{directive}, or unlocated for the
        implied default C{access_log}.
    """
    from ..config.errors import ConfigError

    if directive is None:
        return ConfigError(message)
    return directive.error(message)
