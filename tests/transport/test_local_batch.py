"""Record batches of ``local://``: what is encoded decodes the same, whatever slice is read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamnb.transport.base import Message
from streamnb.transport.local.batch import GAPS, HEADERS, decode, encode, timestamps

blobs = st.none() | st.binary(max_size=12)
headers = st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=2).map(tuple)
items = st.lists(
    st.tuples(blobs, blobs, st.floats(allow_nan=False, allow_infinity=False), headers | st.just(())),
    min_size=1,
    max_size=40,
)


def brute(messages: list[Message], start: int, stop: int, limit: int) -> list[Message]:
    return [m for m in messages if start <= m.offset < stop][:limit]


@given(
    items=items,
    base=st.integers(0, 1 << 40),
    gaps=st.none() | st.lists(st.integers(1, 5), min_size=40, max_size=40),
    window=st.tuples(st.integers(-3, 250), st.integers(-3, 250), st.integers(0, 50)),
)
def test_decode_returns_exactly_the_messages_in_range(
    items: list, base: int, gaps: list[int] | None, window: tuple[int, int, int]
) -> None:
    deltas = None
    if gaps is not None:  # offsets with holes, as compaction leaves them; the first delta is 0
        deltas = [sum(gaps[:i]) for i in range(len(items))]
    blob = encode(items, deltas)
    offsets = [base + d for d in deltas] if deltas is not None else [base + i for i in range(len(items))]
    everything = [Message("t", 3, o, ts, k, v, h) for o, (k, v, ts, h) in zip(offsets, items)]
    assert decode(blob, base, "t", 3, 0, 1 << 62, 1 << 30) == everything
    assert timestamps(blob) == [item[2] for item in items]
    lo, hi, limit = window
    assert decode(blob, base, "t", 3, base + lo, base + hi, limit) == brute(everything, base + lo, base + hi, limit)


def test_flags_are_set_only_when_needed() -> None:
    plain = encode([(b"k", b"v", 1.0, ())])
    assert plain[4] == 0
    assert encode([(b"k", b"v", 1.0, (("h", b"x"),))])[4] == HEADERS
    assert encode([(b"k", b"v", 1.0, ()), (b"k", b"w", 2.0, ())], [0, 7])[4] == GAPS


def test_none_and_empty_bytes_stay_apart() -> None:
    blob = encode([(None, b"", 0.0, ()), (b"", None, 0.0, ())])
    assert [(m.key, m.value) for m in decode(blob, 0, "t", 0, 0, 10, 10)] == [(None, b""), (b"", None)]


@pytest.mark.parametrize("start", [0, 500, 2047])
def test_reading_the_tail_of_a_batch_slices_only_the_tail(start: int) -> None:
    items = [(b"k%d" % i, b"v%d" % i, float(i), ()) for i in range(2048)]
    got = decode(encode(items), 1000, "t", 0, 1000 + start, 1 << 62, 3)
    assert [(m.offset, m.key, m.value) for m in got] == [
        (1000 + i, b"k%d" % i, b"v%d" % i) for i in range(start, min(start + 3, 2048))
    ]
