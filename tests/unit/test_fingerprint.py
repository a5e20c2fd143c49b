"""Query fingerprints: what the normalised text reads, and which queries share an id."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from dbprobe.correlate.fingerprint import Fingerprint, fingerprint, normalize


def same_id(left: str, right: str) -> bool:
    return fingerprint(left).id == fingerprint(right).id


# --- literals ---------------------------------------------------------------------------

LITERALS = [
    # numbers
    ("SELECT 1", "SELECT ?"),
    ("SELECT 1.5, .5, 5., 1_000", "SELECT ?, ?, ?, ?"),
    ("SELECT 1e10, 1.5E-3, 2e+5", "SELECT ?, ?, ?"),
    ("SELECT 0x1F, 0b101, 0o17", "SELECT ?, ?, ?"),
    # a sign that can only be unary belongs to the number
    ("WHERE a = -1", "WHERE a = ?"),
    ("WHERE a>=-1", "WHERE a>=?"),
    ("SELECT f(-1, +2)", "SELECT f(?, ?)"),
    ("SELECT a * -2, 5 - -3", "SELECT a * ?, ? - ?"),
    ("SELECT -1", "SELECT ?"),
    ("CASE WHEN a THEN -1 ELSE -2 END", "CASE WHEN a THEN ? ELSE ? END"),
    # a sign after a value is an operator and stays
    ("SELECT a - 1, a-1, (a) - 1, f(x)-1, t.c+1", "SELECT a - ?, a-?, (a) - ?, f(x)-?, t.c+?"),
    # single-quoted strings, with both kinds of escape
    ("WHERE name = 'bob'", "WHERE name = ?"),
    ("WHERE name = 'it''s'", "WHERE name = ?"),
    (r"WHERE name = 'it\'s'", "WHERE name = ?"),
    ("WHERE a = '' AND b = ''''", "WHERE a = ? AND b = ?"),
    ("WHERE a = '-- not a comment' AND b = '/* nor this */'", "WHERE a = ? AND b = ?"),
    # prefixed strings
    (r"SELECT E'a\'b', N'x', X'1F', x'ff', B'101', U&'d\0061t'", "SELECT ?, ?, ?, ?, ?, ?"),
    ("SELECT _utf8mb4'x', _binary'y'", "SELECT ?, ?"),
    # PostgreSQL dollar quoting
    ("SELECT $$it's$$", "SELECT ?"),
    ("SELECT $fn$ a $$ nested $$ b $fn$ FROM t", "SELECT ? FROM t"),
    # booleans and NULL as values
    ("WHERE a = TRUE AND b = false", "WHERE a = ? AND b = ?"),
    ("UPDATE t SET a = NULL", "UPDATE t SET a = ?"),
    # ... but not in predicates and constraints
    ("WHERE a IS NULL AND b IS NOT NULL", "WHERE a IS NULL AND b IS NOT NULL"),
    ("WHERE a IS TRUE OR b IS NOT FALSE", "WHERE a IS TRUE OR b IS NOT FALSE"),
    ("CREATE TABLE t (id int NOT NULL)", "CREATE TABLE t (id int NOT NULL)"),
    # placeholders
    ("WHERE a = $1 AND b = $12", "WHERE a = ? AND b = ?"),
    ("WHERE a = ? AND b = ?", "WHERE a = ? AND b = ?"),
    # the examples of the design
    ("SELECT '1'::int", "SELECT ?::int"),
    ("SELECT * FROM t LIMIT 10 OFFSET 20", "SELECT * FROM t LIMIT ? OFFSET ?"),
    ("SELECT pg_sleep(0.5)", "SELECT pg_sleep(?)"),
    ("WHERE ts > now() - interval '5 minutes'", "WHERE ts > now() - interval ?"),
]


@pytest.mark.parametrize(("sql", "expected"), LITERALS)
def test_literals_become_placeholders(sql: str, expected: str) -> None:
    assert normalize(sql) == expected


IDENTIFIERS = [
    'SELECT "Col 1", "a""b", "it\'s", "42" FROM "Users"',
    "SELECT `order`, `a``b` FROM `my table`",
    "SELECT t1.col_2, col2x FROM schema1.t1",
    "SELECT 1abc FROM 2fa",  # MySQL allows identifiers that start with a digit
    "SELECT a$b, café, naïve_ß FROM données",
]


@pytest.mark.parametrize("sql", IDENTIFIERS)
def test_identifiers_are_kept_as_written(sql: str) -> None:
    assert normalize(sql) == sql


# --- comments, whitespace, case ---------------------------------------------------------

LAYOUT = [
    ("SELECT 1 -- the answer\nFROM t", "SELECT ? FROM t"),
    ("SELECT 1 FROM t -- cut here", "SELECT ? FROM t"),
    ("SELECT /* one */ 1", "SELECT ?"),
    ("SELECT/**/1/* a /* nested */ comment */FROM t", "SELECT ? FROM t"),
    ("SELECT /*+ INDEX(t idx) */ a FROM t", "SELECT a FROM t"),
    ("/*!40101 SET NAMES utf8 */ SELECT a FROM t", "SELECT a FROM t"),
    ("/* app=web,route=/users */\nSELECT a FROM t", "SELECT a FROM t"),
    ("  SELECT\n\ta ,\r\n  b\n\nFROM   t  ", "SELECT a , b FROM t"),
    ("SELECT a FROM t;", "SELECT a FROM t"),
    ("SELECT a FROM t ; ; -- done", "SELECT a FROM t"),
    ("BEGIN; SELECT 1; COMMIT;", "BEGIN; SELECT ?; COMMIT"),
    ("Select A From T Where B = 1", "Select A From T Where B = ?"),
    ("", ""),
    ("  -- only a comment -- with -- dashes\n /* and another */ ", ""),
]


@pytest.mark.parametrize(("sql", "expected"), LAYOUT)
def test_comments_go_and_whitespace_folds(sql: str, expected: str) -> None:
    assert normalize(sql) == expected


# --- lists ------------------------------------------------------------------------------

LISTS = [
    ("WHERE a IN (1, 2, 3)", "WHERE a IN (?+)"),
    ("WHERE a IN ('a','b')", "WHERE a IN (?+)"),
    ("WHERE a IN ($1, $2)", "WHERE a IN (?+)"),
    ("WHERE a IN (?, ?, ?)", "WHERE a IN (?+)"),
    ("WHERE a in(7)", "WHERE a in(?+)"),
    ("WHERE a NOT IN ( -1 , NULL, 'x' )", "WHERE a NOT IN (?+)"),
    ("WHERE (a, b) IN ((1, 'x'), (2, 'y'))", "WHERE (a, b) IN ((?+))"),
    ("WHERE a = ANY(ARRAY[1,2,3])", "WHERE a = ANY(ARRAY[?+])"),
    ("WHERE a = ANY('{1,2,3}'::int[])", "WHERE a = ANY(?::int[])"),
    ("INSERT INTO t (a, b) VALUES (1,'a'), (2,'b')", "INSERT INTO t (a, b) VALUES (?+)"),
    ("INSERT INTO t VALUE (1, 'a')", "INSERT INTO t VALUE (?+)"),
    ("INSERT INTO t VALUES (1, now()), (2, now())", "INSERT INTO t VALUES (?, now())"),
    # rows that differ in shape are all kept
    ("INSERT INTO t VALUES (1, now()), (DEFAULT, now())",
     "INSERT INTO t VALUES (?, now()), (DEFAULT, now())"),
    ("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v (n, s)",
     "SELECT * FROM (VALUES (?+)) AS v (n, s)"),
    # what is not a list of literals is left alone
    ("WHERE a IN (SELECT b FROM t)", "WHERE a IN (SELECT b FROM t)"),
    ("WHERE a IN (b, c)", "WHERE a IN (b, c)"),
    ("WHERE a IN (1 + 2)", "WHERE a IN (? + ?)"),
    ("SELECT ARRAY[a, b], f(1, 2)", "SELECT ARRAY[a, b], f(?, ?)"),
    ("SELECT a[1], '{}'::int[]", "SELECT a[?], ?::int[]"),
]


@pytest.mark.parametrize(("sql", "expected"), LISTS)
def test_lists_of_literals_collapse(sql: str, expected: str) -> None:
    assert normalize(sql) == expected


def test_an_in_list_of_any_length_is_one_fingerprint() -> None:
    def select(items: int) -> str:
        return f"SELECT * FROM t WHERE id IN ({', '.join(map(str, range(items)))})"

    assert {fingerprint(select(items)) for items in (1, 2, 10, 1000)} == {fingerprint(select(1))}


def test_a_multi_row_insert_of_any_length_is_one_fingerprint() -> None:
    def insert(rows: int) -> str:
        return "INSERT INTO t (a, b) VALUES " + ", ".join(f"({n}, 'row {n}')" for n in range(rows))

    assert {fingerprint(insert(rows)) for rows in (1, 2, 100)} == {fingerprint(insert(1))}
    assert normalize(insert(100)) == "INSERT INTO t (a, b) VALUES (?+)"


# --- ids --------------------------------------------------------------------------------

SAME_ID = [
    ("SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 42"),
    ("select 1", "SELECT 2"),
    ("SELECT a FROM t WHERE b = 'x'", "select A from T where B = 'y'"),
    ("SELECT a FROM t WHERE b=1", "SELECT  a\nFROM t\tWHERE b = 1 ;"),
    ("SELECT a FROM t", "/* app */ SELECT a -- all of them\nFROM t"),
    ("WHERE a = 5", "WHERE a = -5"),
    ("WHERE a = $1", "WHERE a = 'literal'"),
    ("WHERE a = ?", "WHERE a = 3.14"),
    ("WHERE a IN (1, 2)", "WHERE a IN ($1, $2, $3)"),
    ("WHERE (a, b) IN ((1, 2))", "WHERE (a, b) IN ((1, 2), (3, 4), (5, 6))"),
    ("SELECT $$x$$", "SELECT 'y'"),
    ("WHERE a = TRUE", "WHERE a = 0"),
]

DIFFERENT_ID = [
    ("SELECT a FROM t", "SELECT a FROM u"),
    ("SELECT a FROM t", "SELECT b FROM t"),
    ("SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b > 1"),
    ("SELECT a - 1", "SELECT a + 1"),
    ('SELECT a FROM "Users"', 'SELECT a FROM "users"'),
    ("SELECT a FROM t WHERE b IS NULL", "SELECT a FROM t WHERE b IS NOT NULL"),
    ("WHERE a IN (1, 2)", "WHERE a IN (SELECT 1)"),
    ("SELECT a FROM t", "SELECT a FROM t LIMIT 1"),
]


@pytest.mark.parametrize(("left", "right"), SAME_ID)
def test_same_statement_same_id(left: str, right: str) -> None:
    assert same_id(left, right)


@pytest.mark.parametrize(("left", "right"), DIFFERENT_ID)
def test_different_statement_different_id(left: str, right: str) -> None:
    assert not same_id(left, right)


def test_the_id_is_sixteen_hex_characters() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint("SELECT 1").id)


def test_the_id_does_not_depend_on_the_process() -> None:
    """Ids are stable across runs (no salted hash()), so they can be compared between reports."""
    query = "SELECT a FROM t WHERE b = 1"
    program = f"from dbprobe.correlate.fingerprint import fingerprint; print(fingerprint({query!r}).id)"
    child = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )  # fmt: skip
    assert child.stdout.strip() == fingerprint(query).id


def test_a_fingerprint_is_immutable_and_normalize_is_its_text() -> None:
    sql = "SELECT a FROM t WHERE b = 'secret'"
    result = fingerprint(sql)
    assert isinstance(result, Fingerprint)
    assert normalize(sql) == result.text
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.text = sql  # type: ignore[misc]


def test_long_texts_fingerprint_like_short_ones() -> None:
    """Texts above the cached length take the uncached path; the answer is the same."""
    padding = "/*" + " " * 10_000 + "*/"
    long_text = padding + "SELECT a FROM t WHERE b = 1"
    assert fingerprint(long_text) == fingerprint("SELECT a FROM t WHERE b = 2")


# --- truncated and hostile text ---------------------------------------------------------

UNTERMINATED = [
    ("SELECT 'never closed", "SELECT ?"),
    ("SELECT 'ends with a backslash\\", "SELECT ?"),
    ('SELECT "never closed', "SELECT ?"),
    ("SELECT `never closed", "SELECT ?"),
    ('SELECT "doubled "" quote', "SELECT ?"),
    ("SELECT $$ never closed", "SELECT ?"),
    ("SELECT $body$ never $$ closed", "SELECT ?"),
    ("SELECT 1 /* never closed", "SELECT ?"),
    ("SELECT 1 /* outer /* inner */ never closed", "SELECT ?"),
    ("SELECT a FROM t WHERE b IN (1, 2", "SELECT a FROM t WHERE b IN (?+"),
    ("SELECT a FROM t WHERE b IN (1, -", "SELECT a FROM t WHERE b IN (?+"),
    ("SELECT a FROM t WHERE b IN (", "SELECT a FROM t WHERE b IN ("),
    ("SELECT a FROM t WHERE b IN (f(1", "SELECT a FROM t WHERE b IN (f(?"),
    ("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3,", "INSERT INTO t VALUES (?+), (?+"),
    ("SELECT a FROM t WHERE (b, c) IN ((1, 2), (3", "SELECT a FROM t WHERE (b, c) IN ((?+), (?+"),
    ("1, 2) AND c = 3", "?, ?) AND c = ?"),
    ("WHERE a IN (1, 2] AND b IN (3)", "WHERE a IN (?, ?] AND b IN (?+)"),
    ("SELECT 'Z\ufffd", "SELECT ?"),
    ("SELECT a\ufffd\ufffd FROM t", "SELECT a\ufffd\ufffd FROM t"),
    ("SELECT 'x' \udcc3", "SELECT ? \udcc3"),  # decoded with errors="surrogateescape"
]


@pytest.mark.parametrize(("sql", "expected"), UNTERMINATED)
def test_unterminated_input_runs_to_the_end(sql: str, expected: str) -> None:
    assert normalize(sql) == expected
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint(sql).id)


def test_an_unclosed_quoted_identifier_hides_what_follows_it() -> None:
    """The cut may reopen a quote: the text after it could be a secret, in either dialect."""
    for sql in ('select "hunter2', "select `hunter2", 'select "a"" hunter2'):
        for double_quoted_strings in (False, True):
            text = normalize(sql, double_quoted_strings=double_quoted_strings)
            assert text == "select ?", (sql, text)
    assert normalize('select "a""b", "" from t') == 'select "a""b", "" from t'


# The kernel side keeps the first 2048 bytes of a statement's text.
CAPTURED_BYTES = 2048


def test_an_in_list_cut_by_the_byte_limit_still_collapses() -> None:
    sql = "select * from t where id in (" + ", ".join(map(str, range(10_000))) + ")"
    raw = sql.encode()
    for length in range(CAPTURED_BYTES - 8, CAPTURED_BYTES + 1):  # after a digit, comma, space
        assert normalize(raw[:length].decode()) == "select * from t where id in (?+", length
    truncated = {fingerprint(raw[:length].decode()).id for length in range(100, CAPTURED_BYTES)}
    assert len(truncated) == 1


SECRET_QUERY = (
    "/* app: billing */ SELECT * FROM users WHERE name = 'Zoë Ålander' AND password = 'hunter2'"
    " AND token = $tok$s3cr3t-tok3n$tok$ AND pin = 48213 AND note = E'o\\'brien'"
)
SECRETS = ("Zo", "land", "hun", "s3c", "482", "bri")  # a few characters leak a secret too


def test_no_cut_of_the_bytes_raises_or_leaks_a_literal() -> None:
    """BPF cuts the text at a byte limit, even inside a UTF-8 sequence or a literal."""
    raw = SECRET_QUERY.encode()
    for length in range(len(raw) + 1):
        text = normalize(raw[:length].decode(errors="replace"))
        leaked = [secret for secret in SECRETS if secret in text]
        assert not leaked, f"cut at byte {length}: {text!r}"
    assert normalize(SECRET_QUERY) == (
        "SELECT * FROM users WHERE name = ? AND password = ? AND token = ? AND pin = ? AND note = ?"
    )


# Each runs in a child process with a timeout: a regular expression that backtracks
# catastrophically never returns, so only a timeout can turn it into a failure.
PATHOLOGICAL = [
    pytest.param("'" * 100_001, "?", id="quotes"),
    pytest.param("'" + "\\" * 100_000, "?", id="backslashes"),
    pytest.param("/*" * 50_000, "", id="nested comments"),
    pytest.param("SELECT 1 " + "/**/" * 25_000, "SELECT ?", id="empty comments"),
    pytest.param("/* " + "*" * 100_000, "", id="open comment of stars"),
    pytest.param("/* " + "a " * 50_000, "", id="open comment of text"),
    pytest.param(
        "/* " + "a " * 50_000 + "/* b */ */ SELECT 1", "SELECT ?", id="nested comment after text"
    ),
    pytest.param("-- a " * 20_000, "", id="dashed comment"),
    # pairs of $a$ are strings; the odd one out opens a string that runs to the end
    pytest.param("$a$" * 33_333 + "$b", "?" * 16_667, id="dollar tags"),
    pytest.param("1" * 100_000 + "x", "1" * 100_000 + "x", id="digits then a letter"),
    pytest.param("SELECT" + " \t\n" * 33_000 + "1", "SELECT ?", id="whitespace"),
    pytest.param("SELECT 1" + " \t\n" * 33_000, "SELECT ?", id="trailing whitespace"),
    pytest.param("(" * 50_000, "(" * 50_000, id="open brackets"),
    pytest.param(
        "SELECT 1 WHERE a IN (" + ", ".join(map(str, range(20_000))) + ")",
        "SELECT ? WHERE a IN (?+)",
        id="in-list",
    ),
    pytest.param(
        "INSERT INTO t VALUES " + ", ".join(f"({n}, 'x{n}', now())" for n in range(5_000)),
        "INSERT INTO t VALUES (?, ?, now())",
        id="values rows",
    ),
]


@pytest.mark.parametrize(("sql", "expected"), PATHOLOGICAL)
def test_pathological_input_completes(sql: str, expected: str) -> None:
    program = (
        "import json, sys; from dbprobe.correlate.fingerprint import normalize;"
        " print(json.dumps(normalize(json.load(sys.stdin))))"
    )
    child = subprocess.run(
        [sys.executable, "-c", program], input=json.dumps(sql),
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(child.stdout) == expected


def test_double_quoted_strings_of_mysql_are_literals() -> None:
    mysql = fingerprint('SELECT * FROM users WHERE password = "hunter2"', double_quoted_strings=True)
    assert mysql.text == "SELECT * FROM users WHERE password = ?"
    postgres = fingerprint('SELECT "password" FROM users')
    assert postgres.text == 'SELECT "password" FROM users'
    assert fingerprint('select "a"', double_quoted_strings=True).id == fingerprint(
        "select 'b'", double_quoted_strings=True).id


def test_texts_of_one_shape_share_the_fingerprint_the_lexer_gives_each() -> None:
    """The shape cache never changes an answer: every text gets what a full lexing gives."""
    import random

    from dbprobe.correlate import fingerprint as module

    rng = random.Random(7)
    fragments = ["select", "a", "t1", "1abc", "x.y", "(", ")", ",", "=", "-", "+", "::int",
                 "in", "values", "limit", "'s'", "'it''s'", "E'x'", "\"q1\"", "$1", "a$1",
                 "1", "22", "3.5", "1e5", "0x1F", ".5", "--c\n", "/* 9 */", "true", "null",
                 "\\'", "$$x$$", "`b2`", "?", ";", "'unterminated"]
    texts = [" ".join(rng.choice(fragments) for _ in range(rng.randint(1, 12))) for _ in range(4000)]
    texts += [text.replace(" ", "") for text in texts[:1000]]
    module._by_shape.clear()
    for text in texts:
        assert fingerprint(text) == module._fingerprint(text), text
