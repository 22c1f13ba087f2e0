"""The governance rewrite: a user's SQL in, the SQL that may run out, in small passes.

:func:`govern` runs the passes of :data:`RULES` in order over one sqlglot tree (DuckDB
dialect). Each pass is a function of the tree and a :class:`Context` and either returns
the tree (possibly rewritten) or raises:

1. :func:`check_statement` — exactly one query (``SELECT``, ``WITH``, set operations,
   ``VALUES``) and no statement of another kind anywhere in it;
2. :func:`normalize_names` — table and CTE names fold to lower case, as DuckDB folds them;
3. :func:`resolve_tables` — an *allowlist*: every table reference is a catalog table
   (``zone.table``), a CTE in scope, or a harmless generator (``range``,
   ``generate_series``); a table function that reads the disk, a file path, a system view
   or an unknown table is refused; the principal's access to each table is resolved;
4. :func:`check_functions` — no function that reads settings, variables, files or runs SQL;
5. :func:`check_columns` — a column the principal may not read, referenced anywhere
   (select list, ``WHERE``, ``JOIN … ON``, ``ORDER BY``, window specs, inside functions,
   casts and subqueries), is refused with the policy's reason;
6. :func:`govern_tables` — every catalog table reference becomes
   ``(SELECT <readable columns, masked ones as their mask> FROM <hidden view> WHERE
   <row filter>) AS <alias>``, so no outer construct (``OR``, ``NOT``, a self-join, a CTE,
   ``SELECT *``) can skip a filter or a mask or see a denied column;
7. :func:`check_coverage` — a last sweep: every table left in the tree is a governed one,
   a CTE reference or a generator.

The output is the tree generated back to DuckDB SQL; it is what runs, never the user's
text, so what was checked is what runs.

>>> from fluvial.govern.model import Mask, TableAccess
>>> access = TableAccess("curated.users", ("id", "email"), denied={"phone": "tag pii"},
...                      row_filter="id > 1", masks={"email": Mask("redact")})
>>> g = govern("SELECT * FROM curated.users u", tables={"curated.users": ("id", "email", "phone")},
...            access=lambda t: access, relation=lambda t: f'hidden."{t}"', salt="", who="role a")
>>> print(g.sql)
SELECT * FROM (SELECT "id", CASE WHEN "email" IS NULL THEN NULL ELSE '****' END AS "email" FROM hidden."curated.users" WHERE (id > 1)) AS u
>>> govern("SELECT phone FROM curated.users", tables={"curated.users": ("id", "email", "phone")},
...        access=lambda t: access, relation=str, salt="", who="role a")
Traceback (most recent call last):
...
fluvial.errors.PermissionDeniedError: permission denied: column curated.users.phone (tag pii) for role a
"""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, OptimizeError, ParseError, TokenError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from fluvial.errors import PermissionDeniedError, SqlError, UnsupportedSqlError, did_you_mean
from fluvial.govern.model import TableAccess
from fluvial.govern.sandbox import quote

__all__ = [
    "FORBIDDEN_FUNCTIONS",
    "FORBIDDEN_FUNCTION_PREFIXES",
    "MAX_SQL_CHARS",
    "RULES",
    "TABLE_FUNCTIONS",
    "Context",
    "Governed",
    "forbidden_function",
    "govern",
]

#: the longest SQL text governed (longer is refused before parsing)
MAX_SQL_CHARS = 100_000
#: table functions a query may use in FROM: generators that read nothing
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
#: functions that read settings, variables, files or the catalog, or run SQL
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "checkpoint",
        "current_schemas",
        "current_setting",
        "currval",
        "force_checkpoint",
        "from_substrait",
        "get_substrait",
        "get_substrait_json",
        "getenv",
        "getvariable",
        "glob",
        "nextval",
        "query",
        "query_table",
        "sniff_csv",
        "sql_auto_complete",
        "stats",
        "summary",
        "which_secret",
    }
)
#: name prefixes of such functions (file readers, catalog and pragma functions, scanners)
FORBIDDEN_FUNCTION_PREFIXES = (
    "arrow",
    "delta_",
    "duckdb_",
    "iceberg_",
    "install_",
    "json_execute",
    "load_",
    "mysql_",
    "parquet_",
    "postgres_",
    "pragma_",
    "python_",
    "read_",
    "sqlite_",
)
_KINDS = (exp.Query, exp.Values)
_FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
    exp.Command,
    exp.DDL,
    exp.DML,
    exp.Set,
    exp.Pragma,
    exp.Copy,
    exp.Attach,
    exp.Detach,
    exp.Install,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Describe,
    exp.Summarize,
)
#: table arguments a governed subquery carries over; any other one (time travel, hints, …)
#: is refused
_CARRIED = ("alias", "pivots", "sample", "joins", "laterals")
_IGNORED = ("this", "db", "catalog")


