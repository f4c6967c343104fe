"""The compound filter language (MCollective's ``-S``), parsed into an expression tree.

Grammar (keywords are case-insensitive)::

    expr    := and_ ("or" and_)*
    and_    := unary ("and" unary)*
    unary   := ("not" | "!") unary | "(" expr ")" | term
    term    := FACT OP value          e.g. customer=acme, cpus>=4, os=~/deb/
             | /regex/                class regex
             | class:NAME | class:/re/ | agent:NAME | agent:/re/
             | identity:NAME | identity:/re/ | NAME  (a bare NAME is a class)
    value   := WORD | "quoted" | 'quoted' | /regex/

Every failure, on any input, is a FilterSyntaxError carrying a 1-based column.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from agents.filters.errors import FilterSyntaxError
from agents.filters.safe_regex import compile_safe
from agents.filters.terms import (
    OPERATOR_HINT,
    OPERATORS,
    FactTerm,
    NodeView,
    escape_slashes,
    fact_matches,
    is_regex_literal,
    make_fact_term,
    name_matches,
    quote_value,
)

MAX_COMPOUND_LENGTH = 4096
MAX_DEPTH = 64
_WORD_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+\-]*")
_OP_CHARS = "=!<>~"
_PREFIXES = ("class", "agent", "identity")


@dataclass(frozen=True)
class Token:
    kind: str  # WORD STRING REGEX OP LPAREN RPAREN NOT AND OR END
    text: str
    column: int


def tokenize(text: str) -> list[Token]:
    """Split compound text into tokens; raises FilterSyntaxError at the first bad character."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        col = i + 1
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(Token("LPAREN" if ch == "(" else "RPAREN", ch, col))
            i += 1
        elif ch in _OP_CHARS:
            j = i
            while j < n and text[j] in _OP_CHARS:
                j += 1
            op = text[i:j]
            if op == "!":
                tokens.append(Token("NOT", op, col))
            elif op == "=" or op in OPERATORS:
                tokens.append(Token("OP", op, col))
            else:
                raise FilterSyntaxError(
                    f"unknown operator {op!r} at column {col}; {OPERATOR_HINT}", col
                )
            i = j
        elif ch == "/":
            j = i + 1
            while j < n and text[j] != "/":
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise FilterSyntaxError(f"unterminated regex starting at column {col}", col)
            tokens.append(Token("REGEX", text[i + 1 : j], col))
            i = j + 1
        elif ch in "\"'":
            j = i + 1
            chars: list[str] = []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(text[j])
                j += 1
            if j >= n:
                raise FilterSyntaxError(f"unterminated string starting at column {col}", col)
            tokens.append(Token("STRING", "".join(chars), col))
            i = j + 1
        else:
            match = _WORD_RE.match(text, i)
            if not match:
                raise FilterSyntaxError(f"unexpected character {ch!r} at column {col}", col)
            word = match.group()
            kind = word.lower() if word.lower() in ("and", "or", "not") else "WORD"
            tokens.append(Token(kind.upper(), word, col))
            i = match.end()
    tokens.append(Token("END", "", n + 1))
    return tokens


class Expr:
    """A node of a parsed compound filter."""

    def evaluate(self, node: NodeView) -> bool:
        """True if ``node`` satisfies this expression."""
        raise NotImplementedError

    def describe(self) -> str:
        """Canonical compound text that parses back to an equivalent expression."""
        raise NotImplementedError


@dataclass(frozen=True)
class FactExpr(Expr):
    term: FactTerm

    def evaluate(self, node: NodeView) -> bool:
        return fact_matches(self.term, node.facts)

    def describe(self) -> str:
        return self.term.describe()


@dataclass(frozen=True)
class NameExpr(Expr):
    """class/agent/identity, exact or ``/re/`` (value keeps its slashes)."""

    kind: str
    value: str

    def evaluate(self, node: NodeView) -> bool:
        names: Any = {
            "class": node.classes,
            "agent": node.agents,
            "identity": node.identity,
        }[self.kind]
        return name_matches(self.value, names)

    def describe(self) -> str:
        if is_regex_literal(self.value):
            return f"{self.kind}:/{escape_slashes(self.value[1:-1])}/"
        return f"{self.kind}:{quote_value(self.value)}"


@dataclass(frozen=True)
class Not(Expr):
    item: Expr

    def evaluate(self, node: NodeView) -> bool:
        return not self.item.evaluate(node)

    def describe(self) -> str:
        inner = self.item.describe()
        return f"not ({inner})" if isinstance(self.item, And | Or) else f"not {inner}"


