#!/usr/bin/python3
"""Writes tests/trainer/data/nfc_cases.jsonl, the expected outputs of
NfcNormalize (trainer/src/unicode_nfc.h) that tests/trainer/unicode_nfc_test.cc
checks: one {"in": ..., "out": ...} object a line, out being
unicodedata.normalize("NFC", in) of the Python that runs it (the committed
file: Debian's /usr/bin/python3, Python 3.11, Unicode 14.0.0, the version of
trainer/src/unicode_nfc.inc; tools/gen_unicode_nfc.py).

    /usr/bin/python3 tools/gen_nfc_cases.py > tests/trainer/data/nfc_cases.jsonl

Deterministic (fixed seed). The cases:
  - every code point with a decomposition (canonical or compatibility) or a
    nonzero combining class, alone and followed by a combining mark; every
    canonically decomposable one also in its NFD; a sample of the Hangul
    syllables (every LV one), alone and followed by a trailing consonant;
  - runs of combining marks in non-canonical order (reordering);
  - Hangul jamo sequences: L+V, L+V+T, LV+T, LVT+T, broken ones;
  - composition blocked by a mark of equal or higher class;
  - composition exclusions and singletons (U+0958, U+2126, U+0344, ...);
  - random short strings over Latin, Greek, Cyrillic, Hebrew, Arabic,
    Devanagari, Hangul and CJK letters and combining marks;
  - prompts of ../shared/data/hh-harmless-dev.jsonl (the first 600
    characters), as they are and in NFD.
"""
import json
import os
import random
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
HH_DEV = os.path.join(HERE, "..", "..", "shared", "data", "hh-harmless-dev.jsonl")

S_BASE, S_COUNT, T_COUNT = 0xAC00, 11172, 28
# Marks of various classes (230 above, 220 below, 202 attached below, 240
# iota subscript, 1 overlay, 7 nukta, 9 virama, 8 kana voicing, 10-35 Hebrew
# and Arabic points); those in the first line compose with many letters.
MARKS = [0x301, 0x300, 0x308, 0x323, 0x327, 0x345, 0x3099, 0x93C,
         0x316, 0x334, 0x5B0, 0x5C1, 0x64B, 0x651, 0x94D, 0x1DCE, 0x20D2]


def nfc(s):
    return unicodedata.normalize("NFC", s)


def nfd(s):
    return unicodedata.normalize("NFD", s)


