"""Python ``re`` patterns rewritten for PostgreSQL's ``~`` (advanced regular expressions).

Filters are written for Python's ``re`` (nodes evaluate them), so the inventory translates
each pattern before PostgreSQL sees it. What is rewritten:

* ``.`` becomes ``[^\\n]`` (Python's dot skips newlines, PostgreSQL's does not) unless the
  pattern starts with ``(?s)``;
* ``$`` becomes ``(?=\\n?$)`` (Python's ``$`` also matches before a final newline);
  with ``(?m)``, ``^``/``$`` match at every line as in Python;
* ``\\b``/``\\B`` become ``\\y``/``\\Y`` (in PostgreSQL ``\\b`` is a backspace);
* ``\\d``/``\\D`` and ``\\s``/``\\S`` become the code points Python's match (PostgreSQL's are
  ASCII digits only, and its whitespace leaves out U+001C-U+001F, U+0085, U+00A0...);
* ``\\xHH`` and octal escapes become ``\\uHHHH``; ``{,n}`` becomes ``{0,n}``;
* ``(?P<name>`` becomes ``(``; ``[`` inside a bracket becomes ``\\[`` (so ``[[:alpha:]]``
  keeps Python's meaning, a set of characters).

Refused with ``UnsupportedFilter``: scoped flags ``(?i:...)``, possessive quantifiers and atomic
groups, ``\\N{...}``, ``\\D``/``\\S`` inside ``[...]``, and global flags other than ``i m s x u``
(``(?a)`` would make ``\\w``, ``\\b`` and ``(?i)`` ASCII-only). Not rewritten, so they can still
differ: ``\\w``/``\\W`` and the word boundaries ``\\b``/``\\B`` follow PostgreSQL's locale
(Python's ``\\w`` takes numbers such as ``²``, PostgreSQL's takes combining marks; an exact
class would be 734 ranges), ``(?i)`` folds a few characters differently (Python's ``k`` also
matches the Kelvin sign), and ``(?x)`` comment rules differ in corner cases.
"""

from __future__ import annotations

import functools
import re
import sys

_GLOBAL_FLAGS_RE = re.compile(r"\(\?([a-zA-Z]+)\)")
_PG_FLAGS = {"i": "i", "x": "x"}
_OCTAL_RE = re.compile(r"0[0-7]{0,2}|[0-7]{3}")


class UnsupportedFilter(ValueError):
    """A filter the nodes accept but the inventory database cannot evaluate the same way."""


def to_postgres(pattern: str) -> str:
    """``pattern`` (already accepted by ``compile_safe``) as an equivalent PostgreSQL ARE."""
    flags = ""
    pos = 0
    while match := _GLOBAL_FLAGS_RE.match(pattern, pos):
        flags += match.group(1)
        pos = match.end()
    unknown = set(flags) - set("imsxu")
    if unknown:
        raise UnsupportedFilter(
            f"regex /{pattern}/: flag(s) {''.join(sorted(unknown))} cannot be searched in the "
            "inventory database"
        )
    body = _Rewriter(pattern, pos, dotall="s" in flags, multiline="m" in flags).run()
    pg_flags = "".join(sorted({_PG_FLAGS[f] for f in flags if f in _PG_FLAGS}))
    return f"(?{pg_flags}){body}" if pg_flags else body