@dataclass(frozen=True)
class And(Expr):
    items: tuple[Expr, ...]

    def evaluate(self, node: NodeView) -> bool:
        return all(item.evaluate(node) for item in self.items)

    def describe(self) -> str:
        return " and ".join(
            f"({i.describe()})" if isinstance(i, Or) else i.describe() for i in self.items
        )


@dataclass(frozen=True)
class Or(Expr):
    items: tuple[Expr, ...]

    def evaluate(self, node: NodeView) -> bool:
        return any(item.evaluate(node) for item in self.items)

    def describe(self) -> str:
        return " or ".join(
            f"({i.describe()})" if isinstance(i, And) else i.describe() for i in self.items
        )


def name_expr(kind: str, value: str, regex: bool, column: int) -> NameExpr:
    """A class/agent/identity term, validating its regex now rather than at match time."""
    if not regex and is_regex_literal(value):
        # A quoted "/re/" means the same as /re/ in the dict form; keep one meaning.
        regex, value = True, value[1:-1]
    if regex:
        compile_safe(value, column)
        return NameExpr(kind, f"/{value}/")
    if not value:
        raise FilterSyntaxError(f"empty {kind} name at column {column}", column)
    return NameExpr(kind, value)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def parse(self) -> Expr:
        expr = self.expr()
        tok = self.peek()
        if tok.kind != "END":
            want = "')'" if tok.kind == "RPAREN" else "'and', 'or' or end of filter"
            raise FilterSyntaxError(
                f"unexpected {_show(tok)} at column {tok.column}; expected {want}", tok.column
            )
        return expr

    def expr(self) -> Expr:
        items = [self.and_()]
        while self.peek().kind == "OR":
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Expr:
        items = [self.unary()]
        while self.peek().kind == "AND":
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            tok = self.peek()
            raise FilterSyntaxError(
                f"filter nests deeper than {MAX_DEPTH} levels at column {tok.column}", tok.column
            )
        try:
            tok = self.peek()
            if tok.kind == "NOT":
                self.take()
                return Not(self.unary())
            if tok.kind == "LPAREN":
                self.take()
                inner = self.expr()
                close = self.peek()
                if close.kind != "RPAREN":
                    raise FilterSyntaxError(
                        f"expected ')' at column {close.column} to close '(' at column "
                        f"{tok.column}, found {_show(close)}",
                        close.column,
                    )
                self.take()
                return inner
            return self.term()
        finally:
            self.depth -= 1

    def term(self) -> Expr:
        tok = self.take()
        if tok.kind == "REGEX":
            return name_expr("class", tok.text, True, tok.column)
        if tok.kind == "STRING" and self.peek().kind != "OP":
            return name_expr("class", tok.text, False, tok.column)
        if tok.kind not in ("WORD", "STRING"):
            raise FilterSyntaxError(
                f"expected a filter term at column {tok.column}, found {_show(tok)}", tok.column
            )
        if self.peek().kind == "OP":
            op = self.take()
            value = self.take()
            if value.kind not in ("WORD", "STRING", "REGEX", "AND", "OR", "NOT"):
                raise FilterSyntaxError(
                    f"expected a value after {op.text!r} at column {value.column}, "
                    f"found {_show(value)}",
                    value.column,
                )
            term = make_fact_term(
                tok.text, op.text, value.text, op.column, regex=value.kind == "REGEX"
            )
            return FactExpr(term)
        prefix, sep, rest = tok.text.partition(":")
        if tok.kind == "WORD" and sep and prefix.lower() in _PREFIXES and not rest.startswith(":"):
            kind = prefix.lower()
            if (
                not rest
                and self.peek().kind == "REGEX"
                and self.peek().column == tok.column + len(tok.text)
            ):
                regex = self.take()
                return name_expr(kind, regex.text, True, regex.column)
            if not rest and self.peek().kind == "STRING":
                return name_expr(kind, self.take().text, False, tok.column)
            return name_expr(kind, rest, False, tok.column)
        return name_expr("class", tok.text, False, tok.column)


def _show(tok: Token) -> str:
    return "end of filter" if tok.kind == "END" else repr(tok.text)


def parse_compound(text: str) -> Expr:
    """Parse compound filter text into an Expr (cached: nodes see the same text repeatedly).

    Raises FilterSyntaxError (with a 1-based column) for any bad input, never another error.
    """
    if not isinstance(text, str):
        raise FilterSyntaxError("compound filter must be a string")
    return _parse_cached(text)


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Expr:
    if len(text) > MAX_COMPOUND_LENGTH:
        raise FilterSyntaxError(
            f"compound filter is {len(text)} characters, over the {MAX_COMPOUND_LENGTH} limit"
        )
    if not text.strip():
        raise FilterSyntaxError("compound filter is empty", 1)
    return _Parser(text).parse()
