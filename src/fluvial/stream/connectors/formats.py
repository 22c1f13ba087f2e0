"""Flink's file formats — ``json``, ``csv``, ``parquet`` — decoded and encoded vectorized.

=========  ================================================================================
json       one object per line, fields by name, a missing field is null;
           ``json.ignore-parse-errors`` (drop bad lines, null bad fields),
           ``json.fail-on-missing-field``, ``json.timestamp-format.standard`` = ``SQL``
           (``2024-01-31 10:00:00.123``) | ``ISO-8601`` (``2024-01-31T10:00:00.123``);
           a TIMESTAMP_LTZ carries a trailing ``Z`` in both
csv        no header, fields by position; ``csv.field-delimiter`` (``,``),
           ``csv.quote-character`` (``"``), ``csv.null-literal``,
           ``csv.ignore-parse-errors``; timestamps in the SQL standard
parquet    columns by name
=========  ================================================================================

pyarrow's readers do the parsing; timestamps are read as text and checked against the
standard with one regular expression over the column, then cast. With
``ignore-parse-errors`` the fallback keeps the work vectorized in DuckDB (``TRY_CAST``,
``json_valid``) rather than decoding line by line in Python.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import PipelineError
from fluvial.stream.connectors.conform import ColumnMismatch, conform, conform_array
from fluvial.stream.connectors.options import Options

__all__ = ["FORMATS", "CsvFormat", "Format", "JsonFormat", "ParquetFormat", "make_format"]

_FRACTION = r"(\.\d{1,9})?"
_PATTERNS = {
    ("sql", False): r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}" + _FRACTION + "$",
    ("sql", True): r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}" + _FRACTION + "Z$",
    ("iso-8601", False): r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}" + _FRACTION + ")?$",
    ("iso-8601", True): r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}" + _FRACTION + ")?Z$",
}
_DISPLAY = {"sql": "yyyy-MM-dd HH:mm:ss.SSS", "iso-8601": "yyyy-MM-ddTHH:mm:ss.SSS"}


def _has_timestamp(t: pa.DataType) -> bool:
    """Whether *t* holds timestamps or dates (read as text, parsed per the standard)."""
    if pa.types.is_timestamp(t) or pa.types.is_date32(t):
        return True
    if pa.types.is_struct(t):
        return any(_has_timestamp(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t):
        return _has_timestamp(t.value_type)
    return False


def _as_text(t: pa.DataType) -> pa.DataType:
    """*t* with every timestamp and date replaced by a string (what the parsers read)."""
    if pa.types.is_timestamp(t) or pa.types.is_date32(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_as_text(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_as_text(t.value_type))
    return t


def parse_timestamps(
    array: pa.Array | pa.ChunkedArray, target: pa.DataType, standard: str, lenient: bool, what: str
) -> pa.Array | pa.ChunkedArray:
    """Text timestamps (anywhere inside *target*) parsed per *standard*, vectorized."""
    if not _has_timestamp(target):
        return array
    if isinstance(array, pa.ChunkedArray):
        chunks = [parse_timestamps(c, target, standard, lenient, what) for c in array.chunks]
        return pa.chunked_array(chunks, type=target)
    if pa.types.is_struct(target):
        children = [
            parse_timestamps(array.field(f.name), f.type, standard, lenient, f"{what}.{f.name}")
            for f in target
        ]
        mask = array.is_null() if array.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pa.types.is_list(target):
        values = parse_timestamps(array.flatten(), target.value_type, standard, lenient, what)
        offsets = pc.subtract(array.offsets, array.offsets[0])
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=mask)
    date = pa.types.is_date32(target)
    ltz = not date and target.tz is not None
    pattern = r"^\d{4}-\d{2}-\d{2}$" if date else _PATTERNS[(standard, ltz)]
    ok = pc.match_substring_regex(array, pattern)
    bad = pc.and_kleene(pc.invert(ok), pc.is_valid(array))
    if pc.any(bad).as_py():
        if not lenient:
            found = array.filter(bad)[0].as_py()
            if date:
                raise PipelineError(f"{what}: expected a date like yyyy-MM-dd, found {found!r}")
            expected = _DISPLAY[standard] + ("'Z'" if ltz else "")
            raise PipelineError(
                f"{what}: expected a timestamp like {expected} "
                f"(timestamp-format standard '{standard.upper()}'), found {found!r}"
            )
        array = pc.if_else(bad, pa.scalar(None, pa.string()), array)
    if date:
        return pc.cast(array, pa.date32())
    text = pc.replace_substring(pc.replace_substring(array, " ", "T"), "Z", "")
    naive = pc.cast(text, pa.timestamp("ns")).cast(pa.timestamp(target.unit), safe=False)
    return naive.cast(pa.timestamp(target.unit, tz=target.tz)) if ltz else naive


def format_timestamps(array: Any, standard: str) -> Any:
    """Timestamps (anywhere in *array*) as text in *standard*, milliseconds without
    trailing zeros (as Flink writes them), ``Z`` for LTZ.

    >>> format_timestamps(pa.array([1_700_000_000_280, 1_700_000_000_000], pa.timestamp("ms")), "sql").to_pylist()
    ['2023-11-14 22:13:20.28', '2023-11-14 22:13:20']
    """
    t = array.type
    if not _has_timestamp(t):
        return array
    if isinstance(array, pa.ChunkedArray):
        return pa.chunked_array([format_timestamps(c, standard) for c in array.chunks])
    if pa.types.is_date32(t):
        return pc.strftime(array, format="%Y-%m-%d")
    if pa.types.is_struct(t):
        children = [format_timestamps(array.field(f.name), standard) for f in t]
        mask = array.is_null() if array.null_count else None
        return pa.StructArray.from_arrays(children, names=[f.name for f in t], mask=mask)
    if pa.types.is_list(t):
        values = format_timestamps(array.flatten(), standard)
        offsets = pc.subtract(array.offsets, array.offsets[0])
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(offsets, values, mask=mask)
    sep = "T" if standard == "iso-8601" else " "
    # %S prints the fraction of the array's unit: use milliseconds, Flink's TIMESTAMP(3)
    ms = array.cast(pa.timestamp("ms", tz=t.tz), safe=False)
    text = pc.strftime(ms, format=f"%Y-%m-%d{sep}%H:%M:%S" + ("Z" if t.tz else ""))
    # Flink prints the fraction without trailing zeros (``…:20.28``, ``…:20``)
    text = pc.replace_substring_regex(text, pattern=r"(\.\d*[1-9])0+(Z?)$", replacement=r"\1\2")
    return pc.replace_substring_regex(text, pattern=r"\.0+(Z?)$", replacement=r"\1")


def _duck_type(t: pa.DataType) -> str:
    """The DuckDB type name of an Arrow type (timestamps already turned into text)."""
    if pa.types.is_struct(t):
        inner = ", ".join(f'"{f.name}" {_duck_type(f.type)}' for f in t)
        return f"STRUCT({inner})"
    if pa.types.is_list(t):
        return f"{_duck_type(t.value_type)}[]"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    simple = {
        pa.bool_(): "BOOLEAN",
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.string(): "VARCHAR",
        pa.date32(): "DATE",
        pa.binary(): "BLOB",
    }
    if t in simple:
        return simple[t]
    raise PipelineError(f"no DuckDB type for {t}")


def _duck(sql: str, **tables: pa.Table) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    try:
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Format(ABC):
    """A file format: decode a file into tables of *schema*, encode a table into a file."""

    name: ClassVar[str]
    extension: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, schema: pa.Schema, opts: Options) -> None:
        self.schema = schema
        self.opts = opts

    @abstractmethod
    def read(self, path: Path, offset: int, batch_rows: int) -> Iterator[pa.Table]:
        """The file's rows from row *offset* on, in tables of at most *batch_rows*."""

    @abstractmethod
    def write(self, table: pa.Table, path: Path) -> None:
        """Write *table* (of :attr:`schema`) as one file."""

    def _refuse(self, kinds: tuple[str, ...]) -> None:
        def bad(t: pa.DataType) -> str | None:
            if pa.types.is_map(t) and "MAP" in kinds:
                return "MAP"
            if pa.types.is_binary(t) and "BYTES" in kinds:
                return "BYTES"
            if pa.types.is_struct(t):
                return "ROW" if "ROW" in kinds else next((b for f in t if (b := bad(f.type))), None)
            if pa.types.is_list(t):
                return "ARRAY" if "ARRAY" in kinds else bad(t.value_type)
            return None

        for field in self.schema:
            if kind := bad(field.type):
                raise self.opts.error(
                    f"column '{field.name}': format '{self.name}' does not support {kind} "
                    "columns in Fluvial yet",
                    unsupported=True,
                )


