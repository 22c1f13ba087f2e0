"""``'connector' = 'blackhole'``: a sink that discards its rows (and counts them).

Useful to measure a pipeline without the cost of writing, as in Flink.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from fluvial.stream.connectors.base import Sink

__all__ = ["BlackholeSink"]


class BlackholeSink(Sink):
    """Discards rows; :attr:`rows` counts those written, :attr:`committed` those committed."""

    transactional: ClassVar[bool] = False  # rows are printed / dropped as they come
    accepts_updates: ClassVar[bool] = True
    required_options: ClassVar[tuple[str, ...]] = ()
    optional_options: ClassVar[tuple[str, ...]] = ()

    rows = 0
    committed = 0
    _pending = 0

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        self._pending += table.num_rows

    def commit(self, checkpoint_id: int) -> None:
        self.committed += self._pending
        self._pending = 0
