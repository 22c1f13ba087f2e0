"""Planning joins: window, interval, regular and lookup joins of two relations."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from fluvial.errors import did_you_mean
from fluvial.stream.plan.base import STATE_TTL_KEY, PlannerBase, parse_duration_ms
from fluvial.stream.plan.exprs import (
    Rel,
    and_parts,
    quote,
)
from fluvial.stream.plan.nodes import (
    Chain,
    Join,
    JoinSpec,
    LookupJoin,
    Scan,
    is_updating,
)
from fluvial.stream.sql import interval_ms, to_duckdb

__all__ = ["JoinPlanning"]


class JoinPlanning(PlannerBase):
    """The join part of the planner."""

    def join_relation(
        self, q: exp.Select, first: exp.Expression, joins: list[exp.Join], ctes: dict[str, exp.Expr]
    ) -> tuple[Rel, exp.Select]:
        """Plan ``FROM a JOIN b ON … [JOIN c …]`` (or ``FROM a, b WHERE …``); returns the
        joined relation and *q* with its columns resolved to the join's output names."""
        rel = self.tvf_rows(self.relation(first, ctes))
        rel.scope = rel.scope or {a: {c: c for c in rel.columns} for a in rel.aliases}
        where = q.args.get("where")
        conjuncts = and_parts(where.this) if where is not None else []
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
                conds = and_parts(on)
            else:  # FROM a, b WHERE …: the conditions between the two sides join them
                conds = [c for c in conjuncts if self._spans(c, rel, right)]
                conjuncts = [c for c in conjuncts if c not in conds]
            rel = self.join(rel, right, conds, how, j)
        out = q.copy()
        out.set("joins", None)
        out.set("where", exp.Where(this=exp.and_(*conjuncts)) if conjuncts else None)
        return rel, self.resolve(out, rel)

    def lookup_join(self, left: Rel, j: exp.Join) -> Rel:
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
        right = Rel(Scan(dim, tuple(cols)), [], tuple(cols), None, {alias, name})
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
        for cond in and_parts(on):
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
        select = [f"l.{quote(c)} AS {quote(c)}" for c in left.columns]
        select += [f"r.{quote(c)} AS {quote(right_out[c])}" for c in cols]
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
        rel = Rel(left.scan, [*left.steps, step], tuple(names), left.rowtime, set(scope))
        rel.scope = scope
        return rel

    def _owner(self, col: exp.Column, rels: tuple[Rel, ...]) -> tuple[int, str] | None:
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

    def _spans(self, cond: exp.Expression, left: Rel, right: Rel) -> bool:
        sides = set()
        for col in cond.find_all(exp.Column):
            owner = self._owner(col, (left, right))
            if owner is not None:
                sides.add(owner[0])
        return sides == {0, 1}

    def join(
        self, left: Rel, right: Rel, conds: list[exp.Expression], how: str, node: exp.Expression
    ) -> Rel:
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
        select = [f"l.{quote(c)} AS {quote(c)}" for c in left.columns]
        select += [f"r.{quote(c)} AS {quote(right_out[c])}" for c in right.columns]
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
        rel = Rel(joined, [], tuple(names), rowtime, set(scope))
        rel.scope = scope
        rel.updating = spec.kind == "regular" and how != "inner"
        return rel

    def _time_bound(
        self, cond: exp.Expression, left: Rel, right: Rel
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
