"""The ``local://`` reader's cache of batches read in part: reads in pieces give what one read gives."""

from __future__ import annotations

from typing import Any

import localhelpers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamnb.transport.base import TP, ProducerRecord, RebalanceListener, TopicSpec, message_size
from streamnb.transport.local import LocalTransport
from streamnb.transport.local.batch import BatchView, encode
from streamnb.transport.local.batchcache import BatchCache

store = localhelpers.store  # the fixture: a started local:// transport

blobs = st.none() | st.binary(max_size=12)
headers = st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=2).map(tuple)
items = st.lists(st.tuples(blobs, blobs, st.floats(0, 1e9), headers | st.just(())), min_size=1, max_size=40)


@given(items=items, first=st.integers(0, 40), last=st.integers(0, 40))
def test_a_view_measures_a_run_as_max_bytes_does(items: list[Any], first: int, last: int) -> None:
    view = BatchView(encode(items), 5)
    first, last = min(first, len(items)), min(max(first, last), len(items))
    size = view.size(first, last)
    cut = view.cut("t", 0, first, last)
    assert [m.offset for m in cut] == list(range(5 + first, 5 + last))
    if any(h for *_, h in items):
        assert size is None  # with headers, max_bytes counts them decoded: the reader measures message by message
    else:
        assert size == sum(map(message_size, cut))


def test_the_cache_keeps_what_its_bound_allows_oldest_out_first() -> None:
    class Topic:
        id, starts, clean_upto = 1, [0, 0, 0], [0, 0, 0]

    topic = Topic()
    views = [BatchView(encode([(b"k", b"v" * 100, 1.0, ())] * 10), 0) for _ in range(3)]
    cache = BatchCache(max_bytes=2 * len(views[0].blob))
    for partition, view in enumerate(views):
        cache.keep(topic, partition, view, 10)
    assert len(cache) == 2 and cache.find(topic, 0, 3) is None and cache.find(topic, 2, 3) == (views[2], 10)
    topic.clean_upto[2] = 4  # compacted since it was read: the entry is dropped
    assert cache.find(topic, 2, 3) is None and len(cache) == 1


def _records(topic: str, n: int, partition: int = 0) -> list[ProducerRecord]:
    return [
        ProducerRecord(topic, partition, None if i % 7 == 0 else b"k%d" % (i % 5),
                       None if i % 11 == 0 else b"v" * (i % 13), float(i), (("h", b"%d" % i),) if i % 17 == 0 else ())
        for i in range(n)
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("piece", [1, 7, 125, 999])
@pytest.mark.parametrize("max_bytes", [None, 50, 3000])
async def test_reading_in_pieces_gives_the_whole_read(store: LocalTransport, piece: int, max_bytes: int | None) -> None:
    await store.create_topic(TopicSpec("t", 1))
    for chunk in range(3):  # three commits: three batches of 700
        await store.send(_records("t", 2100)[chunk * 700:(chunk + 1) * 700])
    tp = TP("t", 0)
    whole = await store.read(tp, 0, 1 << 62, 1 << 30)
    assert len(whole) == 2100
    got, position = [], 0
    while position < 2100:
        messages = await store.read(tp, position, 2100, piece, max_bytes)
        assert messages, position
        got += messages
        position = messages[-1].offset + 1
    assert got == whole


@pytest.mark.asyncio
async def test_a_consumer_reading_in_shares_uses_the_cache_and_misses_nothing(store: LocalTransport) -> None:
    await store.create_topic(TopicSpec("t", 3))
    await store.send([r for p in range(3) for r in _records("t", 1000, p)])

    async def nothing(_: set[TP]) -> None:
        return None

    consumer = store.consumer("g", ["t"], RebalanceListener(nothing, nothing))
    await consumer.start()
    first = await consumer.getmany(0, 30)
    assert len(first) == 30 and len(store.store.batch_cache) == 3  # each partition's batch, read in part
    got = first
    while batch := await consumer.getmany(0, 30):
        got += batch
    await consumer.stop()
    for p in range(3):
        assert [m for m in got if m.partition == p] == await store.read(TP("t", p), 0, 1 << 62, 1 << 30)
    assert len(store.store.batch_cache) == 0  # read to the end: nothing kept


@pytest.mark.asyncio
async def test_compaction_since_a_read_is_seen_by_the_next(store: LocalTransport) -> None:
    await store.create_topic(TopicSpec("cl", 1, compacted=True))
    await store.send([ProducerRecord("cl", 0, b"k%d" % i, b"old", 0.0) for i in range(10)]
                     + [ProducerRecord("cl", 0, b"k3", b"new", 0.0)])
    tp = TP("cl", 0)
    assert [m.offset for m in await store.read(tp, 0, 11, 2)] == [0, 1]  # the batch is kept, read in part
    await store.cleanup()  # k3's first value goes
    assert [m.offset for m in await store.read(tp, 2, 11, 3)] == [2, 4, 5]


@pytest.mark.asyncio
async def test_a_topic_made_again_is_not_read_from_the_old_ones_batch(store: LocalTransport) -> None:
    await store.create_topic(TopicSpec("t", 1))
    await store.send([ProducerRecord("t", 0, None, b"old%d" % i, 0.0) for i in range(10)])
    assert len(await store.read(TP("t", 0), 0, 10, 2)) == 2
    await store.delete_topics(["t"])
    await store.create_topic(TopicSpec("t", 1))
    await store.send([ProducerRecord("t", 0, None, b"new%d" % i, 0.0) for i in range(10)])
    assert [m.value for m in await store.read(TP("t", 0), 2, 10, 2)] == [b"new2", b"new3"]
