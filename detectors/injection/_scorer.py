"""The classifier's scoring loop compiled with numba: words, gate and weight sum in one pass.

Scoring a folded text is: take its head and tail, cut it into runs of ``a``-``z``, look
every run up in the weights, add the weights in word order, and note whether any run is a
gate word. In Python that is ``bytes.split`` (a new object per word) and a dict lookup per
word, ~100-150 ns a word on these shared cores, a fifth of the three content detectors'
time on real prompts. Here the same loop runs over the bytes in machine code against an
open-addressing table (FNV-1a hashes, keys compared byte for byte, so a hash collision
cannot change a score): a few ns per byte.

The result is exactly the Python path's: the same words, the same weights added in the
same order from 0.0 (an unknown word adds nothing, as ``0.0`` does), the same count.
Without numba (not installed), :func:`score_words` is that Python path. numba is imported
at the first score, so importing the detectors stays cheap.
"""

from __future__ import annotations

import importlib.util
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

# numba is imported (~0.5 s) and the loop compiled, or loaded from numba's cache, at the first score
COMPILED = importlib.util.find_spec("numba") is not None

__all__ = ["COMPILED", "WordTable", "build_table", "score_words"]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK64 = (1 << 64) - 1
# A word is a run of a-z in the folded text: the digits leetspeak does not map (2, 6, 8, 9)
# separate too, so an encoded blob reads as many short words, as the model saw in training.
# ``folded.translate(_LETTERS).split()`` is the Python path's split.
_LETTERS = bytes(b if 97 <= b <= 122 else 32 for b in range(256))
_ZERO = repeat(0.0)


def _fnv1a(word: bytes) -> int:
    h = _FNV_OFFSET
    for b in word:
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


class WordTable(NamedTuple):
    """The weights and the gate as flat arrays (see :func:`build_table`)."""

    slots: np.ndarray  # uint64[4 * size], size a power of 2; slot s is slots[4s:4s + 4] (below)
    weight: np.ndarray  # float64 view of ``slots``: slot s's weight is weight[4s + 3]
    keys: np.ndarray  # uint8: the bytes of the keys longer than 8, one after another
    weights: dict[bytes, float]  # the Python path's inputs (used when numba is missing)
    gate_words: frozenset[bytes] | None


# A slot is 32 bytes, so a probe reads one cache line: [0] the key's FNV-1a hash, [1] its
# first 8 bytes packed little-endian, [2] length | gate << 16 | (offset in ``keys``) << 17
# (length 0: empty slot), [3] the weight's bits. Keys of up to 8 bytes compare in [1] alone.
_SLOT = 4


def build_table(weights: dict[bytes, float], gate: frozenset[bytes] | None) -> WordTable:
    """Flatten ``weights`` and ``gate`` (the words that open the gate; ``None``: always open).
    Keys are words (runs of a-z, at most 65,535 bytes): other keys could never be read."""
    words = [w for w in weights if 0 < len(w) < 1 << 16]
    words += [w for w in sorted(gate or ()) if w not in weights and 0 < len(w) < 1 << 16]
    size = 1 << max(4, (2 * len(words)).bit_length())  # load factor <= 1/2
    slots = np.zeros(_SLOT * size, dtype=np.uint64)
    weight = slots.view(np.float64)
    long_keys: list[bytes] = []
    offset = 0
    for word in words:
        h = _fnv1a(word)
        j = h & (size - 1)
        while slots[_SLOT * j + 2]:
            j = (j + 1) & (size - 1)
        slots[_SLOT * j] = h
        slots[_SLOT * j + 1] = int.from_bytes(word[:8], "little")
        slots[_SLOT * j + 2] = len(word) | int(gate is not None and word in gate) << 16 | offset << 17
        weight[_SLOT * j + 3] = weights.get(word, 0.0)
        if len(word) > 8:
            long_keys.append(word)
            offset += len(word)
    keys = np.frombuffer(b"".join(long_keys) or b"\0", dtype=np.uint8).copy()
    return WordTable(slots, weight, keys, weights, gate)


def _score_python(folded: bytes, head: int, tail: int, table: WordTable) -> tuple[float, int, bool]:
    if len(folded) > head + tail:
        folded = folded[:head] + b" " + folded[len(folded) - tail :]
    words = folded.translate(_LETTERS).split()
    gated = table.gate_words is None or not table.gate_words.isdisjoint(words)
    total = 0.0
    for w in map(table.weights.get, words, _ZERO):
        total += w
    return total, len(words), gated


def _score_kernel(text, head, tail, open_gate, slots, weight, keys):  # type: ignore[no-untyped-def]
    n = len(text)
    mask = np.uint64(slots.shape[0] // _SLOT - 1)
    one = np.uint64(1)
    total = 0.0
    count = 0
    gated = open_gate
    if n > head + tail:  # head and tail, as two runs (the clip joins them with a separator)
        ranges = ((0, head), (n - tail, n))
    else:
        ranges = ((0, n), (n, n))
    for lo, hi in ranges:
        i = lo
        while i < hi:
            c = text[i]
            if c < 97 or c > 122:
                i += 1
                continue
            start = i
            h = np.uint64(_FNV_OFFSET)
            packed = np.uint64(0)
            while i < hi and 97 <= text[i] <= 122:
                c = np.uint64(text[i])
                h = (h ^ c) * np.uint64(_FNV_PRIME)
                if i - start < 8:
                    packed |= c << np.uint64(8 * (i - start))
                i += 1
            count += 1
            length = i - start
            j = h & mask
            while True:
                s = np.int64(j) * _SLOT
                info = slots[s + 2]
                if info == 0:
                    break  # not in the table: weight 0
                if slots[s] == h and slots[s + 1] == packed and np.int64(info & np.uint64(0xFFFF)) == length:
                    same = True
                    if length > 8:
                        at = np.int64(info >> np.uint64(17))
                        for k in range(8, length):
                            if keys[at + k] != text[start + k]:
                                same = False
                                break
                    if same:
                        total += weight[s + 3]
                        if info & np.uint64(1 << 16):
                            gated = True
                        break
                j = (j + one) & mask
    return total, count, gated


_kernel = None


def _compile() -> Any:
    global _kernel
    from numba import njit

    try:  # the compiled code is cached beside the module (or in the user's cache directory)
        _kernel = njit(cache=True, nogil=True)(_score_kernel)
    except RuntimeError:  # neither is writable (a read-only install): compile at each start
        _kernel = njit(nogil=True)(_score_kernel)
    return _kernel


def score_words(folded: bytes, head: int, tail: int, table: WordTable) -> tuple[float, int, bool]:
    """``(sum of the weights of the words read, number of words read, a gate word is among them)``
    for the head ``head`` and tail ``tail`` bytes of ``folded`` (all of it when short)."""
    if COMPILED:
        kernel = _kernel if _kernel is not None else _compile()
        return kernel(folded, head, tail, table.gate_words is None,  # type: ignore[no-any-return]
                      table.slots, table.weight, table.keys)
    return _score_python(folded, head, tail, table)
