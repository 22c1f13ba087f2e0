"""A stable, readable text form of a parsed script (for golden tests and debugging)."""

from __future__ import annotations

from fluvial.stream.sql.ast import CreateTable, CreateView, Insert, Script, SetOption, WindowTVF

__all__ = ["dump"]


def dump(script: Script) -> str:
    """One block per statement; queries printed back as Flink SQL, window TVFs spelled out."""
    out: list[str] = []
    for st in script.statements:
        where = f"@{st.position.line}:{st.position.column}" if st.position else ""
        if isinstance(st, CreateTable):
            flags = " ".join(
                f
                for f, on in (("TEMPORARY", st.temporary), ("IF NOT EXISTS", st.if_not_exists))
                if on
            )
            out.append(f"CreateTable {st.name} {flags}".rstrip() + f" {where}")
            for col in st.columns:
                if col.expr is not None:
                    out.append(f"  computed {col.name} AS {col.expr.sql('flink')}")
                elif col.type is not None:
                    out.append(
                        f"  column {col.name} {col.type.sql()}  -- arrow: {col.type.to_arrow()}"
                    )
            if st.watermark:
                wm = st.watermark
                out.append(
                    f"  watermark {wm.column} AS {wm.expr.sql('flink')}  -- delay_ms={wm.delay_ms}"
                )
            if st.primary_key:
                out.append(f"  primary key ({', '.join(st.primary_key)})")
            for key, value in st.options.items():
                out.append(f"  option {key!r} = {value!r}")
        elif isinstance(st, CreateView):
            out.append(f"CreateView {st.name}{' TEMPORARY' if st.temporary else ''} {where}")
            out.extend(_query(st.query))
        elif isinstance(st, Insert):
            cols = f" ({', '.join(st.columns)})" if st.columns else ""
            out.append(f"Insert {'OVERWRITE' if st.overwrite else 'INTO'} {st.table}{cols} {where}")
            out.extend(_query(st.query))
        elif isinstance(st, SetOption):
            out.append(f"Set {st.key!r} = {st.value!r} {where}")
    return "\n".join(out) + "\n"


def _query(query: object) -> list[str]:
    from sqlglot import exp

    assert isinstance(query, exp.Expression)
    lines = ["  " + line for line in query.sql("flink", pretty=True).splitlines()]
    for tvf in query.find_all(WindowTVF):
        args = {k: v for k, v in tvf.args.items() if k != "this" and v not in (None, [], "")}
        lines.append(f"  -- window {args}")
    return lines
