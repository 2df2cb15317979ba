"""Versioned rows (streamnb/tables/versions.py): lookups as of a time within the history retention."""

from __future__ import annotations

from streamnb.tables.versions import PartitionVersions, TableVersions, versioning

TABLE_STORES = ["memory://"]  # (no table here: nothing to run on both stores)


def test_versions_answer_as_of_a_time_within_the_retention() -> None:
    v = PartitionVersions(retention=10)
    assert v.put("k", 100, "a") and v.put("k", 105, None) and v.put("k", 110, "c")
    assert [v.as_of("k", t) for t in (99, 100, 104, 105, 109, 110)] == [None, "a", "a", None, None, "c"]
    assert not v.put("k", 99, "old") and v.expired == 1  # older than stream time 110 - 10
    assert v.as_of("k", 99) is None and v.as_of("x", 200) is None
    assert v.put("j", 101, "j")  # another key, out of order within the retention: kept
    assert v.put("k", 130, "d")  # stream time 130: 100..119 is beyond the retention
    assert v.as_of("k", 115) is None  # the newest version (130) is not <= 115
    assert v.as_of("j", 115) == "j"  # the newest version of j never expires


def test_a_version_that_can_no_longer_answer_is_forgotten() -> None:
    v = PartitionVersions(retention=5)
    for ts, value in [(1, "a"), (2, "b"), (3, None), (20, "c")]:
        v.put("k", ts, value)
    # a@1 and b@2 were valid until 2 and 3, before stream time 20 - 5: gone; the tombstone at 3 answers until 20
    assert v.versions["k"][0] == [3, 20] and len(v) == 2
    assert [v.as_of("k", t) for t in (2, 14, 15, 19, 20)] == [None, None, None, None, "c"]
    v.put("k", 40, "d")  # the tombstone at 3 was valid until 20: gone; c@20 answers until 40
    assert v.versions["k"] == ([20, 40], ["c", "d"]) and v.as_of("k", 39) == "c"
    assert v.as_of("k", 34) is None  # beyond the retention (40 - 5) only the newest version answers, and 40 > 34


def test_table_versions_per_partition_and_options() -> None:
    versions = versioning("t", True, None)
    assert isinstance(versions, TableVersions) and versions.retention is None
    versions.partition(0).put("k", 5, 1)
    versions.partition(1).put("k", 9, 2)
    assert versions.partition(0).as_of("k", 9) == 1 and len(versions) == 2 and versions.expired == 0
    versions.clear()
    assert len(versions) == 0 and versioning("t", False, None) is None
