# -*- test-case-name: tests.unit.test_config_parser -*-
"""
Read nginx-syntax configuration text into a tree of L{Directive}s.

The lexer follows the rules of nginx's C{ngx_conf_read_token} so that any
config nginx accepts splits into the same arguments here, and any config it
rejects for syntax is rejected here with the same message:

  - blanks (space, tab, CR, LF) separate arguments; C{;} ends a simple
    directive, C{{} opens a block and C{}} closes one;
  - C{#} starts a comment only where an argument could start; inside a
    token (C{a#b}) or a quoted string it is an ordinary character;
  - C{"..."} and C{'...'} quote an argument (possibly empty) and must be
    followed by a blank, C{;} or C{{};
  - a backslash makes the next character ordinary while scanning; afterwards
    C{\\"}, C{\\'}, C{\\\\}, C{\\n}, C{\\r}, C{\\t} are resolved in I{every}
    argument, quoted or not, and any other backslash is kept as written;
  - in an unquoted argument a C{{} right after C{$} belongs to it, so
    C{${var}} works, and C{}} is only special where an argument could start.

C{include} is expanded while parsing, as nginx does, so the tree never holds
an C{include} directive and every directive keeps its own file and line.
"""

from __future__ import annotations

import enum
import glob
import os
from typing import List, Optional, Set, Tuple

import attr

from .ast import Directive
from .errors import ConfigError

__all__ = ["parseString", "parseFile"]

_BLANKS = frozenset(" \t\r\n")
_GLOB_CHARS = frozenset("*?[")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_UNEXPECTED_EOF = 'unexpected end of file, expecting ";" or "}"'


class _End(enum.Enum):
    """
    What terminated a statement read by L{_Lexer.nextStatement}; these are
    nginx's C{NGX_OK}, C{NGX_CONF_BLOCK_START}, C{NGX_CONF_BLOCK_DONE} and
    C{NGX_CONF_FILE_DONE}.
    """

    SEMICOLON = "semicolon"
    BLOCK_START = "block start"
    BLOCK_END = "block end"
    EOF = "end of file"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class _Statement:
    """
    One statement as the lexer sees it, before it becomes a L{Directive}.

    @ivar end: what terminated it.
    @ivar args: the directive name followed by its arguments; empty for
        L{_End.BLOCK_END} and L{_End.EOF}.
    @ivar line: the line of the name, or for C{}}/end of file the line the
        lexer was on, which is what nginx reports for those.
    """

    end: _End
    args: Tuple[str, ...]
    line: int


