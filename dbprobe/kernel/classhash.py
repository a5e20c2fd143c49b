"""The statement class the kernel computes: its scanner's tables, and a model of it.

The kernel counts every statement by class without sending it to user space, so it needs
a fingerprint of its own: a hash of the statement's captured text with literals, comments
and spacing taken out, computed by a BPF loop over its bytes (probes/classes.h). The loop
has no branch per byte, since the verifier would follow every path of every iteration:
each byte is one lookup in a table built here, indexed by the scanner's state, the byte's
class and a class of the byte after it, and the entry says the next state and what to mix
into the hash. ``class_hash`` runs the same tables in Python; the tests hold the kernel to
it, and it to the user-space fingerprint.

What the hash drops, in the manner of ``dbprobe.correlate.fingerprint``: the contents of
'...' strings (and of "..." strings in MySQL), integers and decimals that stand alone,
``$n`` parameters, comments, and the length of a gap (that there was one is kept). Words
are folded to lower case; quoted identifiers are kept as written. The hash may split what
the fingerprint merges (``IN (1, 2)`` and ``IN (1, 2, 3)``, ``a=1`` and ``a = 1``, ``1e5``
and ``2e5``): user space merges those by the fingerprint of each class's sample. It never
merges texts the fingerprint tells apart. Where its lexing cannot follow the fingerprint's
(a byte above ASCII outside a string or comment, a ``$`` that starts no parameter, a nested
comment), it keeps the rest of the text byte for byte.

The hash is FNV-1a over symbols: a byte (folded, or as written), plus 0x100 for a token
that follows a gap, plus 0x200 times a symbol id (a string, a number...).
"""

from __future__ import annotations

import ctypes
import struct
from functools import lru_cache

FNV_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1

# --- byte classes (4 bits) and classes of the byte after (3 bits) -------------------------

(C_OTHER, C_SPACE, C_NEWLINE, C_WORD, C_DIGIT, C_DOLLAR, C_DOT, C_SQUOTE, C_DQUOTE, C_BQUOTE,
 C_BACKSLASH, C_MINUS, C_SLASH, C_STAR, C_HIGH) = range(15)

(N_OTHER, N_SAME, N_DIGIT, N_WORDLIKE, N_DOT, N_STAR, N_SLASH) = range(7)
# N_SAME: the next byte is this very byte (a doubled quote, "--"); it takes precedence.

_SPACES = frozenset(b" \t\v\f\r")
_CLASS_OF = {ord("$"): C_DOLLAR, ord("."): C_DOT, ord("'"): C_SQUOTE, ord('"'): C_DQUOTE,
             ord("`"): C_BQUOTE, ord("\\"): C_BACKSLASH, ord("-"): C_MINUS, ord("/"): C_SLASH,
             ord("*"): C_STAR, ord("\n"): C_NEWLINE, ord("_"): C_WORD}


def byte_class(byte: int) -> int:
    if byte >= 0x80:
        return C_HIGH
    if byte in _SPACES:
        return C_SPACE
    if chr(byte).isalpha():
        return C_WORD
    if chr(byte).isdigit():
        return C_DIGIT
    return _CLASS_OF.get(byte, C_OTHER)


def next_class(byte: int) -> int:
    """What the scanner may ask of the byte after: a digit, a byte that continues a word
    (so a digit run before it is no number), a dot, a star or a slash."""
    cls = byte_class(byte)
    if cls == C_DIGIT:
        return N_DIGIT
    if cls in (C_WORD, C_DOLLAR, C_HIGH):
        return N_WORDLIKE
    return {C_DOT: N_DOT, C_STAR: N_STAR, C_SLASH: N_SLASH}.get(cls, N_OTHER)


# --- states (5 bits) ----------------------------------------------------------------------

