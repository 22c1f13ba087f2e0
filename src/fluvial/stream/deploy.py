"""A pipeline file as Apache Flink SQL: the same job, with Flink's connectors.

:func:`to_flink` parses a pipeline with Fluvial's front end and rewrites only what Flink
cannot take as written: the ``WITH (…)`` options of each ``CREATE TABLE``, edited in the
text at the parser's positions, so everything else — columns, watermarks, views, queries,
comments inside a statement — reaches Flink exactly as the user wrote it.

==========================  ===================================================================
Fluvial                     on Flink
==========================  ===================================================================
``filesystem``              ``filesystem``, same options (a relative ``'path'`` is made
                            absolute against the project)
``print``, ``blackhole``    the same
``fluvial`` (a topic)       ``kafka`` (JSON values, as Fluvial's Kafka log writes them); a
                            table with a ``PRIMARY KEY`` becomes ``upsert-kafka``. Needs the
                            project's ``[log] backend = "kafka"``: Flink cannot read the
                            embedded log
``store``, ``lake``         refused by name (no Flink mapping yet)
Flink-only connectors       passed as written, with a warning (``kafka``, ``jdbc``…)
``'fluvial.*'`` options     dropped, with a warning saying what changes
``SET 'fluvial.*'``         dropped, with a warning; every other ``SET`` passes
==========================  ===================================================================

The job's ``INSERT`` statements run as one Flink job (a statement set), as on Fluvial.

>>> job = to_flink('''
... CREATE TABLE src (a INT) WITH ('connector' = 'filesystem', 'path' = '/in', 'format' = 'json',
...   'fluvial.allowed-lateness' = '1 min');
... CREATE TABLE out (a INT) WITH ('connector' = 'blackhole');
... INSERT INTO out SELECT a FROM src WHERE a > 1;''')
>>> print(job.statements[0])
CREATE TABLE src (a INT) WITH (
  'connector' = 'filesystem',
  'path' = '/in',
  'format' = 'json'
)
>>> job.warnings[0].startswith("table 'src': dropped 'fluvial.allowed-lateness'")
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from fluvial.errors import SqlError, UnsupportedSqlError, did_you_mean
from fluvial.stream.sql import parse_script
from fluvial.stream.sql.ast import CreateTable, CreateView, Insert, Script, SetOption, Statement
from fluvial.stream.sql.dialect import Flink

if TYPE_CHECKING:
    from fluvial.config import KafkaSettings
    from fluvial.project import Project

__all__ = ["FlinkJob", "set_sql", "to_flink"]

#: Fluvial connectors Flink runs under the same name, with the same options
SAME_ON_FLINK = ("filesystem", "print", "blackhole")
#: Fluvial connectors with no Flink counterpart yet: refused by name, with the reason
NOT_ON_FLINK = {
    "store": "the operational store has no Flink sink yet; write to a 'fluvial' topic instead",
    "lake": "the lake's Iceberg tables have no Flink mapping in Fluvial yet",
    "nexmark": "Flink's nexmark source needs the Nexmark benchmark's jar; use the same events "
    "from files (filesystem connector) instead",
}
#: what Flink does differently once a Fluvial table option is dropped
FLUVIAL_OPTION_EFFECTS = {
    "fluvial.allowed-lateness": "Flink drops late rows instead of updating fired windows",
    "fluvial.late-events.topic": "Flink drops late rows without writing them to a side output",
}
#: a topic's system columns and the Kafka metadata key Flink reads them from
SYSTEM_METADATA = {"_partition": "partition", "_offset": "offset", "_timestamp": "timestamp"}
#: Fluvial's Kafka log writes timestamps as ISO-8601 (``…T10:00:00.123``, ``Z`` for UTC)
KAFKA_JSON = {"json.timestamp-format.standard": "ISO-8601"}
#: brokers cap transactions at 15 minutes by default; Flink's producer asks for an hour
KAFKA_TRANSACTION_TIMEOUT_MS = "900000"
#: session configuration every deployed job gets (Fluvial's semantics: a UTC session)
BASE_CONFIG = {"table.local-time-zone": "UTC"}
#: [stream] keys of fluvial.toml that mean the same on Flink (parallelism does not: threads)
STREAM_DEFAULTS = ("execution.checkpointing.interval", "table.exec.source.idle-timeout")


@dataclass(frozen=True)
class FlinkJob:
    """A pipeline translated to Flink SQL.

    ``statements`` are in execution order — ``SET``, ``CREATE TABLE`` and ``CREATE VIEW``
    as in the file, then the ``INSERT`` statements (one job: a statement set) — each
    without its ``;``. ``config`` is the session configuration to apply first (the
    project's defaults; the file's own ``SET`` wins). ``bounded``: every table the job
    reads ends (files), so the job finishes.
    """

    name: str
    statements: tuple[str, ...]
    config: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    bounded: bool = False
    connectors: Mapping[str, str] = field(default_factory=dict)

    @property
    def inserts(self) -> tuple[str, ...]:
        """The ``INSERT`` statements (the job's statement set)."""
        return tuple(s for s in self.statements if _is_insert(s))

    def config_statements(self) -> list[str]:
        """:attr:`config` as ``SET`` statements."""
        return [set_sql(k, v) for k, v in self.config.items()]

    def submission(self) -> list[str]:
        """What a SQL client submits, in order: ``SET`` and DDL one by one, then the
        ``INSERT`` statements as one ``EXECUTE STATEMENT SET`` (one job) when several."""
        plain = [s for s in self.statements if not _is_insert(s)]
        inserts = self.inserts
        if len(inserts) > 1:
            body = "".join(f"{s};\n" for s in inserts)
            return [*plain, f"EXECUTE STATEMENT SET\nBEGIN\n{body}END"]
        return [*plain, *inserts]

    @property
    def sql(self) -> str:
        """The whole job as one Flink SQL script (``sql-client.sh -f`` runs it)."""
        out = [f"-- {self.name}: translated by `fluvial stream deploy`\n"]
        previous_set = False
        for statement in [*self.config_statements(), *self.submission()]:
            is_set = statement.startswith("SET ")
            if len(out) > 1 and not (is_set and previous_set):
                out.append("\n")
            out.append(f"{statement};\n")
            previous_set = is_set
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``--json``)."""
        return {
            "job": self.name,
            "bounded": self.bounded,
            "config": dict(self.config),
            "connectors": dict(self.connectors),
            "statements": list(self.statements),
            "warnings": list(self.warnings),
            "sql": self.sql,
        }


def set_sql(key: str, value: str) -> str:
    """``SET 'key' = 'value'`` with quotes doubled.

    >>> set_sql("pipeline.name", "it's")
    "SET 'pipeline.name' = 'it''s'"
    """
    return f"SET {_quote(key)} = {_quote(value)}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_insert(statement: str) -> bool:
    return statement.lstrip()[:6].upper() == "INSERT"


def to_flink(
    script_text: str, project: Project | None = None, *, source: str = "", name: str | None = None
) -> FlinkJob:
    """Translate a pipeline file's text to a :class:`FlinkJob`.

    *project* supplies the Kafka settings (for ``'connector' = 'fluvial'`` tables), the
    root that relative paths are resolved against, and the defaults of ``[stream]`` and
    ``[flink]``; without one, defaults apply and topics are refused. *source* names the
    file in messages; the job is named *name*, else after *source*'s stem.

    Raises:
        SqlError: the pipeline does not parse (with line and column).
        UnsupportedSqlError: a table Flink cannot run as Fluvial does (a topic on the
            embedded log, ``store``, ``lake``, an unknown connector), naming the table.
    """
    script = parse_script(script_text, source=source)
    job_name = name or (Path(source).stem if source else "pipeline")
    spans = _statement_tokens(script_text, script)
    written = {ins.table for ins in script.inserts}
    read = _tables_read(script)
    translator = _Translator(script_text, script, project, job_name, written, read)
    plain: list[str] = []
    inserts: list[str] = []
    for statement, tokens in zip(script.statements, spans, strict=True):
        text = translator.statement(statement, tokens)
        if text is not None:
            (inserts if isinstance(statement, Insert) else plain).append(text)
    config = dict(BASE_CONFIG)
    if project is not None:
        defaults = project.settings.stream.flink_options()
        config.update({k: v for k, v in defaults.items() if k in STREAM_DEFAULTS})
        if project.settings.flink.parallelism > 0:
            config["parallelism.default"] = str(project.settings.flink.parallelism)
    config["pipeline.name"] = job_name
    for key in script.settings:  # the file's own SET wins: no default to override
        config.pop(key, None)
    bounded = bool(read) and all(translator.bounded(t) for t in read if t in script.tables)
    return FlinkJob(
        name=job_name,
        statements=(*plain, *inserts),
        config=config,
        warnings=tuple(translator.warnings),
        bounded=bounded,
        connectors=translator.connectors,
    )


# -- where statements are in the text -----------------------------------------------------

_DEPTH = {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}


def _statement_tokens(text: str, script: Script) -> list[list[Token]]:
    """Each statement's tokens, from the token at its parsed position to its ``;``."""
    tokens = Flink().tokenize(text)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    index = {t.start: i for i, t in enumerate(tokens)}
    out: list[list[Token]] = []
    for st in script.statements:
        assert st.position is not None, "the parser positions every statement"
        first = index[line_starts[st.position.line - 1] + st.position.column - 1]
        depth, end = 0, first
        while end < len(tokens):
            if depth == 0 and tokens[end].token_type == TokenType.SEMICOLON:
                break
            depth += _DEPTH.get(tokens[end].token_type, 0)
            end += 1
        out.append(tokens[first:end])
    return out


