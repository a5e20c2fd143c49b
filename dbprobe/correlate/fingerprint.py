"""Query fingerprints: one normalised form for every execution of the same statement.

In the spirit of pt-query-digest and pg_stat_statements, for PostgreSQL and MySQL/MariaDB
query text: literals become ``?``, comments go, whitespace folds, IN-lists, ARRAY[...] lists
and multi-row VALUES collapse, so the same statement with other values is one query class.

The text arrives from BPF with a byte limit, so it may stop anywhere: inside a string, a
comment or a UTF-8 sequence. Nothing here raises on such input, and the work is one linear
pass over it, since this runs for every query event that reaches user space.

Lexical choices where the two servers differ: backslash escapes are honoured in every
single-quoted string (MySQL's default, PostgreSQL's E'' strings); double quotes delimit
identifiers (PostgreSQL, MySQL with ANSI_QUOTES); /* comments */ nest (PostgreSQL); # is an
operator (PostgreSQL), not a comment.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A query class.

    ``id`` is 16 hex characters, the same for the statement with other literals, spacing,
    letter case or comments. ``text`` is the query with literals as ``?``, comments
    stripped, whitespace folded to single spaces and the letter case as written.
    """

    id: str
    text: str


def fingerprint(sql: str, *, double_quoted_strings: bool = False) -> Fingerprint:
    """The fingerprint of one query text, which may be truncated.

    ``double_quoted_strings``: "..." is a string literal, as in MySQL and MariaDB without
    ANSI_QUOTES, rather than an identifier (PostgreSQL, the default).
    """
    if len(sql) > _CACHED_LENGTH:
        return _fingerprint(sql, double_quoted_strings)
    if _shape_unsafe(sql):
        return _cached_fingerprint(sql, double_quoted_strings)
    shape = (_SHAPE_NUMBERS.sub("\1", _SHAPE_STRINGS.sub("\0", sql)), double_quoted_strings)
    found = _by_shape.get(shape)
    if found is None:
        if len(_by_shape) >= _SHAPE_CACHE_SIZE:
            _by_shape.clear()
        found = _by_shape[shape] = _fingerprint(sql, double_quoted_strings)
    return found


def normalize(sql: str, *, double_quoted_strings: bool = False) -> str:
    """The query text with literals replaced: ``fingerprint(sql).text``."""
    return fingerprint(sql, double_quoted_strings=double_quoted_strings).text


def _fingerprint(sql: str, double_quoted_strings: bool = False) -> Fingerprint:
    normaliser = _Normaliser()
    for token in _lex(sql, double_quoted_strings):
        normaliser.add(token)
    tokens = normaliser.tokens()
    return Fingerprint(id=_digest(tokens), text=_render(tokens))


# Servers see the same text again and again (prepared statements, $1 or ? placeholders,
# ORMs); a bounded cache of short texts answers those without lexing them.
_CACHED_LENGTH = 4096
_cached_fingerprint = functools.lru_cache(maxsize=2048)(_fingerprint)

# Texts with their literals inline (SELECT ... WHERE id = 42, then 43...) never repeat, but
# their shape does: the text with its plain 'strings' and standalone digit runs blanked out.
# Texts of one shape differ only inside tokens the lexer turns into ? , so they share one
# fingerprint, found with one C-level substitution instead of a lexing pass. That holds
# where a quote or a digit cannot be anything else: texts with quoted identifiers,
# comments, escapes, doubled quotes, dollar quotes or $ inside identifiers take the full path.
_SHAPE_UNSAFE_DOLLAR = re.compile(r"\$(?!\d)|[\w$]\$")


def _shape_unsafe(sql: str) -> bool:
    # Substring tests run at memchr speed; only a $ needs a regular expression.
    return ('"' in sql or "`" in sql or "\\" in sql or "--" in sql or "/*" in sql or "''" in sql
            or ("$" in sql and _SHAPE_UNSAFE_DOLLAR.search(sql) is not None))


# Strings and numbers are blanked apart: a sign before a number is part of it, and digits
# next to a dot lex as one decimal or not depending on what the other side of the dot is.
_SHAPE_STRINGS = re.compile(r"'[^']*'")
_SHAPE_NUMBERS = re.compile(r"\b\d+\b")
_SHAPE_CACHE_SIZE = 8192
_by_shape: dict[tuple[str, bool], Fingerprint] = {}