def forbidden_function(name: str) -> bool:
    """Whether a function of this name may not run in user SQL.

    >>> forbidden_function("READ_PARQUET"), forbidden_function("lower")
    (True, False)
    """
    name = name.lower()
    return name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_FUNCTION_PREFIXES)


@dataclass
class Context:
    """What the passes share: the catalog, the principal's access, and what was found."""

    tables: Mapping[str, Sequence[str]]
    access: Callable[[str], TableAccess]
    relation: Callable[[str], str]
    salt: str
    who: str
    #: catalog tables read, in first-reference order, with their access
    accesses: dict[str, TableAccess] = field(default_factory=dict)
    #: ``zone.table.column`` read (masked ones included)
    columns: list[str] = field(default_factory=list)
    catalog_refs: list[exp.Table] = field(default_factory=list)
    cte_refs: set[int] = field(default_factory=set)
    #: placeholder table name -> the governed subquery's SQL
    relations: dict[str, str] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass(frozen=True)
class Governed:
    """The SQL to run and what it reads."""

    sql: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]


def _kind(tree: exp.Expr) -> str:
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    if isinstance(tree, exp.Condition):  # a bare word such as CHECKPOINT parses as a column
        return tree.sql("duckdb").split(maxsplit=1)[0].upper()
    return type(tree).__name__.upper()


def parse(sql: str) -> exp.Expr:
    """Exactly one statement, parsed.

    Raises:
        SqlError: it does not parse (line and column said), or is too long or too deep.
        UnsupportedSqlError: it is several statements, or none.
    """
    if len(sql) > MAX_SQL_CHARS:
        raise UnsupportedSqlError(
            f"the query is {len(sql):,} characters long; at most {MAX_SQL_CHARS:,} run here"
        )
    try:
        trees = [t for t in sqlglot.parse(sql, dialect="duckdb", error_level=ErrorLevel.RAISE) if t]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" (line {first.get('line')}, column {first.get('col')})" if first else ""
        what = first.get("description") or str(exc).splitlines()[0]
        raise SqlError(f"the SQL does not parse{where}: {what}", source="sql") from exc
    except TokenError as exc:
        raise SqlError(f"the SQL does not parse: {exc}", source="sql") from exc
    except RecursionError as exc:
        raise SqlError("the SQL is nested too deeply to run", source="sql") from exc
    if len(trees) != 1:
        raise UnsupportedSqlError(f"expected exactly one statement, found {len(trees)}")
    return trees[0]


def check_statement(tree: exp.Expr, ctx: Context | None = None) -> exp.Expr:
    """One query, and nothing but a query inside it."""
    if not isinstance(tree, _KINDS):
        raise UnsupportedSqlError(
            f"only SELECT, EXPLAIN, DESCRIBE and SUMMARIZE statements run here; found {_kind(tree)}"
        )
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise UnsupportedSqlError(f"a query may not contain {_kind(node)}")
    return tree


def _lower(node: exp.Expr | None) -> None:
    if isinstance(node, exp.Identifier):
        node.set("this", node.name.lower())


def normalize_names(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """Table and CTE names in lower case (DuckDB's names are case-insensitive)."""
    for table in tree.find_all(exp.Table):
        for part in ("this", "db", "catalog"):
            _lower(table.args.get(part))
    for cte in tree.find_all(exp.CTE):
        alias = cte.args.get("alias")
        if isinstance(alias, exp.TableAlias):
            _lower(alias.args.get("this"))
    return tree


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name)
    if isinstance(node, exp.Func):
        return node.sql_name()
    return type(node).__name__


def _catalog_name(table: exp.Table, ctx: Context) -> str:
    if table.catalog:
        raise SqlError(f"lake tables are named zone.table; found {table.sql('duckdb')}")
    name = f"{table.db}.{table.name}"
    if name not in ctx.tables:
        hint = did_you_mean(name, ctx.tables)
        raise SqlError(f"table {name} does not exist{hint}", source="sql")
    return name


