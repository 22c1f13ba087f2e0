"""Planning windows: window TVFs, legacy group windows, window and cascaded aggregations."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from sqlglot import exp

from fluvial.errors import did_you_mean
from fluvial.stream.ops.spec import AggSpec, WindowSpec
from fluvial.stream.plan.base import (
    AGG_FUNCS,
    LATENESS_OPTION,
    LEGACY_AUX,
    LEGACY_WINDOWS,
    STATE_TTL_KEY,
    WINDOW_COLUMNS,
    PlannerBase,
    parse_duration_ms,
)
from fluvial.stream.plan.exprs import (
    Rel,
    call_args,
    flink_detail,
    func_name,
    select_sql,
    unqualified,
)
from fluvial.stream.plan.nodes import (
    Calc,
    GroupAgg,
    PyStep,
    Scan,
    WindowAgg,
    is_updating,
)
from fluvial.stream.sql import interval_ms, to_duckdb
from fluvial.stream.sql.ast import WindowTVF

__all__ = ["WindowPlanning"]


class WindowPlanning(PlannerBase):
    """The window part of the planner."""

    def cascades(self, group: exp.Expression, rel: Rel) -> bool:
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

    def cascade_agg(self, q: exp.Select, rel: Rel) -> Rel:
        """A cascaded window aggregation: one stateless GROUP BY over each fired batch."""
        items = self.expand(q, rel)
        for e in items:
            self.check_columns(e, rel)
        names = self.names(items)
        where, group, having = q.args.get("where"), q.args["group"], q.args.get("having")
        sql = select_sql(items, names, where.this if where is not None else None)
        keys = ", ".join(to_duckdb(unqualified(g)) for g in group.expressions)
        sql += f" GROUP BY {keys}"
        if having is not None:
            sql += f" HAVING {to_duckdb(unqualified(having.this))}"
        detail = flink_detail(items, where.this if where is not None else None)
        step = Calc(sql, tuple(names), "WindowAggregate(cascaded)", f"groupBy=[{keys}], {detail}")
        out = Rel(rel.scan, [*rel.steps, step], tuple(names), None)
        for e, n in zip(items, names, strict=True):
            inner = e.this if isinstance(e, exp.Alias) else e
            if isinstance(inner, exp.Column) and inner.name in rel.window_props:
                out.window_props[n] = rel.window_props[inner.name]
        return out

    def tvf_rows(self, rel: Rel) -> Rel:
        """A window TVF read as rows (not grouped): each row with its windows' columns,
        stateless (a HOP row once per window). ``window_time`` is the time attribute."""
        if rel.window is None:
            return rel
        spec, time_col = rel.window
        if spec.kind == "session":
            raise self.unsupported("a SESSION window TVF without GROUP BY")
        step = PyStep(
            functools.partial(assign_windows_step, time_col=time_col, spec=spec),
            f"WindowTableFunction(window=[{spec.kind.upper()}] ON {time_col})",
        )
        return Rel(rel.scan, [*rel.steps, step], rel.columns, "window_time", rel.aliases)

    def window_tvf(self, node: WindowTVF, ctes: dict[str, exp.Expr]) -> Rel:
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
        out = Rel(
            rel.scan,
            rel.steps,
            rel.columns + WINDOW_COLUMNS,
            rel.rowtime,
            {str(a["alias"])} if a.get("alias") else set(),
            (spec, time_col),
        )
        out.proctime = set(rel.proctime)
        return out

    def legacy_spec(self, node: exp.Expression, rel: Rel) -> tuple[WindowSpec, str]:
        kind = func_name(node)
        args = call_args(node)
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

    def window_agg(
        self,
        q: exp.Select,
        rel: Rel,
        spec: WindowSpec | None,
        time_col: str | None,
        *,
        legacy: bool,
    ) -> Rel:
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
            if legacy and func_name(g) in LEGACY_WINDOWS:
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
                fname = func_name(node)
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
            flink_detail(
                [exp.alias_(e, n) for n, e in pre], where.this if where is not None else None
            ),
        )
        post_sql = select_sql(rewritten, names, having_rw)
        post_calc = Calc(post_sql, tuple(names), "Calc", flink_detail(rewritten, having_rw, names))
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
            return Rel(rel.scan, [*rel.steps, node], tuple(names), None)
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
        out = Rel(rel.scan, [*rel.steps, step], tuple(names), rowtime)
        out.window_props = props
        return out


def assign_windows_step(table: Any, *, time_col: str, spec: WindowSpec) -> Any:
    from fluvial.stream.ops.assign import assign_windows

    return assign_windows(table, time_col, spec)