# --- tokens -----------------------------------------------------------------------------

_WORD = "word"  # keyword or bare identifier
_QUOTED = "quoted"  # "identifier" or `identifier`: kept as written, letter case included
_PUNCT = "punct"  # one character of punctuation or operator
_LITERAL = "literal"  # shown as ?
_NUMBER = "number"  # a literal that may take a sign in front of it


class _Token(NamedTuple):
    kind: str
    text: str  # as it appears in Fingerprint.text
    canonical: str  # as it is hashed into Fingerprint.id
    spaced: bool  # whitespace or a comment came before it


_LITERAL_TOKEN = {spaced: _Token(_LITERAL, "?", "?", spaced) for spaced in (False, True)}
_NUMBER_TOKEN = {spaced: _Token(_NUMBER, "?", "?", spaced) for spaced in (False, True)}
_COLLAPSED_LIST = _Token(_LITERAL, "?+", "?+", False)

# One match per token: the gap before it, then the token. The alternatives after the gap
# cannot all fail (the last two match any character and the end of the text), so the
# engine never backtracks into the gap; the comment pattern inside the gap can fail, and
# is written so that a text has only one way to match it. So every match is linear.
_LEXER = re.compile(
    r"""
    (?P<gap>(?:
        \s+
      | --[^\n]*
      | /\*[^*/]*(?:(?:\*(?!/)|/(?!\*))[^*/]*)*\*/  # a comment with no comment inside
    )*)
    (?:
      (?P<string>
        (?:[EeNnBbXx]|[Uu]&|_[A-Za-z0-9]+)?        # E'', N'', X'', B'', U&'', MySQL _utf8mb4''
        '[^'\\]*(?:(?:\\.?|'')[^'\\]*)*'?           # '' and \ escapes; unclosed runs to the end
      )
    | (?P<word>[^\W\d][\w$]*)
    | (?P<quoted>"[^"]*(?:""[^"]*)*"?|`[^`]*(?:``[^`]*)*`?)
    | (?P<dollar_string>\$(?P<tag>(?:[^\W\d]\w*)?)\$.*?(?:\$(?P=tag)\$|\Z))
    | (?P<parameter>\$\d+|\?)
    | (?P<number>
        (?:0[xX][0-9A-Fa-f_]+|0[bB][01_]+|0[oO][0-7_]+
          |(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?
        )(?![\w$])                                  # 1abc is a (MySQL) identifier
      )
    | (?P<digit_word>\d[\w$]*)
    | (?P<comment>/\*)                              # nested or cut off: its end is found in _lex
    | (?P<punct>.)
    | (?P<end>\Z)
    )
    """,
    re.VERBOSE | re.DOTALL,
)

_COMMENT_DELIMITER = re.compile(r"/\*|\*/")


def _lex(sql: str, double_quoted_strings: bool = False) -> list[_Token]:
    """The tokens of ``sql``, literals already replaced, comments and whitespace dropped."""
    tokens: list[_Token] = []
    append = tokens.append
    position = 0
    after_comment = False
    while True:
        # One finditer runs to the end, unless a comment nests or is cut off: a regular
        # expression cannot find its end, so it is skipped here and lexing starts again.
        for found in _LEXER.finditer(sql, position):
            kind = found.lastgroup
            spaced = after_comment or found.end("gap") > found.start()
            after_comment = False
            if kind == "word" or kind == "digit_word":
                text = found.group(kind)
                append(_Token(_WORD, text, text.lower(), spaced))
            elif kind == "punct":
                text = found.group(kind)
                append(_Token(_PUNCT, text, text, spaced))
            elif kind == "number":
                append(_NUMBER_TOKEN[spaced])
            elif kind == "quoted":
                text = found.group(kind)
                if (double_quoted_strings and text.startswith('"')) or _is_unclosed(text):
                    # What follows an unclosed quote may be a string the cut reopened.
                    append(_LITERAL_TOKEN[spaced])
                else:
                    append(_Token(_QUOTED, text, text, spaced))
            elif kind == "comment":
                position = _block_comment_end(sql, found.end())
                after_comment = True
                break
            elif kind == "end":
                return tokens
            else:  # string, dollar_string, parameter
                append(_LITERAL_TOKEN[spaced])
        else:
            return tokens