def _slices(table: pa.Table, offset: int, batch_rows: int) -> Iterator[pa.Table]:
    for start in range(offset, table.num_rows, batch_rows):
        yield table.slice(start, batch_rows)


class JsonFormat(Format):
    """Flink's ``json`` format: newline-delimited objects."""

    name = "json"
    extension = "json"
    options = (
        "json.ignore-parse-errors",
        "json.fail-on-missing-field",
        "json.timestamp-format.standard",
    )

    def __init__(self, schema: pa.Schema, opts: Options) -> None:
        super().__init__(schema, opts)
        self.lenient = opts.flag("json.ignore-parse-errors")
        self.fail_on_missing = opts.flag("json.fail-on-missing-field")
        if self.lenient and self.fail_on_missing:
            raise opts.error(
                "'json.fail-on-missing-field' and 'json.ignore-parse-errors' cannot both be "
                "true (as in Flink)"
            )
        self.standard = opts.choice("json.timestamp-format.standard", ("sql", "iso-8601"), "SQL")
        self._refuse(("MAP", "BYTES"))
        self.text_schema = pa.schema([f.with_type(_as_text(f.type)) for f in schema])

    def read(self, path: Path, offset: int, batch_rows: int) -> Iterator[pa.Table]:
        # a whole file at once: pyarrow parses it in parallel blocks; row offsets count
        # decoded rows, so a resumed read skips exactly what was emitted
        yield from _slices(self.decode(path.read_bytes(), str(path)), offset, batch_rows)

    def decode(self, data: bytes, what: str) -> pa.Table:
        """Every row of NDJSON *data*, as :attr:`schema`."""
        import pyarrow.json as pj

        if self.fail_on_missing:
            self._check_present(data, what)
        if self.lenient:
            text = self._decode_lenient(data)
        else:
            try:
                text = pj.read_json(
                    io.BytesIO(data),
                    parse_options=pj.ParseOptions(
                        explicit_schema=self.text_schema, unexpected_field_behavior="ignore"
                    ),
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise PipelineError(
                    f"{what}: not valid JSON lines for the table's columns ({exc}); set "
                    "'json.ignore-parse-errors' = 'true' to skip bad lines and null bad fields"
                ) from exc
        return self._finish(text, what)

    def _finish(self, text: pa.Table, what: str) -> pa.Table:
        try:
            text = conform(text, self.text_schema, what=what)
        except ColumnMismatch as exc:
            raise PipelineError(str(exc)) from exc
        columns = [
            parse_timestamps(text[f.name], f.type, self.standard, self.lenient, f"{what}: {f.name}")
            for f in self.schema
        ]
        return pa.Table.from_arrays(columns, schema=self.schema)

    @staticmethod
    def _lines(data: bytes) -> pa.Table:
        lines = pa.array(data.split(b"\n"), pa.binary())
        text = pc.cast(lines, pa.string(), safe=False)
        return pa.table({"line": text})

    def _decode_lenient(self, data: bytes) -> pa.Table:
        """Bad lines dropped, bad fields null: DuckDB's JSON functions over every line."""
        select = []
        for f in self.text_schema:
            path = "'$.\"" + f.name.replace("'", "''").replace('"', '\\"') + "\"'"
            if pa.types.is_string(f.type):
                expr = f"json_extract_string(line, {path})"
            else:
                expr = f"TRY_CAST(json_extract(line, {path}) AS {_duck_type(f.type)})"
            select.append(f"{expr} AS {_quote(f.name)}")
        sql = (
            f"SELECT {', '.join(select)} FROM lines "
            "WHERE trim(line) <> '' AND json_valid(line) AND json_type(line) = 'OBJECT'"
        )
        return _duck(sql, lines=self._lines(data))

    def _check_present(self, data: bytes, what: str) -> None:
        names = ", ".join("'" + n.replace("'", "''") + "'" for n in self.schema.names)
        sql = (
            "SELECT n, list_filter([" + names + "], lambda x: NOT list_contains(k, x)) AS missing "
            "FROM (SELECT row_number() OVER () AS n, line, "
            "CASE WHEN json_valid(line) AND json_type(line) = 'OBJECT' "
            "THEN json_keys(line) END AS k FROM lines) "
            "WHERE trim(line) <> '' AND k IS NOT NULL AND len(missing) > 0 LIMIT 1"
        )
        found = _duck(sql, lines=self._lines(data)).to_pylist()
        if found:
            raise PipelineError(
                f"{what}: line {found[0]['n']} has no field '{found[0]['missing'][0]}' "
                "('json.fail-on-missing-field' = 'true')"
            )

    def write(self, table: pa.Table, path: Path) -> None:
        import polars as pl

        text = pa.table(
            [format_timestamps(table[n], self.standard) for n in table.column_names],
            names=table.column_names,
        )
        frame = pl.from_arrow(text)
        assert isinstance(frame, pl.DataFrame)
        frame.write_ndjson(path)


class CsvFormat(Format):
    """Flink's ``csv`` format: no header, fields by position."""

    name = "csv"
    extension = "csv"
    options = (
        "csv.field-delimiter",
        "csv.quote-character",
        "csv.disable-quote-character",
        "csv.null-literal",
        "csv.ignore-parse-errors",
    )

    def __init__(self, schema: pa.Schema, opts: Options) -> None:
        super().__init__(schema, opts)
        self.delimiter = opts.char("csv.field-delimiter", ",")
        self.quote: str | None = opts.char("csv.quote-character", '"')
        if opts.flag("csv.disable-quote-character"):
            self.quote = None
        self.null_literal = opts.get("csv.null-literal")
        self.lenient = opts.flag("csv.ignore-parse-errors")
        self._refuse(("ROW", "ARRAY", "MAP", "BYTES"))

    def read(self, path: Path, offset: int, batch_rows: int) -> Iterator[pa.Table]:
        yield from _slices(self.decode(path.read_bytes(), str(path)), offset, batch_rows)

    def decode(self, data: bytes, what: str) -> pa.Table:
        """Every row of CSV *data*, as :attr:`schema`."""
        import pyarrow.csv as pcsv

        names = self.schema.names
        # Flink: an empty field of a non-string column is null; the null literal (if set)
        # is null everywhere; an empty string stays an empty string
        nulls = [""] if self.null_literal is None else [self.null_literal, ""]
        if self.lenient:
            types = dict.fromkeys(names, pa.string())
        else:
            types = {f.name: _as_text(f.type) for f in self.schema}
        try:
            text = pcsv.read_csv(
                io.BytesIO(data),
                read_options=pcsv.ReadOptions(column_names=names),
                parse_options=pcsv.ParseOptions(
                    delimiter=self.delimiter,
                    quote_char=self.quote if self.quote is not None else False,
                    invalid_row_handler=(lambda row: "skip") if self.lenient else None,
                ),
                convert_options=pcsv.ConvertOptions(
                    column_types=types,
                    null_values=nulls,
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            raise PipelineError(
                f"{what}: not valid CSV for the table's columns ({exc}); set "
                "'csv.ignore-parse-errors' = 'true' to skip bad rows and null bad fields"
            ) from exc
        text = self._nulls(text)
        if self.lenient:
            text = self._try_cast(text)
        columns = [
            parse_timestamps(text[f.name], f.type, "sql", self.lenient, f"{what}: {f.name}")
            for f in self.schema
        ]
        return pa.Table.from_arrays(columns, schema=self.schema)

    def _nulls(self, text: pa.Table) -> pa.Table:
        """Text columns (strings, and timestamps before parsing) with their nulls marked."""
        for i, name in enumerate(text.column_names):
            col = text[name]
            if not pa.types.is_string(col.type):
                continue
            marks = [] if pa.types.is_string(self.schema.field(name).type) else [""]
            if self.null_literal is not None:
                marks.append(self.null_literal)
            if marks:
                null = pc.is_in(col, value_set=pa.array(marks))
                col = pc.if_else(null, pa.scalar(None, pa.string()), col)
                text = text.set_column(i, name, col)
        return text

    def _try_cast(self, text: pa.Table) -> pa.Table:
        """Text columns to their types, null where a field does not parse (DuckDB)."""
        select = []
        for f in self.schema:
            t = _as_text(f.type)
            col = _quote(f.name)
            if pa.types.is_string(t):
                select.append(col)
            else:
                select.append(f"TRY_CAST(trim({col}) AS {_duck_type(t)}) AS {col}")
        out = _duck(f"SELECT {', '.join(select)} FROM text", text=text)
        return pa.Table.from_arrays(
            [conform_array(out[f.name], _as_text(f.type), f.name) for f in self.schema],
            names=self.schema.names,
        )

    def write(self, table: pa.Table, path: Path) -> None:
        import pyarrow.csv as pcsv

        columns = []
        for name in table.column_names:
            col = format_timestamps(table[name], "sql")
            if pa.types.is_boolean(col.type):  # Flink writes true/false
                col = pc.if_else(col, "true", "false")
            if self.null_literal is not None:
                col = pc.fill_null(pc.cast(col, pa.string()), self.null_literal)
            columns.append(col)
        pcsv.write_csv(
            pa.table(columns, names=table.column_names),
            path,
            write_options=pcsv.WriteOptions(
                include_header=False,
                delimiter=self.delimiter,
                quoting_style="needed" if self.quote is not None else "none",
            ),
        )


class ParquetFormat(Format):
    """Parquet, columns by name."""

    name = "parquet"
    extension = "parquet"

    def read(self, path: Path, offset: int, batch_rows: int) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise PipelineError(f"{path}: not a Parquet file ({exc})") from exc
        names = [n for n in self.schema.names if n in file.schema_arrow.names]
        seen = 0
        with file:
            for batch in file.iter_batches(batch_size=batch_rows, columns=names):
                end = seen + batch.num_rows
                if end > offset:
                    table = pa.Table.from_batches([batch]).slice(max(0, offset - seen))
                    try:
                        yield conform(table, self.schema, what=str(path))
                    except ColumnMismatch as exc:
                        raise PipelineError(str(exc)) from exc
                seen = end

    def write(self, table: pa.Table, path: Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(table, path)


FORMATS: dict[str, type[Format]] = {f.name: f for f in (JsonFormat, CsvFormat, ParquetFormat)}


def make_format(schema: pa.Schema, opts: Options) -> Format:
    """The table's ``'format'``, configured from its options."""
    name = opts.choice("format", tuple(FORMATS), opts.require("format"))
    chosen = FORMATS[name]
    for option in opts.values:
        if option.split(".")[0] in FORMATS and option not in chosen.options:
            raise opts.error(
                f"option '{option}' does not apply to format '{name}'"
                + (f"; its options are {', '.join(chosen.options)}" if chosen.options else "")
            )
    return chosen(schema, opts)