(SEP,          # between tokens, after a byte no digit can continue: digits start a number
 GAP,          # the same, after whitespace or a comment
 WORD,         # in a word: digits and $ continue it
 DOT,          # after a '.' or a $n: digits are no number, a $ is not followed
 NUM, NUM_SPACED,  # in a digit run that may be a number (the hash before it is saved)
 FRAC, FRAC_SPACED,  # in its digits after a '.'
 STRING, STRING_SKIP,  # in '...'; the byte after a backslash, or a doubled quote
 DQUOTED, DQUOTED_SKIP,  # in "...": an identifier (PostgreSQL) or a string (MySQL)
 BQUOTED, BQUOTED_SKIP,  # in `...`
 LINE, LINE_SKIP,  # in a -- comment; its second dash
 BLOCK, BLOCK_SKIP, BLOCK_END,  # in a /* comment; its star; the slash of its end
 PARAM,        # in the digits of $n
 RAW,          # the rest of the text, byte for byte
 ) = range(21)
STATE_BITS = 5

# --- what an entry mixes ------------------------------------------------------------------

USE_NONE, USE_FOLDED, USE_BYTE = 0, 1, 2
(SYM_NONE, SYM_STRING, SYM_NUMBER, SYM_LITERAL, SYM_RAW, SYM_QUOTE_DOUBLED,
 SYM_QUOTE_END) = range(7)


class Entry(tuple):
    """(next state, use, spaced, save, restore, symbol id, mix): the hash first returns to
    the saved value (restore), saves it (save), then mixes the byte as ``use`` says plus
    0x100 when ``spaced`` plus 0x200 times the symbol id (mix); then the state is next."""

    __slots__ = ()

    def __new__(cls, next_state: int, use: int = USE_NONE, spaced: bool = False, save: bool = False,
                restore: bool = False, symbol: int = SYM_NONE, mix: bool | None = None):
        if mix is None:
            mix = use != USE_NONE or symbol != SYM_NONE or spaced
        return super().__new__(cls, (next_state, use, spaced, save, restore, symbol, mix))

    def pack(self) -> int:
        next_state, use, spaced, save, restore, symbol, mix = self
        return (next_state | use << 5 | spaced << 7 | save << 8 | restore << 9 | symbol << 10
                | mix << 13)


def _between(state: int, cls: int, ncls: int, dq_strings: bool) -> Entry:
    """A byte in SEP, GAP, WORD or DOT: a token continues or starts, a gap or comment opens."""
    spaced = state == GAP
    numbers = state in (SEP, GAP)
    if cls in (C_SPACE, C_NEWLINE):
        return Entry(GAP)
    if cls == C_WORD:
        return Entry(WORD, USE_FOLDED, spaced)
    if cls == C_DIGIT:
        if state == WORD or state == DOT or ncls == N_WORDLIKE:
            return Entry(WORD, USE_BYTE, spaced)  # in a word, or a run that is one
        if ncls in (N_DIGIT, N_SAME, N_DOT):  # the gap is mixed too, in case it is no number
            return Entry(NUM_SPACED if spaced else NUM, USE_BYTE, spaced, save=True)
        return Entry(SEP, spaced=spaced, symbol=SYM_NUMBER)  # one digit, alone
    if cls == C_DOLLAR:
        if state == WORD:
            return Entry(WORD, USE_BYTE)
        if numbers and ncls == N_DIGIT:
            return Entry(PARAM, spaced=spaced, symbol=SYM_LITERAL)
        return Entry(RAW, USE_BYTE, spaced, symbol=SYM_RAW)  # a $tag$ or $$ string: not followed
    if cls == C_HIGH:
        return Entry(RAW, USE_BYTE, spaced, symbol=SYM_RAW)
    if cls == C_DOT:
        return Entry(DOT, USE_BYTE, spaced)
    if cls == C_SQUOTE:
        return Entry(STRING, spaced=spaced, symbol=SYM_STRING)
    if cls == C_DQUOTE:
        if dq_strings:
            return Entry(DQUOTED, spaced=spaced, symbol=SYM_LITERAL)
        return Entry(DQUOTED, USE_BYTE, spaced)
    if cls == C_BQUOTE:
        return Entry(BQUOTED, USE_BYTE, spaced)
    if cls == C_MINUS and ncls == N_SAME:
        return Entry(LINE_SKIP)
    if cls == C_SLASH and ncls == N_STAR:
        return Entry(BLOCK_SKIP)
    return Entry(SEP, USE_BYTE, spaced)  # punctuation, an operator, a ? parameter