def _is_unclosed(quoted: str) -> bool:
    """Whether a "quoted" or `quoted` identifier runs to the end of the text unclosed:
    its quotes, the opening one included, are odd in number (a doubled quote is one)."""
    return len(quoted) < 2 or quoted.count(quoted[0]) % 2 == 1


def _block_comment_end(sql: str, position: int) -> int:
    """Where the comment opened just before ``position`` ends, nested ones included."""
    depth = 1
    for delimiter in _COMMENT_DELIMITER.finditer(sql, position):
        depth += 1 if delimiter.group() == "/*" else -1
        if depth == 0:
            return delimiter.end()
    return len(sql)


# --- normalisation ----------------------------------------------------------------------

# TRUE, FALSE and NULL are values, except after IS or NOT (IS NULL, IS NOT TRUE, NOT NULL),
# where they belong to a predicate or a constraint; pg_stat_statements keeps those too.
_VALUE_WORDS = frozenset({"true", "false", "null"})
_PREDICATE_WORDS = frozenset({"is", "not"})

# Keywords after which + or - can only be the sign of a number: SELECT -1, THEN -1, LIMIT -1.
_KEYWORDS_BEFORE_OPERAND = frozenset(
    {
        "select", "distinct", "where", "having", "on", "and", "or", "not", "case", "when",
        "then", "else", "between", "like", "ilike", "limit", "offset", "default", "return",
    }
)  # fmt: skip
_VALUES_WORDS = frozenset({"values", "value"})  # MySQL also accepts INSERT ... VALUE (...)
_IN = frozenset({"in"})
_SIGNS = frozenset({"+", "-"})
_CLOSER_OF = {"(": ")", "[": "]"}
_OPENERS = frozenset(_CLOSER_OF)
_CLOSERS = frozenset(_CLOSER_OF.values())


