"""The one behaviour suite every store backend passes (SQLite, PostgreSQL, Redis).

Expected results come from independent computations: DuckDB queries over the written
rows for scans, a Python dict replaying the writes for upserts, deletes and changelogs.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.errors import (
    IncompatibleSchemaError,
    NotFoundError,
    SchemaError,
    UsageError,
    ValidationError,
)
from fluvial.serve.store import Store

from .conftest import FakeClock, StoreFactory

UTC = dt.UTC


def typed_rows() -> pa.Table:
    """Every supported type, with extremes and a null in each value column."""
    big = Decimal("1234567890123456789012345678.0123456789")
    return pa.table(
        {
            "id": pa.array([3, 1, 4, 2], pa.int64()),
            "i8": pa.array([-128, 127, None, 0], pa.int8()),
            "i16": pa.array([-32768, None, 7, 32767], pa.int16()),
            "i32": pa.array([-(2**31), 2**31 - 1, None, 5], pa.int32()),
            "i64": pa.array([-(2**63), 2**63 - 1, None, 1], pa.int64()),
            "u8": pa.array([255, 0, None, 1], pa.uint8()),
            "u16": pa.array([65535, 0, 1, None], pa.uint16()),
            "u32": pa.array([2**32 - 1, None, 0, 1], pa.uint32()),
            "f32": pa.array([1.5, -3.4e38, None, 0.1], pa.float32()),
            "f64": pa.array([0.1, float("inf"), None, -1e-300], pa.float64()),
            "s": ["héllo ✓ 🌊", "", None, 'q " c , nl \n tab \t bs \\'],
            "ls": pa.array(["a", None, "", "z"], pa.large_string()),
            "b": [True, False, None, True],
            "d": pa.array([dt.date(2024, 2, 29), dt.date(1970, 1, 1), None, dt.date(1900, 1, 1)]),
            "ts_utc": pa.array(
                [
                    dt.datetime(2024, 1, 31, 10, 0, 0, 123000, tzinfo=UTC),
                    None,
                    dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
                    dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
                ],
                pa.timestamp("ms", tz="UTC"),
            ),
            "ts_us": pa.array(
                [dt.datetime(2024, 1, 1, 0, 0, 0, 1), None, dt.datetime(2000, 6, 1), None],
                pa.timestamp("us"),
            ),
            "ts_ns": pa.array(
                [1_700_000_000_123_456_789, None, -1_000, 0], pa.timestamp("ns", tz="UTC")
            ),
            "ts_paris": pa.array(
                [1_700_000_000, 0, None, 86_400], pa.timestamp("s", tz="Europe/Paris")
            ),
            "dec": pa.array(
                [Decimal("-123456789.123"), Decimal("0.001"), None, Decimal("5.000")],
                pa.decimal128(12, 3),
            ),
            "dec38": pa.array([big, -big, None, Decimal(0)], pa.decimal128(38, 10)),
            "bin": pa.array([b"\x00\xff\n", b"", None, b"abc"], pa.binary()),
        }
    )


def assert_same(got: pa.Table, expected: pa.Table) -> None:
    """Same column names and types, same values in the same order."""
    assert got.column_names == expected.column_names
    for name in expected.column_names:
        assert got.schema.field(name).type == expected.schema.field(name).type, name
        assert got[name].combine_chunks().equals(expected[name].combine_chunks()), name


# -- types, upserts, deletes ----------------------------------------------------------------


def test_every_type_round_trips(store: Store) -> None:
    rows = typed_rows()
    assert store.upsert("typed", rows, ["id"]) == 4
    expected = rows.sort_by("id")
    assert_same(store.scan("typed"), expected)
    # (Python datetimes stop at microseconds: the row with nanoseconds is left out here)
    for row in expected.filter(pc.not_equal(expected["id"], 3)).to_pylist():
        assert store.get("typed", row["id"]) == row
    assert_same(store.get_many("typed", pa.table({"id": [4, 1]})), rows.take([2, 1]))
    # many rows at once take the bulk paths (Arrow's JSON reader on Redis)
    many = pa.concat_tables(
        [rows.set_column(0, "id", pc.add(rows["id"], 10 * i)) for i in range(20)]
    )
    store.upsert("typed_many", many, ["id"])
    assert_same(store.scan("typed_many"), many.sort_by("id"))
    assert_same(store.get_many("typed_many", many.select(["id"])), many)


def test_upsert_overwrites_and_the_last_row_of_a_key_wins(store: Store) -> None:
    rng = np.random.default_rng(1)
    model: dict[tuple[str, int], dict[str, Any]] = {}
    for batch in range(4):
        n = 300
        users = rng.choice(["ann", "bob", "cy", "dee"], n)
        days = rng.integers(0, 40, n)
        rows = pa.table(
            {
                # columns in another order than the table: matched by name
                "total": rng.normal(size=n),
                "user": users,
                "day": days.astype(np.int32),
                "batch": np.full(n, batch),
            }
        )
        for row in rows.to_pylist():  # the reference: replay in a dict
            model[(row["user"], row["day"])] = row
        store.upsert("totals", rows, ["user", "day"])
    got = store.scan("totals")
    expected = sorted(model.values(), key=lambda r: (r["user"], r["day"]))
    assert got.column_names == ["total", "user", "day", "batch"]
    assert got.to_pylist() == expected
    assert store.count("totals") == len(model)


def test_delete_removes_only_the_given_keys(store: Store) -> None:
    store.upsert("t", pa.table({"k": list(range(10)), "v": [str(i) for i in range(10)]}), ["k"])
    store.delete("t", pa.table({"k": [2, 5, 99], "other": ["x", "y", "z"]}))
    assert store.scan("t")["k"].to_pylist() == [0, 1, 3, 4, 6, 7, 8, 9]
    assert store.get("t", {"k": 5}) is None
    assert store.count("t") == 8


# -- scans -------------------------------------------------------------------------------------

USERS = ["a", "ab", "a b", "b", "Z", "é", "ü", "aa\x01", ""]


@pytest.fixture
def events(store: Store) -> pa.Table:
    """2,000 rows keyed by (user, ts, seq), written in three batches."""
    rng = np.random.default_rng(7)
    n = 2_000
    base = 1_790_000_000_000
    table = pa.table(
        {
            "user": pa.array(rng.choice(USERS, n)),
            "ts": pa.array(base + rng.integers(-50, 50, n) * 60_000, pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            "seq": pa.array(rng.integers(-3, 3, n), pa.int32()),
            "amount": pa.array(
                [Decimal(int(x)) / 100 for x in rng.integers(-(10**6), 10**6, n)],
                pa.decimal128(10, 2),
            ),
            "score": rng.normal(size=n),
        }
    )
    for i in range(0, n, 700):
        store.upsert("events", table.slice(i, 700), ["user", "ts", "seq"])
    return table


def _reference(
    table: pa.Table, where: str, params: list[Any], *, reverse: bool, limit: int | None
) -> pa.Table:
    """The same scan as DuckDB computes it over the written rows (last write wins)."""
    direction = "DESC" if reverse else "ASC"
    with duckdb.connect() as con:
        con.register("written", table)
        con.execute(
            "CREATE TABLE data AS SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER "
            "(PARTITION BY user, ts, seq ORDER BY i DESC) AS rn FROM "
            "(SELECT *, row_number() OVER () AS i FROM written)) WHERE rn = 1"
        )
        sql = (
            f"SELECT user, ts, seq, amount, score FROM data WHERE {where} "
            f"ORDER BY user {direction}, ts {direction}, seq {direction}"
        )
        if limit is not None:
            sql += f" LIMIT {limit}"
        return con.execute(sql, params).to_arrow_table()


T0 = dt.datetime(2026, 9, 21, 19, 0, tzinfo=UTC)

SCANS: list[tuple[dict[str, Any], str, list[Any]]] = [
    ({}, "true", []),
    ({"prefix": ["a"]}, "user = ?", ["a"]),
    ({"prefix": [""]}, "user = ?", [""]),
    ({"prefix": ["é"], "start": T0}, "user = ? AND ts >= ?", ["é", T0]),
    (
        {"prefix": ["ab"], "start": T0 - dt.timedelta(minutes=20), "end": T0},
        "user = ? AND ts >= ? AND ts < ?",
        ["ab", T0 - dt.timedelta(minutes=20), T0],
    ),
    ({"prefix": ["b", T0]}, "user = ? AND ts = ?", ["b", T0]),
    (
        {"prefix": ["Z", T0], "start": -1, "end": 2},
        "user = ? AND ts = ? AND seq >= -1 AND seq < 2",
        ["Z", T0],
    ),
    ({"start": "a", "end": "b"}, "user >= 'a' AND user < 'b'", []),
    ({"end": "ab"}, "user < 'ab'", []),
]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("limit", [None, 7])
@pytest.mark.parametrize(("kwargs", "where", "params"), SCANS)
def test_scans_match_duckdb(
    store: Store,
    events: pa.Table,
    kwargs: dict[str, Any],
    where: str,
    params: list[Any],
    reverse: bool,
    limit: int | None,
) -> None:
    got = store.scan("events", **kwargs, limit=limit, reverse=reverse)
    expected = _reference(events, where, params, reverse=reverse, limit=limit)
    assert got.num_rows == expected.num_rows
    assert got.to_pylist() == expected.to_pylist()


def test_scan_arguments_are_checked(store: Store, events: pa.Table) -> None:
    with pytest.raises(UsageError, match="no key column for start/end"):
        store.scan("events", prefix=["a", T0, 1], start=0)
    with pytest.raises(ValidationError, match="'ts' is timestamp"):
        store.scan("events", prefix=["a", "not a time"])
    assert store.scan("events", limit=0).num_rows == 0


KEY_VALUES: dict[str, pa.Array] = {
    "int": pa.array([5, -(2**63), 0, 2**63 - 1, -1], pa.int64()),
    "float": pa.array([0.5, -1e300, float("inf"), -float("inf"), -0.25, 3.0]),
    "string": pa.array(["b", "", "a\x01", "ab", "é", "a", "B"]),
    "bool": pa.array([True, False]),
    "date": pa.array([dt.date(2024, 1, 1), dt.date(1900, 1, 1), dt.date(1970, 1, 2)]),
    "decimal": pa.array(
        [Decimal("1.5"), Decimal("-2.25"), Decimal("0"), Decimal("-0.01")], pa.decimal128(18, 2)
    ),
}


@pytest.mark.parametrize("kind", sorted(KEY_VALUES))
def test_keys_of_every_type_scan_in_order(store: Store, kind: str) -> None:
    values = KEY_VALUES[kind]
    store.upsert("keys", pa.table({"k": values, "n": pa.array(range(len(values)))}), ["k"])
    python = sorted(values.to_pylist(), key=lambda v: v.encode() if isinstance(v, str) else v)
    assert store.scan("keys")["k"].to_pylist() == python
    assert store.scan("keys", reverse=True, limit=2)["k"].to_pylist() == python[::-1][:2]
    assert store.scan("keys", start=python[1], end=python[-1])["k"].to_pylist() == python[1:-1]


def test_get_many_keeps_the_order_asked_and_skips_missing(store: Store, events: pa.Table) -> None:
    picks = events.take([10, 3, 1500])
    asked = pa.concat_tables(
        [
            picks.select(["user", "ts", "seq"]),
            pa.table(
                {
                    "user": ["nobody"],
                    "ts": picks["ts"][:1].combine_chunks(),
                    "seq": pa.array([0], pa.int32()),
                }
            ),
        ]
    )
    got = store.get_many("events", asked.take([3, 2, 0, 1]))
    expected = [
        store.get("events", {k: r[k] for k in ("user", "ts", "seq")})
        for r in picks.take([2, 0, 1]).to_pylist()
    ]
    assert got.to_pylist() == expected
    assert None not in expected


# -- TTL -----------------------------------------------------------------------------------------


def test_expired_rows_are_invisible_at_once_and_purged_later(
    store: Store, clock: FakeClock
) -> None:
    rows = pa.table({"k": ["a", "b", "c", "d"], "v": [1, 2, 3, 4]})
    store.upsert("s", rows.slice(0, 2), ["k"], ttl_seconds=10)
    store.upsert("s", rows.slice(2, 2), ["k"])
    clock.advance(9.9)
    assert store.count("s") == 4
    clock.advance(0.1)  # expiry is exclusive: a row lives while now < written + ttl
    assert store.count("s") == 2
    assert store.get("s", "a") is None
    assert store.get_many("s", pa.table({"k": ["a", "c", "b"]}))["k"].to_pylist() == ["c"]
    assert store.scan("s")["k"].to_pylist() == ["c", "d"]
    assert store.scan("s", limit=1)["k"].to_pylist() == ["c"]
    # an expired key written again without a ttl lives again, and for good
    store.upsert("s", pa.table({"k": ["b"], "v": [20]}), ["k"])
    clock.advance(10**6)
    assert store.scan("s")["k"].to_pylist() == ["b", "c", "d"]
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    assert store.count("s") == 3


def test_default_ttl_and_overwrite_refreshes_expiry(store: Store, clock: FakeClock) -> None:
    store.default_ttl = 60
    store.upsert("s", pa.table({"k": [1, 2], "v": ["x", "y"]}), ["k"])
    clock.advance(50)
    store.upsert("s", pa.table({"k": [2], "v": ["y2"]}), ["k"])  # another 60 s
    store.upsert("s", pa.table({"k": [3], "v": ["z"]}), ["k"], ttl_seconds=0)  # never
    clock.advance(30)
    assert store.scan("s").to_pylist() == [{"k": 2, "v": "y2"}, {"k": 3, "v": "z"}]
    clock.advance(40)
    assert store.scan("s").to_pylist() == [{"k": 3, "v": "z"}]
    assert store.purge_expired() == 2


# -- exactly-once changelogs ------------------------------------------------------------------------


def _changelog(rng: np.random.Generator, n: int) -> pa.Table:
    return pa.table(
        {
            "k": rng.integers(0, 25, n),
            "v": rng.normal(size=n),
            "_op": pa.array(rng.choice([0, 1, 2, 3], n, p=[0.4, 0.1, 0.3, 0.2]), pa.int8()),
        }
    )


def _replay(model: dict[int, dict[str, Any]], changes: pa.Table) -> None:
    for row in changes.to_pylist():  # the reference semantics, row by row
        op = row.pop("_op")
        if op in (0, 2):
            model[row["k"]] = row
        else:  # a delete, or an update-before (a +U, if any, follows it)
            model.pop(row["k"], None)


def test_apply_is_exactly_once_per_checkpoint_and_the_last_change_wins(
    store: Store, open_new: StoreFactory
) -> None:
    rng = np.random.default_rng(3)
    model: dict[int, dict[str, Any]] = {}
    logs = [_changelog(rng, 120) for _ in range(6)]
    for checkpoint_id, changes in enumerate(logs, start=1):
        assert store.apply("agg", changes, ["k"], checkpoint_id, "job.sink")
        _replay(model, changes)
        assert store.scan("agg").to_pylist() == [model[k] for k in sorted(model)]
    before = store.scan("agg")
    # replays of applied ids change nothing, from this or another store object
    assert not store.apply("agg", logs[0], ["k"], 6, "job.sink")
    again = open_new()
    assert again.last_checkpoint("job.sink") == 6
    assert not again.apply("agg", logs[2], ["k"], 3, "job.sink")
    assert_same(store.scan("agg"), before)
    # another sink id has its own sequence
    assert again.apply("agg", logs[0].slice(0, 0), ["k"], 1, "other.sink")
    assert again.last_checkpoint("other.sink") == 1
    assert store.last_checkpoint("never") is None


def test_apply_without_op_upserts_and_creates_the_table(store: Store) -> None:
    rows = pa.table({"k": [1, 1, 2], "v": ["a", "b", "c"]})
    assert store.apply("plain", rows.slice(0, 0), ["k"], 1, "s")
    assert [t.name for t in store.tables()] == ["plain"]
    assert store.apply("plain", rows, ["k"], 2, "s")
    assert store.scan("plain").to_pylist() == [{"k": 1, "v": "b"}, {"k": 2, "v": "c"}]


def test_readers_never_see_half_an_apply(store: Store, open_new: StoreFactory) -> None:
    keys = 300
    rounds = 25
    errors: list[str] = []
    done = threading.Event()
    store.apply("live", pa.table({"k": range(keys), "version": [0] * keys}), ["k"], 0, "w")

    def writer() -> None:
        try:
            for version in range(1, rounds + 1):
                # each checkpoint rewrites every row; a torn read would mix versions
                changes = pa.table(
                    {
                        "k": np.arange(keys),
                        "version": np.full(keys, version),
                        "_op": pa.array(np.full(keys, 2), pa.int8()),
                    }
                )
                store.apply("live", changes, ["k"], version, "w")
        except Exception as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(repr(exc))
        finally:
            done.set()

    def reader(reading: Store) -> None:
        try:
            seen = 0
            while not done.is_set() or seen < 3:
                rows = reading.scan("live")
                versions = set(rows["version"].to_pylist())
                if rows.num_rows != keys or len(versions) != 1:
                    errors.append(f"torn read: {rows.num_rows} rows, versions {sorted(versions)}")
                    return
                got = reading.get_many("live", pa.table({"k": [0, keys - 1]}))
                if len(set(got["version"].to_pylist())) != 1:
                    errors.append("torn get_many")
                    return
                seen += 1
        except Exception as exc:
            errors.append(repr(exc))

    threads = [
        threading.Thread(target=writer),
        threading.Thread(target=reader, args=(store,)),
        threading.Thread(target=reader, args=(open_new(),)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert set(store.scan("live")["version"].to_pylist()) == {rounds}


# -- tables and mistakes ---------------------------------------------------------------------------


def test_tables_get_and_drop(store: Store) -> None:
    store.upsert("b_table", pa.table({"id": [1], "x": [1.0]}), ["id"])
    store.upsert("a_table", pa.table({"g": ["x"], "id": [1], "y": [True]}), ["g", "id"])
    infos = store.tables()
    assert [(t.name, t.key) for t in infos] == [("a_table", ("g", "id")), ("b_table", ("id",))]
    assert infos[0].schema.field("y").type == pa.bool_()
    store.drop("b_table")
    assert [t.name for t in store.tables()] == ["a_table"]
    with pytest.raises(NotFoundError, match="did you mean 'a_table'"):
        store.get("a_tabel", ("x", 1))


def test_mistakes_are_clear_errors(store: Store) -> None:
    store.upsert("t", pa.table({"k": [1], "v": ["a"]}), ["k"])
    with pytest.raises(IncompatibleSchemaError, match="missing v; unknown w"):
        store.upsert("t", pa.table({"k": [1], "w": ["a"]}), ["k"])
    with pytest.raises(IncompatibleSchemaError, match="column 'v' is string"):
        store.upsert("t", pa.table({"k": [1], "v": [[1, 2]]}), ["k"])
    with pytest.raises(SchemaError, match=r"keyed by \(k\)"):
        store.upsert("t", pa.table({"k": [1], "v": ["a"]}), ["v"])
    with pytest.raises(ValidationError, match="null"):
        store.upsert("t", pa.table({"k": [1, None], "v": ["a", "b"]}), ["k"])
    with pytest.raises(SchemaError, match="list<item: int64>"):
        store.upsert("lists", pa.table({"k": [1], "v": [[1, 2]]}), ["k"])
    with pytest.raises(SchemaError, match="key column 'k'"):
        store.upsert("bin", pa.table({"k": [b"x"], "v": [1]}), ["k"])
    with pytest.raises(SchemaError, match="reserved"):
        store.upsert("res", pa.table({"k": [1], "__expires_at": [1]}), ["k"])
    with pytest.raises(UsageError, match="store table name"):
        store.upsert("bad name", pa.table({"k": [1]}), ["k"])
    with pytest.raises(UsageError, match="expected 1 key value"):
        store.get("t", (1, 2))
    with pytest.raises(ValidationError, match="'_op': expected 0, 1, 2 or 3"):
        store.apply(
            "t", pa.table({"k": [1], "v": ["a"], "_op": pa.array([7], pa.int8())}), ["k"], 1, "s"
        )
    assert store.scan("t").to_pylist() == [{"k": 1, "v": "a"}]


def test_forget_removes_rows_by_key_or_value_expired_ones_too(
    store: Store, clock: FakeClock, tmp_path: Any
) -> None:
    from fluvial.govern.subject import Subject

    subject = Subject("u100042", ("0b9e7c1a-1111-4c4c-8d8d-000000000042",))
    by_user = pa.table({"user_id": ["u100042", "u100007", "u1000421"], "n": [1, 2, 3]})
    by_device = pa.table(
        {
            "anonymous_id": ["0b9e7c1a-1111-4c4c-8d8d-000000000042", "other"],
            "last_page": ["/cart", "/home"],
        }
    )
    notes = pa.table({"k": [1, 2, 3], "note": ['{"who":"u100042"}', "nobody", None]})
    store.upsert("by_user", by_user, ["user_id"])
    store.upsert("by_device", by_device, ["anonymous_id"], ttl_seconds=5)
    store.upsert("notes", notes, ["k"])
    clock.advance(10)  # the device row expired: invisible, but it must go as well
    store.upsert("by_device", by_device.slice(1), ["anonymous_id"])

    def rows_of(rows: pa.Table) -> Any:
        return subject.mask(rows)

    assert store.forget(rows_of, dry_run=True) == {"by_user": 1, "notes": 1}
    assert store.count("by_user") == 3
    assert store.forget(rows_of) == {"by_user": 1, "notes": 1}
    assert sorted(store.scan("by_user")["user_id"].to_pylist()) == ["u100007", "u1000421"]
    assert store.scan("notes")["k"].to_pylist() == [2, 3]
    assert store.scan("by_device")["anonymous_id"].to_pylist() == ["other"]
    assert store.purge_expired() == 0  # the expired row of the subject went with forget
    assert store.forget(rows_of) == {}
    if store.name == "sqlite":  # and the file no longer holds the bytes
        files = [p for p in tmp_path.iterdir() if p.name.startswith("store.db")]
        for path in files:
            raw = path.read_bytes()
            assert not re.search(rb"u100042(?![0-9])", raw) and b"000000000042" not in raw, path
