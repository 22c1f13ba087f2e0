"""What only the Kinesis backend has: PutRecords limits, throttled records, takeovers.

Runs against moto's server on loopback (``aws_endpoint``). Expectations come from the
input rows and from counting the calls that reached the client, never from the backend's
own bookkeeping alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fluvial.cli import main
from fluvial.errors import LogError, TopicExistsError
from fluvial.log.kinesis import KinesisLog
from fluvial.log.kinesis.records import parse_keys
from fluvial.log.kinesis.writer import MAX_BATCH_BYTES, MAX_RECORD_BYTES
from fluvial.project import Project

from .kinesis_server import make_kinesis_log

pytest.importorskip("boto3")


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def klog(aws_endpoint: str, prefix: str) -> Iterator[KinesisLog]:
    log = make_kinesis_log(aws_endpoint, prefix=prefix)
    try:
        yield log
    finally:
        log.close()


def rows(n: int, start: int = 0, pad: int = 0) -> pa.Table:
    return pa.table(
        {
            "seq": pa.array(np.arange(start, start + n), pa.int64()),
            "body": ["x" * pad] * n,
        }
    )


class PutRecordsSpy:
    """Wraps a log's ``put_records``: records each call, and can fail chosen records.

    *fail* decides, from the call number, the record's position and its offset, whether
    that record comes back with ``ProvisionedThroughputExceededException`` instead of being
    sent.
    """

    def __init__(self, log: KinesisLog, fail: Any = None) -> None:
        self.kinesis = log._aws.kinesis
        self.real = self.kinesis.put_records
        self.fail = fail or (lambda call, i, offset: False)
        self.calls: list[list[dict[str, Any]]] = []
        self.kinesis.put_records = self

    def __call__(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        call = len(self.calls)
        self.calls.append(Records)
        _, _, offsets, _ = parse_keys([r["PartitionKey"] for r in Records])
        failed = [self.fail(call, i, int(o)) for i, o in enumerate(offsets)]
        sent = [r for r, f in zip(Records, failed, strict=True) if not f]
        out = self.real(StreamName=StreamName, Records=sent) if sent else {"Records": []}
        results = iter(out["Records"])
        merged = [
            {
                "ErrorCode": "ProvisionedThroughputExceededException",
                "ErrorMessage": "Rate exceeded for shard",
            }
            if f
            else next(results)
            for f in failed
        ]
        return {"FailedRecordCount": sum(failed), "Records": merged}

    def restore(self) -> None:
        self.kinesis.put_records = self.real


def raw_records(log: KinesisLog, topic: str, partition: int) -> list[dict[str, Any]]:
    """Every record in the partition's shard, as Kinesis holds them (fences included)."""
    meta = log._meta(topic)
    kinesis = log._aws.kinesis
    it = kinesis.get_shard_iterator(
        StreamName=meta.stream, ShardId=meta.shards[partition], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    out: list[dict[str, Any]] = []
    while True:
        page = kinesis.get_records(ShardIterator=it, Limit=10_000)
        out += page["Records"]
        it = page["NextShardIterator"]
        if not page["Records"]:
            return out


def seqs(log: KinesisLog, topic: str, partition: int = 0) -> list[int]:
    info = log.topic(topic).partitions[partition]
    out = log.read(topic, partition, 0, info.end_offset + 10)
    assert out.column("_offset").to_pylist() == list(range(info.end_offset))
    return list(out.column("seq").to_pylist())


# -- PutRecords limits --------------------------------------------------------------------


def test_1200_records_take_three_put_records_calls(klog: KinesisLog) -> None:
    klog.create_topic("clicks", 2)
    klog.append("clicks", rows(1), partition=0)  # takes the writer's lease (fence records)
    spy = PutRecordsSpy(klog)
    result = klog.append("clicks", rows(1200, start=1), partition=0)
    spy.restore()
    assert result.ranges == ((0, 1, 1200),)
    assert [len(c) for c in spy.calls] == [500, 500, 200]
    assert seqs(klog, "clicks") == list(range(1201))


def test_big_records_split_calls_at_5_mib(klog: KinesisLog) -> None:
    klog.create_topic("big", 1)
    klog.append("big", rows(1), partition=0)
    spy = PutRecordsSpy(klog)
    near_limit = MAX_RECORD_BYTES - 200  # with the JSON around it, just under 1 MiB
    klog.append("big", rows(12, start=1, pad=near_limit), partition=0)
    spy.restore()
    sizes = [sum(len(r["Data"]) + len(r["PartitionKey"]) for r in c) for c in spy.calls]
    assert all(size <= MAX_BATCH_BYTES for size in sizes)
    assert [len(c) for c in spy.calls] == [5, 5, 2]
    assert max(len(r["Data"]) for c in spy.calls for r in c) > MAX_RECORD_BYTES - 300
    out = klog.read("big", 0, 1, 100)
    assert out.column("seq").to_pylist() == list(range(1, 13))
    assert set(map(len, out.column("body").to_pylist())) == {near_limit}


def test_a_row_over_1_mib_is_refused_and_nothing_is_written(klog: KinesisLog) -> None:
    klog.create_topic("big", 1)
    klog.append("big", rows(3), partition=0)
    spy = PutRecordsSpy(klog)
    with pytest.raises(LogError, match="at most 1,048,576"):
        klog.append("big", rows(3, start=3, pad=MAX_RECORD_BYTES), partition=0)
    spy.restore()
    assert spy.calls == []
    klog.append("big", rows(2, start=3), partition=0)
    assert seqs(klog, "big") == [0, 1, 2, 3, 4]


# -- throttling ---------------------------------------------------------------------------


def test_throttled_records_are_retried_alone_and_land_exactly_once(klog: KinesisLog) -> None:
    klog.create_topic("hot", 3)
    klog.append("hot", rows(1), partition=0)
    # the first two calls of the next append fail every third record
    spy = PutRecordsSpy(klog, fail=lambda call, i, o: call < 2 and i % 3 == 0)
    data = pa.table({"seq": np.arange(1, 901), "body": [f"u{i % 17}" for i in range(900)]})
    result = klog.append("hot", data, key="body")
    spy.restore()
    assert result.count == 900
    first, second, *_rest = spy.calls
    assert len(first) == 500 and len(second) == 167  # the retry carries only the failures
    retried = {r["PartitionKey"] for r in second}
    assert retried == {r["PartitionKey"] for i, r in enumerate(first) if i % 3 == 0}
    seen: list[int] = []
    for p in range(3):
        info = klog.topic("hot").partitions[p]
        out = klog.read("hot", p, 0, 10_000)
        assert out.column("_offset").to_pylist() == list(range(info.end_offset))
        part_seqs = [s for s in out.column("seq").to_pylist() if s > 0]
        assert part_seqs == sorted(part_seqs)  # append order kept within the partition
        seen += part_seqs
    assert sorted(seen) == list(range(1, 901))
    # the shard holds retried records after later ones: offsets there are out of order
    _, _, offsets, _ = parse_keys([r["PartitionKey"] for r in raw_records(klog, "hot", 0)])
    assert (np.diff(offsets[offsets > 0]) < 0).any()


def test_a_call_refused_after_it_landed_leaves_no_duplicate_in_reads(klog: KinesisLog) -> None:
    klog.create_topic("dup", 1)
    klog.append("dup", rows(1), partition=0)
    kinesis = klog._aws.kinesis
    real = kinesis.put_records
    calls = []

    def lands_then_fails(**kwargs: Any) -> Any:
        out = real(**kwargs)
        calls.append(len(kwargs["Records"]))
        if len(calls) == 1:  # the records are in, but the answer says "throttled"
            raise klog._aws.botocore_exceptions.ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}},
                "PutRecords",
            )
        return out

    kinesis.put_records = lands_then_fails
    try:
        klog.append("dup", rows(40, start=1), partition=0)
    finally:
        kinesis.put_records = real
    assert calls == [40, 40]
    data_records = [r for r in raw_records(klog, "dup", 0) if r["PartitionKey"][0] == "R"]
    assert len(data_records) == 1 + 80  # the stream holds the batch twice
    assert seqs(klog, "dup") == list(range(41))  # readers see it once


