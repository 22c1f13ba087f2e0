"""The combination rules are sound: over random grants, filters and masks, no cell is shown
that no single slice grants, nor shown less masked than some slice that grants it allows.

Predicates are evaluated by DuckDB over a small table of rows, independently of the code
under test, which only combines their text.
"""

from __future__ import annotations

import random

import duckdb

from fluvial.govern.access import Slice, combine, mask_strictness
from fluvial.govern.model import Mask

COLUMNS = ["a", "b", "c", "d"]
PREDICATES = ["x < 5", "x >= 12", "x % 3 = 0", "x BETWEEN 4 AND 9", "x % 2 = 1", None]
MASKS = [
    None,
    None,
    Mask("partial", 2),
    Mask("partial", 4),
    Mask("hash"),
    Mask("redact"),
    Mask("null"),
]


def rows_of(con: duckdb.DuckDBPyConnection, predicate: str | None) -> frozenset[int]:
    where = f" WHERE {predicate}" if predicate else ""
    return frozenset(r[0] for r in con.execute(f"SELECT x FROM range(20) t(x){where}").fetchall())


def random_slices(rng: random.Random) -> list[Slice]:
    slices = []
    for n in range(rng.randint(1, 4)):
        cols = {c: f"grant {n}" for c in COLUMNS if rng.random() < 0.6}
        masks = {c: m for c in cols if (m := rng.choice(MASKS)) is not None}
        predicate = rng.choice(PREDICATES)
        slices.append(Slice(f"g{n}", cols, predicate, f"f{n}" if predicate else None, masks))
    return slices


def test_combination_is_sound_and_loses_no_rows() -> None:
    con = duckdb.connect()
    seen: dict[str | None, frozenset[int]] = {}

    def rows(predicate: str | None) -> frozenset[int]:
        if predicate not in seen:  # OR-ed combinations are new text: DuckDB decides them too
            seen[predicate] = rows_of(con, predicate)
        return seen[predicate]

    rng = random.Random(8)
    for _ in range(300):
        slices = random_slices(rng)
        access = combine("t", COLUMNS, slices, {})
        live = [s for s in slices if s.columns]
        shown = rows(access.row_filter) if live else set()
        # every row some slice grants stays visible
        assert shown == set().union(*(rows(s.row_filter) for s in live))
        for column in access.columns:
            mask = access.masks.get(column)
            for row in shown:
                granting = [s for s in live if column in s.columns and row in rows(s.row_filter)]
                assert granting, (column, row, slices)  # never a cell no slice grants
                # at least as strict as some slice that grants this very cell
                assert any(
                    mask_strictness(mask) >= mask_strictness(s.masks.get(column)) for s in granting
                )
        for column in COLUMNS:
            assert (column in access.columns) != (column in access.denied)
