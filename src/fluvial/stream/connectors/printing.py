"""``'connector' = 'print'``: rows printed like Flink's print sink, ``+I[v1, v2, …]``.

Options: ``'print-identifier'`` (a ``"<id>> "`` prefix), ``'standard-error'`` (print to
stderr). Values are rendered as Flink's ``Row.toString`` does: ``null``, ``true``,
``1.0``, ``2024-01-31T10:00`` (Java's LocalDateTime: seconds and milliseconds only when
non-zero), ``…Z`` for TIMESTAMP_LTZ, nested rows as ``+I[…]``, arrays as ``[…]``. Like
Flink's, the sink prints on write, not on commit (it is for watching, not for keeping).

>>> import pyarrow as pa
>>> render_rows(pa.table({"a": [1, None], "b": ["x", "y"]}))
['+I[1, x]', '+I[null, y]']
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from fluvial.stream.connectors.base import ConnectorContext, Sink
from fluvial.stream.connectors.options import Options
from fluvial.stream.ops.keyed import OP

if TYPE_CHECKING:
    from fluvial.stream.sql.ast import CreateTable

__all__ = ["PrintSink", "render_rows"]


def _render(array: Any) -> Any:
    """Each value of *array* as Flink prints it (nulls as ``null``), vectorized."""
    t = array.type
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_struct(t):
        parts = [_render(array.field(f.name)) for f in t]
        inner = pc.binary_join_element_wise(*parts, ", ") if parts else pa.array([""] * len(array))
        out = pc.binary_join_element_wise("+I[", inner, "]", "")
        out = pc.if_else(array.is_null(), pa.scalar(None, pa.string()), out)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        values = _render(array.flatten())
        offsets = pc.subtract(array.offsets, array.offsets[0])
        mask = array.is_null() if array.null_count else None
        joined = pc.binary_join(pa.ListArray.from_arrays(offsets, values, mask=mask), ", ")
        out = pc.binary_join_element_wise("[", joined, "]", "")
    elif pa.types.is_timestamp(t):
        ms = array.cast(pa.timestamp("ms", tz=t.tz), safe=False)
        secs = ms.cast(pa.timestamp("s", tz=t.tz), safe=False)
        n = pc.fill_null(ms.cast(pa.int64()), 0).to_numpy()
        z = "Z" if t.tz else ""
        out = pc.if_else(
            pa.array(n % 60_000 == 0),
            pc.strftime(secs, f"%Y-%m-%dT%H:%M{z}"),
            pc.if_else(
                pa.array(n % 1_000 == 0),
                pc.strftime(secs, f"%Y-%m-%dT%H:%M:%S{z}"),
                pc.strftime(ms, f"%Y-%m-%dT%H:%M:%S{z}"),
            ),
        )
    elif pa.types.is_floating(t):
        text = pc.cast(array, pa.string())
        plain = pc.match_substring_regex(text, r"^-?\d+$")
        out = pc.if_else(plain, pc.binary_join_element_wise(text, ".0", ""), text)
        out = pc.replace_substring(pc.replace_substring(out, "inf", "Infinity"), "nan", "NaN")
    elif pa.types.is_boolean(t):
        out = pc.if_else(array, "true", "false")
    elif pa.types.is_binary(t):
        out = pc.cast(pc.binary_length(array), pa.string())  # Java prints [B@…; show length
        out = pc.binary_join_element_wise("bytes(", out, ")", "")
    else:
        out = pc.cast(array, pa.string())
    return pc.fill_null(out, "null")


#: Flink's short row kinds, by the ``_op`` byte of an updating result
KINDS = pa.array(["+I", "-U", "+U", "-D"])


def render_rows(table: pa.Table, kind: str = "+I") -> list[str]:
    """Every row of *table* as ``+I[v1, v2, …]`` (an ``_op`` column gives each row's kind).

    >>> render_rows(pa.table({"a": [1, 1], "_op": pa.array([1, 2], pa.int8())}))
    ['-U[1]', '+U[1]']
    """
    if table.num_rows == 0:
        return []
    kinds: Any = kind
    if OP in table.column_names:
        kinds = pc.take(KINDS, table.column(OP))
        table = table.drop_columns([OP])
    parts = [_render(table[name]) for name in table.column_names]
    inner = pc.binary_join_element_wise(*parts, ", ") if parts else pa.array([""] * table.num_rows)
    opened = pc.binary_join_element_wise(kinds, "[", "")
    rows = pc.binary_join_element_wise(opened, inner, "]", "")
    return rows.to_pylist()  # the one unavoidable per-row step: writing text lines


class PrintSink(Sink):
    """Prints each written row to stdout (or stderr)."""

    transactional: ClassVar[bool] = False  # rows are printed / dropped as they come
    accepts_updates: ClassVar[bool] = True  # a changelog prints with its row kinds
    required_options: ClassVar[tuple[str, ...]] = ()
    optional_options: ClassVar[tuple[str, ...]] = ("print-identifier", "standard-error")

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        super().__init__(table, options, context)
        opts = Options(table, options)
        identifier = opts.get("print-identifier")
        self.prefix = f"{identifier}> " if identifier else ""
        self.stderr = opts.flag("standard-error")

    def write(self, table: pa.Table) -> None:
        lines = render_rows(table)
        if lines:
            out = sys.stderr if self.stderr else sys.stdout
            out.write("".join(f"{self.prefix}{line}\n" for line in lines))
            out.flush()

    def commit(self, checkpoint_id: int) -> None:
        """Nothing to do: rows were printed as they came."""