def test_records_that_keep_failing_raise_and_are_not_visible(klog: KinesisLog) -> None:
    klog.create_topic("stuck", 1)
    klog.append("stuck", rows(2), partition=0)
    klog.writer.max_attempts = 3
    spy = PutRecordsSpy(klog, fail=lambda call, i, o: o == 3)
    with pytest.raises(LogError, match="still failed after 3 attempts"):
        klog.append("stuck", rows(5, start=2), partition=0)
    spy.restore()
    assert klog.topic("stuck").end_offsets == {0: 2}  # not acknowledged: invisible
    klog.append("stuck", rows(3, start=100), partition=0)
    # offset 2 landed next to the acknowledged end and is taken in by the next writer epoch
    # (at least once, like an ambiguous produce); 4-6 lie past the gap and are fenced off
    assert seqs(klog, "stuck") == [0, 1, 2, 100, 101, 102]


# -- the offset index ---------------------------------------------------------------------


def test_seeks_start_at_the_index_entry_before_the_offset(
    aws_endpoint: str, prefix: str, klog: KinesisLog
) -> None:
    klog.create_topic("long", 1)
    for start in range(0, 5000, 1000):
        klog.append("long", rows(1000, start=start), partition=0)
    with make_kinesis_log(aws_endpoint, prefix=prefix) as fresh:
        kinesis = fresh._aws.kinesis
        real = kinesis.get_records
        fetched: list[int] = []

        def counting(**kwargs: Any) -> Any:
            out = real(**kwargs)
            fetched.append(len(out["Records"]))
            return out

        kinesis.get_records = counting
        out = fresh.read("long", 0, 4321, 5)
        assert out.column("seq").to_pylist() == [4321, 4322, 4323, 4324, 4325]
        assert sum(fetched) <= 1000  # from the entry at 4000, not from offset 0
        fetched.clear()
        stamps = klog.read("long", 0, 0, 5000).column("_timestamp")
        probe = stamps[3000].value  # the first row of the fourth append
        expected = next(
            i for i, ts in enumerate(stamps.to_pylist()) if ts.timestamp() * 1000 >= probe
        )
        assert fresh.offset_for_time("long", 0, probe) == expected
        assert sum(fetched) <= 3000  # from the last entry stamped before the probe (2000)
        kinesis.get_records = real


