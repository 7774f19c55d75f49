# -*- test-case-name: tests.unit.test_routing -*-
"""
Request routing with nginx's exact rules: which C{server} a C{Host} selects,
which C{location} a URI selects, and the normalisation of both that nginx
performs before it looks anything up.

Everything is compiled when the tables are built so that the per-request
lookups are cheap: location prefixes live in the same prefix-grouped binary
tree nginx builds (C{ngx_http_init_static_location_trees}), server names in
dictionaries, and every regular expression is compiled once.

Strings: request paths and hosts are bytes on the wire.  They are decoded as
UTF-8 with C{surrogateescape} (rather than latin-1) so that valid UTF-8
compares equal to the UTF-8 config text and reads naturally in logs, while
any other byte survives as a lone surrogate:
C{s.encode("utf-8", "surrogateescape")} gives back the exact bytes.
Regular expressions still match bytes like nginx's PCRE (no UTF mode): they
run over the UTF-8 bytes seen as latin-1 characters, so C{.} is one byte,
and their captures are mapped back to the same decoded form.  Character
classes and case folding are ASCII-only, as with PCRE's default tables.
"""

from __future__ import annotations

import re
import socket
import sys
from types import MappingProxyType
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import attr

from ..config.ast import Directive
from ..config.errors import ConfigError

__all__ = [
    "LocationSpec",
    "LocationMatch",
    "LocationTree",
    "ServerNameTable",
    "normalizeHost",
    "normalizePath",
    "compilePcre",
    "PcreRegex",
    "PcreMatch",
    "PcreError",
]


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def _configError(source: Optional[Directive], message: str) -> ConfigError:
    """
    Build a L{ConfigError} located at C{source} when there is one, so every
    routing error reads like nginx's C{... in FILE:LINE}.
    """
    if source is None:
        return ConfigError(message)
    return source.error(message)  # type: ignore[return-value]


def _located(source: Optional[Directive], message: str) -> str:
    """
    Format a warning the way L{ConfigError} formats errors, so warnings and
    errors read alike in the log.
    """
    if source is None:
        return message
    return f"{message} in {source.filename}:{source.line}"


# ---------------------------------------------------------------------------
# PCRE -> Python re
# ---------------------------------------------------------------------------


class PcreError(ValueError):
    """
    A PCRE pattern that cannot be compiled, or uses a PCRE feature Python's
    C{re} lacks; callers turn it into a located L{ConfigError}.
    """


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# POSIX classes, written as the members of a Python character class.
_POSIX = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "xdigit": "0-9A-Fa-f",
    "word": "\\w",
    "cntrl": "\\x00-\\x1f\\x7f",
    "print": "\\x20-\\x7e",
    "graph": "\\x21-\\x7e",
    "punct": "!-/:-@\\[-`{-~",
    "ascii": "\\x00-\\x7f",
}

# Escapes Python's re understands exactly as PCRE does.
_SAME_ESCAPES = frozenset("bBdDsSwWtnrfa")
_SAME_CLASS_ESCAPES = frozenset("dDsSwWtnrfab")

_INLINE_FLAGS = re.compile(r"\(\?([A-Za-z]*)(?:-([A-Za-z]*))?([:)])")


def _literal(char: str) -> str:
    """
    Spell one literal character so that C{re} reads it as itself, inside or
    outside a character class.
    """
    return re.escape(char)


def _groupName(pattern: str, name: str) -> str:
    """
    Check a capture name: PCRE and Python accept the same identifier
    syntax, and nginx turns names into variables.
    """
    if not _NAME.match(name):
        raise PcreError(f'invalid group name "{name}"')
    return name