class _Rewriter:
    def __init__(self, pattern: str, start: int, *, dotall: bool, multiline: bool) -> None:
        self.src = pattern
        self.pos = start
        self.dotall = dotall
        self.multiline = multiline
        self.out: list[str] = []

    def fail(self, what: str) -> UnsupportedFilter:
        return UnsupportedFilter(
            f"regex /{self.src}/: {what} cannot be searched in the inventory database"
        )

    def run(self) -> str:
        src = self.src
        while self.pos < len(src):
            ch = src[self.pos]
            if ch == "\\":
                self.escape(in_class=False)
            elif ch == "[":
                self.bracket()
            elif ch == "(":
                self.group()
            elif ch == ".":
                self.out.append("." if self.dotall else "[^\\n]")
                self.pos += 1
            elif ch == "$":
                self.out.append("(?=\\n|$)" if self.multiline else "(?=\\n?$)")
                self.pos += 1
            elif ch == "^":
                self.out.append("(?:^|(?<=\\n))" if self.multiline else "^")
                self.pos += 1
            elif ch == "{":
                self.brace()
            elif ch in "*+?" and src.startswith("+", self.pos + 1):
                raise self.fail("a possessive quantifier")
            else:
                self.out.append(ch)
                self.pos += 1
        return "".join(self.out)

    def escape(self, *, in_class: bool) -> None:
        src = self.src
        nxt = src[self.pos + 1 : self.pos + 2]
        if nxt == "x":
            self.out.append(f"\\u{int(src[self.pos + 2 : self.pos + 4], 16):04x}")
            self.pos += 4
            return
        octal = _OCTAL_RE.match(src, self.pos + 1)
        if octal:
            self.out.append(f"\\u{int(octal.group(), 8):04x}")
            self.pos = octal.end()
            return
        if nxt == "N":
            raise self.fail("a named character escape \\N{...}")
        if nxt in "dDsS":
            if in_class and nxt in "DS":
                raise self.fail(f"\\{nxt} inside [...]")
            ranges = python_class(nxt.lower())
            self.out.append(ranges if in_class else ("[^" if nxt in "DS" else "[") + ranges + "]")
            self.pos += 2
            return
        if not in_class and nxt in "bB":
            self.out.append("\\y" if nxt == "b" else "\\Y")
        elif nxt == "A":
            self.out.append("^" if not in_class else "A")
        else:
            self.out.append("\\" + nxt)
        self.pos += 2

    def bracket(self) -> None:
        src = self.src
        self.out.append("[")
        self.pos += 1
        if src.startswith("^", self.pos):
            self.out.append("^")
            self.pos += 1
        if src.startswith("]", self.pos):
            self.out.append("\\]")
            self.pos += 1
        while self.pos < len(src) and src[self.pos] != "]":
            ch = src[self.pos]
            if ch == "\\":
                self.escape(in_class=True)
            else:
                self.out.append("\\[" if ch == "[" else ch)
                self.pos += 1
        self.out.append("]")
        self.pos += 1

    def group(self) -> None:
        src = self.src
        if src.startswith("(?P<", self.pos):
            self.out.append("(")
            self.pos = src.index(">", self.pos) + 1
        elif src.startswith("(?>", self.pos):
            raise self.fail("an atomic group (?>...)")
        elif re.match(r"\(\?[a-zA-Z-]+:", src[self.pos :]):
            raise self.fail("a scoped flag group such as (?i:...)")
        elif src.startswith("(?#", self.pos):
            self.pos = src.index(")", self.pos) + 1
        else:
            self.out.append("(")
            self.pos += 1

    def brace(self) -> None:
        match = re.match(r"\{(\d*)(,?)(\d*)\}", self.src[self.pos :])
        if not match:  # a literal brace in Python
            self.out.append("\\{")
            self.pos += 1
            return
        low, comma, high = match.groups()
        if not low and not comma:  # "{}" is literal in Python
            self.out.append("\\{")
            self.pos += 1
            return
        self.out.append("{" + (low or "0") + comma + high + "}")
        self.pos += match.end()
        if self.src.startswith("+", self.pos):
            raise self.fail("a possessive quantifier")


@functools.cache
def python_class(letter: str) -> str:
    """The code points Python's ``\\d`` or ``\\s`` (``letter``) matches in a str, written as the
    inside of a PostgreSQL bracket expression (``\\u0030-\\u0039...``), found by ``re`` itself."""
    found = re.compile(f"\\{letter}+")
    ranges: list[str] = []
    # Two runs of code points, around the surrogates (no str holds them).
    for low, high in ((0, 0xD7FF), (0xE000, sys.maxunicode)):
        text = "".join(map(chr, range(low, high + 1)))
        for match in found.finditer(text):
            first, last = low + match.start(), low + match.end() - 1
            ranges.append(_pg_char(first) + ("" if first == last else "-" + _pg_char(last)))
    return "".join(ranges)


def _pg_char(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
