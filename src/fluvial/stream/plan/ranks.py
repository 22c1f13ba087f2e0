"""Planning ``ROW_NUMBER() OVER (…)`` filters: Top-N, window Top-N and deduplication."""

from __future__ import annotations

from sqlglot import exp

from fluvial.stream.plan.base import PlannerBase
from fluvial.stream.plan.exprs import (
    Rel,
    func_name,
    quote,
    unqualified,
)
from fluvial.stream.plan.nodes import (
    BATCH,
    Calc,
    Dedup,
    Step,
    TopN,
    WindowAgg,
    WindowBuffer,
    is_updating,
)
from fluvial.stream.sql import to_duckdb
from fluvial.stream.sql.ast import WindowTVF

__all__ = ["RankPlanning"]


class RankPlanning(PlannerBase):
    """The ranking part of the planner."""

    def rank(self, q: exp.Select, node: exp.Expression, ctes: dict[str, exp.Expr]) -> Rel | None:
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
            and func_name(e.this.this) == "ROW_NUMBER"
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
            rel = Rel(rel.scan, [*rel.steps, buffer], rel.columns, rel.rowtime)
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
                    f"SELECT *, CAST(1 AS BIGINT) AS {quote(rn)} FROM {BATCH}",
                    cols,
                    "Calc",
                    f"select=[*, 1 AS {rn}]",
                )
                rel = Rel(rel.scan, [*rel.steps, step, number], cols, rel.rowtime)
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
                rel = Rel(rel.scan, [*rel.steps, step], (*rel.columns, rn), None)
        if hidden:
            keep = tuple(c for c in rel.columns if c not in hidden)
            drop = Calc(
                f"SELECT {', '.join(quote(c) for c in keep)} FROM {BATCH}",
                keep,
                "Calc",
                f"select=[{', '.join(keep)}]",
            )
            rel = Rel(rel.scan, [*rel.steps, drop], keep, rel.rowtime)
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
        rel: Rel,
        partition: list[exp.Expression],
        order: list[exp.Expression],
        rn: str,
        limit: int,
    ) -> Rel:
        """Rank each fired window's rows in one stateless query (they arrive together)."""
        parts = ", ".join(to_duckdb(unqualified(p)) for p in partition)
        keys = []
        for o in order:
            expr = o.this if isinstance(o, exp.Ordered) else o
            desc = isinstance(o, exp.Ordered) and bool(o.args.get("desc"))
            nulls = o.args.get("nulls_first") if isinstance(o, exp.Ordered) else None
            # the dialect's null ordering (Flink's: NULL is the smallest value) when unsaid
            first = not desc if nulls is None else bool(nulls)
            keys.append(
                f"{to_duckdb(unqualified(expr))} {'DESC' if desc else 'ASC'} "
                f"NULLS {'FIRST' if first else 'LAST'}"
            )
        cols = ", ".join(quote(c) for c in rel.columns)
        sql = (
            f"SELECT * FROM (SELECT {cols}, row_number() OVER (PARTITION BY {parts} "
            f"ORDER BY {', '.join(keys)}) AS {quote(rn)} FROM {BATCH}) AS {BATCH} "
            f"WHERE {quote(rn)} <= {limit}"
        )
        detail = f"rankType=[ROW_NUMBER], rankRange=[rankStart=1, rankEnd={limit}], partitionBy=[{parts}], orderBy=[{', '.join(keys)}]"
        step = Calc(sql, (*rel.columns, rn), "WindowRank", detail)
        return Rel(rel.scan, [*rel.steps, step], (*rel.columns, rn), rel.rowtime)
