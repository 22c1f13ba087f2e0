"""What only the DynamoDB store has: staged writes, their recovery after a crash, retries.

The shared behaviour suite (test_behaviour.py) already runs against DynamoDB; these tests
look at the protocol underneath, on moto's server, through AWS's own API (boto3).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fluvial.errors import FluvialError
from fluvial.serve.store.dynamodb import DynamoDBStore

from .conftest import FakeClock


@pytest.fixture
def table_name(moto_endpoint: str) -> Iterator[str]:
    import boto3

    name = f"fluvial_test_{uuid.uuid4().hex[:12]}"
    yield name
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.delete_table(TableName=name)


def _open(table_name: str, endpoint: str, clock: FakeClock | None = None) -> DynamoDBStore:
    return DynamoDBStore(table_name, namespace="ns", endpoint_url=endpoint, clock=clock)


def _items(store: DynamoDBStore) -> list[dict[str, Any]]:
    pages = store._db.get_paginator("scan").paginate(TableName=store.table_name)
    return [item for page in pages for item in page["Items"]]


def _rows(n: int, version: int) -> pa.Table:
    return pa.table(
        {
            "k": np.arange(n),
            "version": np.full(n, version),
            "_op": pa.array(np.full(n, 2), pa.int8()),
        }
    )


class Crash(Exception):
    """The process died here."""


@pytest.mark.parametrize("copied_batches", [0, 7])
def test_a_write_committed_before_a_crash_is_seen_whole_and_finished_by_the_next(
    table_name: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, copied_batches: int
) -> None:
    store = _open(table_name, moto_endpoint)
    assert store.apply("live", _rows(500, 1), ["k"], 1, "job")
    assert not [i for i in _items(store) if "#w#" in i["p"]["S"]]  # staging cleaned up

    real = DynamoDBStore._batch_write
    copying: list[int] = []

    def dies_while_copying(self: DynamoDBStore, requests: list[dict[str, Any]]) -> None:
        rows = [r for r in requests if "#t#" in str(r)]
        if not rows:  # staging the write: goes through
            return real(self, requests)
        for i in range(0, len(rows), 25):  # copying into the table: dies after some
            if len(copying) == copied_batches:
                raise Crash
            copying.append(i)
            real(self, rows[i : i + 25])
        return None

    # dies after committing checkpoint 2, before or while copying its rows into the table
    with monkeypatch.context() as m:
        m.setattr(DynamoDBStore, "_batch_write", dies_while_copying)
        with pytest.raises(Crash):
            store.apply("live", _rows(500, 2).slice(0, 400), ["k"], 2, "job")
    staged = [i for i in _items(store) if "#w#" in i["p"]["S"]]
    assert staged and all(len(i["a"]["B"]) > 1_000 for i in staged)  # rows packed in chunks
    # the table's own items still hold version 1 (all or some of them): readers lay the
    # pending write over them
    table_versions = [
        i["r"]["S"].count('"version":1') for i in _items(store) if "#t#" in i["p"]["S"]
    ]
    assert sum(table_versions) == 500 - 25 * copied_batches
    reader = _open(table_name, moto_endpoint)
    versions = reader.scan("live")["version"].to_pylist()
    assert versions == [2] * 400 + [1] * 100
    assert reader.get("live", 450) == {"k": 450, "version": 1}
    assert reader.get_many("live", pa.table({"k": [399, 0]}))["version"].to_pylist() == [2, 2]
    assert reader.scan("live", start=398, end=402)["version"].to_pylist() == [2, 2, 1, 1]
    assert reader.count("live") == 500
    assert reader.last_checkpoint("job") == 2
    # a replay of checkpoint 2 is skipped; checkpoint 3 first finishes 2, then applies
    assert not reader.apply("live", _rows(500, 2), ["k"], 2, "job")
    assert reader.apply("live", _rows(10, 3), ["k"], 3, "job")
    assert reader.scan("live")["version"].to_pylist() == [3] * 10 + [2] * 390 + [1] * 100
    assert not [i for i in _items(store) if "#w#" in i["p"]["S"]]


def test_unprocessed_items_are_retried(table_name: str, moto_endpoint: str) -> None:
    store = _open(table_name, moto_endpoint)
    real = store._db
    calls: list[int] = []

    class Throttled:
        """DynamoDB under load: a batch write's first attempt processes half the items."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
            (requests,) = RequestItems.values()
            calls.append(len(requests))
            if len(calls) % 2:
                half = len(requests) // 2
                if half:
                    real.batch_write_item(RequestItems={table_name: requests[:half]})
                return {"UnprocessedItems": {table_name: requests[half:]}}
            return real.batch_write_item(RequestItems=RequestItems)  # type: ignore[no-any-return]

    store._db = Throttled()
    rows = pa.table({"k": np.arange(300), "v": np.arange(300) * 2})
    assert store.upsert("t", rows, ["k"]) == 300
    assert store.scan("t").to_pylist() == rows.to_pylist()
    assert max(calls) <= 25  # BatchWriteItem takes 25 items at most
    assert len(calls) >= 2 * (300 // 25)  # every request retried once


def test_an_item_too_large_is_a_clear_error(table_name: str, moto_endpoint: str) -> None:
    store = _open(table_name, moto_endpoint)
    with pytest.raises(FluvialError, match=f"DynamoDB store '{table_name}'"):
        store.upsert("t", pa.table({"k": [1], "v": ["x" * 500_000]}), ["k"])
    store.upsert("t", pa.table({"k": [2], "v": ["fine"]}), ["k"])
    assert store.scan("t").to_pylist() == [{"k": 2, "v": "fine"}]