def resolve_tables(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """Every table reference is a catalog table, a CTE in scope or a generator."""
    try:
        scopes = traverse_scope(tree)
    except OptimizeError as exc:
        raise UnsupportedSqlError(f"the query's structure is not supported: {exc}") from exc
    for scope in scopes:
        for table in scope.tables:
            if (
                isinstance(table.this, exp.Identifier)
                and not table.db
                and not table.catalog
                and table.name in scope.cte_sources
            ):
                ctx.cte_refs.add(id(table))
    for table in tree.find_all(exp.Table):
        if id(table) in ctx.cte_refs:
            continue
        target = table.this
        if isinstance(target, exp.Func):
            name = _function_name(target).lower()
            if name not in TABLE_FUNCTIONS:
                raise PermissionDeniedError(
                    f"table function {name}() for {ctx.who}: queries read lake tables "
                    "(zone.table) only"
                )
            continue
        if not isinstance(target, exp.Identifier):
            raise UnsupportedSqlError(f"unsupported table reference {table.sql('duckdb')}")
        if not table.db:
            shorts = {t.partition(".")[2]: t for t in ctx.tables}
            close = difflib.get_close_matches(table.name, list(shorts), n=1)
            hint = f"; did you mean '{shorts[close[0]]}'?" if close else ""
            raise SqlError(
                f"table {table.name} does not exist: lake tables are named zone.table{hint}",
                source="sql",
            )
        name = _catalog_name(table, ctx)
        for arg, value in table.args.items():
            if value and arg not in _CARRIED and arg not in _IGNORED:
                raise UnsupportedSqlError(f"{arg} is not supported on table {name}")
        if name not in ctx.accesses:
            ctx.accesses[name] = ctx.access(name)
        ctx.catalog_refs.append(table)
    return tree


def check_functions(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """No function that reads settings, variables, files or the catalog, or runs SQL."""
    for node in tree.find_all(exp.Func):
        name = _function_name(node)
        if forbidden_function(name):
            raise PermissionDeniedError(f"function {name.lower()}() for {ctx.who}")
    return tree


def _source_table(scope: Scope | None, alias: str) -> exp.Table | None:
    while scope is not None:
        source = scope.sources.get(alias)
        if source is not None:
            return source if isinstance(source, exp.Table) else None
        scope = scope.parent
    return None


def _deny(ctx: Context, table: str, column: str) -> None:
    reason = ctx.accesses[table].denied.get(column)
    if reason is None:
        return
    raise PermissionDeniedError(f"column {table}.{column} ({reason}) for {ctx.who}")


def _read(ctx: Context, table: str, column: str) -> None:
    name = f"{table}.{column}"
    if name not in ctx.columns:
        ctx.columns.append(name)


def check_columns(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """A denied column referenced anywhere is refused, with the policy's reason.

    A query that names no denied column anywhere (no identifier spelled like one) needs no
    resolution: the governed subqueries lack those columns, so nothing can reach them.
    """
    if not ctx.accesses:
        return tree
    denied = {c.lower() for access in ctx.accesses.values() for c in access.denied}
    named = [i.name.lower() for i in tree.find_all(exp.Identifier)]
    if not denied.intersection(named):
        star = any(True for _ in tree.find_all(exp.Star))
        for table, access in ctx.accesses.items():
            readable = {c.lower(): c for c in access.columns}
            read = access.columns if star else [readable[n] for n in named if n in readable]
            for name in read:
                _read(ctx, table, name)
        return tree
    zones: dict[str, dict[str, dict[str, str]]] = {}
    for name in ctx.accesses:
        zone, _, short = name.partition(".")
        zones.setdefault(zone, {})[short] = {c.lower(): "UNKNOWN" for c in ctx.tables[name]}
    schema: dict[str, object] = dict(zones)
    try:
        qualified = qualify(
            tree.copy(),
            dialect="duckdb",
            schema=schema,
            expand_stars=False,
            validate_qualify_columns=False,
            quote_identifiers=False,
            identify=False,
        )
        scopes = traverse_scope(qualified)
    except (OptimizeError, ParseError, KeyError, ValueError) as exc:
        return _check_names(tree, ctx, exc)
    for scope in scopes:
        here = {
            alias: f"{src.db}.{src.name}"
            for alias, src in scope.sources.items()
            if isinstance(src, exp.Table) and f"{src.db}.{src.name}" in ctx.accesses
        }
        for column in scope.columns:
            if isinstance(column.this, exp.Star):
                continue
            name = column.name.lower()
            source = _source_table(scope, column.table) if column.table else None
            if source is not None and f"{source.db}.{source.name}" in ctx.accesses:
                table = f"{source.db}.{source.name}"
                _deny(ctx, table, _real(ctx, table, name))
                _read(ctx, table, _real(ctx, table, name))
            elif not column.table:
                for table in here.values():
                    _deny(ctx, table, _real(ctx, table, name))
        selects = scope.expression.selects if isinstance(scope.expression, exp.Query) else []
        if any(s.is_star for s in selects):
            for table in here.values():
                for col in ctx.accesses[table].columns:
                    _read(ctx, table, col)
    return tree


def _real(ctx: Context, table: str, lowered: str) -> str:
    for column in ctx.tables[table]:
        if column.lower() == lowered:
            return column
    return lowered


def _check_names(tree: exp.Expr, ctx: Context, cause: Exception) -> exp.Expr:
    """When the query cannot be qualified: any column named like a denied one is refused."""
    names = {c.name.lower() for c in tree.find_all(exp.Column)}
    for table, access in ctx.accesses.items():
        for column in access.denied:
            if column.lower() in names:
                _deny(ctx, table, column)
    return tree


def _governed_relation(name: str, ctx: Context) -> str:
    """The SQL of *name* as the principal may see it: readable columns (masked ones as
    their mask) of the rows the filter keeps."""
    access = ctx.accesses[name]
    if not access.columns:
        raise PermissionDeniedError(f"table {name}: no readable column for {ctx.who}")
    projections = []
    for column in access.columns:
        q = quote(column)
        mask = access.masks.get(column)
        projections.append(f"{mask.sql(q, salt=ctx.salt)} AS {q}" if mask else q)
    sql = f"SELECT {', '.join(projections)} FROM {ctx.relation(name)}"
    if access.row_filter:
        sql += f" WHERE ({access.row_filter})"
    return sql


def govern_tables(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """Each catalog table reference becomes its governed subquery.

    The reference is replaced by a placeholder table with a name no user can know (a
    per-query random token), which :func:`govern` swaps for the subquery's SQL once the
    tree is generated: the policy's filter and masks are never re-parsed per query.
    """
    unaliased: set[tuple[str, str]] = set()
    for number, table in enumerate(ctx.catalog_refs):
        if table is tree:
            raise UnsupportedSqlError("a bare table is not a query")
        name = f"{table.db}.{table.name}"
        alias = table.args.get("alias")
        if not alias:
            alias = exp.TableAlias(this=exp.to_identifier(table.name, quoted=True))
            unaliased.add((table.db, table.name))
        placeholder = f"_fluvial_{ctx.token}_{number}"
        governed = exp.Table(this=exp.to_identifier(placeholder, quoted=True), alias=alias)
        for arg in _CARRIED[1:]:
            if table.args.get(arg):
                governed.set(arg, table.args[arg])
        governed.meta["governed"] = True
        ctx.relations[placeholder] = _governed_relation(name, ctx)
        table.replace(governed)
    for column in list(tree.find_all(exp.Column)):
        db = column.args.get("db")
        if db is not None and (db.name.lower(), column.table.lower()) in unaliased:
            column.set("db", None)
            column.set("catalog", None)
    return tree


def check_coverage(tree: exp.Expr, ctx: Context) -> exp.Expr:
    """Every table left is governed, a CTE reference or a generator."""
    for table in tree.find_all(exp.Table):
        if table.meta.get("governed") or id(table) in ctx.cte_refs:
            continue
        if (
            isinstance(table.this, exp.Func)
            and _function_name(table.this).lower() in TABLE_FUNCTIONS
        ):
            continue
        raise UnsupportedSqlError(f"unsupported table reference {table.sql('duckdb')}")
    return tree


#: the passes, in order
RULES: tuple[Callable[[exp.Expr, Context], exp.Expr], ...] = (
    check_statement,
    normalize_names,
    resolve_tables,
    check_functions,
    check_columns,
    govern_tables,
    check_coverage,
)


def govern(
    sql: str,
    *,
    tables: Mapping[str, Sequence[str]],
    access: Callable[[str], TableAccess],
    relation: Callable[[str], str],
    salt: str,
    who: str,
) -> Governed:
    """*sql* (one query) rewritten so it reads only what *access* allows.

    *tables* maps each catalog table to its columns; *access* answers the principal's
    :class:`TableAccess` for one (raising :class:`PermissionDeniedError` when it has
    none); *relation* gives the SQL that reads a table's data; *salt* goes into hash
    masks; *who* names the principal in messages (``role analyst``).

    Raises:
        SqlError: the SQL does not parse or names a table that does not exist.
        UnsupportedSqlError: it is not one query, or uses a construct that is refused.
        PermissionDeniedError: it reads a table, column or function it may not.
    """
    ctx = Context(tables, access, relation, salt, who)
    tree = parse(sql)
    for rule in RULES:
        tree = rule(tree, ctx)
    text = tree.sql(dialect="duckdb")
    for placeholder, governed in ctx.relations.items():
        quoted = quote(placeholder)
        if text.count(quoted) != 1:  # cannot happen: the token is random per query
            raise UnsupportedSqlError("the query could not be governed")
        text = text.replace(quoted, f"({governed})")
    return Governed(text, tuple(ctx.accesses), tuple(ctx.columns))
