"""POST /api/sql: one read-only statement over the lake, bounded rows and time."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from fluvial.errors import SqlError, UnsupportedSqlError
from fluvial.project import Project
from fluvial.serve.api import create_api, execute_sql

from .conftest import TestClient, World, admin_key


def test_select_matches_arrow(client: TestClient, world: World) -> None:
    res = client.post(
        "/api/sql",
        json={
            "sql": "SELECT url, count(*) AS n, sum(amount) AS total FROM raw.clicks "
            "GROUP BY url ORDER BY url"
        },
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert [c["name"] for c in body["columns"]] == ["url", "n", "total"]
    grouped = world.lake_rows.group_by("url").aggregate([("url", "count"), ("amount", "sum")])
    expected = sorted(
        zip(
            grouped["url"].to_pylist(),
            grouped["url_count"].to_pylist(),
            grouped["amount_sum"].to_pylist(),
            strict=True,
        )
    )
    # sum() of BIGINT is a HUGEINT in DuckDB: it still comes back as a JSON integer
    assert [tuple(r) for r in body["rows"]] == expected
    assert body["truncated"] is False and body["row_count"] == len(expected)


def test_limit_truncates(client: TestClient, world: World) -> None:
    body = client.post("/api/sql", json={"sql": "SELECT * FROM raw.clicks", "limit": 50}).json()
    assert body["row_count"] == 50 and body["truncated"] is True and len(body["rows"]) == 50
    body = client.post("/api/sql", json={"sql": "FROM raw.clicks", "limit": 5000}).json()
    assert body["row_count"] == world.lake_rows.num_rows and body["truncated"] is False
    first = min(world.lake_rows["ts"].to_pylist())
    times = [r[2] for r in body["rows"]]
    assert min(times) == first.isoformat()  # timestamps as ISO-8601


def test_csv_export(client: TestClient, world: World) -> None:
    res = client.post(
        "/api/sql",
        params={"format": "csv"},
        json={"sql": "SELECT user_id, amount FROM raw.clicks ORDER BY ts, user_id", "limit": 10000},
    )
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    table = pacsv.read_csv(io.BytesIO(res.content))
    assert table.column_names == ["user_id", "amount"]
    assert table.num_rows == world.lake_rows.num_rows
    assert pc.sum(table["amount"]).as_py() == pc.sum(world.lake_rows["amount"]).as_py()


def test_explain_runs(client: TestClient) -> None:
    res = client.post("/api/sql", json={"sql": "EXPLAIN SELECT count(*) FROM raw.clicks"})
    assert res.status_code == 200 and res.json()["row_count"] >= 1


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("CREATE TABLE t AS SELECT 1", "found CREATE"),
        ("DROP TABLE raw.clicks", "found DROP"),
        ("INSERT INTO raw.clicks SELECT * FROM raw.clicks", "found INSERT"),
        ("COPY (SELECT 1) TO '/tmp/fluvial-x.csv'", "found COPY"),
        ("SET threads = 1", "found SET"),
        ("ATTACH '/tmp/fluvial-x.db' AS x", "found ATTACH"),
        ("SELECT 1; SELECT 2", "exactly one statement, found 2"),
        ("SELECT 1; DROP TABLE raw.clicks", "exactly one statement, found 2"),
    ],
)
def test_refusals(client: TestClient, sql: str, words: str) -> None:
    res = client.post("/api/sql", json={"sql": sql})
    assert res.status_code == 400, res.text
    assert res.json()["error"] == "UnsupportedSqlError" and words in res.json()["message"]


def test_lake_still_intact_after_refusals(client: TestClient, world: World) -> None:
    client.post("/api/sql", json={"sql": "DROP TABLE raw.clicks"})
    body = client.post("/api/sql", json={"sql": "SELECT count(*) FROM raw.clicks"}).json()
    assert body["rows"] == [[world.lake_rows.num_rows]]


def test_files_outside_the_lake_are_unreadable(client: TestClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    res = client.post("/api/sql", json={"sql": f"SELECT * FROM read_csv('{secret}')"})
    assert res.status_code == 403 and res.json()["error"] == "PermissionDeniedError"
    assert "table function read_csv()" in res.json()["message"]


def test_bad_sql_and_bad_requests(client: TestClient) -> None:
    res = client.post("/api/sql", json={"sql": "SELEC 1"})
    assert res.status_code == 400 and res.json()["error"] == "SqlError"
    res = client.post("/api/sql", json={"sql": "SELECT * FROM raw.nope"})
    assert res.status_code == 400 and "nope" in res.json()["message"]
    res = client.post("/api/sql", json={"sql": "SELECT 1", "limit": 10_001})
    assert res.status_code == 400 and "at most 10,000" in res.json()["message"]
    res = client.post("/api/sql", json={"limit": 3})
    assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", "sql"]


def test_timeout_interrupts(world: World) -> None:
    env = {"FLUVIAL_API__SQL_TIMEOUT_SECONDS": "0.3"}
    headers = {"Authorization": f"Bearer {admin_key(world.project)}"}
    with TestClient(create_api(Project(world.project.root, env=env)), headers=headers) as client:
        res = client.post(
            "/api/sql",
            json={"sql": "SELECT count(*) FROM range(1000000000000) t(a) WHERE a % 7 = 3"},
        )
    assert res.status_code == 400
    assert "ran longer than 0.3 s" in res.json()["message"]


def test_execute_sql_is_the_one_query_function(world: World) -> None:
    result = execute_sql(world.project, "SELECT 41 + 1 AS x", limit=10, timeout=5)
    assert result.table == pa.table({"x": pa.array([42], pa.int32())})
    with pytest.raises(UnsupportedSqlError):
        execute_sql(world.project, "DELETE FROM raw.clicks", limit=10, timeout=5)
    with pytest.raises(SqlError, match="ran longer"):
        execute_sql(
            world.project, "SELECT count(*) FROM range(1000000000000)", limit=1, timeout=0.2
        )


def test_warehouse_marts_are_readable_and_read_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import duckdb

    from fluvial.batch.warehouse import warehouse_path

    project = Project.init(tmp_path / "p")
    path = warehouse_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.daily AS SELECT range AS day, range * 2 AS n FROM range(5)")
    con.close()
    result = execute_sql(project, "SELECT sum(n) AS total FROM marts.daily", limit=10, timeout=10)
    assert result.table.column("total").to_pylist() == [20]
    with pytest.raises((SqlError, UnsupportedSqlError)):
        execute_sql(project, "DELETE FROM marts.daily", limit=10, timeout=10)