def _number(state: int, cls: int, ncls: int) -> Entry:
    """A byte in a digit run that may be a number: it goes on, stops being one, or ends."""
    spaced = state in (NUM_SPACED, FRAC_SPACED)
    in_fraction = state in (FRAC, FRAC_SPACED)
    if cls == C_DIGIT:
        if ncls in (N_DIGIT, N_SAME):
            return Entry(state, USE_BYTE)
        if ncls == N_WORDLIKE or (in_fraction and ncls == N_DOT):
            return Entry(WORD, USE_BYTE)  # 12abc, 1.2.3: kept as written
        if ncls == N_DOT:
            return Entry(state, USE_BYTE)
        return Entry(SEP, spaced=spaced, restore=True, symbol=SYM_NUMBER)
    if cls == C_DOT and not in_fraction and ncls == N_DIGIT:
        return Entry(FRAC_SPACED if spaced else FRAC, USE_BYTE)
    if cls == C_DOT:
        return Entry(DOT, USE_BYTE)  # 1. or 1.x: kept as written
    raise AssertionError("a digit run ends on its last digit")


def _quoted(state: int, skip: int, cls: int, quote: int, ncls: int, kept: bool) -> Entry:
    """A byte in a quoted identifier (kept) or a "..." string (not kept)."""
    if cls == quote and ncls == N_SAME:
        return Entry(skip, symbol=SYM_QUOTE_DOUBLED if kept else SYM_NONE)
    if cls == quote:
        return Entry(SEP, symbol=SYM_QUOTE_END if kept else SYM_NONE)
    return Entry(state, USE_BYTE if kept else USE_NONE)


def _transition(state: int, cls: int, ncls: int, dq_strings: bool) -> Entry:
    if state in (SEP, GAP, WORD, DOT):
        return _between(state, cls, ncls, dq_strings)
    if state in (NUM, NUM_SPACED, FRAC, FRAC_SPACED):
        return _number(state, cls, ncls)
    if state == STRING:
        if cls == C_BACKSLASH or (cls == C_SQUOTE and ncls == N_SAME):
            return Entry(STRING_SKIP)
        return Entry(SEP if cls == C_SQUOTE else STRING)
    if state == DQUOTED:
        return _quoted(DQUOTED, DQUOTED_SKIP, cls, C_DQUOTE, ncls, kept=not dq_strings)
    if state == BQUOTED:
        return _quoted(BQUOTED, BQUOTED_SKIP, cls, C_BQUOTE, ncls, kept=True)
    if state in (STRING_SKIP, DQUOTED_SKIP, BQUOTED_SKIP, LINE_SKIP, BLOCK_SKIP):
        return Entry({STRING_SKIP: STRING, DQUOTED_SKIP: DQUOTED, BQUOTED_SKIP: BQUOTED,
                      LINE_SKIP: LINE, BLOCK_SKIP: BLOCK}[state])
    if state == LINE:
        return Entry(GAP if cls == C_NEWLINE else LINE)
    if state == BLOCK:
        if cls == C_STAR and ncls == N_SLASH:
            return Entry(BLOCK_END)
        if cls == C_SLASH and ncls == N_STAR:
            return Entry(RAW, USE_BYTE, symbol=SYM_RAW)  # nested: its end is not followed
        return Entry(BLOCK)
    if state == BLOCK_END:
        return Entry(GAP)
    if state == PARAM:
        if cls == C_DIGIT and ncls in (N_DIGIT, N_SAME):
            return Entry(PARAM)
        return Entry(DOT)
    if state == RAW:
        return Entry(RAW, USE_BYTE)
    raise AssertionError(f"no state {state}")


