"""The kernel's class hash, as its Python model computes it (the integration tests hold the
kernel to the model): literals and spacing out, never merging what the fingerprint splits."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.kernel.classhash import ENTRIES, class_hash, table_bytes, transitions

SAME_CLASS = [
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
     "select abalance from pgbench_accounts where aid = 7;"),
    ("select * from t where name = 'alice' and n = 3", "SELECT * FROM t WHERE name = 'b''ob' and n = 41"),
    ("select * from t where x = 'a\\'b'", "select * from t where x = ''"),
    ("select 1.5", "select 22.75"),
    ("select $1, $2 from t", "select $7, $12 from t"),
    ("select /* app=web id=1 */ x from t", "select /* other */ x from t"),
    ("select x -- one\nfrom t", "select x -- two\nfrom t"),
    ("select   x\n\tfrom t", "select x from t"),
    ('select "Col" from t where a = 1', 'SELECT "Col" FROM T WHERE A = 2'),
]

DIFFERENT_CLASS = [
    ('select "A" from t', 'select "a" from t'),  # a quoted identifier keeps its case
    ("select a b from t", "select ab from t"),  # a gap between words is a token boundary
    ("select x1 from t", "select x2 from t"),  # digits in a word are the word
    ('select "a""b"', 'select "a"b"'),
    ("select `a` from t", "select `b` from t"),
]


@pytest.mark.parametrize(("one", "other"), SAME_CLASS)
def test_texts_that_differ_in_literals_case_comments_or_spacing_share_a_class(one, other):
    assert class_hash(one.encode()) == class_hash(other.encode())


@pytest.mark.parametrize(("one", "other"), DIFFERENT_CLASS)
def test_texts_the_fingerprint_tells_apart_have_classes_apart(one, other):
    assert fingerprint(one) != fingerprint(other)
    assert class_hash(one.encode()) != class_hash(other.encode())


def test_mysql_double_quoted_strings_are_literals():
    one, other = b'select * from t where a = "x"', b'select * from t where a = "y"'
    assert class_hash(one, double_quoted_strings=True) == class_hash(other, double_quoted_strings=True)
    assert class_hash(one) != class_hash(other)  # in PostgreSQL, identifiers


# Pieces that exercise every state: words, numbers of every shape, strings with escapes,
# quoted identifiers, comments nested or not, $n and $$, bytes above ASCII, punctuation.
PIECES = ["select", "SELECT", "from", "t", "a1", "1", "42", "1.5", ".5", "1.", "1e5", "0x1f",
          "12abc", "'s'", "'it''s'", "'a\\'b'", "'", '"Q"', '"q"', '"a""b"', '"', "`b`", "`",
          "$1", "$22", "$$x$$", "$tag$y$tag$", "$", "-- c\n", "--", "/* c */", "/* /* n */ */",
          "/*", "*/", "-", "+", "*", "/", ".", ",", "(", ")", "=", "?", ";", "\\", "é", "€",
          "\xa0", " ", "  ", "\n", "\t", "in", "(1, 2)", "(1, 2, 3)", "true", "null", "e'x'"]


def _texts(seed: int, count: int) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(PIECES) for _ in range(rnd.randint(1, 12))) for _ in range(count)]


@pytest.mark.parametrize("double_quoted_strings", [False, True])
def test_the_hash_never_merges_texts_the_fingerprint_tells_apart(double_quoted_strings):
    by_hash: dict[int, set[str]] = defaultdict(set)
    texts = _texts(11, 40_000)
    for text in texts:
        digest = fingerprint(text, double_quoted_strings=double_quoted_strings).id
        by_hash[class_hash(text.encode(), double_quoted_strings=double_quoted_strings)].add(digest)
    merged = {hash_: ids for hash_, ids in by_hash.items() if len(ids) > 1}
    assert not merged
    # and it is a class, not a hash of the text: many texts share one
    assert len(by_hash) < 0.9 * len(set(texts))


def test_the_tables_are_laid_out_as_the_kernel_reads_them():
    assert len(table_bytes(False)) == 256 * 2 + ENTRIES * 2
    assert table_bytes(False) != table_bytes(True)
    assert all(entry.pack() < 1 << 14 for entry in transitions(False))


def test_the_constants_the_kernel_shares_with_the_model_are_the_same():
    import re

    from dbprobe.kernel import classhash
    from dbprobe.recipes.load import probes_dir
    from dbprobe.kernel.records import EV_CLASS

    header = (probes_dir() / "classes.h").read_text()

    def define(name: str) -> int:
        return int(re.search(rf"#define\s+{name}\s+(0x[0-9a-fA-F]+|\d+)", header).group(1), 0)

    assert define("DBP_EV_CLASS") == EV_CLASS
    assert define("DBP_CLASS_ENTRIES") == classhash.ENTRIES
    assert define("DBP_CLASS_N_SAME") == classhash.N_SAME
    assert define("DBP_CLASS_BASIS") == classhash.FNV_BASIS
    assert define("DBP_CLASS_PRIME") == classhash.FNV_PRIME