# -- crashes and takeovers ----------------------------------------------------------------


def test_reopening_recovers_the_next_offset(aws_endpoint: str, prefix: str) -> None:
    with make_kinesis_log(aws_endpoint, prefix=prefix) as first:
        first.create_topic("t", 2)
        first.append("t", rows(10), partition=1)
    with make_kinesis_log(aws_endpoint, prefix=prefix) as second:
        assert second.append("t", rows(5, start=10), partition=1).ranges == ((1, 10, 5),)
        assert seqs(second, "t", 1) == list(range(15))  # type: ignore[arg-type]


def test_a_writer_killed_before_acknowledging(aws_endpoint: str, prefix: str) -> None:
    """Rows put but never acknowledged: invisible, then recovered once by the next writer."""
    first = make_kinesis_log(aws_endpoint, prefix=prefix)
    first.create_topic("t", 1)
    first.append("t", rows(10), partition=0)

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # the process dies between PutRecords and the index update

    first._catalog.acknowledge = killed  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        first.append("t", rows(1200, start=10), partition=0)  # crosses an index block
    with make_kinesis_log(aws_endpoint, prefix=prefix) as reader:
        assert reader.topic("t").end_offsets == {0: 10}
        assert seqs(reader, "t") == list(range(10))  # type: ignore[arg-type]
    with make_kinesis_log(aws_endpoint, prefix=prefix) as second:
        result = second.append("t", rows(3, start=5000), partition=0)
        assert result.ranges == ((0, 1210, 3),)  # the orphaned rows were contiguous: kept
        assert seqs(second, "t") == [*range(1210), 5000, 5001, 5002]  # type: ignore[arg-type]
        assert second.offset_for_time("t", 0, 0) == 0
    first.close()


_KILLED_WRITER = """
import os, signal, sys
import pyarrow as pa
sys.path.insert(0, {tests!r})
from log.kinesis_server import make_kinesis_log
log = make_kinesis_log({endpoint!r}, prefix={prefix!r})
log.create_topic("t", 1)
log.append("t", pa.table({{"seq": list(range(10)), "body": [""] * 10}}), partition=0)
kinesis = log._aws.kinesis
real = kinesis.put_records
calls = []
def put_records(**kwargs):
    out = real(**kwargs)
    calls.append(1)
    if len(calls) == {kill_after_calls}:
        os.kill(os.getpid(), signal.SIGKILL)
    return out
kinesis.put_records = put_records
log._catalog.acknowledge = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
log.append("t", pa.table({{"seq": list(range(10, 1210)), "body": [""] * 1200}}), partition=0)
"""