def _unescape(raw: str) -> str:
    """
    Resolve the backslash escapes nginx resolves, keeping any other
    backslash verbatim (C{\\d} in a regex stays C{\\d}).

    @param raw: the argument as written, without surrounding quotes.
    @return: the argument's value.
    """
    if "\\" not in raw:
        return raw
    out: List[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] in _ESCAPES:
            out.append(_ESCAPES[raw[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _Lexer:
    """
    Split the text of one file into statements, tracking the line number.

    @ivar filename: the name used in error locations.
    """

    def __init__(self, text: str, filename: str) -> None:
        """
        @param text: the whole text of the file.
        @param filename: the name to put in directive and error locations.
        """
        self._text = text
        self._pos = 0
        self._line = 1
        self.filename = filename

    def _peek(self) -> Optional[str]:
        """
        @return: the next character, or C{None} at the end of the text.
        """
        if self._pos < len(self._text):
            return self._text[self._pos]
        return None

    def _advance(self) -> str:
        """
        Consume one character, counting lines the way nginx does (on LF).

        @return: the consumed character.
        """
        ch = self._text[self._pos]
        self._pos += 1
        if ch == "\n":
            self._line += 1
        return ch

    def _error(self, message: str) -> ConfigError:
        """
        @return: a L{ConfigError} located at the current line.
        """
        return ConfigError(message, self.filename, self._line)

    def nextStatement(self) -> _Statement:
        """
        Read arguments up to and including the next C{;}, C{{}, C{}} or the
        end of the text.

        @raise ConfigError: on a syntax error.
        """
        args: List[str] = []
        firstLine = self._line
        while True:
            ch = self._peek()
            if ch is None:
                if args:
                    raise self._error(_UNEXPECTED_EOF)
                return _Statement(_End.EOF, (), self._line)
            if ch in _BLANKS:
                self._advance()
            elif ch == "#":
                self._skipComment()
            elif ch == ";" or ch == "{":
                self._advance()
                if not args:
                    raise self._error(f'unexpected "{ch}"')
                end = _End.SEMICOLON if ch == ";" else _End.BLOCK_START
                return _Statement(end, tuple(args), firstLine)
            elif ch == "}":
                self._advance()
                if args:
                    raise self._error('unexpected "}"')
                return _Statement(_End.BLOCK_END, (), self._line)
            else:
                if not args:
                    firstLine = self._line
                if ch == '"' or ch == "'":
                    args.append(self._readQuoted(ch))
                else:
                    args.append(self._readBare())

    def _skipComment(self) -> None:
        """
        Skip from C{#} up to, not including, the end of the line, so the
        newline is still counted.
        """
        end = self._text.find("\n", self._pos)
        self._pos = len(self._text) if end == -1 else end

    def _skipEscaped(self) -> None:
        """
        Consume the character after a backslash, whatever it is.

        @raise ConfigError: when the text ends right after the backslash.
        """
        if self._peek() is None:
            raise self._error(_UNEXPECTED_EOF)
        self._advance()

    def _readQuoted(self, quote: str) -> str:
        """
        Read a quoted argument starting at its opening quote.

        @param quote: C{'"'} or C{"'"}.
        @return: the unescaped contents, possibly empty.
        @raise ConfigError: if the quote is never closed, or the closing
            quote is followed by something other than a blank, C{;} or C{{}.
        """
        self._advance()
        start = self._pos
        while True:
            ch = self._peek()
            if ch is None:
                raise self._error(_UNEXPECTED_EOF)
            self._advance()
            if ch == "\\":
                self._skipEscaped()
            elif ch == quote:
                break
        raw = self._text[start : self._pos - 1]
        after = self._peek()
        if after is not None and after not in _BLANKS and after not in ";{":
            raise self._error(f'unexpected "{after}"')
        return _unescape(raw)

    def _readBare(self) -> str:
        """
        Read an unquoted argument, which ends before a blank, C{;} or a
        C{{} that does not follow C{$}.

        @return: the unescaped argument.
        @raise ConfigError: if the text ends inside the argument.
        """
        start = self._pos
        afterDollar = False
        while True:
            ch = self._peek()
            if ch is None:
                raise self._error(_UNEXPECTED_EOF)
            if ch == "{" and afterDollar:
                self._advance()
                continue
            if ch in _BLANKS or ch == ";" or ch == "{":
                break
            self._advance()
            afterDollar = ch == "$"
            if ch == "\\":
                self._skipEscaped()
        return _unescape(self._text[start : self._pos])


class _Parser:
    """
    Build directive trees for a main text and the files it includes.

    @ivar _includeBase: the directory relative C{include} paths resolve
        against, in every file (nginx's conf prefix).
    @ivar _active: real paths of the files being parsed right now, to refuse
        an include cycle instead of recursing forever.
    """

    def __init__(self, includeBase: str) -> None:
        """
        @param includeBase: see L{_Parser._includeBase}.
        """
        self._includeBase = includeBase
        self._active: Set[str] = set()

    def parseText(
        self, text: str, filename: str, realPath: Optional[str] = None
    ) -> Tuple[Directive, ...]:
        """
        Parse the whole of one file's text.

        @param realPath: the file's canonical path when it is a file, so
            that including it again from inside is detected as a cycle.
        """
        if realPath is not None:
            self._active.add(realPath)
        try:
            return tuple(self._parseBlock(_Lexer(text, filename), nested=False))
        finally:
            if realPath is not None:
                self._active.discard(realPath)

    def _parseBlock(self, lexer: _Lexer, nested: bool) -> List[Directive]:
        """
        Parse statements until the end of the block or of the file.

        @param nested: whether we are inside C{{...}} and so need a C{}}.
        """
        result: List[Directive] = []
        while True:
            statement = lexer.nextStatement()
            if statement.end is _End.EOF:
                if nested:
                    raise ConfigError(
                        'unexpected end of file, expecting "}"',
                        lexer.filename,
                        statement.line,
                    )
                return result
            if statement.end is _End.BLOCK_END:
                if not nested:
                    raise ConfigError('unexpected "}"', lexer.filename, statement.line)
                return result
            name, args = statement.args[0], statement.args[1:]
            if name == "include":
                result.extend(self._include(statement, lexer.filename))
                continue
            block = None
            if statement.end is _End.BLOCK_START:
                block = tuple(self._parseBlock(lexer, nested=True))
            result.append(Directive(name, args, block, lexer.filename, statement.line))

    def _include(self, statement: _Statement, filename: str) -> List[Directive]:
        """
        Expand C{include PATTERN;} into the directives of the files it names.

        @param statement: the C{include} statement.
        @param filename: the file the statement is in, for error locations.
        """
        line = statement.line
        if statement.end is not _End.SEMICOLON:
            raise ConfigError(
                'directive "include" is not terminated by ";"', filename, line
            )
        if len(statement.args) != 2:
            raise ConfigError(
                'invalid number of arguments in "include" directive', filename, line
            )
        result: List[Directive] = []
        for path in self._expand(statement.args[1]):
            realPath = os.path.realpath(path)
            if realPath in self._active:
                raise ConfigError(f'recursive include of "{path}"', filename, line)
            text = _readFile(path, filename, line)
            result.extend(self.parseText(text, path, realPath))
        return result

    def _expand(self, pattern: str) -> List[str]:
        """
        Turn an C{include} argument into the paths to read, in order.

        A pattern with C{*}, C{?} or C{[} is a glob whose matches are read in
        sorted order, and which may match nothing; anything else is one path
        that must exist.  Relative patterns resolve against the include base,
        whose own characters are never taken as glob syntax.
        """
        if os.path.isabs(pattern):
            path, globPath = pattern, pattern
        else:
            path = os.path.join(self._includeBase, pattern)
            globPath = os.path.join(glob.escape(self._includeBase), pattern)
        if _GLOB_CHARS.isdisjoint(pattern):
            return [path]
        return sorted(glob.glob(globPath))


def _readFile(
    path: str, filename: Optional[str] = None, line: Optional[int] = None
) -> str:
    """
    Read a config file as text, failing the way nginx reports it.

    Bytes that are not UTF-8 survive as surrogate escapes, since nginx
    treats the config as bytes and must not be stricter than that.

    @param path: the file to read.
    @param filename: where the reference to C{path} was written, if anywhere.
    @param line: the line of that reference.
    @raise ConfigError: C{open() "PATH" failed (REASON)}.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConfigError(f'open() "{path}" failed ({reason})', filename, line) from e
    return data.decode("utf-8", "surrogateescape")


def parseString(
    text: str, filename: str = "<string>", includeBase: Optional[str] = None
) -> Tuple[Directive, ...]:
    """
    Parse configuration text.

    @param text: the configuration.
    @param filename: the name to give in directive locations and errors.
    @param includeBase: the directory relative C{include} paths resolve
        against; the current directory when C{None}.
    @return: the top-level directives, with includes expanded.
    @raise ConfigError: on any syntax or include error.
    """
    base = os.getcwd() if includeBase is None else includeBase
    return _Parser(base).parseText(text, filename)


def parseFile(path: str, includeBase: Optional[str] = None) -> Tuple[Directive, ...]:
    """
    Parse a configuration file.

    @param path: the main configuration file.
    @param includeBase: the directory relative C{include} paths resolve
        against; by default the directory holding C{path}, like nginx's
        conf prefix.
    @return: the top-level directives, with includes expanded.
    @raise ConfigError: if the file cannot be read, or on any syntax or
        include error.
    """
    if includeBase is None:
        includeBase = os.path.dirname(os.path.abspath(path))
    text = _readFile(path)
    return _Parser(includeBase).parseText(text, path, os.path.realpath(path))
