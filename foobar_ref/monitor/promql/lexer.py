"""PromQL's tokens: numbers, durations, strings, identifiers and operators, each with its offset. Pure.

The rules follow Prometheus's lexer: a number directly followed by a unit letter is a duration
(`5m`, `1h30m`, `250ms`); `Inf` and `NaN` (any case) are numbers; identifiers may hold colons (then
they can only be metric names); strings are Go's: double or single quotes with escapes, or
backquotes without; `#` starts a comment to the end of the line.  A character that starts no
token raises the parse error Prometheus gives, with its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from foobar_ref.monitor.promql.errors import PromQLError, parse_error

NUMBER = "number"
DURATION = "duration"
STRING = "string"
IDENTIFIER = "identifier"
OPERATOR = "operator"
EOF = "end of input"

_OPERATORS = ("==", "!=", "<=", ">=", "=~", "!~", "+", "-", "*", "/", "%", "^", "<", ">", "=")
_PUNCTUATION = {"(": "(", ")": ")", "{": "{", "}": "}", "[": "[", "]": "]", ",": ",", ":": ":", "@": "@"}
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+")
_DURATION_PART = re.compile(r"([0-9]+)(ms|[smhdwy])")
_UNIT_MS = {"y": 365 * 86400_000, "w": 7 * 86400_000, "d": 86400_000, "h": 3600_000, "m": 60_000, "s": 1000, "ms": 1}
_DIGITS = frozenset("0123456789")
_WORD_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int
    value: object = None  # float for numbers, int milliseconds for durations, str for strings

    def describe(self) -> str:
        """How Prometheus names a token in 'unexpected ...' errors."""
        if self.kind == EOF:
            return "end of input"
        if self.kind in (OPERATOR, "punctuation"):
            return {"(": '"("', ")": "right parenthesis ')'", "{": '"{"', "}": '"}"', "[": '"["', "]": '"]"'}.get(
                self.text, f'"{self.text}"'
            )
        return f'{self.kind} "{self.text}"'


def parse_duration_text(text: str) -> int | None:
    """Milliseconds of a Prometheus duration (`1h30m`, `250ms`), or None when it is not one."""
    if not _DURATION.fullmatch(text):
        return None
    total, last_unit = 0, None
    for number, unit in _DURATION_PART.findall(text):
        if last_unit is not None and _UNIT_MS[unit] >= _UNIT_MS[last_unit]:
            return None  # units must shrink from left to right, each once
        total += int(number) * _UNIT_MS[unit]
        last_unit = unit
    return total


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos, length = 0, len(query)
    while True:
        while pos < length and (query[pos].isspace() or query[pos] == "#"):
            if query[pos] == "#":
                end = query.find("\n", pos)
                pos = length if end < 0 else end
            else:
                pos += 1
        if pos >= length:
            tokens.append(Token(EOF, "", length))
            return tokens
        token = _next_token(query, pos)
        tokens.append(token)
        pos = token.pos + len(token.text)


def _next_token(query: str, pos: int) -> Token:
    char = query[pos]
    if char in _DIGITS or (char == "." and query[pos + 1 : pos + 2] in _DIGITS):
        return _number_or_duration(query, pos)
    if char in "\"'`":
        return _string(query, pos)
    match = _IDENTIFIER.match(query, pos)
    if match:
        word = match.group()
        if word.lower() in ("inf", "nan"):
            return Token(NUMBER, word, pos, float(word))
        return Token(IDENTIFIER, word, pos, word)
    for operator in _OPERATORS:
        if query.startswith(operator, pos):
            return Token(OPERATOR, operator, pos)
    if char in _PUNCTUATION:
        return Token("punctuation", char, pos)
    if char == "!":
        raise parse_error(query, pos, f"unexpected character after '!': {_go_quote(query[pos + 1 : pos + 2])}")
    raise parse_error(query, pos, f"unexpected character: {_go_quote(char)}")


def _number_or_duration(query: str, pos: int) -> Token:
    duration = _DURATION.match(query, pos)
    if duration and not _continues_word(query, duration.end()):
        text = duration.group()
        milliseconds = parse_duration_text(text)
        if milliseconds is None:
            raise parse_error(query, pos, f'bad duration syntax: "{text}"')
        return Token(DURATION, text, pos, milliseconds)
    match = _NUMBER.match(query, pos)
    assert match is not None
    end = match.end()
    if _continues_word(query, end):
        while end < len(query) and query[end] in _WORD_CHARACTERS:
            end += 1
        raise parse_error(query, pos, f'bad number or duration syntax: "{query[pos:end]}"')
    text = match.group()
    value = float(int(text, 16)) if text[:2] in ("0x", "0X") else float(text)
    return Token(NUMBER, text, pos, value)


def _continues_word(query: str, end: int) -> bool:
    return end < len(query) and query[end] in _WORD_CHARACTERS


def _string(query: str, pos: int) -> Token:
    quote = query[pos]
    if quote == "`":
        end = query.find("`", pos + 1)
        if end < 0:
            raise parse_error(query, pos, "unterminated raw string")
        return Token(STRING, query[pos : end + 1], pos, query[pos + 1 : end])
    out: list[str] = []
    index = pos + 1
    while True:
        if index >= len(query) or query[index] == "\n":
            raise parse_error(query, pos, "unterminated quoted string")
        char = query[index]
        if char == quote:
            return Token(STRING, query[pos : index + 1], pos, "".join(out))
        if char != "\\":
            out.append(char)
            index += 1
            continue
        decoded, index = _escape(query, index + 1, quote, pos)
        out.append(decoded)


def _escape(query: str, index: int, quote: str, start: int) -> tuple[str, int]:
    """Decode the escape sequence starting after a backslash at `index`; returns (text, next index)."""
    char = query[index : index + 1]
    if not char:
        raise parse_error(query, start, "escape sequence not terminated")
    if char in _ESCAPES:
        return _ESCAPES[char], index + 1
    if char == quote:
        return quote, index + 1
    widths = {"x": 2, "u": 4, "U": 8}
    if char in widths or char in "01234567":
        width, base, begin = (widths[char], 16, index + 1) if char in widths else (3, 8, index)
        digits = query[begin : begin + width]
        try:
            code = int(digits, base) if len(digits) == width else -1
        except ValueError:
            code = -1
        if code < 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or (base == 8 and code > 255):
            raise parse_error(query, start, "invalid escape sequence")
        return chr(code), begin + width
    raise parse_error(query, start, f"unknown escape sequence {_go_quote(char)}")


def _go_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def duration_error(query: str, token: Token) -> PromQLError:
    return parse_error(query, token.pos, f"unexpected {token.describe()}, expected duration")