class _Normaliser:
    """Builds the normalised token list, collapsing a list when its bracket closes.

    A row is a parenthesised group of a list of them: VALUES (1, 'a'), (2, 'b') or
    IN ((1, 2), (3, 4)). A row of literals reads (?+), and a row that reads the same as
    the one before it is dropped, so any number of rows reads as one.
    """

    __slots__ = ("_out", "_openers", "_last_row")

    def __init__(self) -> None:
        self._out: list[_Token] = []
        # For each bracket still open: its index in _out, and whether it opens a row.
        self._openers: list[tuple[int, bool]] = []
        # First and last index in _out of the latest row, to merge the next one into.
        self._last_row: tuple[int, int] | None = None

    def tokens(self) -> list[_Token]:
        out = self._out
        self._collapse_cut_list()
        while out and out[-1].kind == _PUNCT and out[-1].text == ";":
            out.pop()
        return out

    def _collapse_cut_list(self) -> None:
        """A list the byte limit cut before its bracket closed reads ``IN (?+``: its
        literals collapse as if it had closed. Only the innermost bracket can hold one."""
        if not self._openers:
            return
        out = self._out
        start, opens_row = self._openers[-1]
        end = len(out)
        while end > start + 1 and (out[end - 1].text == "," or _is_sign(out[end - 1])):
            end -= 1  # cut after a comma or a sign
        if (opens_row or self._opens_keyword_list(start)) and _is_literal_list(out, start + 1, end):
            out[start + 1 :] = [_COLLAPSED_LIST]

    def add(self, token: _Token) -> None:
        kind = token.kind
        if kind == _WORD and self._is_value(token):
            self._out.append(_LITERAL_TOKEN[token.spaced])
        elif kind == _NUMBER:
            self._add_number(token)
        elif kind == _PUNCT and token.text in _OPENERS:
            self._open(token)
        elif kind == _PUNCT and token.text in _CLOSERS:
            self._close(token)
        else:
            self._out.append(token)

    def _is_value(self, word: _Token) -> bool:
        """Whether ``word`` is TRUE, FALSE or NULL used as a value, not as in IS NULL."""
        return word.canonical in _VALUE_WORDS and not self._follows(_PREDICATE_WORDS)

    def _follows(self, words: frozenset[str], offset: int = 1) -> bool:
        """Whether the token ``offset`` places from the end is one of ``words``."""
        out = self._out
        return len(out) >= offset and out[-offset].kind == _WORD and out[-offset].canonical in words

    def _add_number(self, token: _Token) -> None:
        out = self._out
        spaced = token.spaced
        if out and _is_sign(out[-1]) and self._expects_operand(len(out) - 2):
            spaced = out.pop().spaced  # the sign is part of the literal: = -5 is = ?
        out.append(_LITERAL_TOKEN[spaced])

    def _expects_operand(self, index: int) -> bool:
        """Whether a sign after the token at ``index`` is unary (= -1), not binary (a - 1)."""
        if index < 0:
            return True
        before = self._out[index]
        if before.kind == _PUNCT:
            return before.text not in _CLOSERS
        if before.kind == _WORD:
            return before.canonical in _KEYWORDS_BEFORE_OPERAND
        return False

    def _open(self, token: _Token) -> None:
        self._openers.append((len(self._out), token.text == "(" and self._starts_row()))
        self._out.append(token)

    def _starts_row(self) -> bool:
        """Whether a ( here opens a row: after VALUES, IN (, or a row and a comma."""
        if self._follows(_VALUES_WORDS):
            return True
        out = self._out
        if out and out[-1].text == "(" and self._follows(_IN, offset=2):
            return True
        last_row = self._last_row
        return last_row is not None and last_row[1] == len(out) - 2 and out[-1].text == ","

    def _close(self, token: _Token) -> None:
        out = self._out
        out.append(token)
        if not self._openers:
            return  # opened before the start of the text
        start, opens_row = self._openers.pop()
        if _CLOSER_OF[out[start].text] != token.text:
            return  # mismatched brackets: leave them as they are
        if self._is_collapsible_list(start, opens_row):
            out[start + 1 :] = [_COLLAPSED_LIST, token._replace(spaced=False)]
        if opens_row:
            self._merge_row(start)

    def _is_collapsible_list(self, start: int, opens_row: bool) -> bool:
        """Whether the brackets from ``start`` to the end hold literals to show as ?+."""
        if not (opens_row or self._opens_keyword_list(start)):
            return False
        return _is_literal_list(self._out, start + 1, len(self._out) - 1)

    def _opens_keyword_list(self, start: int) -> bool:
        """Whether the bracket at ``start`` opens IN (...) or ARRAY[...]."""
        out = self._out
        if start == 0 or out[start - 1].kind != _WORD:
            return False
        before, opener = out[start - 1].canonical, out[start].text
        return (before == "in" and opener == "(") or (before == "array" and opener == "[")

    def _merge_row(self, start: int) -> None:
        """Drop the row from ``start`` if it reads the same as the row before it."""
        out = self._out
        last_row = self._last_row
        if (
            last_row is not None
            and last_row[1] == start - 2
            and _same_canonical(out[last_row[0] : last_row[1] + 1], out[start:])
        ):
            del out[start - 1 :]  # the row and the comma before it
        else:
            self._last_row = (start, len(out) - 1)


def _is_sign(token: _Token) -> bool:
    return token.kind == _PUNCT and token.text in _SIGNS


def _is_literal_list(tokens: list[_Token], first: int, stop: int) -> bool:
    """Whether ``tokens[first:stop]`` reads: literal, comma, literal, ..., literal."""
    if stop <= first or (stop - first) % 2 == 0:
        return False
    literals_in_place = all(tokens[index].kind == _LITERAL for index in range(first, stop, 2))
    commas_in_place = all(tokens[index].text == "," for index in range(first + 1, stop, 2))
    return literals_in_place and commas_in_place


def _same_canonical(left: list[_Token], right: list[_Token]) -> bool:
    return len(left) == len(right) and all(a.canonical == b.canonical for a, b in zip(left, right))


# --- output -----------------------------------------------------------------------------


def _render(tokens: list[_Token]) -> str:
    parts: list[str] = []
    for token in tokens:
        if token.spaced and parts:
            parts.append(" ")
        parts.append(token.text)
    return "".join(parts)


def _digest(tokens: list[_Token]) -> str:
    """The id: a hash of the tokens' case-folded forms, which no spacing can change."""
    canonical = " ".join(token.canonical for token in tokens)
    # surrogatepass: text decoded with errors="surrogateescape" must hash, not raise.
    return hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