def main():
    rng = random.Random(20240517)
    cases = []  # input strings, each once
    seen = set()

    def add(s):
        if s not in seen:
            seen.add(s)
            cases.append(s)

    # Every code point with a decomposition or a nonzero combining class.
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or S_BASE <= cp < S_BASE + S_COUNT:
            continue
        c = chr(cp)
        if not unicodedata.decomposition(c) and not unicodedata.combining(c):
            continue
        add(c)
        add(c + chr(MARKS[cp % len(MARKS)]))
        if nfd(c) != c:
            add(nfd(c))

    # Hangul syllables: every LV one (they compose with a trailing
    # consonant) and a sample of the LVT ones.
    for s in range(S_BASE, S_BASE + S_COUNT):
        lv = (s - S_BASE) % T_COUNT == 0
        if lv or s % 37 == 0:
            add(chr(s))
            add(chr(s) + chr(0x11A8 + s % 27))
            if lv and s % 5 == 0:
                add(nfd(chr(s)) + chr(0x11A8 + s % 27))

    # Jamo: L+V, L+V+T, LV+T, LVT+T, and ones that do not compose.
    for _ in range(300):
        l, v, t = (chr(0x1100 + rng.randrange(19)), chr(0x1161 + rng.randrange(21)),
                   chr(0x11A8 + rng.randrange(27)))
        lv = nfc(l + v)
        add(l + v)
        add(l + v + t)
        add(lv + t)
        add(nfc(lv + t) + t)
        add(l + t)
        add(v + t)
        add(l + "\u0301" + v)
        add(lv + "\u0301" + t)
        add(l + l + v + v + t + t)
    add("\u1100\u1161\u11a7")  # U+11A7 is not a trailing consonant
    add("\u1100\u1176")  # nor U+1176 a vowel that composes
    add("\u115f\u1161\u11a8")

    # Reordering: runs of marks of assorted classes in random order.
    mark_pool = [cp for cp in range(0x300, 0x370)] + [
        0x591, 0x5A2, 0x5B0, 0x5B4, 0x5BF, 0x5C1, 0x5C2, 0x64B, 0x650, 0x651, 0x652,
        0x670, 0x93C, 0x94D, 0x1DC0, 0x1DCE, 0x1DFA, 0x20D0, 0x20D2, 0x20E4, 0x302A,
        0x302D, 0x3099, 0x1D165, 0x1D16D, 0x1D167]
    bases = "aeiouAEOUcnszyw\u03b1\u03b7\u03c9\u0399\u0435\u0438\u05d0\u05e9\u0627\u0915"
    for _ in range(1500):
        marks = [chr(rng.choice(mark_pool)) for _ in range(rng.randint(2, 6))]
        add(rng.choice(bases) + "".join(marks))
        if rng.random() < 0.2:
            add("".join(marks))  # no starter in front
    add("a" + "\u0301\u0316" * 20 + "\u0345" * 10 + "\u0327")  # a longer run

    # Composition blocked by a mark of equal or higher class, and not.
    for s in ["a\u0301\u0301", "a\u0308\u0301", "a\u0323\u0323", "a\u0301\u0323",
              "a\u0323\u0301", "e\u0327\u0301", "e\u0301\u0327", "o\u031b\u0301\u0323",
              "\u0b47\u0301\u0b3e", "\u0b47\u0b3e", "\u0b47\u0b3e\u0301", "\u09c7\u09be",
              "\u09c7\u09bc\u09be", "\u1100\u0300\u1161", "a\u05b0\u0301", "a\u0334\u0301",
              "A\u030a\u0301", "\u00c5\u0301", "\u212b\u0301", "u\u0308\u0304\u0301",
              "\u0399\u0308\u0301", "\u03b9\u0301\u0308", "\u03c9\u0345\u0313\u0300",
              "\u1fa2\u0316", "s\u0323\u0307", "s\u0307\u0323", "d\u0307\u0323",
              "\u0041\u0300\u0300\u0300", "q\u0307\u0323", "\u00ea\u0300\u0300"]:
        add(s)

    # Composition exclusions and singletons.
    for s in ["\u0958", "\u0915\u093c", "\u2126", "\u212b", "\u0344", "\u0340\u0341",
              "\u0f73", "\u0f71\u0f72", "\u2adc", "\u2add\u0338", "\ufb1d", "\u05d9\u05b4",
              "\U0001d15e", "\U0001d157\U0001d165", "\U0002f800", "\uf900", "\u0374",
              "\u037e", "\u0387", "\u1f71", "\u1fbb", "\u0cca\u0cd5", "\u0cc6\u0cc2\u0cd5",
              "\U000110ab", "\U00011099\U000110ba", "\u0e33", "\u0ec8\u0ecb",
              "\U0001133b\u093c\u0300"]:
        add(s)

    # Random short strings.
    blocks = [
        (0x41, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF),  # Latin
        (0x370, 0x3FF), (0x1F00, 0x1FFF),  # Greek
        (0x400, 0x4FF),  # Cyrillic
        (0x591, 0x5F4), (0xFB1D, 0xFB4F),  # Hebrew
        (0x600, 0x6FF),  # Arabic
        (0x900, 0x97F),  # Devanagari
        (0xAC00, 0xD7A3), (0x1100, 0x11FF),  # Hangul
        (0x4E00, 0x9FFF), (0xF900, 0xFAFF),  # CJK
        (0x300, 0x36F), (0x300, 0x36F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF),
        (0x20D0, 0x20FF), (0xFE20, 0xFE2F),  # combining marks
        (0x20, 0x20),
    ]
    for _ in range(3000):
        chars = []
        for _ in range(rng.randint(1, 8)):
            lo, hi = rng.choice(blocks)
            chars.append(chr(rng.randint(lo, hi)))
        s = "".join(chars)
        add(s)
        if rng.random() < 0.3:
            add(nfd(s))

    # Text samples.
    with open(HH_DEV, encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"][:600] for line in f]
    non_ascii = [p for p in prompts if not p.isascii()]
    ascii_only = [p for p in prompts if p.isascii()]
    for p in non_ascii[:250] + ascii_only[:50]:
        add(p)
        if nfd(p) != p:
            add(nfd(p))

    out = sys.stdout
    for s in cases:
        out.write(json.dumps({"in": s, "out": nfc(s)}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
