"""Plan a pipeline script: every ``INSERT INTO … SELECT`` becomes a :class:`Pipeline`.

Views (and ``WITH`` clauses) are inlined; each ``SELECT`` becomes a stateless
:class:`Calc` or, when it groups by a window (a window TVF's ``window_start,
window_end``, or a legacy ``GROUP BY TUMBLE(ts, …)``), a :class:`WindowAgg`. Column
names are resolved against each relation, so a typo is an error at its line and column.
Valid Flink SQL that Fluvial cannot run yet (joins, OVER, MATCH_RECOGNIZE, updating
aggregations) is refused by name with :class:`UnsupportedSqlError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlglot import exp

from fluvial.errors import SqlError, UnsupportedSqlError, did_you_mean
from fluvial.stream.connectors.options import Options
from fluvial.stream.ops.spec import AggFunc, AggSpec, WindowSpec
from fluvial.stream.plan.carry import carry_job
from fluvial.stream.plan.fuse import fuse_job
from fluvial.stream.plan.nodes import (
    BATCH,
    Calc,
    Chain,
    Dedup,
    GroupAgg,
    Job,
    Join,
    JoinSpec,
    LookupJoin,
    Pipeline,
    PyStep,
    PyWindow,
    Scan,
    SinkNode,
    Source,
    Step,
    TopN,
    Union,
    WindowAgg,
    WindowBuffer,
    is_updating,
)
from fluvial.stream.plan.scan_fuse import fuse_scan_job
from fluvial.stream.sql import interval_ms, to_duckdb
from fluvial.stream.sql.ast import CreateTable, Insert, Script, WindowTVF

__all__ = ["build_job", "output_name", "plan_scan", "select_sql"]

WINDOW_COLUMNS = ("window_start", "window_end", "window_time")
#: legacy group-window auxiliary functions -> the window column they stand for
LEGACY_AUX = {"START": "window_start", "END": "window_end", "ROWTIME": "window_time"}
LEGACY_WINDOWS = ("TUMBLE", "HOP", "SESSION")
IDLE_TIMEOUT_KEYS = ("scan.watermark.idle-timeout", "table.exec.source.idle-timeout")
WATERMARK_INTERVAL_KEY = "pipeline.auto-watermark-interval"
#: Flink's idle state retention: applies to unbounded operators (windows clean by watermark)
STATE_TTL_KEY = "table.exec.state.ttl"
#: Fluvial's table options (extensions of Flink's): on a source table with a WATERMARK
LATENESS_OPTION = "fluvial.allowed-lateness"
LATE_TOPIC_OPTION = "fluvial.late-events.topic"


#: plan rewrites applied in order after planning (each one function, one module)
PASSES: tuple[Callable[[Job], Job], ...] = (fuse_job, fuse_scan_job, carry_job)


def plan_scan(table: CreateTable) -> Scan:
    """The Scan of one source table (computed columns, watermark) on its own."""
    scan = _Planner(Script((table,))).scan(table).scan
    assert isinstance(scan, Scan)
    return scan


def build_job(
    script: Script, name: str | None = None, defaults: Mapping[str, str] | None = None
) -> Job:
    """Plan every INSERT of *script* (raises :class:`SqlError` at the offending place).

    *defaults* are configuration keys the script's ``SET`` statements override.
    """
    settings = {**(defaults or {}), **script.settings}
    planner = _Planner(script, settings)
    inserts = script.inserts
    if not inserts:
        raise SqlError(
            "the script has no INSERT INTO statement: nothing to run", source=script.source
        )
    job_name = name or (Path(script.source).stem if script.source else "pipeline")
    pipelines = tuple(planner.pipeline(ins, f"{job_name}.{i}") for i, ins in enumerate(inserts))
    job = Job(job_name, pipelines, settings)
    for rewrite in PASSES:
        job = rewrite(job)
    return job


# --------------------------------------------------------------------------- helpers


def _where(node: exp.Expr | None) -> tuple[int | None, int | None]:
    """Line and start column of *node* (sqlglot keeps positions on identifiers)."""
    if node is None:
        return None, None
    for n in (node, *node.find_all(exp.Identifier)):
        meta = n.meta if isinstance(n, exp.Expression) else {}
        if meta and "line" in meta:
            col = meta.get("col")
            if col is not None and "start" in meta and "end" in meta:
                col = col - (meta["end"] - meta["start"])
            return meta["line"], col
    return None, None


def _fname(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    if isinstance(node, exp.Func):
        return node.sql_name().upper()
    return ""


def _args(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    return [a for a in node.args.values() if isinstance(a, exp.Expression)]


def _unqualified(node: exp.Expr) -> exp.Expression:
    """A copy with table qualifiers removed: every step reads one relation, ``batch``.

    ``page.url`` where ``page`` is a ROW column is a field access, kept as it is (DuckDB
    reads ``page.url`` of a struct column the same way)."""
    copy = node.copy()
    assert isinstance(copy, exp.Expression)
    for col in list(copy.find_all(exp.Column)):
        if col.meta.get("row_field"):
            continue
        col.set("table", None)
        col.set("db", None)
        col.set("catalog", None)
    return copy


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def output_name(node: exp.Expression, i: int) -> str:
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Column):
        return node.name
    return f"EXPR${i}"


AGG_FUNCS: dict[type[exp.Expr], AggFunc] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
}
UNSUPPORTED_AGGS = (exp.AggFunc,)


@dataclass
class _Rel:
    """A planned relation: its scan, steps so far and output columns."""

    scan: Source
    steps: list[Step]
    columns: tuple[str, ...]
    rowtime: str | None
    aliases: set[str] = field(default_factory=set)
    #: a window TVF not yet consumed by a GROUP BY: (spec, time column)
    window: tuple[WindowSpec, str] | None = None
    #: over a join: alias -> {input column -> output column}
    scope: dict[str, dict[str, str]] = field(default_factory=dict)
    #: processing-time attributes (``PROCTIME()`` columns)
    proctime: set[str] = field(default_factory=set)
    #: columns holding a fired window's bounds (output -> window_start | window_end | …)
    window_props: dict[str, str] = field(default_factory=dict)
    #: the source itself emits updates (an outer regular join)
    updating: bool = False


# --------------------------------------------------------------------------- planner


class _Planner:
    def __init__(self, script: Script, settings: Mapping[str, str] | None = None) -> None:
        self.script = script
        self.tables = script.tables
        self.views = {name: v.query for name, v in script.views.items()}
        self.settings = dict(script.settings if settings is None else settings)
        interval = self.settings.get(WATERMARK_INTERVAL_KEY)
        try:
            self.row_watermarks = interval is not None and parse_duration_ms(interval) == 0
        except SqlError as exc:
            raise SqlError(
                f"SET '{WATERMARK_INTERVAL_KEY}': {exc.detail}", source=script.source
            ) from exc

    def duration(self, table: CreateTable, option: str, value: str | None) -> int:
        if not value:
            return 0
        try:
            return parse_duration_ms(value)
        except SqlError as exc:
            raise Options(table).error(f"option '{option}': {exc.detail}") from exc

    # errors ----------------------------------------------------------------
    def error(self, message: str, node: exp.Expr | None = None) -> SqlError:
        line, col = _where(node)
        return SqlError(message, line=line, column=col, source=self.script.source)

    def unsupported(self, what: str, node: exp.Expr | None = None) -> SqlError:
        line, col = _where(node)
        return UnsupportedSqlError(
            f"{what} is not supported yet", line=line, column=col, source=self.script.source
        )

    # pipelines -------------------------------------------------------------
    def pipeline(self, insert: Insert, name: str) -> Pipeline:
        line = insert.position.line if insert.position else None
        col = insert.position.column if insert.position else None
        sink_table = self.tables.get(insert.table)
        if sink_table is None:
            known = list(self.tables)
            raise SqlError(
                f"INSERT INTO unknown table '{insert.table}'{did_you_mean(insert.table, known)}",
                line=line,
                column=col,
                source=self.script.source,
            )
        rel = self.query(insert.query, {})
        if rel.window is not None:
            raise self.unsupported(
                "a window TVF without GROUP BY window_start, window_end", insert.query
            )
        physical = [c.name for c in sink_table.physical]
        targets = list(insert.columns) or physical
        for t in targets:
            if t not in physical:
                raise SqlError(
                    f"table '{sink_table.name}' has no column '{t}'{did_you_mean(t, physical)}",
                    line=line,
                    column=col,
                    source=self.script.source,
                )
        if len(targets) != len(rel.columns):
            raise SqlError(
                f"INSERT INTO {sink_table.name}: the query produces {len(rel.columns)} "
                f"columns ({', '.join(rel.columns)}) but the sink expects {len(targets)} "
                f"({', '.join(targets)})",
                line=line,
                column=col,
                source=self.script.source,
            )
        updating = rel.updating or any(is_updating(st) for st in rel.steps)
        if updating:
            self.check_updates(sink_table, rel, insert)
        return Pipeline(
            name,
            rel.scan,
            tuple(rel.steps),
            SinkNode(sink_table, tuple(targets)),
            line,
            updating=updating,
        )

    def check_updates(self, sink: CreateTable, rel: _Rel, insert: Insert) -> None:
        """An append-only sink refuses an updating result, as Flink does."""
        from fluvial.stream.connectors.registry import connector_class

        cls = connector_class(sink, "sink")
        if getattr(cls, "accepts_updates", False):
            return
        step = next((st for st in rel.steps if is_updating(st)), None)
        if step is None:
            how = rel.scan.spec.how.upper() if isinstance(rel.scan, Join) else "?"
            node = f"Join(joinType=[{how}])"
        elif isinstance(step, GroupAgg):
            node = f"GroupAggregate(groupBy=[{', '.join(step.keys)}])"
        else:
            assert isinstance(step, WindowAgg)
            node = (
                f"WindowAggregate(window=[{step.spec.kind.upper()}], allowed lateness "
                f"{step.allowed_lateness_ms} ms from '{LATENESS_OPTION}' of "
                f"'{rel.scan.table.name if isinstance(rel.scan, Scan) else '?'}')"
            )
        pos = insert.position
        raise SqlError(
            f"Table sink '{sink.name}' doesn't support consuming update changes which is "
            f"produced by node {node}; write to a sink that accepts updates "
            "(connector 'store', 'print' or 'blackhole')",
            line=pos.line if pos else None,
            column=pos.column if pos else None,
            source=self.script.source,
        )

    # relations -------------------------------------------------------------
    def query(self, q: exp.Expr, ctes: dict[str, exp.Expr]) -> _Rel:
        if isinstance(q, exp.Subquery):
            return self.query(q.this, ctes)
        if isinstance(q, exp.Union):
            return self.union(q, ctes)
        if isinstance(q, exp.SetOperation):
            raise self.unsupported(f"{q.key.upper()} of queries", q)
        if not isinstance(q, exp.Select):
            raise self.unsupported(f"a {q.key.upper()} query", q)
        self.refuse(q)
        with_ = q.args.get("with") or q.args.get("with_")
        if with_ is not None:
            ctes = dict(ctes)
            for cte in with_.expressions:
                ctes[cte.alias] = cte.this
        from_ = q.args.get("from") or q.args.get("from_")
        if from_ is None:
            raise self.unsupported("a SELECT without FROM", q)
        ranked = self.rank(q, from_.this, ctes)
        if ranked is not None:
            return ranked
        joins = q.args.get("joins")
        if joins:
            rel, q = self.join_relation(q, from_.this, list(joins), ctes)
        else:
            rel = self.relation(from_.this, ctes)
        group = q.args.get("group")
        has_agg = any(
            isinstance(n, exp.AggFunc) for e in q.expressions for n in e.find_all(exp.AggFunc)
        )
        if rel.window is not None:
            if group is None:  # the TVF's rows, each with its window columns
                return self.calc(q, self.tvf_rows(rel))
            return self.window_agg(q, rel, rel.window[0], rel.window[1], legacy=False)
        if group is not None:
            legacy = [g for g in group.expressions if _fname(g) in LEGACY_WINDOWS]
            if not legacy:
                if self.cascades(group, rel):
                    return self.cascade_agg(q, rel)
                return self.window_agg(q, rel, None, None, legacy=False)
            if len(legacy) > 1:
                raise self.error("GROUP BY may contain only one group window", legacy[1])
            spec, time_col = self.legacy_spec(legacy[0], rel)
            return self.window_agg(q, rel, spec, time_col, legacy=True)
        if has_agg or q.args.get("having") is not None:  # a global aggregate: one group
            return self.window_agg(q, rel, None, None, legacy=False)
        return self.calc(q, rel)

    # joins and unions -------------------------------------------------------
    def cascades(self, group: exp.Expression, rel: _Rel) -> bool:
        """GROUP BY the window bounds of a window aggregation's result: every group is
        complete in the batch its window fired in (a cascaded window aggregation)."""
        props = {
            rel.window_props.get(g.name) for g in group.expressions if isinstance(g, exp.Column)
        }
        stateful = [st for st in rel.steps if not isinstance(st, Calc)]
        return (
            {"window_start", "window_end"} <= props
            and bool(stateful)
            and isinstance(stateful[-1], WindowAgg)
            and not any(is_updating(st) for st in rel.steps)
        )

    def cascade_agg(self, q: exp.Select, rel: _Rel) -> _Rel:
        """A cascaded window aggregation: one stateless GROUP BY over each fired batch."""
        items = self.expand(q, rel)
        for e in items:
            self.check_columns(e, rel)
        names = self.names(items)
        where, group, having = q.args.get("where"), q.args["group"], q.args.get("having")
        sql = select_sql(items, names, where.this if where is not None else None)
        keys = ", ".join(to_duckdb(_unqualified(g)) for g in group.expressions)
        sql += f" GROUP BY {keys}"
        if having is not None:
            sql += f" HAVING {to_duckdb(_unqualified(having.this))}"
        detail = _flink_detail(items, where.this if where is not None else None)
        step = Calc(sql, tuple(names), "WindowAggregate(cascaded)", f"groupBy=[{keys}], {detail}")
        out = _Rel(rel.scan, [*rel.steps, step], tuple(names), None)
        for e, n in zip(items, names, strict=True):
            inner = e.this if isinstance(e, exp.Alias) else e
            if isinstance(inner, exp.Column) and inner.name in rel.window_props:
                out.window_props[n] = rel.window_props[inner.name]
        return out

    def tvf_rows(self, rel: _Rel) -> _Rel:
        """A window TVF read as rows (not grouped): each row with its windows' columns,
        stateless (a HOP row once per window). ``window_time`` is the time attribute."""
        if rel.window is None:
            return rel
        spec, time_col = rel.window
        if spec.kind == "session":
            raise self.unsupported("a SESSION window TVF without GROUP BY")
        step = PyStep(
            functools.partial(_assign_windows, time_col=time_col, spec=spec),
            f"WindowTableFunction(window=[{spec.kind.upper()}] ON {time_col})",
        )
        return _Rel(rel.scan, [*rel.steps, step], rel.columns, "window_time", rel.aliases)

    def union(self, q: exp.Union, ctes: dict[str, exp.Expr]) -> _Rel:
        """``UNION ALL`` of queries with the same number of columns (named by the first)."""
        parts: list[exp.Expr] = []

        def flatten(node: exp.Expr) -> None:
            if isinstance(node, exp.Union):
                if node.args.get("distinct"):
                    raise self.unsupported("UNION (without ALL: a deduplicating union)", node)
                flatten(node.this)
                flatten(node.expression)
            else:
                parts.append(node)

        flatten(q)
        rels = [self.tvf_rows(self.query(p, ctes)) for p in parts]
        names = rels[0].columns
        chains = []
        for p, rel in zip(parts, rels, strict=True):
            if len(rel.columns) != len(names):
                raise self.error(
                    f"UNION ALL inputs have {len(names)} and {len(rel.columns)} columns", p
                )
            if rel.updating or any(is_updating(st) for st in rel.steps):
                raise self.unsupported("UNION ALL of an updating input", p)
            if rel.columns != names:
                items = ", ".join(
                    f"{_quote(c)} AS {_quote(n)}" for c, n in zip(rel.columns, names, strict=True)
                )
                rename = Calc(f"SELECT {items} FROM {BATCH}", names, "Calc", f"select=[{items}]")
                rel = _Rel(rel.scan, [*rel.steps, rename], names, rel.rowtime)
            chains.append(Chain(rel.scan, tuple(rel.steps)))
        positions = {rel.columns.index(rel.rowtime) for rel in rels if rel.rowtime} | (
            {-1} if any(rel.rowtime is None for rel in rels) else set()
        )
        rowtime = names[positions.pop()] if len(positions) == 1 and -1 not in positions else None
        return _Rel(Union(tuple(chains), names), [], names, rowtime)

    def join_relation(
        self, q: exp.Select, first: exp.Expression, joins: list[exp.Join], ctes: dict[str, exp.Expr]
    ) -> tuple[_Rel, exp.Select]:
        """Plan ``FROM a JOIN b ON … [JOIN c …]`` (or ``FROM a, b WHERE …``); returns the
        joined relation and *q* with its columns resolved to the join's output names."""
        rel = self.tvf_rows(self.relation(first, ctes))
        rel.scope = rel.scope or {a: {c: c for c in rel.columns} for a in rel.aliases}
        where = q.args.get("where")
        conjuncts = _conjuncts(where.this) if where is not None else []
        for j in joins:
            if j.args.get("using"):
                raise self.unsupported("JOIN … USING", j)
            if isinstance(j.this, exp.Table) and j.this.args.get("version") is not None:
                rel = self.lookup_join(rel, j)
                continue
            right = self.tvf_rows(self.relation(j.this, ctes))
            right.scope = right.scope or {a: {c: c for c in right.columns} for a in right.aliases}
            side = str(j.args.get("side") or "").lower()
            kind = str(j.args.get("kind") or "").lower()
            if kind not in ("", "inner", "outer", "cross"):
                raise self.unsupported(f"{kind.upper()} JOIN", j)
            how = side or "inner"
            on = j.args.get("on")
            if on is not None:
                conds = _conjuncts(on)
            else:  # FROM a, b WHERE …: the conditions between the two sides join them
                conds = [c for c in conjuncts if self._spans(c, rel, right)]
                conjuncts = [c for c in conjuncts if c not in conds]
            rel = self.join(rel, right, conds, how, j)
        out = q.copy()
        out.set("joins", None)
        out.set("where", exp.Where(this=exp.and_(*conjuncts)) if conjuncts else None)
        return rel, self.resolve(out, rel)

    def lookup_join(self, left: _Rel, j: exp.Join) -> _Rel:
        """``JOIN dim FOR SYSTEM_TIME AS OF s.proc_time AS d ON …``: a lookup join step on
        the stream's chain (the dimension is read when each batch is processed)."""
        node = j.this
        name = node.name
        dim = self.tables.get(name)
        if dim is None:
            raise self.error(
                f"FOR SYSTEM_TIME AS OF needs a table (CREATE TABLE), found '{name}'"
                f"{did_you_mean(name, list(self.tables))}",
                node,
            )
        at = node.args["version"].args.get("expression")
        if not isinstance(at, exp.Column) or self._owner(at, (left,)) is None:
            raise self.unsupported(
                "FOR SYSTEM_TIME AS OF anything but a time column of the other side", node
            )
        how = str(j.args.get("side") or "").lower() or "inner"
        if how not in ("inner", "left"):
            raise self.unsupported(f"a {how.upper()} lookup join", j)
        on = j.args.get("on")
        if on is None:
            raise self.error("a lookup join needs an ON condition", j)
        cols = [c.name for c in dim.physical]
        alias = node.alias or name
        right = _Rel(Scan(dim, tuple(cols)), [], tuple(cols), None, {alias, name})
        right.scope = {alias: {c: c for c in cols}, name: {c: c for c in cols}}
        names = list(left.columns)
        right_out: dict[str, str] = {}
        for c in cols:
            out, k = c, 0
            while out in names:
                out, k = f"{c}{k}", k + 1
            right_out[c] = out
            names.append(out)
        sql_conds: list[str] = []
        keys: list[tuple[str, str]] = []
        for cond in _conjuncts(on):
            resolved = cond.copy()
            for col in list(resolved.find_all(exp.Column)):
                owner = self._owner(col, (left, right))
                if owner is None:
                    raise self.error(f"unknown column '{col.sql()}' in the join condition", col)
                side = "l" if owner[0] == 0 else "r"
                col.replace(exp.column(owner[1], table=side, quoted=True))
            sql_conds.append(to_duckdb(resolved))
            if isinstance(cond, exp.EQ):
                a, b = cond.this, cond.expression
                oa = self._owner(a, (left, right)) if isinstance(a, exp.Column) else None
                ob = self._owner(b, (left, right)) if isinstance(b, exp.Column) else None
                if oa and ob and {oa[0], ob[0]} == {0, 1}:
                    keys.append((oa[1], ob[1]) if oa[0] == 0 else (ob[1], oa[1]))
        if not keys:
            raise self.unsupported("a lookup join without an equality on the dimension", j)
        select = [f"l.{_quote(c)} AS {_quote(c)}" for c in left.columns]
        select += [f"r.{_quote(c)} AS {_quote(right_out[c])}" for c in cols]
        step = LookupJoin(
            dim,
            how,
            " AND ".join(f"({c})" for c in sql_conds),
            ", ".join(select),
            tuple(names),
            tuple(keys),
            f"table=[{name}], joinType=[{how.upper()}], where=[{on.sql()}]",
        )
        base = left.scope or {a: {c: c for c in left.columns} for a in left.aliases}
        scope = {a: dict(c) for a, c in base.items()}
        scope[alias] = {c: right_out[c] for c in cols}
        rel = _Rel(left.scan, [*left.steps, step], tuple(names), left.rowtime, set(scope))
        rel.scope = scope
        return rel

    def _owner(self, col: exp.Column, rels: tuple[_Rel, ...]) -> tuple[int, str] | None:
        """Which input (index) and input column a column reference means."""
        if col.table:
            for k, r in enumerate(rels):
                if col.table in r.scope:
                    name = r.scope[col.table].get(col.name)
                    if name is None:
                        raise self.error(
                            f"table '{col.table}' has no column '{col.name}'"
                            f"{did_you_mean(col.name, list(r.scope[col.table]))}",
                            col,
                        )
                    return k, name
            return None
        found = [(k, col.name) for k, r in enumerate(rels) if col.name in r.columns]
        if len(found) > 1:
            raise self.error(f"column '{col.name}' is ambiguous", col)
        return found[0] if found else None

    def _spans(self, cond: exp.Expression, left: _Rel, right: _Rel) -> bool:
        sides = set()
        for col in cond.find_all(exp.Column):
            owner = self._owner(col, (left, right))
            if owner is not None:
                sides.add(owner[0])
        return sides == {0, 1}

    def join(
        self, left: _Rel, right: _Rel, conds: list[exp.Expression], how: str, node: exp.Expression
    ) -> _Rel:
        if (
            left.updating
            or right.updating
            or any(is_updating(st) for st in (*left.steps, *right.steps))
        ):
            raise self.unsupported("a join of an updating input", node)
        if not conds:
            raise self.unsupported("a join without a condition (a cross join)", node)
        # output names: the left's, then the right's (renamed name0, name1… on a clash)
        names = list(left.columns)
        right_out: dict[str, str] = {}
        for c in right.columns:
            out, k = c, 0
            while out in names:
                out, k = f"{c}{k}", k + 1
            right_out[c] = out
            names.append(out)
        sql_conds = []
        keys: list[tuple[str, str]] = []
        bounds: list[tuple[str, str, int | None, int | None]] = []
        for cond in conds:
            resolved = cond.copy()
            refs: list[tuple[int, str]] = []
            for col in list(resolved.find_all(exp.Column)):
                owner = self._owner(col, (left, right))
                if owner is None:
                    raise self.error(f"unknown column '{col.sql()}' in the join condition", col)
                refs.append(owner)
                col.replace(exp.column(owner[1], table="l" if owner[0] == 0 else "r", quoted=True))
            sql_conds.append(to_duckdb(resolved))
            if isinstance(cond, exp.EQ):
                a, b = cond.this, cond.expression
                if isinstance(a, exp.Column) and isinstance(b, exp.Column):
                    oa, ob = self._owner(a, (left, right)), self._owner(b, (left, right))
                    if oa and ob and {oa[0], ob[0]} == {0, 1}:
                        lcol, rcol = (oa[1], ob[1]) if oa[0] == 0 else (ob[1], oa[1])
                        keys.append((lcol, rcol))
            bound = self._time_bound(cond, left, right)
            if bound is not None:
                bounds.append(bound)
        on_sql = " AND ".join(f"({c})" for c in sql_conds)
        select = [f"l.{_quote(c)} AS {_quote(c)}" for c in left.columns]
        select += [f"r.{_quote(c)} AS {_quote(right_out[c])}" for c in right.columns]
        window = ("window_start", "window_start") in keys and ("window_end", "window_end") in keys
        detail = f"where=[{' AND '.join(c.sql() for c in conds)}]"
        spec_args: dict[str, Any] = {
            "how": how,
            "on_sql": on_sql,
            "select_sql": ", ".join(select),
            "columns": tuple(names),
            "detail": detail,
            "input_columns": (tuple(left.columns), tuple(right.columns)),
        }
        rowtime = None
        if window:
            spec = JoinSpec(kind="window", **spec_args)
        elif bounds and left.rowtime and right.rowtime:
            lo = max((b[2] for b in bounds if b[2] is not None), default=None)
            hi = min((b[3] for b in bounds if b[3] is not None), default=None)
            if lo is None or hi is None:
                raise self.unsupported(
                    "an interval join needs both a lower and an upper time bound", node
                )
            if how != "inner":
                raise self.unsupported(f"a {how.upper()} interval join", node)
            spec = JoinSpec(
                kind="interval",
                left_time=left.rowtime,
                right_time=right.rowtime,
                lower_ms=lo,
                upper_ms=hi,
                **spec_args,
            )
            rowtime = left.rowtime
        else:
            if not keys:
                raise self.unsupported("a join without an equality condition", node)
            ttl = self.settings.get(STATE_TTL_KEY)
            spec = JoinSpec(
                kind="regular", ttl_ms=parse_duration_ms(ttl) if ttl else 0, **spec_args
            )
        scope: dict[str, dict[str, str]] = {}
        for a, cols in left.scope.items():
            scope[a] = dict(cols)
        for a, cols in right.scope.items():
            scope[a] = {c: right_out[v] for c, v in cols.items()}
        joined = Join(
            Chain(left.scan, tuple(left.steps)), Chain(right.scan, tuple(right.steps)), spec
        )
        rel = _Rel(joined, [], tuple(names), rowtime, set(scope))
        rel.scope = scope
        rel.updating = spec.kind == "regular" and how != "inner"
        return rel

    def _time_bound(
        self, cond: exp.Expression, left: _Rel, right: _Rel
    ) -> tuple[str, str, int | None, int | None] | None:
        """``(left time, right time, lower, upper)`` of ``l.t - r.t`` from a comparison
        between the two sides' time attributes (BETWEEN, <, <=, >, >=)."""
        if not (left.rowtime and right.rowtime):
            return None

        def term(e: exp.Expression) -> tuple[int, int] | None:
            """(side, offset ms) of ``t``, ``t + INTERVAL …``, ``t - INTERVAL …``."""
            sign = 0
            if isinstance(e, exp.Add | exp.Sub) and isinstance(e.expression, exp.Interval):
                sign = 1 if isinstance(e, exp.Add) else -1
                offset = sign * interval_ms(e.expression)
                e = e.this
            else:
                offset = 0
            if isinstance(e, exp.Paren):
                return term(e.this)
            if not isinstance(e, exp.Column):
                return None
            owner = self._owner(e, (left, right))
            if owner is None:
                return None
            time = left.rowtime if owner[0] == 0 else right.rowtime
            return (owner[0], offset) if owner[1] == time else None

        def diff(a: exp.Expression, b: exp.Expression) -> int | None:
            """c with l.t - r.t compared to c, from ``a op b``; None if not time terms."""
            ta, tb = term(a), term(b)
            if ta is None or tb is None or ta[0] == tb[0]:
                return None
            # a op b ⇔ (ta.t + oa) op (tb.t + ob)
            if ta[0] == 0:
                return tb[1] - ta[1]  # l.t - r.t op ob - oa
            return ta[1] - tb[1]  # r.t + oa op l.t + ob ⇔ l.t - r.t (flipped op) oa - ob

        lo: int | None = None
        hi: int | None = None
        if isinstance(cond, exp.Between):
            low = diff(cond.this, cond.args["low"])
            high = diff(cond.this, cond.args["high"])
            first = term(cond.this)
            if low is None or high is None or first is None:
                return None
            if first[0] == 0:  # l.t BETWEEN r.t + a AND r.t + b
                lo, hi = low, high
            else:  # r.t BETWEEN l.t + a AND l.t + b ⇔ l.t - r.t in [-b, -a]
                lo, hi = -high, -low
            return (left.rowtime, right.rowtime, lo, hi)
        ops = {exp.GTE: (True, 0), exp.GT: (True, 1), exp.LTE: (False, 0), exp.LT: (False, -1)}
        for typ, (greater, strict) in ops.items():
            if isinstance(cond, typ):
                c = diff(cond.this, cond.expression)
                first = term(cond.this)
                if c is None or first is None:
                    return None
                if first[0] != 0:  # the right side first: flip the comparison
                    greater = not greater
                    strict = -strict
                if greater:
                    lo = c + strict
                else:
                    hi = c + strict
                return (left.rowtime, right.rowtime, lo, hi)
        return None

    def resolve(self, q: exp.Select, rel: _Rel) -> exp.Select:
        """*q* over a join: ``alias.col`` and unambiguous ``col`` become the join's output
        names; ``alias.*`` expands to that input's columns."""
        out = q.copy()
        owners = [(a, cols) for a, cols in rel.scope.items()]

        def rewrite(node: exp.Expression) -> exp.Expression:
            if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
                return node
            if node.table:
                cols = rel.scope.get(node.table)
                if cols is None:
                    return node  # a ROW field access, or an unknown alias (checked later)
                if node.name not in cols:
                    raise self.error(
                        f"table '{node.table}' has no column '{node.name}'"
                        f"{did_you_mean(node.name, list(cols))}",
                        node,
                    )
                return exp.column(cols[node.name], quoted=True)
            found = {cols[node.name] for _, cols in owners if node.name in cols}
            if len(found) > 1:
                raise self.error(f"column '{node.name}' is ambiguous", node)
            if found:
                return exp.column(found.pop(), quoted=True)
            return node

        items: list[exp.Expression] = []
        for e in out.expressions:
            if isinstance(e, exp.Column) and isinstance(e.this, exp.Star) and e.table:
                cols = rel.scope.get(e.table)
                if cols is None:
                    raise self.error(f"unknown table alias '{e.table}'", e)
                items += [exp.column(v, quoted=True) for v in cols.values()]
            else:
                items.append(e.transform(rewrite))
        out.set("expressions", items)
        for key in ("where", "group", "having"):
            part = out.args.get(key)
            if part is not None:
                out.set(key, part.transform(rewrite))
        return out

    # ranking: Top-N and deduplication -----------------------------------------
    def rank(self, q: exp.Select, node: exp.Expression, ctes: dict[str, exp.Expr]) -> _Rel | None:
        """``SELECT … FROM (SELECT …, ROW_NUMBER() OVER (…) AS rn FROM r) WHERE rn <= N``:
        window Top-N / deduplication, or deduplication on the rowtime. None if *q* does not
        read such a ranking."""
        inner: exp.Expr | None = None
        if isinstance(node, exp.Subquery):
            inner = node.this
        elif isinstance(node, exp.Table) and not node.args.get("joins"):
            inner = ctes.get(node.name) or self.views.get(node.name)
        if not isinstance(inner, exp.Select):
            return None
        found = [
            (i, e)
            for i, e in enumerate(inner.expressions)
            if isinstance(e, exp.Alias)
            and isinstance(e.this, exp.Window)
            and _fname(e.this.this) == "ROW_NUMBER"
        ]
        if not found:
            return None
        if len(found) > 1 or any(
            w is not found[0][1].this for e in inner.expressions for w in e.find_all(exp.Window)
        ):
            raise self.unsupported("more than one OVER window in a query", found[0][1])
        index, alias = found[0]
        rn = alias.alias
        window = alias.this
        limit, rest = self.rank_filter(q, rn)
        if limit is None:
            raise self.unsupported(
                f"ROW_NUMBER() without a filter on '{rn}' (an OVER aggregation)", alias
            )
        partition = list(window.args.get("partition_by") or [])
        order = list((window.args.get("order") or exp.Order()).expressions)
        if not order:
            raise self.error("ROW_NUMBER() needs ORDER BY", window)
        body = inner.copy()
        body.set("expressions", [e for i, e in enumerate(body.expressions) if i != index])
        from_ = body.args.get("from") or body.args.get("from_")
        if from_ is None:
            raise self.unsupported("a SELECT without FROM", body)
        part_names = [p.name if isinstance(p, exp.Column) else "" for p in partition]
        windowed = {"window_start", "window_end"} <= set(part_names)
        hidden: list[str] = []
        if not windowed and any(
            not isinstance(e, exp.Column) or e.table
            for e in [*partition, *(o.this if isinstance(o, exp.Ordered) else o for o in order)]
        ):
            # qualified or computed ranking expressions: evaluate them in the body itself
            extra: list[exp.Expr] = []
            for k, p in enumerate(partition):
                extra.append(exp.alias_(p.copy(), f"__p{k}", quoted=True))
                partition[k] = exp.column(f"__p{k}", quoted=True)
            for k, o in enumerate(order):
                inner_o = o.this if isinstance(o, exp.Ordered) else o
                extra.append(exp.alias_(inner_o.copy(), f"__o{k}", quoted=True))
                ref = exp.column(f"__o{k}", quoted=True)
                if isinstance(o, exp.Ordered):
                    o = o.copy()
                    o.set("this", ref)
                    order[k] = o
                else:
                    order[k] = ref
            hidden = [e.alias for e in extra]
            body.set("expressions", [*body.expressions, *extra])
        if windowed and isinstance(from_.this, WindowTVF) and body.args.get("group") is None:
            rel = self.relation(from_.this, ctes)  # rows wait for their window to fire
            assert rel.window is not None
            spec, time_col = rel.window
            buffer = WindowBuffer(spec, time_col, rel.columns)
            rel = _Rel(rel.scan, [*rel.steps, buffer], rel.columns, rel.rowtime)
            rel = self.calc(body, rel)
        else:
            rel = self.query(body, ctes)
        if rel.updating or any(is_updating(st) for st in rel.steps):
            raise self.unsupported("ROW_NUMBER() over an updating input", window)
        for p in partition:
            self.check_columns(p, rel)
        for o in order:
            self.check_columns(o.this if isinstance(o, exp.Ordered) else o, rel)
        last = next((st for st in reversed(rel.steps) if not isinstance(st, Calc)), None)
        if windowed:
            if not isinstance(last, WindowAgg | WindowBuffer):
                raise self.unsupported(
                    "window Top-N over anything but a window aggregation or window TVF", window
                )
            rel = self.rank_calc(rel, partition, order, rn, limit)
        else:
            keys = [p.name for p in partition if isinstance(p, exp.Column)]
            (first,) = order if len(order) == 1 else (None,)
            col = first.this if isinstance(first, exp.Ordered) else first
            if len(keys) != len(partition):
                raise self.unsupported("PARTITION BY an expression in ROW_NUMBER()", window)
            if (
                limit == 1
                and not hidden
                and isinstance(col, exp.Column)
                and col.name == rel.rowtime
            ):
                desc = bool(first.args.get("desc")) if isinstance(first, exp.Ordered) else False
                step: Step = Dedup(tuple(keys), col.name, desc)
                cols = (*rel.columns, rn)
                number = Calc(
                    f"SELECT *, CAST(1 AS BIGINT) AS {_quote(rn)} FROM {BATCH}",
                    cols,
                    "Calc",
                    f"select=[*, 1 AS {rn}]",
                )
                rel = _Rel(rel.scan, [*rel.steps, step, number], cols, rel.rowtime)
            else:
                spec_order = []
                for o in order:
                    expr = o.this if isinstance(o, exp.Ordered) else o
                    if not isinstance(expr, exp.Column):
                        raise self.unsupported("ORDER BY an expression in ROW_NUMBER()", window)
                    desc = isinstance(o, exp.Ordered) and bool(o.args.get("desc"))
                    nulls = o.args.get("nulls_first") if isinstance(o, exp.Ordered) else None
                    spec_order.append((expr.name, desc, not desc if nulls is None else bool(nulls)))
                step = TopN(tuple(keys), tuple(spec_order), limit, rn)
                rel = _Rel(rel.scan, [*rel.steps, step], (*rel.columns, rn), None)
        if hidden:
            keep = tuple(c for c in rel.columns if c not in hidden)
            drop = Calc(
                f"SELECT {', '.join(_quote(c) for c in keep)} FROM {BATCH}",
                keep,
                "Calc",
                f"select=[{', '.join(keep)}]",
            )
            rel = _Rel(rel.scan, [*rel.steps, drop], keep, rel.rowtime)
        outer = q.copy()
        outer.set("where", exp.Where(this=rest) if rest is not None else None)
        return self.calc(outer, rel)

    def rank_filter(self, q: exp.Select, rn: str) -> tuple[int | None, exp.Expr | None]:
        """The N of ``rn <= N`` / ``rn < N`` / ``rn = 1`` in *q*'s WHERE, and the rest."""
        where = q.args.get("where")
        if where is None:
            return None, None
        conjuncts = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
        limit, rest = None, []
        for c in conjuncts:
            n = None
            if (
                isinstance(c, exp.LTE | exp.LT | exp.EQ)
                and isinstance(c.this, exp.Column)
                and c.this.name == rn
                and isinstance(c.expression, exp.Literal)
            ):
                n = int(c.expression.this) - (1 if isinstance(c, exp.LT) else 0)
                if isinstance(c, exp.EQ) and n != 1:
                    n = None
            if n is not None and limit is None:
                limit = n
            else:
                rest.append(c)
        remaining: exp.Expr | None = exp.and_(*rest) if rest else None
        return limit, remaining

    def rank_calc(
        self,
        rel: _Rel,
        partition: list[exp.Expression],
        order: list[exp.Expression],
        rn: str,
        limit: int,
    ) -> _Rel:
        """Rank each fired window's rows in one stateless query (they arrive together)."""
        parts = ", ".join(to_duckdb(_unqualified(p)) for p in partition)
        keys = []
        for o in order:
            expr = o.this if isinstance(o, exp.Ordered) else o
            desc = isinstance(o, exp.Ordered) and bool(o.args.get("desc"))
            nulls = o.args.get("nulls_first") if isinstance(o, exp.Ordered) else None
            # the dialect's null ordering (Flink's: NULL is the smallest value) when unsaid
            first = not desc if nulls is None else bool(nulls)
            keys.append(
                f"{to_duckdb(_unqualified(expr))} {'DESC' if desc else 'ASC'} "
                f"NULLS {'FIRST' if first else 'LAST'}"
            )
        cols = ", ".join(_quote(c) for c in rel.columns)
        sql = (
            f"SELECT * FROM (SELECT {cols}, row_number() OVER (PARTITION BY {parts} "
            f"ORDER BY {', '.join(keys)}) AS {_quote(rn)} FROM {BATCH}) AS {BATCH} "
            f"WHERE {_quote(rn)} <= {limit}"
        )
        detail = f"rankType=[ROW_NUMBER], rankRange=[rankStart=1, rankEnd={limit}], partitionBy=[{parts}], orderBy=[{', '.join(keys)}]"
        step = Calc(sql, (*rel.columns, rn), "WindowRank", detail)
        return _Rel(rel.scan, [*rel.steps, step], (*rel.columns, rn), rel.rowtime)

    def refuse(self, q: exp.Select) -> None:
        """Refuse, by name, the valid Flink SQL that needs operators we do not have yet."""
        if q.args.get("distinct") is not None:
            raise self.unsupported("SELECT DISTINCT", q)
        for key, what in (("order", "ORDER BY"), ("limit", "LIMIT"), ("offset", "OFFSET")):
            if q.args.get(key) is not None:
                raise self.unsupported(what, q.args[key])
        for e in q.expressions:
            for w in e.find_all(exp.Window):
                raise self.unsupported("an OVER window", w)
            for s in e.find_all(exp.Subquery, exp.Exists):
                raise self.unsupported("a subquery in an expression", s)
        where = q.args.get("where")
        if where is not None:
            for s in where.find_all(exp.Subquery, exp.Exists, exp.Select):
                raise self.unsupported("a subquery in WHERE", s)
        match = getattr(exp, "MatchRecognize", None)
        if match is not None:
            for m in q.find_all(match):
                raise self.unsupported("MATCH_RECOGNIZE", m)
        for lat in q.find_all(exp.Lateral, exp.Unnest):
            raise self.unsupported(lat.key.upper(), lat)

    def relation(self, node: exp.Expression, ctes: dict[str, exp.Expr]) -> _Rel:
        match_ = getattr(exp, "MatchRecognize", None)
        if match_ is not None and isinstance(node, match_):
            raise self.unsupported("MATCH_RECOGNIZE", node)
        if isinstance(node, WindowTVF):
            return self.window_tvf(node, ctes)
        if isinstance(node, exp.Subquery):
            rel = self.query(node.this, ctes)
            rel.aliases = {node.alias} if node.alias else set()
            return rel
        if isinstance(node, exp.Table) and node.meta.get("match_recognize") is not None:
            return self.match_recognize(node, ctes)
        if isinstance(node, exp.Table):
            name = node.name
            alias = node.alias or name
            if name in ctes:
                rel = self.query(ctes[name], ctes)
            elif name in self.views:
                rel = self.query(self.views[name], {})
            elif name in self.tables:
                rel = self.scan(self.tables[name])
            else:
                known = [*ctes, *self.views, *self.tables]
                raise self.error(f"unknown table '{name}'{did_you_mean(name, known)}", node)
            rel.aliases = {alias, name}
            return rel
        raise self.unsupported(f"{node.key.upper()} in FROM", node)

    def match_recognize(self, node: exp.Table, ctes: dict[str, exp.Expr]) -> _Rel:
        """``t MATCH_RECOGNIZE (…)``: the rows of *t* (a table or view), the columns the
        matcher reads, the matcher, and its output: partition columns, then the measures."""
        from fluvial.stream.ops.match import MatchRecognizeOperator

        spec = node.meta["match_recognize"]
        plain = node.copy()
        plain.meta.pop("match_recognize", None)
        plain.set("alias", None)
        rel = self.relation(plain, ctes)
        if any(is_updating(st) for st in rel.steps):
            raise self.unsupported("MATCH_RECOGNIZE over an updating input", node)
        time_col = spec.time_col
        if time_col != rel.rowtime:
            raise self.error(
                "MATCH_RECOGNIZE must ORDER BY the time attribute of its input first "
                f"('{rel.rowtime}'), found '{time_col}'",
                node,
            )
        probe = MatchRecognizeOperator(spec, time_col)
        for c in probe.input_columns:
            if c not in rel.columns:
                raise self.error(
                    f"MATCH_RECOGNIZE reads unknown column '{c}'{did_you_mean(c, rel.columns)}",
                    node,
                )
        cols = probe.input_columns
        feed = Calc(
            f"SELECT {', '.join(_quote(c) for c in cols)} FROM {BATCH}",
            cols,
            "Calc",
            f"select=[{', '.join(cols)}]",
        )
        step = PyWindow(
            make_operator=lambda: MatchRecognizeOperator(spec, time_col),
            name=f"MatchRecognize(pattern=[{spec.pattern_sql()}])",
        )
        out = (*spec.partition_by, *spec.measures)
        rowtime = next(
            (
                name
                for name, e in spec.measures.items()
                if isinstance(e, exp.Anonymous) and e.name.upper() == "MATCH_ROWTIME"
            ),
            None,
        )
        aliases = {node.alias} if node.alias else set()
        return _Rel(rel.scan, [*rel.steps, feed, step], out, rowtime, aliases)

    def scan(self, table: CreateTable) -> _Rel:
        names = tuple(c.name for c in table.columns)
        computed_sql = None
        if any(c.computed for c in table.columns):
            phys = {c.name for c in table.physical}
            items = []
            for c in table.columns:
                if c.expr is None:
                    items.append(_quote(c.name))
                    continue
                for ref in c.expr.find_all(exp.Column):
                    if ref.table and ref.table in phys:
                        ref.meta["row_field"] = True  # ``person.dateTime``: a ROW field
                        continue
                    if ref.name not in phys:
                        raise self.error(
                            f"computed column '{c.name}' of '{table.name}' refers to "
                            f"'{ref.name}', which is not a physical column"
                            f"{did_you_mean(ref.name, phys)}",
                            ref,
                        )
                items.append(f"{to_duckdb(_unqualified(c.expr))} AS {_quote(c.name)}")
            computed_sql = f"SELECT {', '.join(items)} FROM {BATCH}"
        wm = table.watermark
        rowtime = wm.column if wm else None
        if wm is not None and wm.column not in names:
            raise self.error(
                f"WATERMARK FOR unknown column '{wm.column}'{did_you_mean(wm.column, names)}",
                wm.expr,
            )
        wm_sql = None
        if wm is not None and wm.delay_ms is None:
            for ref in wm.expr.find_all(exp.Column):
                if ref.name not in names:
                    raise self.error(f"unknown column '{ref.name}' in WATERMARK", ref)
            wm_sql = f"SELECT max({to_duckdb(_unqualified(wm.expr))}) AS wm FROM {BATCH}"
        idle = table.options.get("scan.watermark.idle-timeout") or self.settings.get(
            "table.exec.source.idle-timeout"
        )
        lateness = table.options.get(LATENESS_OPTION)
        late_topic = table.options.get(LATE_TOPIC_OPTION)
        if (lateness or late_topic) and wm is None:
            option = LATENESS_OPTION if lateness else LATE_TOPIC_OPTION
            raise Options(table).error(
                f"'{option}' needs a WATERMARK: only event-time windows drop or update late rows"
            )
        row_sql = None
        if wm_sql is not None:
            assert wm is not None
            row_sql = f"SELECT {to_duckdb(_unqualified(wm.expr))} AS wm FROM {BATCH}"
        scan = Scan(
            table=table,
            columns=names,
            computed_sql=computed_sql,
            rowtime=rowtime,
            watermark_delay_ms=wm.delay_ms if wm else None,
            watermark_sql=wm_sql,
            idle_timeout_ms=parse_duration_ms(idle) if idle else None,
            row_watermarks=wm is not None and self.row_watermarks,
            row_watermark_sql=row_sql,
            allowed_lateness_ms=self.duration(table, LATENESS_OPTION, lateness),
            late_topic=late_topic or None,
        )
        return _Rel(scan, [], names, rowtime)

    def window_tvf(self, node: WindowTVF, ctes: dict[str, exp.Expr]) -> _Rel:
        rel = self.relation(node.this, ctes)
        time_col = str(node.args["time_col"])
        if time_col not in rel.columns:
            raise self.error(
                f"unknown column '{time_col}' in DESCRIPTOR{did_you_mean(time_col, rel.columns)}",
                node,
            )
        if time_col != rel.rowtime and time_col not in rel.proctime:
            raise self.error(
                f"column '{time_col}' is not a time attribute: windows need an event-time "
                "column with a WATERMARK, or a PROCTIME() column",
                node,
            )
        kind = node.kind
        a = node.args
        offset = int(a.get("offset_ms") or 0)
        if kind == "TUMBLE":
            spec = WindowSpec.tumble(int(a["size_ms"]), offset)
        elif kind == "HOP":
            spec = WindowSpec.hop(int(a["size_ms"]), int(a["slide_ms"]), offset)
        elif kind == "CUMULATE":
            spec = WindowSpec.cumulate(int(a["size_ms"]), int(a["step_ms"]), offset)
        else:
            part = tuple(str(p) for p in a.get("partition_by") or ())
            for p in part:
                if p not in rel.columns:
                    raise self.error(
                        f"unknown column '{p}' in PARTITION BY{did_you_mean(p, rel.columns)}", node
                    )
            spec = WindowSpec.session(int(a["gap_ms"]), part)
        out = _Rel(
            rel.scan,
            rel.steps,
            rel.columns + WINDOW_COLUMNS,
            rel.rowtime,
            {str(a["alias"])} if a.get("alias") else set(),
            (spec, time_col),
        )
        out.proctime = set(rel.proctime)
        return out

    def legacy_spec(self, node: exp.Expression, rel: _Rel) -> tuple[WindowSpec, str]:
        kind = _fname(node)
        args = _args(node)
        want = {"TUMBLE": 2, "HOP": 3, "SESSION": 2}[kind]
        if len(args) != want:
            raise self.error(f"{kind} group window takes {want} arguments, found {len(args)}", node)
        ts = args[0]
        if not isinstance(ts, exp.Column) or ts.name not in rel.columns:
            raise self.error(f"{kind}'s first argument must be a time attribute column", node)
        if ts.name != rel.rowtime:
            raise self.error(
                f"column '{ts.name}' is not a time attribute: windows need an event-time "
                "column with a WATERMARK",
                ts,
            )
        ms = [interval_ms(a) for a in args[1:]]
        if kind == "TUMBLE":
            return WindowSpec.tumble(ms[0]), ts.name
        if kind == "HOP":  # legacy HOP(ts, slide, size)
            return WindowSpec.hop(ms[1], ms[0]), ts.name
        return WindowSpec.session(ms[0]), ts.name

    # column checks ---------------------------------------------------------
    def check_columns(self, node: exp.Expression, rel: _Rel) -> None:
        for col in node.find_all(exp.Column):
            if col.table and col.table not in rel.aliases and col.table in rel.columns:
                col.meta["row_field"] = True  # a ROW field: ``page.url``
                continue
            if col.table and rel.aliases and col.table not in rel.aliases:
                raise self.error(
                    f"unknown table alias '{col.table}'{did_you_mean(col.table, rel.aliases)}",
                    col,
                )
            if col.name not in rel.columns:
                raise self.error(
                    f"unknown column '{col.name}'{did_you_mean(col.name, rel.columns)}", col
                )

    def expand(self, q: exp.Select, rel: _Rel) -> list[exp.Expression]:
        """The SELECT list with ``*`` and ``t.*`` expanded to the relation's columns."""
        items: list[exp.Expression] = []
        for e in q.expressions:
            star = isinstance(e, exp.Star) or (
                isinstance(e, exp.Column) and isinstance(e.this, exp.Star)
            )
            if star:
                items.extend(exp.column(c, quoted=not c.isidentifier()) for c in rel.columns)
            else:
                items.append(e)
        return items

    # stateless -------------------------------------------------------------
    def calc(self, q: exp.Select, rel: _Rel) -> _Rel:
        items = self.expand(q, rel)
        where = q.args.get("where")
        for e in items:
            self.check_columns(e, rel)
        if where is not None:
            self.check_columns(where.this, rel)
        names = self.names(items)
        rowtime = None
        proctime: set[str] = set()
        props: dict[str, str] = {}
        for e, n in zip(items, names, strict=True):
            inner = e.this if isinstance(e, exp.Alias) else e
            if isinstance(inner, exp.Column) and inner.name == rel.rowtime:
                rowtime = n
            if isinstance(inner, exp.Column) and inner.name in rel.window_props:
                props[n] = rel.window_props[inner.name]
            if (isinstance(inner, exp.Column) and inner.name in rel.proctime) or (
                _fname(inner) == "PROCTIME"
            ):
                proctime.add(n)
        sql = select_sql(items, names, where.this if where is not None else None)
        detail = _flink_detail(items, where.this if where is not None else None)
        steps = [*rel.steps, Calc(sql, tuple(names), "Calc", detail)]
        out = _Rel(rel.scan, steps, tuple(names), rowtime)
        out.updating = rel.updating
        out.proctime = proctime
        out.window_props = props
        return out

    def names(self, items: list[exp.Expression]) -> list[str]:
        names = [output_name(e, i) for i, e in enumerate(items)]
        seen: set[str] = set()
        for e, n in zip(items, names, strict=True):
            if n in seen:
                raise self.error(f"duplicate output column '{n}': give it an alias", e)
            seen.add(n)
        return names

    # windowed aggregation --------------------------------------------------
    def window_agg(
        self,
        q: exp.Select,
        rel: _Rel,
        spec: WindowSpec | None,
        time_col: str | None,
        *,
        legacy: bool,
    ) -> _Rel:
        """A window aggregation, or with *spec* None an unbounded GROUP BY (updating)."""
        group = q.args.get("group")
        group_exprs = list(group.expressions) if group is not None else []
        retract = rel.updating or any(is_updating(st) for st in rel.steps)
        if retract and spec is not None:
            raise self.unsupported("a window aggregation over an updating input", q)
        where = q.args.get("where")
        having = q.args.get("having")
        base_cols = tuple(c for c in rel.columns if c not in WINDOW_COLUMNS or legacy)
        base = replace(rel, columns=base_cols)
        if where is not None:
            self.check_columns(where.this, rel if not legacy else base)
            for c in where.this.find_all(exp.Column):
                if c.name in WINDOW_COLUMNS and not legacy:
                    raise self.unsupported("a filter on window columns before aggregation", c)

        # group keys (window columns of a TVF are the window itself)
        keys: list[tuple[str, exp.Expression]] = []
        seen_window: set[str] = set()
        for g in group_exprs:
            if legacy and _fname(g) in LEGACY_WINDOWS:
                continue
            if spec and not legacy and isinstance(g, exp.Column) and g.name in WINDOW_COLUMNS:
                seen_window.add(g.name)
                continue
            self.check_columns(g, base)
            kname = g.name if isinstance(g, exp.Column) else f"_k{len(keys)}"
            keys.append((kname, g))
        if spec is not None and not legacy and not {"window_start", "window_end"} <= seen_window:
            raise self.error(
                "a window aggregation must GROUP BY window_start, window_end (and keys)", group
            )
        for p in spec.partition_by if spec is not None else ():
            if p not in [k for k, _ in keys]:
                raise self.error(
                    f"SESSION window PARTITION BY column '{p}' must also be in GROUP BY", group
                )

        # aggregates and their pre-computed arguments
        aggs: list[AggSpec] = []
        pre: list[tuple[str, exp.Expression]] = []
        if time_col is not None:
            pre.append((time_col, exp.column(time_col, quoted=not time_col.isidentifier())))
        pre += keys
        by_sql: dict[str, str] = {}

        def take_agg(node: exp.Expression) -> exp.Expression:
            agg, flt = (
                (node.this, node.expression.this) if isinstance(node, exp.Filter) else (node, None)
            )
            assert isinstance(agg, exp.Func)
            key = node.sql()
            if key in by_sql:
                return exp.column(by_sql[key], quoted=not by_sql[key].isidentifier())
            func = AGG_FUNCS.get(type(agg))
            if func is None:
                raise self.unsupported(f"the aggregate function {agg.sql_name()}", agg)
            arg_node = agg.this
            arg: str | None = None
            if isinstance(arg_node, exp.Distinct):
                if func != "count" or len(arg_node.expressions) != 1:
                    raise self.unsupported(f"{agg.sql_name()}(DISTINCT …)", agg)
                func = "count_distinct"
                arg_node = arg_node.expressions[0]
            if isinstance(arg_node, exp.Star) or (func == "count" and arg_node is None):
                func = "count_star"
            else:
                if arg_node is None:
                    raise self.error(f"{agg.sql_name()} needs an argument", agg)
                for inner in arg_node.find_all(exp.AggFunc):
                    raise self.error("aggregate functions cannot be nested", inner)
                self.check_columns(arg_node, base)
                arg = f"_a{len(aggs)}"
                pre.append((arg, arg_node))
            fname = None
            if flt is not None:
                self.check_columns(flt, base)
                fname = f"_f{len(aggs)}"
                pre.append((fname, flt))
            name = f"_g{len(aggs)}"
            aggs.append(AggSpec(name, func, arg, fname))
            by_sql[key] = name
            return exp.column(name, quoted=not name.isidentifier())

        key_sql = {g.sql(): k for k, g in keys if not isinstance(g, exp.Column)}

        def rewrite(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Filter) and isinstance(node.this, exp.AggFunc):
                return take_agg(node)
            if isinstance(node, exp.AggFunc):
                return take_agg(node)
            if node.sql() in key_sql:
                return exp.column(key_sql[node.sql()], quoted=True)
            if legacy:
                fname = _fname(node)
                for kind in LEGACY_WINDOWS:
                    if fname.startswith(kind + "_"):
                        aux = fname[len(kind) + 1 :]
                        if aux not in LEGACY_AUX:
                            raise self.unsupported(fname, node)
                        return exp.column(
                            LEGACY_AUX[aux], quoted=not LEGACY_AUX[aux].isidentifier()
                        )
            return node

        items = self.expand(q, rel) if not legacy else self.expand(q, base)
        names = self.names(items)
        rewritten = [e.transform(rewrite) for e in items]
        having_rw = having.this.transform(rewrite) if having is not None else None
        window_cols = WINDOW_COLUMNS if spec is not None else ()
        out_cols = (*window_cols, *(k for k, _ in keys), *(a.name for a in aggs))
        allowed = set(out_cols)
        originals = [*items, *([having.this] if having is not None else [])]
        results = [*rewritten, *([having_rw] if having_rw is not None else [])]
        for orig, e in zip(originals, results, strict=True):
            for col in e.find_all(exp.Column):
                if col.name in allowed:
                    continue
                bad = next((c for c in orig.find_all(exp.Column) if c.name == col.name), col)
                self.check_columns(bad, base)
                raise self.error(
                    f"column '{col.name}' is neither in GROUP BY nor inside an aggregate function",
                    bad,
                )
        pre_names = [n for n, _ in pre]
        pre_sql = select_sql(
            [e for _, e in pre], pre_names, where.this if where is not None else None
        )
        pre_calc = Calc(
            pre_sql,
            tuple(pre_names),
            "Calc",
            _flink_detail(
                [exp.alias_(e, n) for n, e in pre], where.this if where is not None else None
            ),
        )
        post_sql = select_sql(rewritten, names, having_rw)
        post_calc = Calc(post_sql, tuple(names), "Calc", _flink_detail(rewritten, having_rw, names))
        if spec is None or time_col is None:
            if retract:
                for a in aggs:
                    if a.func not in ("count_star", "count", "sum", "avg"):
                        func = a.func.upper().replace("_STAR", "(*)").replace("_", " ")
                        raise self.unsupported(
                            f"{func} in a GROUP BY over an updating input (only COUNT, SUM "
                            "and AVG retract)",
                            q,
                        )
            ttl = self.settings.get(STATE_TTL_KEY)
            node = GroupAgg(
                tuple(k for k, _ in keys),
                tuple(aggs),
                pre_calc,
                post_calc,
                parse_duration_ms(ttl) if ttl else 0,
                retract,
            )
            return _Rel(rel.scan, [*rel.steps, node], tuple(names), None)
        first = not any(isinstance(st, WindowAgg) for st in rel.steps)
        lateness = rel.scan.allowed_lateness_ms if first and isinstance(rel.scan, Scan) else 0
        if lateness and spec.kind == "session":
            raise self.unsupported(f"'{LATENESS_OPTION}' with SESSION windows", q)
        step = WindowAgg(
            spec,
            time_col,
            tuple(k for k, _ in keys),
            tuple(aggs),
            pre_calc,
            post_calc,
            lateness,
            proctime=time_col in rel.proctime,
        )
        rowtime = None
        props: dict[str, str] = {}
        for e, n in zip(rewritten, names, strict=True):
            inner = e.this if isinstance(e, exp.Alias) else e
            if isinstance(inner, exp.Column) and inner.name == "window_time":
                rowtime = n
            if isinstance(inner, exp.Column) and inner.name in WINDOW_COLUMNS:
                props[n] = inner.name
        out = _Rel(rel.scan, [*rel.steps, step], tuple(names), rowtime)
        out.window_props = props
        return out


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    """The AND-ed parts of a condition."""
    if isinstance(node, exp.And):
        return [*_conjuncts(node.this), *_conjuncts(node.expression)]
    if isinstance(node, exp.Paren) and isinstance(node.this, exp.And):
        return _conjuncts(node.this)
    return [node]