class _PcreTranslator:
    """
    Rewrite a PCRE pattern into an equivalent Python C{re} pattern: named
    groups C{(?<n>..)}, C{\\z}, C{\\h}, POSIX classes, C{\\Q..\\E},
    C{\\x{..}} and mid-pattern option settings C{(?i)} (which Python only
    allows at the start) are converted; PCRE features C{re} lacks raise
    L{PcreError} instead of silently matching something else.

    Like nginx's PCRE (no UTF mode unless the pattern starts with
    C{(*UTF)}), the result matches bytes: it is meant to run over the
    subject's UTF-8 bytes seen as latin-1 characters, so non-ASCII literals
    are emitted as their UTF-8 bytes.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0
        self.out: List[str] = []
        # one entry per open group: the inline option settings active in it
        self.stack: List[List[str]] = [[]]
        self.ucp = False
        self.bytewise = True
        self.groups = 0

    def _text(self, text: str) -> str:
        """
        Emit source text literally: as UTF-8 bytes in byte mode.
        """
        if self.bytewise and not text.isascii():
            text = text.encode("utf-8", "surrogateescape").decode("latin-1")
        return "".join(_literal(c) for c in text)

    def _codePoint(self, value: int) -> str:
        """
        Emit the character an escape names; in byte mode it must be a byte.
        """
        if value > (0xFF if self.bytewise else sys.maxunicode):
            raise PcreError("character code point value in \\x{} or \\o{} is too large")
        return _literal(chr(value))

    def translate(self) -> str:
        """
        Walk the pattern once, emitting the Python spelling of each token.
        """
        p = self.pattern
        while p.startswith("(*", self.pos):
            end = p.find(")", self.pos)
            verb = p[self.pos + 2 : end] if end >= 0 else ""
            if verb not in ("UTF8", "UTF", "UCP"):
                raise PcreError(f"unsupported PCRE verb (*{verb})")
            self.ucp = self.ucp or verb == "UCP"
            self.bytewise = False
            self.pos = end + 1
        while self.pos < len(p):
            char = p[self.pos]
            if char == "\\":
                self.out.append(self._escape(inClass=False))
            elif char == "[":
                self.out.append(self._charClass())
            elif char == "(":
                self._openGroup()
            elif char == ")":
                self._closeGroup()
            elif char == "|":
                flags = self.stack[-1]
                self.out.append(")" * len(flags) + "|" + "".join(f"(?{f}:" for f in flags))
                self.pos += 1
            else:
                self.out.append(char if char.isascii() else self._text(char))
                self.pos += 1
        self.out.append(")" * len(self.stack[0]))
        return "".join(self.out)

    # -- groups --------------------------------------------------------

    def _openGroup(self) -> None:
        """
        Translate the opening of any kind of group and remember it so that
        inline options set inside it can be closed where the group closes.
        """
        p, i = self.pattern, self.pos
        if not p.startswith("(?", i):
            self.out.append("(")
            self.stack.append([])
            self.groups += 1
            self.pos += 1
            return
        rest = p[i + 2 : i + 4]
        if rest[:1] == "<" and rest[1:2] not in ("=", "!"):
            self._namedGroup(i + 3, ">")
        elif rest[:1] == "'":
            self._namedGroup(i + 3, "'")
        elif rest[:2] == "P<":
            self._namedGroup(i + 4, ">")
        elif rest[:2] in ("P=", "P>"):
            if rest[1] == ">":
                raise PcreError("subroutine calls (?P>name) are not supported")
            end = self._find(")", i)
            _groupName(p, p[i + 4 : end])
            self.out.append(p[i : end + 1])
            self.pos = end + 1
        elif rest[:1] == "#":
            self.pos = self._find(")", i) + 1
        elif (
            rest[:1] in ("|", "R", "&")
            or rest[:1].isdigit()
            or (rest[:1] in ("+", "-") and rest[1:2].isdigit())
        ):
            raise PcreError(f"unsupported PCRE group (?{rest[:1]}")
        elif rest[:1] == "(":
            self._conditional(i)
        elif rest[:1] in (":", "=", "!", ">"):
            self.out.append(p[i : i + 3])
            self.stack.append([])
            self.pos = i + 3
        elif rest[:2] in ("<=", "<!"):
            self.out.append(p[i : i + 4])
            self.stack.append([])
            self.pos = i + 4
        else:
            self._options(i)

    def _namedGroup(self, start: int, terminator: str) -> None:
        """
        Emit a named capture in Python's C{(?P<name>..)} spelling.
        """
        end = self._find(terminator, start)
        name = _groupName(self.pattern, self.pattern[start:end])
        self.out.append(f"(?P<{name}>")
        self.stack.append([])
        self.groups += 1
        self.pos = end + 1

    def _conditional(self, i: int) -> None:
        """
        Emit C{(?(cond)yes|no)}: Python accepts a group number or name as
        the condition, PCRE also spells names C{<n>} or C{'n'}.
        """
        end = self._find(")", i + 3)
        cond = self.pattern[i + 3 : end]
        if cond[:1] in ("<", "'") and cond[-1:] in (">", "'"):
            cond = cond[1:-1]
        if not (cond.isdigit() or _NAME.match(cond)):
            raise PcreError(f"unsupported condition (?({cond})")
        self.out.append(f"(?({cond})")
        self.stack.append([])
        self.pos = end + 1

    def _options(self, i: int) -> None:
        """
        Translate C{(?flags:...)} and C{(?flags)}; the latter applies to the
        rest of the enclosing group, so it becomes a scoped group closed at
        the next C{|} or C{)} of that group and reopened after each C{|}.
        """
        match = _INLINE_FLAGS.match(self.pattern, i)
        if match is None:
            raise PcreError(f"unrecognized group syntax at offset {i}")
        on, off, terminator = match.group(1), match.group(2) or "", match.group(3)
        for flag in on + off:
            if flag not in "imsx":
                raise PcreError(f"unsupported option (?{flag})")
        spec = on + ("-" + off if off else "")
        self.pos = match.end()
        if not spec:
            # "(?)" / "(?:" with nothing set
            if terminator == ":":
                self.out.append("(?:")
                self.stack.append([])
            return
        self.out.append(f"(?{spec}:")
        if terminator == ":":
            self.stack.append([])
        else:
            self.stack[-1].append(spec)

    def _closeGroup(self) -> None:
        """
        Close a group, first closing the scoped groups standing in for
        inline options set inside it.
        """
        if len(self.stack) > 1:
            self.out.append(")" * len(self.stack.pop()))
        self.out.append(")")
        self.pos += 1

    def _find(self, needle: str, start: int) -> int:
        """
        Locate the end of a construct or report the pattern as malformed.
        """
        end = self.pattern.find(needle, start)
        if end < 0:
            raise PcreError(f'missing "{needle}" after offset {start}')
        return end

    # -- escapes -------------------------------------------------------

    def _escape(self, inClass: bool) -> str:
        """
        Translate one backslash escape starting at the current position.
        """
        p, i = self.pattern, self.pos
        if i + 1 >= len(p):
            raise PcreError("\\ at end of pattern")
        char = p[i + 1]
        self.pos = i + 2
        if char == "Q":
            end = p.find("\\E", i + 2)
            text = p[i + 2 :] if end < 0 else p[i + 2 : end]
            self.pos = len(p) if end < 0 else end + 2
            return self._text(text)
        if char == "E":
            return ""
        if (char in _SAME_CLASS_ESCAPES) if inClass else (char in _SAME_ESCAPES):
            return "\\" + char
        if char.isdigit():
            return self._digits(i, inClass)
        if not inClass:
            simple = {
                "z": "\\Z",
                "Z": "(?=\\n?\\Z)",
                "A": "\\A",
                "h": "[ \\t\\xa0]",
                "H": "[^ \\t\\xa0]",
                "v": "[\\n\\x0b\\f\\r\\x85]",
                "V": "[^\\n\\x0b\\f\\r\\x85]",
                "R": "(?:\\r\\n|[\\n\\x0b\\f\\r\\x85])",
            }
            if char in simple:
                return simple[char]
            if char == "N" and p[i + 2 : i + 3] != "{":
                return "[^\\n]"
            if char in ("k", "g"):
                return self._backReference(char)
        else:
            if char == "h":
                return " \\t\\xa0"
            if char == "v":
                return "\\n\\x0b\\f\\r\\x85"
        if char == "e":
            return "\\x1b"
        if char == "c":
            if i + 2 >= len(p):
                raise PcreError("\\c at end of pattern")
            self.pos = i + 3
            return self._codePoint(ord(p[i + 2].upper()) ^ 0x40)
        if char == "x":
            return self._codePoint(self._hex(i + 2))
        if char == "o" and p[i + 2 : i + 3] == "{":
            end = self._find("}", i + 3)
            self.pos = end + 1
            try:
                return self._codePoint(int(p[i + 3 : end], 8))
            except ValueError:
                raise PcreError(f"invalid octal escape \\o{{{p[i + 3:end]}}}") from None
        if char.isascii() and char.isalpha():
            raise PcreError(f"unsupported escape \\{char}")
        return self._text(char)

    def _digits(self, i: int, inClass: bool) -> str:
        """
        Translate C{\\N...} by PCRE's rule: a back-reference when below 10,
        starting with 8 or 9, or naming an existing group; otherwise up to
        three octal digits (always octal inside a class).
        """
        p = self.pattern
        end = i + 1
        while end < len(p) and p[end].isdigit():
            end += 1
        digits = p[i + 1 : end]
        if not inClass and digits[0] != "0":
            number = int(digits)
            if number < 10 or digits[0] in "89" or number <= self.groups:
                self.pos = end
                return f"(?:\\{number})"
        octal = ""
        for c in digits[:3]:
            if c not in "01234567":
                break
            octal += c
        if not octal:
            raise PcreError(f"invalid escape \\{digits[0]}")
        self.pos = i + 1 + len(octal)
        return self._codePoint(int(octal, 8))

    def _hex(self, start: int) -> int:
        """
        Read C{\\x{hhh..}} or C{\\xhh} (PCRE accepts zero to two digits).
        """
        p = self.pattern
        if p[start : start + 1] == "{":
            end = self._find("}", start)
            self.pos = end + 1
            try:
                return int(p[start + 1 : end], 16)
            except ValueError:
                raise PcreError(f"invalid hex escape \\x{{{p[start + 1:end]}}}") from None
        end = start
        while end < len(p) and end - start < 2 and p[end] in "0123456789abcdefABCDEF":
            end += 1
        self.pos = end
        return int(p[start:end], 16) if end > start else 0

    def _backReference(self, kind: str) -> str:
        """
        Translate C{\\k<n>}, C{\\k'n'}, C{\\k{n}}, C{\\g{n}}, C{\\gN} and
        C{\\g{N}} to Python's C{(?P=n)} / C{\\N}.
        """
        p, i = self.pattern, self.pos
        opener = p[i : i + 1]
        closers = {"<": ">", "'": "'", "{": "}"}
        if opener in closers:
            if kind == "g" and opener != "{":
                raise PcreError("subroutine calls \\g<..> are not supported")
            end = self._find(closers[opener], i + 1)
            ref = p[i + 1 : end]
            self.pos = end + 1
        elif kind == "g":
            end = i
            while end < len(p) and p[end].isdigit():
                end += 1
            ref = p[i:end]
            self.pos = end
        else:
            raise PcreError("\\k must be followed by a name in <>, '' or {}")
        if ref.isdigit() and ref:
            return f"(?:\\{int(ref)})"
        if ref.startswith(("-", "+")):
            raise PcreError(f"relative back-reference \\{kind}{{{ref}}} is not supported")
        return f"(?P={_groupName(p, ref)})"

    # -- classes -------------------------------------------------------

    def _charClass(self) -> str:
        """
        Translate a bracketed character class, expanding POSIX classes and
        escaping characters Python would read as set operations.
        """
        p = self.pattern
        out = ["["]
        self.pos += 1
        if p[self.pos : self.pos + 1] == "^":
            out.append("^")
            self.pos += 1
        if p[self.pos : self.pos + 1] == "]":
            out.append("\\]")
            self.pos += 1
        previous = ""
        while True:
            if self.pos >= len(p):
                raise PcreError("missing terminating ] for character class")
            char = p[self.pos]
            if char == "]":
                self.pos += 1
                out.append("]")
                return "".join(out)
            if char == "\\":
                out.append(self._escape(inClass=True))
                previous = ""
                continue
            if char == "[" and p[self.pos + 1 : self.pos + 2] in (":", ".", "="):
                out.append(self._posixClass())
                previous = ""
                continue
            if char in "[&~|" or (char == "-" and previous == "-"):
                out.append("\\" + char)
            else:
                out.append(char if char.isascii() else self._text(char))
            previous = char
            self.pos += 1

    def _posixClass(self) -> str:
        """
        Expand C{[:name:]} inside a class; negated and collating forms have
        no C{re} equivalent.
        """
        p = self.pattern
        kind = p[self.pos + 1]
        end = self._find(kind + "]", self.pos + 2)
        name = p[self.pos + 2 : end]
        self.pos = end + 2
        if kind != ":" or name.startswith("^") or name not in _POSIX:
            raise PcreError(f"unsupported POSIX class [{kind}{name}{kind}]")
        return _POSIX[name]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PcreMatch:
    """
    A successful match, with captures as nginx variables see them.

    @ivar whole: the matched text (C{$0}).
    @ivar captures: the numbered groups (C{$1}, C{$2}, ...); a group that
        did not participate is C{""}.
    @ivar named: the named groups, likewise.
    """

    whole: str
    captures: Tuple[str, ...]
    named: Dict[str, str]


def _fromBytes(text: Optional[str]) -> str:
    """
    Map a byte-view string back to the UTF-8/surrogateescape form.
    """
    if text is None:
        return ""
    if text.isascii():
        return text
    return text.encode("latin-1").decode("utf-8", "surrogateescape")


class PcreRegex:
    """
    An nginx (PCRE) regular expression compiled to Python's C{re} with the
    same meaning, matched byte-wise like nginx unless it asked for
    C{(*UTF)}.

    @ivar pattern: the expression as written.
    @ivar regex: the compiled Python pattern (over the byte view when
        C{bytewise}).
    @ivar bytewise: whether subjects are matched as UTF-8 bytes.
    """

    __slots__ = ("pattern", "regex", "bytewise")

    def __init__(self, pattern: str, regex: "re.Pattern[str]", bytewise: bool) -> None:
        self.pattern = pattern
        self.regex = regex
        self.bytewise = bytewise

    def search(self, subject: str) -> Optional[PcreMatch]:
        """
        Search C{subject} (unanchored, as C{ngx_regex_exec}).
        """
        if self.bytewise and not subject.isascii():
            match = self.regex.search(
                subject.encode("utf-8", "surrogateescape").decode("latin-1")
            )
            if match is None:
                return None
            return PcreMatch(
                _fromBytes(match.group(0)),
                tuple(_fromBytes(g) for g in match.groups()),
                {k: _fromBytes(v) for k, v in match.groupdict().items()},
            )
        match = self.regex.search(subject)
        if match is None:
            return None
        return PcreMatch(
            match.group(0),
            tuple(g if g is not None else "" for g in match.groups()),
            {k: (v if v is not None else "") for k, v in match.groupdict().items()},
        )

    def __repr__(self) -> str:
        return f"PcreRegex({self.pattern!r})"


def compilePcre(pattern: str, caseless: bool = False) -> PcreRegex:
    """
    Compile an nginx (PCRE) regular expression.

    @param caseless: nginx's C{NGX_REGEX_CASELESS} (C{~*}); like PCRE
        without UTF/UCP it folds ASCII letters only.
    @raise PcreError: if the pattern is invalid or uses PCRE features that
        Python's C{re} cannot express.
    """
    translator = _PcreTranslator(pattern)
    source = translator.translate()
    flags = 0 if translator.ucp else re.ASCII
    if caseless:
        flags |= re.IGNORECASE
    try:
        regex = re.compile(source, flags)
    except re.error as e:
        message = str(e)
        if sys.version_info < (3, 11) and (
            message.startswith("multiple repeat") or "unknown extension ?>" in message
        ):
            # Before 3.11 re has no possessive quantifiers or atomic groups,
            # and emulating them would renumber the captures: refuse them
            # by name, so the config is rejected rather than misread.
            message += (
                " (possessive quantifiers and atomic groups need Python 3.11 or later)"
            )
        raise PcreError(message) from None
    except (OverflowError, RecursionError, ValueError) as e:
        raise PcreError(str(e)) from None
    return PcreRegex(pattern, regex, translator.bytewise)


# ---------------------------------------------------------------------------
# locations
# ---------------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LocationSpec:
    """
    One C{location} block as written, before compilation.

    @ivar modifier: C{""} (prefix), C{"="}, C{"^~"}, C{"~"}, C{"~*"} or
        C{"@"} (named).  C{""} is nginx's one-argument form and is parsed
        as nginx parses it, so C{"=/x"}, C{"~*\\.gif$"} or C{"@name"} given
        with an empty modifier mean what they mean in nginx.
    @ivar pattern: the URI prefix, the regex, or the name (with or without
        its C{@}).
    @ivar children: the nested locations.
    @ivar payload: whatever the caller wants back when this location is
        selected.
    @ivar source: the C{location} directive, to locate errors.
    """

    modifier: str
    pattern: str
    children: Tuple["LocationSpec", ...]
    payload: object
    source: Optional[Directive] = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LocationMatch:
    """
    The result of a location lookup.

    @ivar payload: the selected location's payload.
    @ivar captures: the groups of the last regex location that matched on
        the way ($1, $2, ...); C{()} when no regex was involved.
    @ivar named: that regex's named groups.
    """

    payload: object
    captures: Tuple[str, ...]
    named: Mapping[str, str]


#: How many paths, of at most how many characters, L{LocationTree.find}
#: remembers per server.
_FOUND_MAX = 256
_FOUND_PATH_MAX = 128

#: The named captures of a match no regex decided: shared, never changed.
_NO_CAPTURES: Mapping[str, str] = MappingProxyType({})

# find results, named after nginx's return codes
_DECLINED, _AGAIN, _OK, _DONE = range(4)

_MODIFIER_KINDS = {"": "prefix", "^~": "prefix", "=": "exact", "~": "regex", "~*": "regex", "@": "named"}


class _Location:
    """
    One compiled location: its kind, nginx's name for it (used in error
    messages and prefix comparisons), its regex and its nested locations.
    """

    __slots__ = ("spec", "payload", "kind", "name", "noregex", "regex", "nested", "children")

    def __init__(self, spec: LocationSpec, kind: str, name: str, noregex: bool) -> None:
        self.spec = spec
        self.payload = spec.payload
        self.kind = kind
        self.name = name
        self.noregex = noregex
        self.regex: Optional[PcreRegex] = None
        self.nested: List[_Location] = []
        self.children: Optional[_Level] = None


def _treeKey(text: str) -> str:
    """
    Spell a name or path so that Python's string order is nginx's
    C{ngx_filename_cmp} order, where C{"/"} sorts below every other
    character.  The static tree is built and searched with these keys, so
    lookups visit the same nodes as in nginx (which matters for
    auto-redirect).
    """
    return text.replace("/", "\0")


class _TreeNode:
    """
    A node of nginx's static location tree: a binary search tree over one
    level's prefix/exact names, where C{tree} holds the names that extend
    an inclusive (prefix) name, stored without that prefix.  Names are
    stored as L{_treeKey}s.
    """

    __slots__ = ("name", "length", "exact", "inclusive", "left", "right", "tree")

    def __init__(self, name: str, exact: Optional[_Location], inclusive: Optional[_Location]) -> None:
        self.name = name
        self.length = len(name)
        self.exact = exact
        self.inclusive = inclusive
        self.left: Optional[_TreeNode] = None
        self.right: Optional[_TreeNode] = None
        self.tree: Optional[_TreeNode] = None


class _Entry:
    """
    A prefix/exact name of one level while the tree is being built: the
    exact and the inclusive location sharing that name, and the names that
    extend it.
    """

    __slots__ = ("name", "exact", "inclusive", "nested")

    def __init__(self, location: _Location) -> None:
        self.name = location.name
        self.exact = location if location.kind == "exact" else None
        self.inclusive = None if location.kind == "exact" else location
        self.nested: List[_Entry] = []


class _Level:
    """
    The locations of one nesting level, compiled: the static tree and the
    regex locations in config order.
    """

    __slots__ = ("tree", "regexes")

    def __init__(self, tree: Optional[_TreeNode], regexes: List[_Location]) -> None:
        self.tree = tree
        self.regexes = regexes


class _Search:
    """
    The mutable state of one lookup, as nginx keeps it in the request: the
    location chosen so far and the last regex match.
    """

    __slots__ = ("location", "match")

    def __init__(self) -> None:
        self.location: Optional[_Location] = None
        self.match: Optional[PcreMatch] = None


RedirectPredicate = Callable[[object], bool]


class LocationTree:
    """
    The locations of one server, compiled for nginx's location selection
    (C{ngx_http_core_find_location}).
    """

    def __init__(self, specs: Sequence[LocationSpec]) -> None:
        """
        Compile C{specs}, raising L{ConfigError} for the same mistakes nginx
        rejects, in the order nginx finds them: while parsing (modifier,
        regex, nesting rules, depth first in config order), then while
        building the lookup trees (duplicates).
        """
        self._named: Dict[str, object] = {}
        locations = [self._compile(spec, None) for spec in specs]
        self._root = _buildLevel(locations, withStatic=True)
        #: L{find}'s answers for recent paths that no regex decided (see
        #: L{_FOUND_MAX}), and the predicate they were found with.
        self._found: Dict[str, Tuple[Optional[object], Optional[LocationMatch]]] = {}
        self._foundWith: Optional[RedirectPredicate] = None

    def _compile(self, spec: LocationSpec, parent: Optional[_Location]) -> _Location:
        """
        Parse one spec like C{ngx_http_core_location}: modifier, regex,
        nesting rules; then its children.
        """
        modifier, name = spec.modifier, spec.pattern
        if modifier == "":
            # nginx's one-argument form: "=/x", "^~/x", "~re", "~*re", "@n"
            if name.startswith("="):
                modifier, name = "=", name[1:]
            elif name.startswith("^~"):
                modifier, name = "^~", name[2:]
            elif name.startswith("~*"):
                modifier, name = "~*", name[2:]
            elif name.startswith("~"):
                modifier, name = "~", name[1:]
            elif name.startswith("@"):
                modifier = "@"
        kind = _MODIFIER_KINDS.get(modifier)
        if kind is None:
            raise _configError(spec.source, f'invalid location modifier "{modifier}"')
        if kind == "named" and not name.startswith("@"):
            name = "@" + name
        location = _Location(spec, kind, name, noregex=(modifier == "^~"))
        if kind == "regex":
            try:
                location.regex = compilePcre(name, caseless=(modifier == "~*"))
            except PcreError as e:
                raise _configError(spec.source, f'invalid regex "{name}": {e}') from None
        if parent is not None:
            if parent.kind == "exact":
                raise _configError(
                    spec.source,
                    f'location "{name}" cannot be inside the exact location "{parent.name}"',
                )
            if parent.kind == "named":
                raise _configError(
                    spec.source,
                    f'location "{name}" cannot be inside the named location "{parent.name}"',
                )
            if kind == "named":
                raise _configError(
                    spec.source, f'named location "{name}" can be on the server level only'
                )
            if kind != "regex" and not name.startswith(parent.name):
                # a regex parent's "name" is its pattern text, as in nginx
                raise _configError(
                    spec.source, f'location "{name}" is outside location "{parent.name}"'
                )
        elif kind == "named":
            # nginx sorts named locations stably and takes the first
            self._named.setdefault(name[1:], spec.payload)
        location.nested = [self._compile(child, location) for child in spec.children]
        return location

    # -- lookups -------------------------------------------------------

    def _search(self, path: str, wantsRedirect: Optional[RedirectPredicate]) -> Tuple[int, _Search]:
        """
        Run nginx's location search over the whole tree.
        """
        search = _Search()
        rc = _DECLINED
        if self._root is not None:
            rc = _findLocation(self._root, path, _treeKey(path), search, wantsRedirect)
        return rc, search

    def match(
        self, path: str, wantsRedirect: Optional[RedirectPredicate] = None
    ) -> Optional[LocationMatch]:
        """
        Select the location for C{path} (the normalised C{$uri}).

        Callers answer L{redirectCandidate} first, as nginx does; this is
        then the location that serves the request.

        @param wantsRedirect: optional; tells whether a location's payload
            has nginx's C{auto_redirect} (a C{proxy_pass}-like handler).
            Given, a redirect candidate ends the search as in nginx and is
            returned; omitted, no location asks for a redirect.
        @return: the selected location, or C{None} when no location matches
            (nginx then uses the server-level configuration).
        """
        _rc, search = self._search(path, wantsRedirect)
        location = search.location
        if location is None:
            return None
        if search.match is None:
            return LocationMatch(location.payload, (), {})
        return LocationMatch(location.payload, search.match.captures, search.match.named)

    def redirectCandidate(
        self, path: str, wantsRedirect: Optional[RedirectPredicate] = None
    ) -> Optional[object]:
        """
        Find the location nginx would answer with a 301 to C{path + "/"}:
        a prefix (or exact) location named C{path + "/"} found while
        searching C{path} before any exact match for C{path} and before any
        regex is tried.

        @param wantsRedirect: tells whether a payload's handler asks for
            C{auto_redirect}.  Given, the answer is exactly nginx's decision
            and the caller should redirect whenever it is not C{None}.
            Omitted, the first such location is returned whatever its
            handler and the caller decides.
        @return: the payload (of the exact location when both an exact and
            a prefix location carry that name, as in nginx), or C{None}.
        """
        predicate = wantsRedirect if wantsRedirect is not None else _always
        rc, search = self._search(path, predicate)
        if rc != _DONE or search.location is None:
            return None
        return search.location.payload

    def find(
        self, path: str, wantsRedirect: RedirectPredicate
    ) -> Tuple[Optional[object], Optional[LocationMatch]]:
        """
        L{redirectCandidate} and L{match} in one search, for a server with
        C{auto_redirect} locations.  A search with the predicate differs
        from one without only when it ends on a redirect candidate (any
        later match overrides the candidate exactly as it would have
        overridden what came before it), so its result is also the match.

        The tree never changes, so the answer for a path is always the
        same: those no regex decided (no captures to share) are kept for
        recent paths (at most L{_FOUND_MAX} of up to L{_FOUND_PATH_MAX}
        characters, forgotten all at once when full), and a server's
        usual few paths skip the search.

        @return: C{(payload, None)} when nginx redirects C{path} to
            C{path + "/"}, else C{(None, match)} as L{match} returns it.
        """
        if wantsRedirect is self._foundWith:
            found = self._found.get(path)
            if found is not None:
                return found
        rc, search = self._search(path, wantsRedirect)
        location = search.location
        if rc == _DONE and location is not None:
            result: Tuple[Optional[object], Optional[LocationMatch]] = (location.payload, None)
        elif location is None:
            result = (None, None)
        elif search.match is None:
            result = (None, LocationMatch(location.payload, (), _NO_CAPTURES))
        else:
            return None, LocationMatch(location.payload, search.match.captures, search.match.named)
        if len(path) <= _FOUND_PATH_MAX:
            if wantsRedirect is not self._foundWith or len(self._found) >= _FOUND_MAX:
                self._found = {}
                self._foundWith = wantsRedirect
            self._found[path] = result
        return result

    def named(self, name: str) -> Optional[object]:
        """
        Look up a named location (C{@name}); C{name} may omit the C{@}.
        """
        if name.startswith("@"):
            name = name[1:]
        return self._named.get(name)


def _always(payload: object) -> bool:
    """
    The default redirect predicate: every candidate is reported.
    """
    return True


def _buildLevel(locations: List[_Location], withStatic: bool) -> Optional[_Level]:
    """
    Build one level as C{ngx_http_init_locations} and
    C{ngx_http_init_static_location_trees} do: regexes kept in config order;
    prefix and exact names sorted, each one's own level built first, then
    joined by name (reporting duplicates), grouped under the prefixes they
    extend and split into a binary tree.

    nginx builds static trees only along static locations from the server
    down, so below a regex location only regex locations are ever consulted
    (and duplicates there go unreported): C{withStatic} is false there.
    """
    regexes = [loc for loc in locations if loc.kind == "regex"]
    for location in regexes:
        location.children = _buildLevel(location.nested, withStatic=False)
    if not withStatic:
        return _Level(None, regexes) if regexes else None
    static = [loc for loc in locations if loc.kind in ("exact", "prefix")]
    # exact before inclusive for the same name; stable otherwise
    static.sort(key=lambda loc: (_treeKey(loc.name), loc.kind != "exact"))
    for location in static:
        location.children = _buildLevel(location.nested, withStatic=True)
    entries: List[_Entry] = []
    for location in static:
        last = entries[-1] if entries else None
        if last is not None and last.name == location.name:
            if (location.kind == "exact" and last.exact is not None) or (
                location.kind == "prefix" and last.inclusive is not None
            ):
                raise _configError(location.spec.source, f'duplicate location "{location.name}"')
            last.inclusive = location
            continue
        entries.append(_Entry(location))
    grouped = _groupEntries(entries)
    if not grouped and not regexes:
        return None
    return _Level(_buildTree(grouped, 0), regexes)


def _groupEntries(entries: List[_Entry]) -> List[_Entry]:
    """
    Nest, under each inclusive name, the following names that start with it
    (C{ngx_http_create_locations_list}); exact-only names nest nothing.
    """
    result: List[_Entry] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        j = i + 1
        if entry.inclusive is not None:
            while j < len(entries) and entries[j].name.startswith(entry.name):
                j += 1
            entry.nested = _groupEntries(entries[i + 1 : j])
        result.append(entry)
        i = j
    return result


def _buildTree(entries: List[_Entry], prefix: int) -> Optional[_TreeNode]:
    """
    Split a sorted list at its middle into a binary tree
    (C{ngx_http_create_locations_tree}); names are stored without the
    C{prefix} characters already matched by the enclosing inclusive name.
    """
    if not entries:
        return None
    middle = len(entries) // 2
    entry = entries[middle]
    node = _TreeNode(_treeKey(entry.name[prefix:]), entry.exact, entry.inclusive)
    node.left = _buildTree(entries[:middle], prefix)
    node.right = _buildTree(entries[middle + 1 :], prefix)
    node.tree = _buildTree(entry.nested, len(entry.name))
    return node


def _autoRedirect(node: _TreeNode, wantsRedirect: RedirectPredicate) -> bool:
    """
    nginx marks a tree node auto_redirect when either location of that
    name has it.
    """
    return (node.exact is not None and bool(wantsRedirect(node.exact.payload))) or (
        node.inclusive is not None and bool(wantsRedirect(node.inclusive.payload))
    )


def _findStatic(
    node: Optional[_TreeNode], path: str, wantsRedirect: Optional[RedirectPredicate]
) -> Tuple[int, Optional[_Location]]:
    """
    Walk one level's static tree (C{ngx_http_core_find_static_location});
    C{path} is the L{_treeKey} of the URI.

    @return: C{(_OK, location)} for a name equal to the path,
        C{(_AGAIN, location)} for the longest prefix,
        C{(_DONE, location)} for an auto-redirect candidate, or
        C{(_DECLINED, None)}.
    """
    rv, found = _DECLINED, None
    pos, total = 0, len(path)
    while node is not None:
        remaining = total - pos
        n = remaining if remaining <= node.length else node.length
        segment = path[pos : pos + n]
        name = node.name if n == node.length else node.name[:n]
        if segment != name:
            node = node.left if segment < name else node.right
            continue
        if remaining > node.length:
            if node.inclusive is not None:
                rv, found = _AGAIN, node.inclusive
                node = node.tree
                pos += n
                continue
            node = node.right
            continue
        if remaining == node.length:
            # an exact location ends the search; a prefix location equal to
            # the path is only the longest prefix so far (nested locations
            # and regexes are still consulted)
            if node.exact is not None:
                return _OK, node.exact
            return _AGAIN, node.inclusive
        if (
            remaining + 1 == node.length
            and wantsRedirect is not None
            and _autoRedirect(node, wantsRedirect)
        ):
            rv, found = _DONE, (node.exact if node.exact is not None else node.inclusive)
        node = node.left
    return rv, found


def _findLocation(
    level: _Level,
    path: str,
    key: str,
    search: _Search,
    wantsRedirect: Optional[RedirectPredicate],
) -> int:
    """
    nginx's C{ngx_http_core_find_location} for one level: static tree,
    then the nested locations of the longest prefix, then (unless that
    prefix is C{^~}) this level's regexes in config order, descending into
    the nested locations of the regex that matches.
    """
    rc, found = _findStatic(level.tree, key, wantsRedirect)
    if found is not None:
        search.location = found
    if rc == _OK or rc == _DONE:
        return rc
    noregex = False
    if rc == _AGAIN:
        assert found is not None
        noregex = found.noregex
        rc = _DECLINED
        if found.children is not None:
            rc = _findLocation(found.children, path, key, search, wantsRedirect)
        if rc == _OK or rc == _DONE:
            return rc
    if not noregex:
        for location in level.regexes:
            assert location.regex is not None
            match = location.regex.search(path)
            if match is None:
                continue
            search.location = location
            search.match = match
            if location.children is not None:
                _findLocation(location.children, path, key, search, wantsRedirect)
            return _OK
    return rc


# ---------------------------------------------------------------------------
# server names
# ---------------------------------------------------------------------------

_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _asciiLower(text: str) -> str:
    """
    Lowercase ASCII letters only, as C{ngx_strlow} does.
    """
    if text.isascii():
        # The same for ASCII text, and without translate()'s KeyError
        # raised and dropped for each distinct character not in the table.
        return text.lower()
    return text.translate(_ASCII_LOWER)


class ServerNameTable:
    """
    The server names of one listening address, compiled for nginx's
    virtual server selection (C{ngx_http_find_virtual_server}): exact name,
    then the longest leading wildcard, then the longest trailing wildcard,
    then the first matching regex in config order, else the default server.

    @ivar warnings: nginx's non-fatal complaints ("conflicting server name",
        "has suspicious symbols"), each with its file:line.
    @ivar default: the payload answered when no name matches.
    """

    def __init__(
        self,
        entries: Sequence[Tuple[str, object, Optional[Directive]]],
        default: object,
    ) -> None:
        """
        Register C{entries} (name as written, payload, source) in config
        order with nginx's validation and conflict rules
        (C{ngx_http_core_server_name}, C{ngx_hash_add_key}).
        """
        self.default = default
        self.warnings: List[str] = []
        self._exact: Dict[str, object] = {}
        # names the exact hash considers taken: exact names and the bare
        # name of each ".example.com"
        self._exactTaken: set = set()
        # "example.com" -> (payload, also matches "example.com" itself)
        self._head: Dict[str, Tuple[object, bool]] = {}
        # "www.example." -> payload
        self._tail: Dict[str, object] = {}
        self._regexes: List[Tuple[PcreRegex, object]] = []
        for name, payload, source in entries:
            self._add(name, payload, source)

    def _add(self, written: str, payload: object, source: Optional[Directive]) -> None:
        """
        Validate and register one name.
        """
        first = written[:1]
        if (first == "*" and (len(written) < 3 or written[1] != ".")) or (
            first == "." and len(written) < 2
        ):
            raise _configError(source, f'server name "{written}" is invalid')
        if "/" in written:
            self.warnings.append(
                _located(source, f'server name "{written}" has suspicious symbols')
            )
        if first == "~":
            self._addRegex(written, payload, source)
            return
        name = written
        if _asciiLower(written) == "$hostname":
            name = socket.gethostname()
        name = _asciiLower(name)
        if name.count("*") > 1 or ".." in name or "\0" in name:
            raise _invalidName(source, written)
        if len(name) > 1 and name[0] == ".":
            self._addHead(name[1:], True, written, payload, source)
        elif len(name) > 2 and name[:2] == "*.":
            self._addHead(name[2:], False, written, payload, source)
        elif len(name) > 2 and name[-2:] == ".*":
            if name[:-1] in self._tail:
                self._conflict(written, source)
            else:
                self._tail[name[:-1]] = payload
        elif "*" in name:
            raise _invalidName(source, written)
        elif name in self._exactTaken:
            self._conflict(written, source)
        else:
            self._exactTaken.add(name)
            self._exact[name] = payload

    def _addHead(
        self,
        base: str,
        bare: bool,
        written: str,
        payload: object,
        source: Optional[Directive],
    ) -> None:
        """
        Register a leading wildcard; ".example.com" also claims the exact
        name "example.com" and conflicts with it.
        """
        if bare:
            if base in self._exactTaken:
                self._conflict(written, source)
                return
            self._exactTaken.add(base)
        if base in self._head:
            self._conflict(written, source)
            return
        self._head[base] = (payload, bare)

    def _addRegex(self, written: str, payload: object, source: Optional[Directive]) -> None:
        """
        Compile a C{~regex} name: nginx makes it caseless only when the
        pattern contains an uppercase letter (hosts are lowercased anyway).
        """
        pattern = written[1:]
        if not pattern:
            raise _configError(source, f'empty regex in server name "{written}"')
        caseless = any("A" <= c <= "Z" for c in pattern)
        try:
            regex = compilePcre(pattern, caseless=caseless)
        except PcreError as e:
            raise _configError(source, f'invalid regex "{pattern}": {e}') from None
        self._regexes.append((regex, payload))

    def _conflict(self, written: str, source: Optional[Directive]) -> None:
        """
        Record nginx's warning for a name already served; the first wins.
        """
        self.warnings.append(_located(source, f'conflicting server name "{written}", ignored'))

    def match(self, host: str) -> Tuple[object, Mapping[str, str]]:
        """
        Select the server for C{host} (as returned by L{normalizeHost}, or
        C{""} when the request has no Host).

        @return: the payload and the named captures of a regex name.
        """
        host = _asciiLower(host)
        payload = self._exact.get(host, _MISSING)
        if payload is not _MISSING:
            return payload, {}
        if not host:
            return self.default, {}
        if self._head:
            found = self._head.get(host)
            if found is not None and found[1]:
                return found[0], {}
            start = host.find(".")
            while start >= 0:
                found = self._head.get(host[start + 1 :])
                if found is not None:
                    return found[0], {}
                start = host.find(".", start + 1)
        if self._tail:
            end = host.rfind(".")
            while end >= 0:
                payload = self._tail.get(host[: end + 1], _MISSING)
                if payload is not _MISSING:
                    return payload, {}
                end = host.rfind(".", 0, end)
        for regex, payload in self._regexes:
            match = regex.search(host)
            if match is not None:
                return payload, match.named
        return self.default, {}


_MISSING = object()


def _invalidName(source: Optional[Directive], written: str) -> ConfigError:
    """
    nginx's error for names C{ngx_hash_add_key} declines.
    """
    return _configError(source, f'invalid server name or wildcard "{written}"')


# ---------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    """
    Decode request bytes losslessly (see the module docstring).
    """
    return raw.decode("utf-8", "surrogateescape")


_HOSTS: Dict[bytes, Optional[str]] = {}
"""Host values already normalised: clients send the same few on every
request, and the byte loop below is a tenth of a request's parsing."""

