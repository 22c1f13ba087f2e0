"""The behaviour every event log backend must show, through the EventLog interface only.

Expectations are computed independently of the backend: from the input data, from
``partition_for`` and from what was acknowledged, never from the backend's own answers.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.errors import (
    LogError,
    OffsetOutOfRangeError,
    TopicExistsError,
    TopicNotFoundError,
)
from fluvial.log import SYSTEM_COLUMNS, EventLog, partition_for, with_system_columns
from fluvial.log.consumer import Consumer

SYSTEM_NAMES = [f.name for f in SYSTEM_COLUMNS]
TS = pa.timestamp("ms", tz="UTC")


def rich_table(n: int, start: int = 0) -> pa.Table:
    """Rows with nested structs, lists, timestamps and nulls."""
    ids = np.arange(start, start + n)
    return pa.table(
        {
            "seq": pa.array(ids, pa.int64()),
            "user": pa.array([f"u{i % 7}" if i % 5 else None for i in ids], pa.string()),
            "at": pa.array((1_700_000_000_000 + ids * 1000).astype(np.int64)).view(TS),
            "score": pa.array([float(i) / 3 if i % 4 else None for i in ids]),
            "ok": pa.array([bool(i % 2) for i in ids]),
            "page": pa.array(
                [{"url": f"/p/{i}", "ref": None if i % 3 else "x"} for i in ids],
                pa.struct([("url", pa.string()), ("ref", pa.string())]),
            ),
            "tags": pa.array([[f"t{j}" for j in range(i % 3)] for i in ids], pa.list_(pa.string())),
        }
    )


def user_rows(users: list[str], start: int = 0) -> pa.Table:
    return pa.table({"user": users, "seq": list(range(start, start + len(users)))})


def read_all(log: EventLog, topic: str, partition: int, offset: int | None = None) -> pa.Table:
    info = log.topic(topic).partitions[partition]
    offset = info.start_offset if offset is None else offset
    tables = []
    while offset < info.end_offset:
        t = log.read(topic, partition, offset, 1000)
        assert t.num_rows > 0, "read returned nothing before the end offset"
        tables.append(t)
        offset += t.num_rows
    return pa.concat_tables(tables) if tables else log.read(topic, partition, offset)


def data_columns(table: pa.Table) -> pa.Table:
    return table.drop_columns(SYSTEM_NAMES)


# -- topics -------------------------------------------------------------------------------


def test_create_list_delete_topics(log: EventLog, topic_name: str) -> None:
    info = log.create_topic(topic_name, 3)
    assert (info.name, info.num_partitions, info.records) == (topic_name, 3, 0)
    other = topic_name + "-b"
    log.create_topic(other, 1)
    names = [t.name for t in log.list_topics()]
    assert {topic_name, other} <= set(names)
    assert names == sorted(names)
    log.delete_topic(other)
    assert other not in [t.name for t in log.list_topics()]
    with pytest.raises(TopicNotFoundError):
        log.topic(other)
    with pytest.raises(TopicNotFoundError):
        log.delete_topic(other)


def test_create_existing_topic(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 2)
    with pytest.raises(TopicExistsError):
        log.create_topic(topic_name, 2)
    again = log.create_topic(topic_name, 5, exist_ok=True)
    assert again.num_partitions == 2  # the existing topic, unchanged


def test_topic_not_found_suggests_a_name(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 1)
    with pytest.raises(TopicNotFoundError, match=f"did you mean '{topic_name}'"):
        log.topic(topic_name + "x")
    with pytest.raises(TopicNotFoundError):
        log.append(topic_name + "x", user_rows(["a"]))
    with pytest.raises(TopicNotFoundError):
        log.read(topic_name + "x", 0, 0)


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "../x", "é"])
def test_invalid_topic_names(log: EventLog, bad: str) -> None:
    with pytest.raises(LogError, match="name"):
        log.create_topic(bad, 1)


def test_create_with_schema_fixes_it(log: EventLog, topic_name: str) -> None:
    schema = pa.schema([("user", pa.string()), ("seq", pa.int64())])
    info = log.create_topic(topic_name, 1, schema=schema)
    assert info.schema is not None and info.schema.equals(schema)
    empty = log.read(topic_name, 0, 0)
    assert empty.num_rows == 0 and empty.schema.equals(with_system_columns(schema))


# -- append and read ----------------------------------------------------------------------


def test_round_trip_equals_input(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 2)
    data = rich_table(50)
    before = int(time.time() * 1000)
    result = log.append(topic_name, data, partition=1)
    after = int(time.time() * 1000)
    assert result.ranges == ((1, 0, 50),)
    out = log.read(topic_name, 1, 0, 1000)
    assert out.schema.equals(with_system_columns(data.schema))
    assert data_columns(out).equals(data)
    assert out.column("_partition").to_pylist() == [1] * 50
    assert out.column("_offset").to_pylist() == list(range(50))
    stamps = pc.cast(out.column("_timestamp"), pa.int64()).to_numpy()
    assert ((stamps >= before - 1000) & (stamps <= after + 1000)).all()
    schema = log.topic(topic_name).schema
    assert schema is not None and schema.equals(data.schema)


def test_record_batch_input_and_system_columns_are_not_stored(
    log: EventLog, topic_name: str
) -> None:
    log.create_topic(topic_name, 1)
    log.append(topic_name, rich_table(5).to_batches()[0])
    back = log.read(topic_name, 0, 0)
    log.append(topic_name, back)  # a read can be appended again: system columns are dropped
    out = log.read(topic_name, 0, 0)
    assert out.num_rows == 10
    assert data_columns(out).slice(5).equals(rich_table(5))
    assert out.column("_offset").to_pylist() == list(range(10))


def test_key_routing_is_stable_and_matches_partition_for(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 4)
    rng = np.random.default_rng(1)
    users = [f"user-{i}" for i in rng.integers(0, 40, 400)]
    for start in range(0, 400, 100):  # several appends: a key must land in the same place
        log.append(topic_name, user_rows(users[start : start + 100], start), key="user")
    expected = partition_for(pa.array(users), 4)
    seen = 0
    for p in range(4):
        out = read_all(log, topic_name, p)
        seen += out.num_rows
        assert (partition_for(out.column("user"), 4) == p).all()
        seqs = out.column("seq").to_pylist()
        assert seqs == sorted(seqs), "rows of a partition must keep their append order"
        assert seqs == [i for i in range(400) if expected[i] == p]
    assert seen == 400


def test_key_as_array_is_not_stored(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 3)
    keys = pa.array([f"k{i % 9}" for i in range(90)])
    data = pa.table({"seq": list(range(90))})
    result = log.append(topic_name, data, key=keys)
    assert result.count == 90
    expected = partition_for(keys, 3)
    for p in range(3):
        out = read_all(log, topic_name, p)
        assert out.column_names == ["seq", *SYSTEM_NAMES]
        assert out.column("seq").to_pylist() == [i for i in range(90) if expected[i] == p]


def test_null_key_hashes_like_empty(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 4)
    log.append(topic_name, user_rows([None, ""]), key="user")  # type: ignore[list-item]
    want = int(partition_for(pa.array([""]), 4)[0])
    assert log.topic(topic_name).partitions[want].records == 2


def test_explicit_partition(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 3)
    result = log.append(topic_name, user_rows(["a", "b", "c"]), partition=2)
    assert result.ranges == ((2, 0, 3),)
    ends = log.topic(topic_name).end_offsets
    assert ends == {0: 0, 1: 0, 2: 3}
    with pytest.raises(LogError):
        log.append(topic_name, user_rows(["a"]), partition=3)


def test_no_key_sends_each_append_to_one_partition(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 3)
    results = [log.append(topic_name, user_rows(["a", "b"])) for _ in range(6)]
    assert all(len(r.ranges) == 1 for r in results)
    used = [r.ranges[0][0] for r in results]
    assert sorted(set(used)) == [0, 1, 2]  # round-robin spreads appends over partitions
    assert log.topic(topic_name).records == 12


def test_offsets_are_contiguous_across_appends(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 1)
    expected_first = 0
    for size in (1, 7, 3, 20, 1):
        (p, first, count), *_ = log.append(topic_name, user_rows(["x"] * size)).ranges
        assert (p, first, count) == (0, expected_first, size)
        expected_first += size
    out = read_all(log, topic_name, 0)
    assert out.column("_offset").to_pylist() == list(range(expected_first))


def test_read_across_many_appends_and_max_records(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 1)
    for i in range(30):
        log.append(topic_name, rich_table(7, start=i * 7), partition=0)
    everything = log.read(topic_name, 0, 0, 10_000)
    assert data_columns(everything).equals(rich_table(210))
    middle = log.read(topic_name, 0, 12, 40)  # starts and ends inside appends
    assert middle.column("seq").to_pylist() == list(range(12, 52))
    assert middle.column("_offset").to_pylist() == list(range(12, 52))
    assert log.read(topic_name, 0, 205, 100).num_rows == 5
    assert log.read(topic_name, 0, 3, 0).num_rows == 0


def test_end_of_partition_is_an_empty_read_with_schema(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 2)
    data = rich_table(4)
    log.append(topic_name, data, partition=0)
    for p, end in ((0, 4), (1, 0)):
        empty = log.read(topic_name, p, end)
        assert empty.num_rows == 0
        assert empty.schema.equals(with_system_columns(data.schema))


def test_out_of_range_offsets(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 1)
    log.append(topic_name, user_rows(["a", "b"]))
    with pytest.raises(OffsetOutOfRangeError):
        log.read(topic_name, 0, 3)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(topic_name, 0, -1)


def test_schema_is_enforced_with_safe_casts(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 1)
    log.append(topic_name, pa.table({"user": ["a"], "n": pa.array([1], pa.int64())}))
    # int32 casts safely to int64, and column order does not matter
    log.append(topic_name, pa.table({"n": pa.array([2], pa.int32()), "user": ["b"]}))
    out = log.read(topic_name, 0, 0)
    assert out.column("n").type == pa.int64() and out.column("n").to_pylist() == [1, 2]
    with pytest.raises(LogError, match="'n'"):
        log.append(topic_name, pa.table({"user": ["c"], "n": ["not a number"]}))
    with pytest.raises(LogError, match="'extra'"):
        log.append(topic_name, pa.table({"user": ["c"], "n": [3], "extra": [1]}))
    assert log.topic(topic_name).records == 2  # refused appends wrote nothing


def test_offset_for_time(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 1)
    for i in range(3):
        log.append(topic_name, user_rows(["a"] * 4, start=i * 4))
        time.sleep(0.03)
    out = read_all(log, topic_name, 0)
    stamps = pc.cast(out.column("_timestamp"), pa.int64()).to_pylist()
    for probe in sorted(set(stamps)):
        expected = next(i for i, ts in enumerate(stamps) if ts >= probe)
        assert log.offset_for_time(topic_name, 0, probe) == expected
    assert log.offset_for_time(topic_name, 0, 0) == 0
    assert log.offset_for_time(topic_name, 0, stamps[-1] + 60_000) == 12


# -- consumer groups ----------------------------------------------------------------------


def test_commit_committed_and_lag(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 2)
    log.append(topic_name, user_rows(["a"] * 5), partition=0)
    log.append(topic_name, user_rows(["b"] * 3), partition=1)
    assert log.committed("g1", topic_name) == {}
    log.commit("g1", topic_name, {0: 2})
    log.commit("g1", topic_name, {1: 3})
    assert log.committed("g1", topic_name) == {0: 2, 1: 3}
    log.commit("g2", topic_name, {0: 5, 1: 0})
    groups = {(g.group, g.topic): g for g in log.list_groups() if g.topic == topic_name}
    assert set(groups) == {("g1", topic_name), ("g2", topic_name)}
    assert groups["g1", topic_name].lag == (5 - 2) + (3 - 3)
    assert groups["g2", topic_name].lag == (5 - 5) + (3 - 0)
    assert dict(groups["g2", topic_name].committed) == {0: 5, 1: 0}


# -- consumers ----------------------------------------------------------------------------


def _drain(consumer: Consumer, limit: int = 100_000) -> pa.Table:
    tables: list[pa.Table] = []
    while (t := consumer.poll(timeout=0.2)) is not None and sum(x.num_rows for x in tables) < limit:
        tables.append(t)
    return pa.concat_tables(tables) if tables else pa.table({"seq": pa.array([], pa.int64())})


def test_consumer_from_earliest_reads_everything_fairly(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 3)
    for p in range(3):
        log.append(topic_name, user_rows([f"p{p}"] * 50, start=p * 100), partition=p)
    consumer = log.consumer(topic_name)
    first = consumer.poll(timeout=1, max_records=30)
    assert first is not None and first.num_rows == 30
    assert set(first.column("_partition").to_pylist()) == {0, 1, 2}  # fair share
    rest = _drain(consumer)
    seqs = sorted(first.column("seq").to_pylist() + rest.column("seq").to_pylist())
    assert seqs == [p * 100 + i for p in range(3) for i in range(50)]
    assert consumer.positions == {0: 50, 1: 50, 2: 50}


def test_consumer_from_latest_sees_only_new_rows(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 2)
    log.append(topic_name, user_rows(["old"] * 5), partition=0)
    consumer = log.consumer(topic_name, start="latest")
    assert consumer.poll(timeout=0.05) is None
    log.append(topic_name, user_rows(["new"] * 2, start=5), partition=1)
    got = consumer.poll(timeout=1)
    assert got is not None and got.column("user").to_pylist() == ["new", "new"]


def test_consumer_from_offset_and_from_time(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 2)
    log.append(topic_name, user_rows(["a"] * 4), partition=0)
    log.append(topic_name, user_rows(["b"] * 4, start=4), partition=1)
    from_2 = _drain(log.consumer(topic_name, start=2))
    assert sorted(from_2.column("seq").to_pylist()) == [2, 3, 6, 7]
    assert sorted(_drain(log.consumer(topic_name, start="3")).column("seq").to_pylist()) == [3, 7]
    time.sleep(0.03)
    log.append(topic_name, user_rows(["c"] * 2, start=8), partition=0)
    ts = read_all(log, topic_name, 0).column("_timestamp").to_pylist()[-1]
    assert isinstance(ts, datetime)
    for start in (ts, ts.astimezone(UTC).isoformat().replace("+00:00", "Z")):
        later = _drain(log.consumer(topic_name, start=start))
        assert sorted(later.column("seq").to_pylist()) == [8, 9]


def test_consumer_group_resumes_from_committed(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 2)
    log.append(topic_name, user_rows(["a"] * 6), partition=0)
    log.append(topic_name, user_rows(["b"] * 6, start=6), partition=1)
    first = log.consumer(topic_name, group="readers")
    got = first.poll(timeout=1, max_records=4)
    assert got is not None
    first.commit()
    committed = first.positions
    assert log.committed("readers", topic_name) == committed
    # committed offsets win over start="latest"
    second = log.consumer(topic_name, group="readers", start="latest")
    assert second.positions == committed
    rest = _drain(second)
    assert sorted(got.column("seq").to_pylist() + rest.column("seq").to_pylist()) == list(range(12))


def test_consumer_seek(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 1)
    log.append(topic_name, user_rows(["a"] * 10))
    consumer = log.consumer(topic_name)
    consumer.seek(0, 7)
    assert _drain(consumer).column("seq").to_pylist() == [7, 8, 9]


def test_consumer_follows_new_appends(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 2)
    consumer = log.consumer(topic_name, start="latest")
    total = 60

    def produce() -> None:
        for i in range(6):
            time.sleep(0.02)
            log.append(topic_name, user_rows([f"u{i}"] * 10, start=i * 10), key="user")

    writer = threading.Thread(target=produce)
    writer.start()
    seen: list[int] = []
    deadline = time.monotonic() + 10
    for table in consumer:
        seen += table.column("seq").to_pylist()
        if len(seen) >= total or time.monotonic() > deadline:
            consumer.close()
    writer.join()
    assert sorted(seen) == list(range(total))


def test_snapshot_reads_every_partition_up_to_the_end(log: EventLog, topic_name: str) -> None:
    log.create_topic(topic_name, 3)
    keys = [f"k{i % 7}" for i in range(250)]
    log.append(topic_name, pa.table({"k": keys, "i": list(range(250))}), key="k")
    snap = log.snapshot(topic_name, batch_records=16)
    assert sorted(snap.column("i").to_pylist()) == list(range(250))
    assert set(snap.column("_partition").to_pylist()) <= {0, 1, 2}
    empty = f"{topic_name}_empty"
    log.create_topic(empty, 2, schema=pa.schema([("x", pa.int64())]))
    assert log.snapshot(empty).num_rows == 0
    assert log.snapshot(empty).column_names == ["x", "_partition", "_offset", "_timestamp"]