def _tables_read(script: Script) -> set[str]:
    """Tables named in a query (of an INSERT or a view), views resolved."""
    names: set[str] = set()
    queries = [s.query for s in script.statements if isinstance(s, Insert | CreateView)]
    for query in queries:
        for table in query.find_all(exp.Table):
            names.add(".".join(p.name for p in table.parts))
    return {n for n in names if n not in script.views}


# -- rewriting ------------------------------------------------------------------------------


class _Translator:
    """Rewrites one script's statements; collects warnings and each table's connector."""

    def __init__(
        self,
        text: str,
        script: Script,
        project: Project | None,
        job_name: str,
        written: set[str],
        read: set[str],
    ) -> None:
        self.text = text
        self.script = script
        self.project = project
        self.job_name = job_name
        self.written = written
        self.read = read
        self.warnings: list[str] = []
        self.connectors: dict[str, str] = {}
        self._options: dict[str, dict[str, str]] = {}

    def error(self, table: CreateTable, message: str) -> SqlError:
        pos = table.position
        return UnsupportedSqlError(
            f"table '{table.name}': {message}",
            line=pos.line if pos else None,
            column=pos.column if pos else None,
            source=self.script.source,
        )

    def statement(self, statement: Statement, tokens: list[Token]) -> str | None:
        original = self.text[tokens[0].start : tokens[-1].end + 1]
        if isinstance(statement, SetOption):
            if statement.key.startswith("fluvial."):
                self.warnings.append(f"dropped SET '{statement.key}' (Fluvial's own setting)")
                return None
            return set_sql(statement.key, statement.value)
        if isinstance(statement, CreateTable):
            return self.create_table(statement, tokens)
        return original

    # CREATE TABLE

    def create_table(self, table: CreateTable, tokens: list[Token]) -> str:
        options, columns = self.options(table)
        self._options[table.name] = options
        self.connectors[table.name] = options.get("connector", "")
        edits: list[tuple[int, int, str]] = []
        if options != table.options:
            start, end = _with_clause(tokens)
            edits.append((start, end, _render_with(self.text[start:end], options)))
        for column, key in columns.items():
            at = _after_column_type(self.text, tokens, table, column)
            edits.append((at, at, f" METADATA FROM {_quote(key)} VIRTUAL"))
        out = self.text[tokens[0].start : tokens[-1].end + 1]
        base = tokens[0].start
        for start, end, replacement in sorted(edits, reverse=True):
            out = out[: start - base] + replacement + out[end - base :]
        return out

    def options(self, table: CreateTable) -> tuple[dict[str, str], dict[str, str]]:
        """The table's Flink options, and the columns to declare as Kafka metadata."""
        connector = table.options.get("connector")
        if connector is None:
            raise self.error(table, "no 'connector' option")
        if connector in NOT_ON_FLINK:
            raise self.error(
                table,
                f"connector '{connector}' cannot be deployed to Flink: {NOT_ON_FLINK[connector]}",
            )
        kept: dict[str, str] = {}
        for key, value in table.options.items():
            if key.startswith("fluvial."):
                effect = FLUVIAL_OPTION_EFFECTS.get(key, "Flink has no such option")
                self.warnings.append(
                    f"table '{table.name}': dropped '{key}' = '{value}' (Fluvial's own; {effect})"
                )
            else:
                kept[key] = value
        if connector == "fluvial":
            return self.topic(table, kept)
        if connector in SAME_ON_FLINK:
            self.validate(table)
            if connector == "filesystem":
                kept["path"] = self.absolute(kept.get("path", ""))
            return kept, {}
        from fluvial.stream.connectors.registry import FLINK_ONLY

        if connector in FLINK_ONLY:
            self.warnings.append(
                f"table '{table.name}': connector '{connector}' passed to Flink as written "
                "(Fluvial itself does not run it)"
            )
            return kept, {}
        known = sorted({*SAME_ON_FLINK, "fluvial", *FLINK_ONLY})
        raise self.error(
            table,
            f"unknown connector '{connector}'{did_you_mean(connector, known)}; expected one "
            f"of {', '.join(known)}",
        )

    def validate(self, table: CreateTable) -> None:
        """The options Fluvial would accept (unknown names, missing ones), as `run` checks."""
        from fluvial.stream.connectors.registry import connector_class

        roles = [
            role
            for role, used in (
                ("source", table.name in self.read),
                ("sink", table.name in self.written),
            )
            if used
        ]
        for role in roles:
            try:
                connector_class(table, role)  # type: ignore[arg-type]
            except SqlError as exc:
                raise SqlError(
                    exc.detail, line=exc.line, column=exc.column, source=self.script.source
                ) from exc

    def absolute(self, path: str) -> str:
        if not path or "://" in path or Path(path).is_absolute() or self.project is None:
            return path
        return str(self.project.root / path)

    def topic(
        self, table: CreateTable, options: dict[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """A ``fluvial`` topic as Flink's ``kafka`` / ``upsert-kafka`` connector."""
        settings = self.project.settings if self.project is not None else None
        backend = settings.log.backend if settings is not None else "embedded"
        if backend != "kafka":
            raise self.error(
                table,
                f"'connector' = 'fluvial' reads the project's {backend} event log, which "
                'Apache Flink cannot read; deploy with [log] backend = "kafka" in '
                "fluvial.toml (Flink then reads the same Kafka topic)",
            )
        assert settings is not None
        self.validate(table)
        kafka: KafkaSettings = settings.kafka
        topic = options["topic"]
        is_read, is_written = table.name in self.read, table.name in self.written
        common = {"topic": topic, "properties.bootstrap.servers": kafka.bootstrap_servers}
        out: dict[str, str]
        if table.primary_key:
            out = {"connector": "upsert-kafka", **common}
            out.update(_prefixed("key", "json") | _prefixed("value", "json"))
            if is_read and "scan.startup.mode" in options:
                self.warnings.append(
                    f"table '{table.name}': 'upsert-kafka' always reads from the earliest "
                    f"offset; 'scan.startup.mode' = '{options['scan.startup.mode']}' dropped"
                )
        else:
            out = {"connector": "kafka", **common}
            if is_read or not is_written:
                mode = options.get("scan.startup.mode", "earliest-offset")
                out["scan.startup.mode"] = mode
                if mode == "timestamp":
                    out["scan.startup.timestamp-millis"] = options["scan.startup.timestamp-millis"]
            if "key.fields" in options:
                out["key.fields"] = options["key.fields"]
                out.update(_prefixed("key", "json") | _prefixed("value", "json"))
                out["value.fields-include"] = "ALL"
            else:
                out.update({"format": "json", **KAFKA_JSON})
        if is_written:
            # Fluvial's topic sink is exactly-once: so is Flink's, with Kafka transactions
            prefix = options.get("sink.transactional-id-prefix") or f"fluvial-{self.job_name}"
            out["sink.delivery-guarantee"] = "exactly-once"
            out["sink.transactional-id-prefix"] = f"{prefix}-{table.name}"
            out["properties.transaction.timeout.ms"] = KAFKA_TRANSACTION_TIMEOUT_MS
        if "scan.watermark.idle-timeout" in options:
            out["scan.watermark.idle-timeout"] = options["scan.watermark.idle-timeout"]
        columns: dict[str, str] = {}
        if not is_written:
            for col in table.physical:
                if col.name in SYSTEM_METADATA:
                    columns[col.name] = SYSTEM_METADATA[col.name]
        return out, columns

    def bounded(self, name: str) -> bool:
        """Whether Flink's source for table *name* ends."""
        options = self._options.get(name, {})
        connector = options.get("connector")
        if connector == "filesystem":
            return "source.monitor-interval" not in options
        if connector in ("kafka", "upsert-kafka"):
            return options.get("scan.bounded.mode", "unbounded") != "unbounded"
        if connector == "datagen":
            return "number-of-rows" in options
        return False


def _prefixed(role: str, fmt: str) -> dict[str, str]:
    """``'<role>.format'`` and that format's timestamp standard, for a key or a value."""
    return {f"{role}.format": fmt} | {f"{role}.{k}": v for k, v in KAFKA_JSON.items()}


def _with_clause(tokens: Sequence[Token]) -> tuple[int, int]:
    """Text offsets ``[start, end)`` of ``WITH (…)`` in a CREATE TABLE's tokens."""
    depth = 0
    for i, tok in enumerate(tokens):
        if (
            depth == 0
            and tok.token_type == TokenType.WITH
            and i + 1 < len(tokens)
            and tokens[i + 1].token_type == TokenType.L_PAREN
        ):
            inner = 0
            for close in range(i + 1, len(tokens)):
                inner += _DEPTH.get(tokens[close].token_type, 0)
                if inner == 0:
                    return tok.start, tokens[close].end + 1
        depth += _DEPTH.get(tok.token_type, 0)
    # no WITH clause: the options go at the end of the statement
    end = tokens[-1].end + 1
    return end, end


def _render_with(original: str, options: Mapping[str, str]) -> str:
    """``WITH (…)`` for *options*, laid out like *original*: one line, or one option per
    line with its indentation."""
    pairs = [f"{_quote(k)} = {_quote(v)}" for k, v in options.items()]
    lead = " " if not original else ""
    if "\n" not in original:
        return f"{lead}WITH ({', '.join(pairs)})"
    lines = original.split("\n")
    indent = next(
        (ln[: len(ln) - len(ln.lstrip())] for ln in lines[1:] if ln.strip() not in ("", ")")),
        "  ",
    )
    last = lines[-1]
    close = last[: len(last) - len(last.lstrip())] if last.strip() == ")" else ""
    return "WITH (\n" + ",\n".join(indent + p for p in pairs) + f"\n{close})"


def _after_column_type(text: str, tokens: Sequence[Token], table: CreateTable, name: str) -> int:
    """The text offset just after column *name*'s type (and NOT NULL) in the DDL."""
    column = next(c for c in table.columns if c.name == name)
    assert column.position is not None
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    offset = line_starts[column.position.line - 1] + column.position.column - 1
    i = next(k for k, t in enumerate(tokens) if t.start == offset)
    depth, last = 0, i
    for k in range(i + 1, len(tokens)):
        tok = tokens[k]
        t = tok.token_type
        if depth == 0 and (
            t in (TokenType.COMMA, TokenType.R_PAREN)
            or (tok.text.upper().split() or [""])[0] in ("COMMENT", "PRIMARY")
        ):
            break
        depth += {**_DEPTH, TokenType.LT: 1, TokenType.GT: -1}.get(t, 0)
        last = k
    return tokens[last].end + 1
