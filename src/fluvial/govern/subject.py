"""The data subject of ``fluvial forget``: a user id, the devices stitched to it, and which
rows of a table are theirs.

A row is the subject's when

- an identity column holds the user id (``user_id``), or
- a device column holds one of the subject's anonymous ids (``anonymous_id``) and the row
  names no other user (a device's pre-login events are its owner's; another person who
  signed in on it keeps their own rows), or
- another text column holds one of the ids as a whole word (a failed event's raw payload,
  a JSON property): ``u100042`` matches ``{"user_id":"u100042"}`` but not ``u1000421``.

The same rule is written three ways, each vectorized: an Arrow mask (:meth:`Subject.mask`,
for the event log and the store), a DuckDB predicate (:meth:`Subject.sql`, for the
warehouse) and an Iceberg row filter (:meth:`Subject.iceberg_filter`, for the lake).

>>> import pyarrow as pa
>>> subject = Subject("u1", ("a1",))
>>> rows = pa.table({
...     "user_id": ["u1", None, "u2", None],
...     "anonymous_id": ["x", "a1", "a1", "a2"],
...     "note": [None, None, None, "saw u1 today"],
... })
>>> subject.mask(rows).to_pylist()
[True, True, False, True]
>>> subject.columns(rows.schema)
{'user_id': 'user id', 'anonymous_id': 'device id', 'note': 'text'}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DEVICE_COLUMNS", "USER_COLUMNS", "Subject"]

#: columns that hold the user id, by name
USER_COLUMNS = ("user_id",)
#: columns that hold a device's anonymous id, by name
DEVICE_COLUMNS = ("anonymous_id",)


def _is_text(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or (pa.types.is_dictionary(t) and _is_text(t.value_type))
    )


@dataclass(frozen=True)
class Subject:
    """A user id and the anonymous ids of the devices stitched to it.

    *user_columns* and *device_columns* extend the columns recognized by name (e.g. the
    columns a table's governance tags declare as identifying).
    """

    user_id: str
    anonymous_ids: tuple[str, ...] = ()
    user_columns: tuple[str, ...] = USER_COLUMNS
    device_columns: tuple[str, ...] = DEVICE_COLUMNS
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> tuple[str, ...]:
        """Every value that identifies the subject."""
        return (self.user_id, *self.anonymous_ids)

    @property
    def pattern(self) -> str:
        """A regular expression matching any of the ids as a whole word."""
        alternatives = "|".join(re.escape(i) for i in sorted(self.ids, key=len, reverse=True))
        return f"(^|[^A-Za-z0-9_-])({alternatives})($|[^A-Za-z0-9_-])"

    def columns(self, schema: pa.Schema) -> dict[str, str]:
        """The top-level columns of *schema* the rule looks at, and as what."""
        out: dict[str, str] = {}
        for f in schema:
            if f.name in self.user_columns:
                out[f.name] = "user id"
            elif f.name in self.device_columns:
                out[f.name] = "device id"
            elif _is_text(f.type):
                out[f.name] = "text"
        return out

    # -- Arrow ---------------------------------------------------------------------------

    def hits(self, rows: pa.Table | pa.RecordBatch) -> dict[str, Any]:
        """Per column the rule looks at, a boolean mask (never null) of the rows it
        makes the subject's; :meth:`mask` is their union."""
        n = rows.num_rows
        columns = self.columns(rows.schema)
        users = [c for c, kind in columns.items() if kind == "user id"]
        someone_else: Any = pa.array([False] * n, pa.bool_())
        out: dict[str, Any] = {}
        for col in users:
            values = _as_text(rows.column(col))
            mine = pc.fill_null(pc.is_in(values, pa.array([self.user_id])), False)
            out[col] = mine
            someone_else = pc.or_(someone_else, pc.and_(pc.is_valid(values), pc.invert(mine)))
        devices = pa.array(list(self.anonymous_ids), pa.string())
        for col, kind in columns.items():
            values = _as_text(rows.column(col))
            if kind == "device id":
                theirs = pc.fill_null(pc.is_in(values, devices), False)
                out[col] = pc.and_(theirs, pc.invert(someone_else))
            elif kind == "text":
                found = pc.match_substring_regex(values, self.pattern)
                out[col] = pc.fill_null(found, False)
        return out

    def mask(self, rows: pa.Table | pa.RecordBatch) -> pa.BooleanArray | pa.ChunkedArray:
        """True for the subject's rows (never null)."""
        hit: Any = pa.array([False] * rows.num_rows, pa.bool_())
        for column_hits in self.hits(rows).values():
            hit = pc.or_(hit, column_hits)
        return hit

    def matched_by(self, rows: pa.Table | pa.RecordBatch) -> tuple[str, ...]:
        """The columns through which some row of *rows* is the subject's.

        >>> import pyarrow as pa
        >>> Subject("u1", ("a1",)).matched_by(pa.table({"user_id": ["u1"], "page": ["/"]}))
        ('user_id',)
        """
        return tuple(c for c, h in self.hits(rows).items() if pc.any(h).as_py())

    def matching_text(self, rows: pa.Table) -> dict[str, list[Any]]:
        """For each plain text column, the distinct values that mention an id."""
        out: dict[str, list[Any]] = {}
        for col, kind in self.columns(rows.schema).items():
            if kind != "text":
                continue
            column = rows.column(col)
            found = pc.fill_null(pc.match_substring_regex(_as_text(column), self.pattern), False)
            values = pc.unique(column.filter(found))
            if len(values):
                out[col] = values.to_pylist()
        return out

    # -- DuckDB --------------------------------------------------------------------------

    def sql(self, schema: pa.Schema) -> str | None:
        """A DuckDB predicate for the subject's rows of a table of *schema* (None: no column
        to look at). Values are inlined as escaped literals."""
        columns = self.columns(schema)
        if not columns:
            return None
        users = [_ident(c) for c, kind in columns.items() if kind == "user id"]
        devices = ", ".join(_literal(a) for a in self.anonymous_ids) or "NULL"
        nobody_else = " AND ".join(
            f"({u} IS NULL OR {u} = {_literal(self.user_id)})" for u in users
        )
        terms = [f"{u} = {_literal(self.user_id)}" for u in users]
        for col, kind in columns.items():
            c = _ident(col)
            if kind == "device id":
                terms.append(f"({c} IN ({devices})" + (f" AND {nobody_else})" if users else ")"))
            elif kind == "text":
                terms.append(f"regexp_matches(CAST({c} AS VARCHAR), {_literal(self.pattern)})")
        return "(" + " OR ".join(f"COALESCE({t}, false)" for t in terms) + ")"

    # -- Iceberg -------------------------------------------------------------------------

    def iceberg_filter(self, schema: pa.Schema, text_hits: Mapping[str, Iterable[Any]]) -> Any:
        """A pyiceberg row filter for the subject's rows; *text_hits* are the values of
        text columns found to mention an id (:meth:`matching_text`). None: nothing to
        match in a table of this schema."""
        from pyiceberg import expressions

        ex: Any = expressions  # pydantic's generated signatures hide the positional forms

        # every term says NotNull of its column: pyiceberg keeps a row whose delete
        # predicate mentions a column it never null-checks while that column is null,
        # and a null-safe predicate is never null itself
        def has(col: str, values: Iterable[Any]) -> Any:
            return ex.And(ex.NotNull(col), ex.In(col, set(values)))

        columns = self.columns(schema)
        users = [c for c, kind in columns.items() if kind == "user id"]
        terms: list[Any] = [has(u, [self.user_id]) for u in users]
        for col, kind in columns.items():
            if kind == "device id" and self.anonymous_ids:
                term: Any = has(col, self.anonymous_ids)
                for u in users:
                    term = ex.And(term, ex.Or(ex.IsNull(u), ex.In(u, {self.user_id})))
                terms.append(term)
            elif kind == "text" and text_hits.get(col):
                terms.append(has(col, text_hits[col]))
        if not terms:
            return None
        expr: Any = ex.AlwaysFalse()
        for t in terms:
            expr = ex.Or(expr, t)
        return expr


def _as_text(values: pa.ChunkedArray | pa.Array) -> Any:
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.cast(t.value_type)
    return values  # binary columns are matched as bytes


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