#: Longest Host value remembered, and how many are (then it starts over).
_HOST_CACHE_KEY, _HOST_CACHE_SIZE = 255, 1024


def normalizeHost(raw: bytes) -> Optional[str]:
    """
    Validate and normalise a C{Host} value like C{ngx_http_validate_host}:
    drop the C{:port} (after a C{[v6]} literal too), drop one trailing dot,
    lowercase ASCII.

    @return: the host, or C{None} when nginx answers 400: empty (also
        after dropping the port or the trailing dot), C{".."}, a control
        character or space, C{"/"}, or C{"\\\\"} (a path separator only on
        Windows nginx; refused here everywhere).
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    try:
        return _HOSTS[raw]
    except KeyError:
        pass
    return _remember(_HOSTS, raw, _validateHost(raw), _HOST_CACHE_KEY, _HOST_CACHE_SIZE)


def _remember(
    cache: Dict[bytes, Optional[str]], key: bytes, answer: Optional[str], longest: int, most: int
) -> Optional[str]:
    """
    Keep C{answer} for C{key} in one of the bounded caches here (keys of
    at most C{longest} bytes, C{most} of them, then it starts over).

    @return: C{answer}.
    """
    if len(key) <= longest:
        if len(cache) >= most:
            cache.clear()
        cache[key] = answer
    return answer


def _validateHost(raw: bytes) -> Optional[str]:
    """
    L{normalizeHost}'s work, byte by byte as nginx does it.
    """
    dotPos = -2
    hostLen = len(raw)
    state = 0  # 0 usual, 1 inside [literal], 2 after the host
    for i, ch in enumerate(raw):
        if ch == 0x2E:  # .
            if dotPos == i - 1:
                return None
            dotPos = i
        elif ch == 0x3A:  # :
            if state == 0:
                hostLen = i
                state = 2
        elif ch == 0x5B:  # [
            if i == 0:
                state = 1
        elif ch == 0x5D:  # ]
            if state == 1:
                hostLen = i + 1
                state = 2
        elif ch <= 0x20 or ch == 0x7F or ch == 0x2F or ch == 0x5C:
            return None
    if dotPos == hostLen - 1:
        hostLen -= 1
    if hostLen <= 0:
        return None
    return _decode(raw[:hostLen].lower())


_SLASH, _DOT, _PERCENT, _QUESTION, _HASH = 0x2F, 0x2E, 0x25, 0x3F, 0x23
_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}
_S_USUAL, _S_SLASH, _S_DOT, _S_DOT_DOT = range(4)


def normalizePath(rawPath: bytes) -> Optional[str]:
    """
    Turn the path of a request target into nginx's C{$uri} as
    C{ngx_http_parse_complex_uri} does with C{merge_slashes on}: decode
    C{%XX} (a decoded C{/} or C{.} counts as one), merge slashes, resolve
    C{.} and C{..} segments.  Anything from a raw C{?} or C{#} on is not
    part of the path.

    @return: the path, decoded as UTF-8 with C{surrogateescape}, or C{None}
        when nginx answers 400: no leading C{/}, a malformed or C{%00}
        escape, a C{..} above the root, or a raw control character or
        space (rejected by nginx's request line parser).
    """
    if isinstance(rawPath, str):
        rawPath = rawPath.encode("utf-8", "surrogateescape")
    path = _PATHS.get(rawPath, _MISSING)
    if path is not _MISSING:
        return path  # type: ignore[return-value]
    return _remember(_PATHS, rawPath, _normalizePath(rawPath), _PATH_CACHE_KEY, _PATH_CACHE_SIZE)


_PATHS: Dict[bytes, Optional[str]] = {}
"""Paths already normalised: as for L{_HOSTS}, clients ask for the same
few again and again."""

#: Longest path remembered, and how many are (then it starts over).
_PATH_CACHE_KEY, _PATH_CACHE_SIZE = 255, 1024


def _normalizePath(rawPath: bytes) -> Optional[str]:
    """
    L{normalizePath}'s work.
    """
    for stop in (_QUESTION, _HASH):
        cut = rawPath.find(stop)
        if cut >= 0:
            rawPath = rawPath[:cut]
    if rawPath[:1] != b"/":
        return None
    if _PLAIN_PATH.fullmatch(rawPath) is not None:
        # Nothing to decode, merge or resolve: the path is its own $uri.
        return rawPath.decode("ascii")
    return _normalizeComplexPath(rawPath)


_PLAIN_CHAR = rb"A-Za-z0-9\-_~!$&'()*+,;=:@"
_PLAIN_PATH = re.compile(rb"(?:/[%s][%s.]*)*/?" % (_PLAIN_CHAR, _PLAIN_CHAR))
"""A path that L{normalizePath} leaves as it is: no escape, no repeated
slash, no segment starting with a dot, only printable ASCII."""


def _normalizeComplexPath(rawPath: bytes) -> Optional[str]:
    """
    L{normalizePath}'s state machine, for a path starting with C{/}.
    """
    out = bytearray()
    state = _S_USUAL
    i, total = 0, len(rawPath)
    while i < total:
        ch = rawPath[i]
        i += 1
        if ch <= 0x20 or ch == 0x7F:
            return None
        if ch == _PERCENT:
            if i + 2 > total:
                return None
            high, low = _HEX.get(rawPath[i]), _HEX.get(rawPath[i + 1])
            if high is None or low is None:
                return None
            i += 2
            ch = (high << 4) | low
            if ch == 0:
                return None
            if ch in (_PERCENT, _HASH, _QUESTION):
                # kept literally, never a delimiter
                out.append(ch)
                state = _S_USUAL
                continue
        # the (possibly decoded) character, in the current state
        if state == _S_USUAL:
            if ch == _SLASH:
                state = _S_SLASH
            out.append(ch)
        elif state == _S_SLASH:
            if ch == _SLASH:
                continue
            state = _S_DOT if ch == _DOT else _S_USUAL
            out.append(ch)
        elif state == _S_DOT:
            if ch == _SLASH:
                state = _S_SLASH
                del out[-1]
            else:
                state = _S_DOT_DOT if ch == _DOT else _S_USUAL
                out.append(ch)
        else:  # _S_DOT_DOT
            if ch == _SLASH:
                if not _parentSegment(out):
                    return None
                state = _S_SLASH
            else:
                state = _S_USUAL
                out.append(ch)
    if state == _S_DOT:
        del out[-1]
    elif state == _S_DOT_DOT:
        if not _parentSegment(out):
            return None
    return _decode(bytes(out))


def _parentSegment(out: bytearray) -> bool:
    """
    Resolve the C{"/.."} ending C{out} by removing it and the segment
    before it, keeping that segment's leading slash.

    @return: C{False} when that would go above the root.
    """
    index = len(out) - 4
    while True:
        if index < 0:
            return False
        if out[index] == _SLASH:
            del out[index + 1 :]
            return True
        index -= 1
