"""The Flink SQL front end: parse pipeline files, translate expressions to DuckDB.

>>> script = parse_script("SET 'pipeline.name' = 'demo'; INSERT INTO out SELECT a FROM src;")
>>> [type(s).__name__ for s in script.statements]
['SetOption', 'Insert']
>>> to_duckdb(parse_query("SELECT SUBSTRING(name, 2, 3) AS s FROM t"))
'SELECT SUBSTRING(name, 2, 3) AS s FROM t'
"""

from fluvial.stream.sql.dialect import Flink, MapLiteral
from fluvial.stream.sql.dump import dump
from fluvial.stream.sql.intervals import interval_ms
from fluvial.stream.sql.parser import parse_query, parse_script
from fluvial.stream.sql.translate import to_duckdb
from fluvial.stream.sql.types import parse_type

__all__ = [
    "Flink",
    "MapLiteral",
    "dump",
    "interval_ms",
    "parse_query",
    "parse_script",
    "parse_type",
    "to_duckdb",
]