def entry_index(state: int, cls: int, ncls: int) -> int:
    return state << 7 | cls << 3 | ncls


ENTRIES = 1 << (STATE_BITS + 7)


@lru_cache(maxsize=2)
def transitions(dq_strings: bool) -> tuple[Entry, ...]:
    table = [Entry(RAW, USE_BYTE)] * ENTRIES  # unreachable combinations
    for state in range(RAW + 1):
        for cls in range(C_HIGH + 1):
            for ncls in range(N_SLASH + 1):
                if state in (NUM, NUM_SPACED, FRAC, FRAC_SPACED) and cls not in (C_DIGIT, C_DOT):
                    continue  # a run's last digit ends it: its next byte is never seen here
                table[entry_index(state, cls, ncls)] = _transition(state, cls, ncls, dq_strings)
    return tuple(table)


# --- the tables as the kernel reads them (struct dbp_class_table in probes/classes.h) ------

_UPPER_BIT = 0x80


def _info(byte: int) -> int:
    """class | next class << 4 | (0x80: an ASCII capital, folded by adding 32)."""
    upper = _UPPER_BIT if 0x41 <= byte <= 0x5A else 0
    return byte_class(byte) | next_class(byte) << 4 | upper


def table_bytes(dq_strings: bool) -> bytes:
    """The tables of one dialect, laid out as struct dbp_class_table: per byte its info, then
    the entries."""
    info = struct.pack("<256H", *(_info(byte) for byte in range(256)))
    entries = struct.pack(f"<{ENTRIES}H", *(entry.pack() for entry in transitions(dq_strings)))
    return info + entries


DIALECTS = (False, True)  # the tables' index: DBP_DIALECT_POSTGRESQL, DBP_DIALECT_MYSQL


def install_class_counter(bpf) -> bool:
    """Make a loaded program count statement classes: fill its class_tables map (one table
    per dialect, by whether "..." is a string) and put its counter program where the hooks
    tail-call it. False when the program counts no classes. Before attaching: until then
    the tables are zeroes, which would put every statement in one class."""
    try:
        tables = bpf.get_table("class_tables")
    except KeyError:
        return False
    for index, dq_strings in enumerate(DIALECTS):
        data = table_bytes(dq_strings)
        leaf = tables.Leaf()
        if ctypes.sizeof(leaf) != len(data):
            raise ValueError(f"class_tables holds {ctypes.sizeof(leaf)} bytes a table, "
                             f"the tables are {len(data)}")
        ctypes.memmove(ctypes.addressof(leaf), data, len(data))
        tables[tables.Key(index)] = leaf
    counter = bpf.load_func(COUNTER_PROGRAM, bpf.KPROBE)
    programs = bpf.get_table("class_programs")
    programs[ctypes.c_int(0)] = ctypes.c_int(counter.fd)
    return True


COUNTER_PROGRAM = b"dbp_class_counter"


# --- the model ------------------------------------------------------------------------------

_INFOS = tuple((byte_class(b), next_class(b), b + 32 if 0x41 <= b <= 0x5A else b) for b in range(256))


def class_hash(text: bytes, *, double_quoted_strings: bool = False) -> int:
    """The class hash the kernel computes for ``text`` (the bytes it captured)."""
    table = transitions(double_quoted_strings)
    value, saved, state = FNV_BASIS, 0, SEP
    last = len(text) - 1
    for position, byte in enumerate(text):
        cls, _, folded = _INFOS[byte]
        following = text[position + 1] if position < last else 0
        ncls = N_SAME if following == byte else _INFOS[following][1]
        next_state, use, spaced, save, restore, symbol, mix = table[entry_index(state, cls, ncls)]
        if restore:
            value = saved
        if save:
            saved = value
        if mix:
            used = folded if use == USE_FOLDED else (byte if use == USE_BYTE else 0)
            value = ((value ^ (used + (spaced << 8) + (symbol << 9))) * FNV_PRIME) & _MASK64
        state = next_state
    return value
