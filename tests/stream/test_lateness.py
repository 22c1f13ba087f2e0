"""Allowed lateness: fired windows fire again, updated, when late rows arrive in time.

The operator's changelog is checked against a plain-Python model of the rule, written
independently of the vectorized slicing: per batch, a row counts in every window that
contains it unless that window fired and its end - 1 + lateness <= the watermark; after
the batch, windows the watermark has passed fire once (+I), and fired windows that late
rows changed emit -U (the value emitted before) and +U (the new value).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pytest

from fluvial.stream.ops import WindowAggregate
from fluvial.stream.ops.keyed import OP, ROW_WATERMARK
from fluvial.stream.ops.spec import AggSpec, WindowSpec

SPECS = {
    "tumble": WindowSpec.tumble(10_000),
    "hop": WindowSpec.hop(size_ms=10_000, slide_ms=5_000),
    "cumulate": WindowSpec.cumulate(step_ms=5_000, size_ms=20_000),
}
AGGS = [AggSpec("n", "count_star"), AggSpec("s", "sum", "v")]


def windows_of(spec: WindowSpec, t: int) -> list[tuple[int, int]]:
    """Every window containing t, by brute force over candidate starts."""
    if spec.kind == "tumble":
        start = t // spec.size_ms * spec.size_ms
        return [(start, start + spec.size_ms)]
    if spec.kind == "hop":
        out = []
        start = t // spec.slide_ms * spec.slide_ms
        while start > t - spec.size_ms:
            out.append((start, start + spec.size_ms))
            start -= spec.slide_ms
        return out
    base = t // spec.size_ms * spec.size_ms
    return [
        (base, base + k * spec.step_ms)
        for k in range(1, spec.size_ms // spec.step_ms + 1)
        if base + k * spec.step_ms > t
    ]


def model(spec, batches, lateness):
    """The changelog, batch by batch: lists of (op, ws, we, key, n, s)."""
    state: dict = defaultdict(lambda: [0, 0])
    emitted: dict = {}
    fired = None  # highest watermark windows fired up to
    out = []
    for rows, wm_before, wm_after in batches:
        changed = set()
        for t, key, v in rows:
            for ws, we in windows_of(spec, t):
                is_fired = fired is not None and we - 1 <= fired
                if is_fired and wm_before is not None and we - 1 + lateness <= wm_before:
                    continue  # expired
                state[(ws, we, key)][0] += 1
                state[(ws, we, key)][1] += v
                if is_fired:
                    changed.add((ws, we, key))
        log = []
        for w in sorted(changed):
            if w in emitted:
                log.append((1, *w, *emitted[w]))
                log.append((2, *w, *state[w]))
            else:
                log.append((0, *w, *state[w]))
            emitted[w] = tuple(state[w])
        for w in sorted(state):
            if w[1] - 1 <= wm_after and (fired is None or w[1] - 1 > fired):
                log.append((0, *w, *state[w]))
                emitted[w] = tuple(state[w])
        fired = wm_after if fired is None else max(fired, wm_after)
        out.append(log)
    return out


def events(seed: int, n: int = 400, disorder: int = 30_000):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t = 1_000_000 + i * 500 - rng.randrange(disorder if rng.random() < 0.3 else 2_000)
        rows.append((t, rng.choice("abc"), rng.randrange(100)))
    return rows


def batches_of(rows, size, delay):
    out, wm = [], None
    for i in range(0, len(rows), size):
        chunk = rows[i : i + size]
        high = max(t for t, _, _ in chunk) - delay
        after = high if wm is None else max(wm, high)
        out.append((chunk, wm, after))
        wm = after
    return out


def table(rows) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([t for t, _, _ in rows], pa.timestamp("ms")),
            "k": [k for _, k, _ in rows],
            "v": pa.array([v for _, _, v in rows], pa.int64()),
        }
    )


def as_log(out: pa.Table):
    ws = out["window_start"].cast(pa.int64()).to_pylist()
    we = out["window_end"].cast(pa.int64()).to_pylist()
    return list(
        zip(
            out[OP].to_pylist(),
            ws,
            we,
            out["k"].to_pylist(),
            out["n"].to_pylist(),
            out["s"].to_pylist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("kind", sorted(SPECS))
@pytest.mark.parametrize("lateness", [4_000, 25_000])
def test_changelog_matches_the_model(kind: str, lateness: int) -> None:
    spec = SPECS[kind]
    batches = batches_of(events(7), 37, delay=1_000)
    expected = model(spec, batches, lateness)
    op = WindowAggregate(spec, "ts", ["k"], AGGS, allowed_lateness_ms=lateness)
    updates = 0
    for (rows, before, after), want in zip(batches, expected, strict=True):
        op.process(table(rows), before)
        got = as_log(op.advance(after))
        assert Counter(got) == Counter(want)
        # every retraction precedes its update, and carries what was emitted before
        assert [r[0] for r in got] == sorted((r[0] for r in got), key=lambda o: o != 1)
        updates += sum(1 for r in got if r[0] == 2)
    assert updates > 0, "the input must exercise late updates"
    assert op.late_rows > 0 or lateness > 20_000


def test_without_lateness_the_output_is_append_only() -> None:
    op = WindowAggregate(SPECS["tumble"], "ts", ["k"], AGGS)
    op.process(table(events(1, 50)), None)
    assert OP not in op.flush().column_names


def test_snapshot_restore_keeps_emitted_windows() -> None:
    spec = SPECS["hop"]
    batches = batches_of(events(3), 41, delay=1_000)
    whole = WindowAggregate(spec, "ts", ["k"], AGGS, allowed_lateness_ms=20_000)
    moved = WindowAggregate(spec, "ts", ["k"], AGGS, allowed_lateness_ms=20_000)
    for i, (rows, before, after) in enumerate(batches):
        if i % 3 == 2:  # a checkpoint and a restart between batches
            fresh = WindowAggregate(spec, "ts", ["k"], AGGS, allowed_lateness_ms=20_000)
            fresh.restore(moved.snapshot())
            moved = fresh
        for op in (whole, moved):
            op.process(table(rows), before)
        a, b = whole.advance(after), moved.advance(after)
        assert Counter(as_log(a)) == Counter(as_log(b))
    assert moved.late_rows == whole.late_rows


def test_row_watermarks_judge_each_row_against_its_own() -> None:
    """With per-record watermarks (``__wm``), a row behind an earlier row of the same batch
    is late although the batch's opening watermark would have accepted it."""
    spec = SPECS["tumble"]
    ts = [5_000, 25_000, 3_000]  # the third comes after the watermark passed 10 s
    t = pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("ms")),
            "k": ["a"] * 3,
            "v": pa.array([1, 1, 1], pa.int64()),
            ROW_WATERMARK: pa.array(np.array([-(2**63), 5_000, 25_000]), pa.int64()),
        }
    )
    op = WindowAggregate(spec, "ts", ["k"], AGGS)
    assert op.process(t, None) == 1
    assert op.flush()["n"].to_pylist() == [1, 1]