@pytest.mark.parametrize(
    ("kill_after_calls", "taken_in"),
    [(3, 1200), (2, 1000)],  # after all three PutRecords calls; between the 2nd and the 3rd
)
def test_a_writer_process_killed_mid_append(
    aws_endpoint: str, prefix: str, kill_after_calls: int, taken_in: int
) -> None:
    """A real SIGKILL between PutRecords calls or before the DynamoDB acknowledgement."""
    import signal
    import subprocess
    import sys

    script = _KILLED_WRITER.format(
        tests=str(Path(__file__).parents[1]),
        endpoint=aws_endpoint,
        prefix=prefix,
        kill_after_calls=kill_after_calls,
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    with make_kinesis_log(aws_endpoint, prefix=prefix) as log:
        assert seqs(log, "t") == list(range(10))  # nothing unacknowledged is visible
        result = log.append("t", rows(3, start=5000), partition=0)
        assert result.ranges == ((0, 10 + taken_in, 3),)
        assert seqs(log, "t") == [*range(10 + taken_in), 5000, 5001, 5002]


def test_a_writer_killed_with_a_gap_leaves_rows_behind_the_fence(
    aws_endpoint: str, prefix: str
) -> None:
    first = make_kinesis_log(aws_endpoint, prefix=prefix)
    first.create_topic("t", 1)
    first.append("t", rows(4), partition=0)
    first.writer.max_attempts = 1
    # the record at offset 6 is throttled and the writer dies before retrying it
    spy = PutRecordsSpy(first, fail=lambda call, i, o: o == 6)
    with pytest.raises(LogError):
        first.append("t", rows(5, start=4), partition=0)
    spy.restore()
    with make_kinesis_log(aws_endpoint, prefix=prefix) as second:
        assert second.append("t", rows(2, start=100), partition=0).ranges == ((0, 6, 2),)
        # 4 and 5 were contiguous and are kept; 7 and 8 lay past the gap and are not
        assert seqs(second, "t") == [0, 1, 2, 3, 4, 5, 100, 101]  # type: ignore[arg-type]
    first.close()


def test_writers_taking_turns_each_see_their_rows_once(aws_endpoint: str, prefix: str) -> None:
    a = make_kinesis_log(aws_endpoint, prefix=prefix)
    b = make_kinesis_log(aws_endpoint, prefix=prefix)
    a.create_topic("t", 1)
    a.append("t", rows(3), partition=0)
    assert b.append("t", rows(2, start=3), partition=0).ranges == ((0, 3, 2),)  # b takes over
    # a's lease is stale: its put is fenced off, so it takes the lease back and puts again
    assert a.append("t", rows(2, start=5), partition=0).ranges == ((0, 5, 2),)
    assert b.append("t", rows(1, start=7), partition=0).ranges == ((0, 7, 1),)
    assert seqs(a, "t") == seqs(b, "t") == list(range(8))
    data_records = [r for r in raw_records(a, "t", 0) if r["PartitionKey"][0] == "R"]
    assert len(data_records) == 8 + 2 + 1  # a's and b's fenced-off puts are in the stream
    a.close()
    b.close()


def test_a_takeover_in_the_middle_of_an_append(aws_endpoint: str, prefix: str) -> None:
    """Another writer's fence lands between two PutRecords calls of one append."""
    a = make_kinesis_log(aws_endpoint, prefix=prefix)
    b = make_kinesis_log(aws_endpoint, prefix=prefix)
    a.create_topic("t", 1)
    a.append("t", rows(1), partition=0)
    b.append("t", rows(1, start=1), partition=0)
    a.append("t", rows(1, start=2), partition=0)  # a holds the lease again
    real = a._aws.kinesis.put_records
    calls = []

    def b_takes_over_after_first_call(**kwargs: Any) -> Any:
        out = real(**kwargs)
        calls.append(len(kwargs["Records"]))
        if len(calls) == 1:
            b.append("t", rows(4, start=10_000), partition=0)
        return out

    a._aws.kinesis.put_records = b_takes_over_after_first_call
    try:
        result = a.append("t", rows(1200, start=3), partition=0)
    finally:
        a._aws.kinesis.put_records = real
    # b took in a's first 500 rows (they preceded its fence) and appended its 4 after them;
    # a's other 700 were fenced off, and a put them again after b's
    assert result.ranges == ((0, 3, 500), (0, 507, 700))
    expected = [*range(503), *range(10_000, 10_004), *range(503, 1203)]
    assert seqs(a, "t") == seqs(b, "t") == expected
    a.close()
    b.close()


def test_a_creation_that_died_midway_is_taken_over_once_stale(
    klog: KinesisLog, prefix: str
) -> None:
    catalog = klog._catalog
    catalog.claim_topic("half", f"{prefix}-half", 2)  # a process claimed the name, then died
    assert "half" not in [t.name for t in klog.list_topics()]
    with pytest.raises(TopicExistsError):
        klog.create_topic("half", 2)  # the claim is fresh: maybe its creator is still at it
    klog._aws.kinesis.create_stream(StreamName=f"{prefix}-half", ShardCount=2)  # it got this far
    klog._aws.dynamodb.update_item(
        TableName=catalog.table,
        Key={"pk": {"S": "topic"}, "sk": {"S": "half"}},
        UpdateExpression="SET claimed_ms = :old",
        ExpressionAttributeValues={":old": {"N": "0"}},
    )
    info = klog.create_topic("half", 2)  # stale: taken over, and the empty stream adopted
    assert info.num_partitions == 2
    klog.append("half", rows(3), partition=1)
    assert seqs(klog, "half", 1) == [0, 1, 2]


def test_an_empty_stream_declared_elsewhere_is_adopted(klog: KinesisLog, prefix: str) -> None:
    kinesis = klog._aws.kinesis
    kinesis.create_stream(StreamName=f"{prefix}-declared", ShardCount=3)  # as CloudFormation would
    info = klog.create_topic("declared", 5)
    assert info.num_partitions == 3  # the stream's shards, not the default
    klog.append("declared", rows(4), partition=2)
    assert klog.topic("declared").end_offsets == {0: 0, 1: 0, 2: 4}
    kinesis.create_stream(StreamName=f"{prefix}-foreign", ShardCount=1)
    kinesis.put_record(StreamName=f"{prefix}-foreign", Data=b"hello", PartitionKey="k")
    with pytest.raises(TopicExistsError, match="did not write"):
        klog.create_topic("foreign", 1)
    assert "foreign" not in [t.name for t in klog.list_topics()]


# -- IAM --------------------------------------------------------------------------------


def _record_calls(log: KinesisLog, into: set[str]) -> None:
    for client, service in ((log._aws.kinesis, "kinesis"), (log._aws.dynamodb, "dynamodb")):

        def seen(model: Any, service: str = service, **_: Any) -> None:
            into.add(f"{service}:{model.name}")

        client.meta.events.register("before-call", seen)


def test_every_call_is_in_the_permissions_of_its_role(aws_endpoint: str, prefix: str) -> None:
    from fluvial.log.kinesis.permissions import CALLS, actions

    roles = {"admin": "admin", "writer": "writer", "other writer": "writer", "reader": "reader"}
    calls: dict[str, set[str]] = {name: set() for name in roles}
    logs = {name: make_kinesis_log(aws_endpoint, prefix=prefix) for name in roles}
    for name, log in logs.items():
        _record_calls(log, calls[name])
    logs["admin"].create_topic("t", 2)
    for writer in ("writer", "other writer", "writer"):  # takeovers in between
        logs[writer].append("t", rows(1200), key="body")
    reader = logs["reader"]
    reader.read("t", 0, 0, 10)
    reader.offset_for_time("t", 1, 0)
    consumer = reader.consumer("t", group="g")
    consumer.poll(timeout=1)
    consumer.commit()
    reader.list_groups()
    reader.list_topics()
    logs["admin"].delete_topic("t")
    for name, log in logs.items():
        log.close()
        needed = {a for call in calls[name] for a in CALLS.get(call, (call,))}
        missing = needed - actions(roles[name])
        assert not missing, f"{name} called {sorted(missing)} without permission"
    assert (
        "kinesis:PutRecords" in calls["writer"] and "dynamodb:TransactWriteItems" in calls["writer"]
    )


# -- settings and the CLI -----------------------------------------------------------------


def test_fluvial_log_topics_on_kinesis(
    aws_endpoint: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FLUVIAL_LOG__BACKEND", "kinesis")
    monkeypatch.setenv("FLUVIAL_AWS__ENDPOINT_URL", aws_endpoint)
    monkeypatch.setenv("FLUVIAL_AWS__RESOURCE_PREFIX", prefix)
    project = Project.init(tmp_path / "p")
    with project.open_log() as log:
        assert isinstance(log, KinesisLog)
        log.create_topic("clicks", 3)
        log.append("clicks", rows(4), partition=2)
        stream = log._meta("clicks").stream
        shards = log._aws.kinesis.list_shards(StreamName=stream)["Shards"]
    assert stream == f"{prefix}-clicks" and len(shards) == 3
    capsys.readouterr()
    assert main(["log", "topics", "--json", "--project", str(project.root)]) == 0
    (topic,) = json.loads(capsys.readouterr().out)
    assert topic["name"] == "clicks" and topic["partitions"] == 3 and topic["records"] == 4
    assert topic["end_offsets"] == {"0": 0, "1": 0, "2": 4}
    assert topic["bytes"] > 0
