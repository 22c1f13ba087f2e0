"""Lookup joins (``FOR SYSTEM_TIME AS OF`` a processing-time attribute) against a
dimension in files, in the operational store and in a lake table, checked against the
same join in DuckDB batch."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from tests.stream.helpers import (
    USERS,
    expected_con,
    make_rows,
    multiset,
    read_output,
    sink,
    write_json,
)

from fluvial.lake import append, open_lake
from fluvial.project import Project
from fluvial.serve.store import open_store
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

STREAM = """
CREATE TABLE clicks (
  user_id STRING, page STRING, amount DOUBLE, ts TIMESTAMP(3),
  proc_time AS PROCTIME(),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
"""
#: two of the twelve users have no dimension row (an inner join drops their clicks)
DIM = [
    {"user_id": u, "country": ["fr", "de", "us"][i % 3], "tier": i % 4}
    for i, u in enumerate(USERS[:-2])
]
DIM_COLUMNS = "user_id STRING, country STRING, tier INT"


def dim_ddl(kind: str, tmp: Path) -> str:
    if kind == "filesystem":
        path = tmp / "users"
        path.mkdir()
        (path / "users.json").write_text("".join(json.dumps(r) + "\n" for r in DIM))
        options = f"'connector' = 'filesystem', 'path' = '{path}', 'format' = 'json'"
    elif kind == "store":
        options = "'connector' = 'store', 'table' = 'users'"
    else:
        options = "'connector' = 'lake', 'table' = 'curated.dim_users'"
    pk = ", PRIMARY KEY (user_id) NOT ENFORCED" if kind == "store" else ""
    return f"CREATE TABLE users ({DIM_COLUMNS}{pk}) WITH ({options});\n"


def load_dimension(kind: str, project: Project) -> None:
    rows = pa.table(
        {
            "user_id": [r["user_id"] for r in DIM],
            "country": [r["country"] for r in DIM],
            "tier": pa.array([r["tier"] for r in DIM], pa.int32()),
        }
    )
    if kind == "store":
        store = open_store(project)
        try:
            store.upsert("users", rows, ["user_id"])
        finally:
            store.close()
    elif kind == "lake":
        with open_lake(project) as lake:
            lake.create_table("curated.dim_users", rows.schema)
            append(lake.table("curated.dim_users"), rows)


@pytest.mark.parametrize("kind", ["filesystem", "store", "lake"])
@pytest.mark.parametrize("how", ["JOIN", "LEFT JOIN"])
def test_lookup_join_equals_batch(tmp_path: Path, project: Project, kind: str, how: str) -> None:
    rows = make_rows(600, seed=31)
    path = write_json(tmp_path / "clicks.json", rows)
    load_dimension(kind, project)
    out = tmp_path / "out"
    sql = (
        STREAM.format(path=path)
        + dim_ddl(kind, tmp_path)
        + sink(out, "u STRING, p STRING, country STRING, tier INT")
        + f"""INSERT INTO out SELECT c.user_id, c.page, u.country, u.tier FROM clicks AS c
              {how} users FOR SYSTEM_TIME AS OF c.proc_time AS u
              ON c.user_id = u.user_id;"""
    )
    run_job(plan_text(sql), project=project, until_idle=True, max_rows=97)
    con = expected_con(rows)
    con.register("dim", pa.Table.from_pylist(DIM))
    want = con.execute(
        f"SELECT e.user_id, e.page, d.country, d.tier FROM e {how} dim d ON e.user_id = d.user_id"
    ).fetchall()
    got = read_output(out, "*")
    assert multiset(got) == multiset(want)
    if how == "JOIN":
        assert len(got) < len(rows)  # the two users without a dimension row are dropped