def _assign_windows(table: Any, *, time_col: str, spec: WindowSpec) -> Any:
    from fluvial.stream.ops.assign import assign_windows

    return assign_windows(table, time_col, spec)


def select_sql(
    items: Iterable[exp.Expr], names: Iterable[str], where: exp.Expression | None
) -> str:
    cols = []
    for e, n in zip(items, names, strict=True):
        inner = e.this if isinstance(e, exp.Alias) else e
        cols.append(f"{to_duckdb(_unqualified(inner))} AS {_quote(n)}")
    sql = f"SELECT {', '.join(cols)} FROM {BATCH}"
    if where is not None:
        sql += f" WHERE {to_duckdb(_unqualified(where))}"
    return sql


def _flink_detail(
    items: Iterable[exp.Expr], where: exp.Expression | None, names: Iterable[str] = ()
) -> str:
    sel = ", ".join(e.sql() for e in items)
    return f"select=[{sel}]" + (f", where=[{where.sql()}]" if where is not None else "")


def parse_duration_ms(text: str) -> int:
    """A Flink duration (``10 s``, ``500ms``, ``1 min``, ``2h``, a bare number = ms) in ms.

    >>> parse_duration_ms("10 s"), parse_duration_ms("1min"), parse_duration_ms("250")
    (10000, 60000, 250)
    """
    import re

    units = {
        "ms": 1,
        "milli": 1,
        "millis": 1,
        "millisecond": 1,
        "milliseconds": 1,
        "s": 1000,
        "sec": 1000,
        "secs": 1000,
        "second": 1000,
        "seconds": 1000,
        "min": 60_000,
        "m": 60_000,
        "mins": 60_000,
        "minute": 60_000,
        "minutes": 60_000,
        "h": 3_600_000,
        "hour": 3_600_000,
        "hours": 3_600_000,
        "d": 86_400_000,
        "day": 86_400_000,
        "days": 86_400_000,
    }
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or (m.group(2) and m.group(2).lower() not in units):
        raise SqlError(f"expected a duration such as '10 s', '500 ms' or '1 min', found {text!r}")
    return int(float(m.group(1)) * units[m.group(2).lower() or "ms"])
