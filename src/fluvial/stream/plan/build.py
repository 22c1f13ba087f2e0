"""Plan a pipeline script: every ``INSERT INTO … SELECT`` becomes a :class:`Pipeline`.

Views (and ``WITH`` clauses) are inlined; each ``SELECT`` becomes a stateless
:class:`Calc` or, when it groups by a window (a window TVF's ``window_start,
window_end``, or a legacy ``GROUP BY TUMBLE(ts, …)``), a :class:`WindowAgg`. Column
names are resolved against each relation, so a typo is an error at its line and column.
Valid Flink SQL that Fluvial cannot run yet (joins, OVER, MATCH_RECOGNIZE, updating
aggregations) is refused by name with :class:`UnsupportedSqlError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from sqlglot import exp

from fluvial.errors import SqlError, did_you_mean
from fluvial.stream.connectors.options import Options
from fluvial.stream.plan.base import (
    LATENESS_OPTION,
    LEGACY_WINDOWS,
    WATERMARK_INTERVAL_KEY,
    parse_duration_ms,
)
from fluvial.stream.plan.carry import carry_job
from fluvial.stream.plan.exprs import (
    Rel,
    flink_detail,
    func_name,
    output_name,
    quote,
    select_sql,
    unqualified,
)
from fluvial.stream.plan.fuse import fuse_job
from fluvial.stream.plan.joins import JoinPlanning
from fluvial.stream.plan.nodes import (
    BATCH,
    Calc,
    Chain,
    GroupAgg,
    Job,
    Join,
    Pipeline,
    PyWindow,
    Scan,
    SinkNode,
    Union,
    WindowAgg,
    is_updating,
)
from fluvial.stream.plan.ranks import RankPlanning
from fluvial.stream.plan.scan_fuse import fuse_scan_job
from fluvial.stream.plan.windows import WindowPlanning
from fluvial.stream.sql import to_duckdb
from fluvial.stream.sql.ast import CreateTable, Insert, Script, WindowTVF

__all__ = [
    "WATERMARK_INTERVAL_KEY",
    "build_job",
    "output_name",
    "parse_duration_ms",
    "plan_scan",
    "select_sql",
]

IDLE_TIMEOUT_KEYS = ("scan.watermark.idle-timeout", "table.exec.source.idle-timeout")
#: Fluvial's table options (extensions of Flink's): on a source table with a WATERMARK
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


# --------------------------------------------------------------------------- planner


class _Planner(JoinPlanning, RankPlanning, WindowPlanning):
    """Plans every INSERT of a script; joins and ranks are planned by its parts."""

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

    def check_updates(self, sink: CreateTable, rel: Rel, insert: Insert) -> None:
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
    def query(self, q: exp.Expr, ctes: dict[str, exp.Expr]) -> Rel:
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
            legacy = [g for g in group.expressions if func_name(g) in LEGACY_WINDOWS]
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
    def union(self, q: exp.Union, ctes: dict[str, exp.Expr]) -> Rel:
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
                    f"{quote(c)} AS {quote(n)}" for c, n in zip(rel.columns, names, strict=True)
                )
                rename = Calc(f"SELECT {items} FROM {BATCH}", names, "Calc", f"select=[{items}]")
                rel = Rel(rel.scan, [*rel.steps, rename], names, rel.rowtime)
            chains.append(Chain(rel.scan, tuple(rel.steps)))
        positions = {rel.columns.index(rel.rowtime) for rel in rels if rel.rowtime} | (
            {-1} if any(rel.rowtime is None for rel in rels) else set()
        )
        rowtime = names[positions.pop()] if len(positions) == 1 and -1 not in positions else None
        return Rel(Union(tuple(chains), names), [], names, rowtime)

    def resolve(self, q: exp.Select, rel: Rel) -> exp.Select:
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

    def relation(self, node: exp.Expression, ctes: dict[str, exp.Expr]) -> Rel:
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

    def match_recognize(self, node: exp.Table, ctes: dict[str, exp.Expr]) -> Rel:
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
            f"SELECT {', '.join(quote(c) for c in cols)} FROM {BATCH}",
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
        return Rel(rel.scan, [*rel.steps, feed, step], out, rowtime, aliases)

    def scan(self, table: CreateTable) -> Rel:
        names = tuple(c.name for c in table.columns)
        computed_sql = None
        if any(c.computed for c in table.columns):
            phys = {c.name for c in table.physical}
            items = []
            for c in table.columns:
                if c.expr is None:
                    items.append(quote(c.name))
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
                items.append(f"{to_duckdb(unqualified(c.expr))} AS {quote(c.name)}")
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
            wm_sql = f"SELECT max({to_duckdb(unqualified(wm.expr))}) AS wm FROM {BATCH}"
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
            row_sql = f"SELECT {to_duckdb(unqualified(wm.expr))} AS wm FROM {BATCH}"
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
        return Rel(scan, [], names, rowtime)

    # column checks ---------------------------------------------------------
    def check_columns(self, node: exp.Expression, rel: Rel) -> None:
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

    def expand(self, q: exp.Select, rel: Rel) -> list[exp.Expression]:
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
    def calc(self, q: exp.Select, rel: Rel) -> Rel:
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
                func_name(inner) == "PROCTIME"
            ):
                proctime.add(n)
        sql = select_sql(items, names, where.this if where is not None else None)
        detail = flink_detail(items, where.this if where is not None else None)
        steps = [*rel.steps, Calc(sql, tuple(names), "Calc", detail)]
        out = Rel(rel.scan, steps, tuple(names), rowtime)
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
