"""``fluvial stream deploy``: a pipeline translated to Flink SQL, and the two runners.

Translation is checked by parsing the output back with Fluvial's own front end (queries,
columns and watermarks must be unchanged; options as Flink's connectors want them); the
gateway runner against a fake SQL Gateway served on loopback, request by request; the
local runner (slow) by running the same file on Apache Flink through the CLI and on
Fluvial's engine, comparing the outputs as multisets.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import shutil
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from fluvial.cli import app, main
from fluvial.errors import PipelineError, SqlError, UnsupportedSqlError, UsageError
from fluvial.project import Project
from fluvial.stream.deploy import FlinkJob, to_flink
from fluvial.stream.flink import find_flink_python
from fluvial.stream.job import load_job
from fluvial.stream.runners import create_runner
from fluvial.stream.runners.gateway import GatewayRunner
from fluvial.stream.runtime import run_job
from fluvial.stream.sql import parse_script
from fluvial.stream.sql.ast import CreateTable

ROOT = Path(__file__).resolve().parents[2]

FILE_PIPELINE = """SET 'execution.checkpointing.interval' = '2 s';
SET 'fluvial.debug' = 'true';
-- page views per minute
CREATE TABLE clicks (
  page STRING,
  amount INT,
  ts TIMESTAMP(3),
  day AS CAST(ts AS DATE),  -- computed
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = 'in/clicks.json',
  'format' = 'json',
  'fluvial.allowed-lateness' = '1 min',
  'fluvial.late-events.topic' = 'late'
);
CREATE TABLE views (ws TIMESTAMP(3), page STRING, n BIGINT, total INT)
  WITH ('connector' = 'filesystem', 'path' = '/abs/out', 'format' = 'json');
CREATE TABLE shown (page STRING) WITH ('connector' = 'print');
INSERT INTO views
SELECT window_start, page, COUNT(*), SUM(amount) /* per page */
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, page;
INSERT INTO shown SELECT page FROM clicks WHERE amount > 10;
"""


def kafka_project(root: Path, servers: str = "broker-1:9092,broker-2:9092") -> Project:
    Project.init(root)
    (root / "fluvial.toml").write_text(
        f'[log]\nbackend = "kafka"\n\n[kafka]\nbootstrap_servers = "{servers}"\n'
        "\n[flink]\nparallelism = 3\n",
        encoding="utf-8",
    )
    return Project(root)


def _shape(table: CreateTable) -> tuple[Any, ...]:
    """A table's columns and watermark, without source positions."""
    wm = table.watermark
    columns = tuple((c.name, c.type, c.expr) for c in table.columns)
    return columns, wm and (wm.column, wm.expr, wm.delay_ms), table.primary_key


def flink_tables(job: FlinkJob) -> dict[str, CreateTable]:
    """The translated statements parsed back by Fluvial's front end."""
    return parse_script(";\n".join(job.statements)).tables


# -- translation --------------------------------------------------------------------------


def test_filesystem_pipeline_keeps_its_text_and_drops_fluvial_options(project: Project) -> None:
    job = to_flink(FILE_PIPELINE, project, source="views.sql")
    original = parse_script(FILE_PIPELINE)
    translated = parse_script(";\n".join(job.statements))
    # the queries, columns and watermarks Flink sees are the user's
    assert [i.query for i in translated.inserts] == [i.query for i in original.inserts]
    for name, table in original.tables.items():
        back = translated.tables[name]
        assert _shape(back) == _shape(table)
    # ... and so is the statement text outside WITH (…), comments inside it included
    clicks = job.statements[1]
    assert clicks.startswith("CREATE TABLE clicks (\n  page STRING,")
    assert "day AS CAST(ts AS DATE),  -- computed\n" in clicks
    assert "/* per page */" in job.inserts[0]
    assert translated.tables["clicks"].options == {
        "connector": "filesystem",
        "path": str(project.root / "in/clicks.json"),  # relative to the project, as Fluvial
        "format": "json",
    }
    assert translated.tables["views"].options == original.tables["views"].options
    assert translated.tables["shown"].options == {"connector": "print"}
    # an unchanged table is passed through byte for byte
    views = original.tables["views"]
    assert views.position is not None
    assert job.statements[2] == FILE_PIPELINE.splitlines()[views.position.line - 1] + (
        "\n  WITH ('connector' = 'filesystem', 'path' = '/abs/out', 'format' = 'json')"
    )
    dropped = [w for w in job.warnings if "dropped" in w]
    assert len(dropped) == 3
    assert "'fluvial.allowed-lateness'" in dropped[1] and "late rows" in dropped[1]
    assert "'fluvial.late-events.topic'" in dropped[2]
    assert "SET 'fluvial.debug'" in dropped[0]
    # SET passes (re-quoted), Fluvial's own SET is dropped; the file's SET wins over defaults
    assert job.statements[0] == "SET 'execution.checkpointing.interval' = '2 s'"
    assert not any("fluvial.debug" in s for s in job.statements)
    assert "execution.checkpointing.interval" not in job.config
    assert job.config["table.local-time-zone"] == "UTC"
    assert job.config["pipeline.name"] == "views"
    assert job.bounded and job.connectors == {
        "clicks": "filesystem",
        "views": "filesystem",
        "shown": "print",
    }


def test_several_inserts_are_one_statement_set(project: Project) -> None:
    job = to_flink(FILE_PIPELINE, project, source="views.sql")
    submitted = job.submission()
    assert [s.split()[0] for s in submitted] == ["SET", "CREATE", "CREATE", "CREATE", "EXECUTE"]
    body = submitted[-1]
    assert body.startswith("EXECUTE STATEMENT SET\nBEGIN\n") and body.endswith("\nEND")
    # the script form parses back (Fluvial unwraps statement sets) to the same inserts
    script = parse_script(job.sql)
    assert [i.table for i in script.inserts] == ["views", "shown"]
    assert script.settings["table.local-time-zone"] == "UTC"
    assert script.settings["execution.checkpointing.interval"] == "2 s"


def test_statement_set_input_and_single_line_options(project: Project) -> None:
    text = (
        "CREATE TABLE s (a INT) WITH ('connector' = 'filesystem', 'path' = '/in', "
        "'format' = 'csv', 'fluvial.allowed-lateness' = '5 s');\n"
        "CREATE TABLE o (a INT) WITH ('connector' = 'blackhole');\n"
        "EXECUTE STATEMENT SET BEGIN\nINSERT INTO o SELECT a FROM s;\nEND;\n"
    )
    job = to_flink(text, project)
    assert job.statements == (
        "CREATE TABLE s (a INT) WITH ('connector' = 'filesystem', 'path' = '/in', "
        "'format' = 'csv')",
        "CREATE TABLE o (a INT) WITH ('connector' = 'blackhole')",
        "INSERT INTO o SELECT a FROM s",
    )
    assert job.submission()[-1] == "INSERT INTO o SELECT a FROM s"


def test_option_values_with_quotes_round_trip(project: Project) -> None:
    text = (
        "CREATE TABLE s (a STRING) WITH ('connector' = 'filesystem', 'path' = '/in', "
        "'format' = 'csv', 'csv.quote-character' = '''', 'fluvial.allowed-lateness' = '1 s');\n"
        "CREATE TABLE o (a STRING) WITH ('connector' = 'print', 'print-identifier' = 'it''s');\n"
        "INSERT INTO o SELECT a FROM s;\n"
    )
    tables = flink_tables(to_flink(text, project))
    assert tables["s"].options["csv.quote-character"] == "'"
    assert tables["o"].options["print-identifier"] == "it's"


TOPIC_PIPELINE = """CREATE TABLE clicks (
  user_id STRING,
  page STRING,
  ts TIMESTAMP_LTZ(3),
  _partition INT NOT NULL,
  _timestamp TIMESTAMP_LTZ(3) COMMENT 'log time',
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'fluvial',
  'topic' = 'events',
  'scan.startup.mode' = 'latest-offset',
  'fluvial.allowed-lateness' = '10 min'
);
CREATE TABLE per_page (ws TIMESTAMP(3), page STRING, n BIGINT,
  PRIMARY KEY (ws, page) NOT ENFORCED)
  WITH ('connector' = 'fluvial', 'topic' = 'per_page');
CREATE TABLE copy (user_id STRING, page STRING)
  WITH ('connector' = 'fluvial', 'topic' = 'copy', 'key.fields' = 'user_id',
        'sink.transactional-id-prefix' = 'mine');
INSERT INTO per_page SELECT window_start, page, COUNT(*)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, page;
INSERT INTO copy SELECT user_id, page FROM clicks;
"""


def _options(statement: str) -> dict[str, str]:
    """The WITH options of a translated CREATE TABLE, read with a regex (not our parser)."""
    block = statement[statement.rindex("WITH (") :]
    pairs = re.findall(r"'((?:[^']|'')*)'\s*=\s*'((?:[^']|'')*)'", block)
    return {k.replace("''", "'"): v.replace("''", "'") for k, v in pairs}


def test_topics_become_kafka_with_the_projects_brokers(tmp_path: Path) -> None:
    project = kafka_project(tmp_path / "p")
    job = to_flink(TOPIC_PIPELINE, project, source="pages.sql")
    clicks, per_page, copy = job.statements[:3]
    brokers = "broker-1:9092,broker-2:9092"
    assert _options(clicks) == {
        "connector": "kafka",
        "topic": "events",
        "properties.bootstrap.servers": brokers,
        "scan.startup.mode": "latest-offset",
        "format": "json",
        "json.timestamp-format.standard": "ISO-8601",
    }
    exactly_once = {
        "sink.delivery-guarantee": "exactly-once",
        "properties.transaction.timeout.ms": "900000",
    }
    assert _options(per_page) == {
        "connector": "upsert-kafka",
        "topic": "per_page",
        "properties.bootstrap.servers": brokers,
        "key.format": "json",
        "key.json.timestamp-format.standard": "ISO-8601",
        "value.format": "json",
        "value.json.timestamp-format.standard": "ISO-8601",
        "sink.transactional-id-prefix": "fluvial-pages-per_page",
        **exactly_once,
    }
    assert _options(copy) == {
        "connector": "kafka",
        "topic": "copy",
        "properties.bootstrap.servers": brokers,
        "key.fields": "user_id",
        "key.format": "json",
        "key.json.timestamp-format.standard": "ISO-8601",
        "value.format": "json",
        "value.json.timestamp-format.standard": "ISO-8601",
        "value.fields-include": "ALL",
        "sink.transactional-id-prefix": "mine-copy",
        **exactly_once,
    }
    # the log's system columns are Kafka metadata on Flink
    assert "  _partition INT NOT NULL METADATA FROM 'partition' VIRTUAL,\n" in clicks
    assert "_timestamp TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL COMMENT 'log time'" in (
        clicks
    )
    assert "WATERMARK FOR ts AS ts - INTERVAL '5' SECOND\n) WITH (\n  'connector'" in clicks
    assert job.connectors == {"clicks": "kafka", "per_page": "upsert-kafka", "copy": "kafka"}
    assert not job.bounded
    assert job.config["parallelism.default"] == "3"
    assert job.config["execution.checkpointing.interval"] == "10 s"  # [stream] default
    assert any("'fluvial.allowed-lateness'" in w for w in job.warnings)


def test_startup_modes_map_and_default_to_earliest(tmp_path: Path) -> None:
    project = kafka_project(tmp_path / "p")
    base = (
        "CREATE TABLE s (a INT) WITH ('connector' = 'fluvial', 'topic' = 't'{extra});\n"
        "CREATE TABLE o (a INT) WITH ('connector' = 'blackhole');\n"
        "INSERT INTO o SELECT a FROM s;\n"
    )
    expected = {
        "": {"scan.startup.mode": "earliest-offset"},
        ", 'scan.startup.mode' = 'earliest-offset'": {"scan.startup.mode": "earliest-offset"},
        ", 'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '1700000000000'": {
            "scan.startup.mode": "timestamp",
            "scan.startup.timestamp-millis": "1700000000000",
        },
    }
    for extra, wanted in expected.items():
        options = _options(to_flink(base.format(extra=extra), project).statements[0])
        assert {k: v for k, v in options.items() if k.startswith("scan.")} == wanted, extra


def test_topic_on_the_embedded_log_is_refused_naming_the_table(project: Project) -> None:
    with pytest.raises(UnsupportedSqlError) as info:
        to_flink(TOPIC_PIPELINE, project, source="pages.sql")
    message = str(info.value)
    assert message.startswith("pages.sql:1:1: table 'clicks'")
    assert "embedded event log" in message and 'backend = "kafka"' in message
    with pytest.raises(UnsupportedSqlError, match="table 'clicks'"):
        to_flink(TOPIC_PIPELINE, None)


@pytest.mark.parametrize("connector", ["store", "lake"])
def test_store_and_lake_are_refused_by_name(project: Project, connector: str) -> None:
    text = (
        "CREATE TABLE s (a INT) WITH ('connector' = 'filesystem', 'path' = '/x', "
        "'format' = 'json');\n"
        f"CREATE TABLE o (a INT, PRIMARY KEY (a) NOT ENFORCED) WITH ('connector' = "
        f"'{connector}', 'table' = 't');\nINSERT INTO o SELECT a FROM s;\n"
    )
    with pytest.raises(UnsupportedSqlError) as info:
        to_flink(text, project, source="f.sql")
    assert str(info.value).startswith(f"f.sql:2:1: table 'o': connector '{connector}' cannot")


def test_unknown_connector_and_option_are_errors(project: Project) -> None:
    text = (
        "CREATE TABLE s (a INT) WITH ('connector' = 'filesystm', 'path' = '/x');\n"
        "CREATE TABLE o (a INT) WITH ('connector' = 'blackhole');\n"
        "INSERT INTO o SELECT a FROM s;\n"
    )
    with pytest.raises(UnsupportedSqlError, match="did you mean 'filesystem'"):
        to_flink(text, project)
    bad_option = text.replace(
        "'filesystm', 'path' = '/x'", "'filesystem', 'path' = '/x', 'format' = 'json', 'pth' = '/y'"
    )
    with pytest.raises(SqlError, match=r"1:1: table 's': .*'pth'"):
        to_flink(bad_option, project)
    with pytest.raises(SqlError, match="'print' can only be a sink"):
        to_flink(text.replace("'filesystm', 'path' = '/x'", "'print'"), project)


def test_flink_connectors_pass_through_with_a_warning(project: Project) -> None:
    text = (
        "CREATE TABLE s (a INT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');\n"
        "CREATE TABLE o (a INT) WITH ('connector' = 'blackhole');\n"
        "INSERT INTO o SELECT a FROM s;\n"
    )
    job = to_flink(text, project)
    assert job.statements[0] == text.splitlines()[0].removesuffix(";")
    assert job.bounded and "passed to Flink as written" in job.warnings[0]


def test_dry_run_prints_the_flink_sql(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = project.root / "pipelines" / "views.sql"
    pipeline.write_text(FILE_PIPELINE, encoding="utf-8")
    args = ["stream", "deploy", str(pipeline), "--dry-run", "--project", str(project.root)]
    assert main(args) == 0
    out = capsys.readouterr()
    assert out.out == to_flink(FILE_PIPELINE, project, source=str(pipeline)).sql
    assert out.err.count("warning: ") == 3
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["job"] == "views" and data["bounded"] is True and len(data["warnings"]) == 3
    assert main([*args, "--runner", "yarn"]) == 2
    assert "unknown runner 'yarn'" in capsys.readouterr().err


def test_unknown_runner(project: Project) -> None:
    with pytest.raises(UsageError, match="did you mean 'local'"):
        create_runner("locl", project.settings.flink)


# -- the gateway runner ---------------------------------------------------------------------


class FakeGateway:
    """A SQL Gateway's REST API v1, as far as deploying needs: it records every request.

    An operation is RUNNING at its first status request, then FINISHED — or ERROR for a
    statement naming ``missing_table``, whose result is Flink's error (HTTP 500)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.statements: dict[str, str] = {}
        self.polled: Counter[str] = Counter()
        self.app = Starlette(
            routes=[
                Route("/v1/sessions", self.open_session, methods=["POST"]),
                Route("/v1/sessions/{s}", self.close_session, methods=["DELETE"]),
                Route("/v1/sessions/{s}/statements", self.execute, methods=["POST"]),
                Route("/v1/sessions/{s}/operations/{op}/status", self.status, methods=["GET"]),
                Route(
                    "/v1/sessions/{s}/operations/{op}/result/{token}", self.result, methods=["GET"]
                ),
            ]
        )

    async def _record(self, request: Request) -> Any:
        body = await request.body()
        payload = json.loads(body) if body else None
        self.requests.append((request.method, request.url.path, payload))
        return payload

    async def open_session(self, request: Request) -> JSONResponse:
        await self._record(request)
        return JSONResponse({"sessionHandle": "sess-1"})

    async def close_session(self, request: Request) -> JSONResponse:
        await self._record(request)
        return JSONResponse({"status": "CLOSED"})

    async def execute(self, request: Request) -> JSONResponse:
        payload = await self._record(request)
        op = f"op-{len(self.statements) + 1}"
        self.statements[op] = payload["statement"]
        return JSONResponse({"operationHandle": op})

    async def status(self, request: Request) -> JSONResponse:
        await self._record(request)
        op = request.path_params["op"]
        self.polled[op] += 1
        if self.polled[op] == 1:
            return JSONResponse({"status": "RUNNING"})
        failed = "missing_table" in self.statements[op]
        return JSONResponse({"status": "ERROR" if failed else "FINISHED"})

    async def result(self, request: Request) -> JSONResponse:
        await self._record(request)
        statement = self.statements[request.path_params["op"]]
        if "missing_table" in statement:
            trace = (
                "org.apache.flink.table.gateway.service.utils.SqlExecutionException: Failed\n"
                "\tat org.apache.flink...\n"
                "Caused by: org.apache.flink.table.api.ValidationException: Object "
                "'missing_table' not found"
            )
            return JSONResponse(
                {
                    "errors": [
                        "Internal server error.",
                        f"<Exception on server side:\n{trace}\nEnd of exception on server side>",
                    ]
                },
                status_code=500,
            )
        job = statement.startswith(("INSERT", "EXECUTE"))
        return JSONResponse(
            {
                "resultType": "EOS",
                "isQueryResult": False,
                "jobID": "a1b2c3" if job else None,
                "results": {
                    "columns": [{"name": "job id" if job else "result"}],
                    "data": [{"kind": "INSERT", "fields": ["a1b2c3" if job else "OK"]}],
                },
            }
        )


@pytest.fixture
def gateway() -> Iterator[tuple[FakeGateway, str]]:
    """The fake gateway served by uvicorn on a free loopback port."""
    fake = FakeGateway()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake.app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started
    yield fake, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


def test_gateway_runner_sends_the_job(gateway: tuple[FakeGateway, str], project: Project) -> None:
    fake, url = gateway
    job = to_flink(FILE_PIPELINE, project, source="views.sql")
    result = GatewayRunner(url, poll_interval=0.001).deploy(job)
    assert (result.state, result.job_id, result.where) == ("submitted", "a1b2c3", url)
    submitted = job.submission()
    expected: list[tuple[str, str, Any]] = [
        ("POST", "/v1/sessions", {"sessionName": "fluvial-views", "properties": dict(job.config)})
    ]
    for n, statement in enumerate(submitted, 1):
        op = f"/v1/sessions/sess-1/operations/op-{n}"
        expected += [
            ("POST", "/v1/sessions/sess-1/statements", {"statement": statement}),
            ("GET", f"{op}/status", None),
            ("GET", f"{op}/status", None),
        ]
    expected += [
        ("GET", f"/v1/sessions/sess-1/operations/op-{len(submitted)}/result/0", None),
        ("DELETE", "/v1/sessions/sess-1", None),
    ]
    assert fake.requests == expected
    assert expected[0][2]["properties"]["pipeline.name"] == "views"
    assert submitted[-1].startswith("EXECUTE STATEMENT SET")


def test_gateway_refusal_names_the_statement_and_closes_the_session(
    gateway: tuple[FakeGateway, str], project: Project
) -> None:
    fake, url = gateway
    statements = to_flink(FILE_PIPELINE, project).statements[:-1]
    job = FlinkJob("broken", (*statements, "INSERT INTO shown SELECT page FROM missing_table"))
    with pytest.raises(PipelineError) as info:
        GatewayRunner(url, poll_interval=0.001).deploy(job)
    message = str(info.value)
    assert "statement 5 (EXECUTE STATEMENT SET)" in message
    assert message.endswith("ValidationException: Object 'missing_table' not found")
    assert fake.requests[-1] == ("DELETE", "/v1/sessions/sess-1", None)


def test_gateway_unreachable_is_a_pipeline_error(project: Project) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    job = to_flink(FILE_PIPELINE, project)
    with pytest.raises(PipelineError, match=f"cannot reach the Flink SQL Gateway at .*:{port}"):
        GatewayRunner(f"http://127.0.0.1:{port}").deploy(job)


def test_deploy_through_the_cli_to_the_gateway(
    gateway: tuple[FakeGateway, str], project: Project
) -> None:
    fake, url = gateway
    (project.root / "fluvial.toml").write_text(
        f'[flink]\nrunner = "gateway"\ngateway_url = "{url}"\nparallelism = 2\n', encoding="utf-8"
    )
    pipeline = project.root / "views.sql"
    pipeline.write_text(FILE_PIPELINE, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["stream", "deploy", str(pipeline), "--project", str(project.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["runner"], data["state"], data["job_id"]) == ("gateway", "submitted", "a1b2c3")
    properties = fake.requests[0][2]["properties"]
    assert properties["parallelism.default"] == "2"


# -- the local runner on Apache Flink (slow) -----------------------------------------------

BASE = dt.datetime(2026, 11, 24, 10, 0, 0)
PAGES = ["/home", "/p/1", "/p/2", "/cart"]

LOCAL_PIPELINE = """-- views and spend per page and minute
CREATE TABLE clicks (
  page STRING,
  amount INT,
  price DOUBLE,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '3' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'clicks.json', 'format' = 'json');
CREATE TABLE per_minute (ws TIMESTAMP(3), we TIMESTAMP(3), page STRING, n BIGINT,
  total INT, top DOUBLE)
  WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
INSERT INTO per_minute
SELECT window_start, window_end, page, COUNT(*), SUM(amount), MAX(price)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, page;
"""

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


def _norm(value: Any) -> Any:
    if isinstance(value, str) and _TIMESTAMP.match(value):
        return dt.datetime.fromisoformat(value)  # Flink: 10:01:00, Fluvial: 10:01:00.000
    if isinstance(value, float):
        return float(f"{value:.12g}")
    return value


def read_rows(directory: Path) -> Counter[tuple[Any, ...]]:
    """Every row of the committed (visible) part files, normalized, as a multiset."""
    rows: Counter[tuple[Any, ...]] = Counter()
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith((".", "_")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rows[tuple(_norm(v) for v in json.loads(line).values())] += 1
    return rows


@pytest.mark.slow
def test_local_runner_matches_the_embedded_engine(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = find_flink_python(ROOT)
    if python is None:
        reason = "PyFlink is not installed: run `make flink` (or set FLUVIAL_FLINK_PYTHON)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"required under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    monkeypatch.setenv("FLUVIAL_FLINK_PYTHON", str(python))
    rng = random.Random(7)
    with (project.root / "clicks.json").open("w", encoding="utf-8") as f:
        for i in range(3000):  # every 100 ms, up to 2 s out of order (< the 3 s delay)
            ts = BASE + dt.timedelta(milliseconds=i * 100 - rng.randint(0, 2000))
            row = {
                "page": rng.choice(PAGES),
                "amount": None if rng.random() < 0.1 else rng.randrange(100),
                "price": round(rng.uniform(0, 50), 2),
                "ts": ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}",
            }
            f.write(json.dumps(row) + "\n")
    pipeline = project.root / "pipelines" / "per_minute.sql"
    pipeline.write_text(LOCAL_PIPELINE, encoding="utf-8")

    result = run_job(load_job(pipeline), project=project, until_idle=True, checkpoint_dir=None)
    assert all(p.late_rows == 0 for p in result.pipelines)
    fluvial = read_rows(project.root / "out")
    shutil.rmtree(project.root / "out")

    args = ["stream", "deploy", str(pipeline), "--runner", "local", "--project", str(project.root)]
    cli = CliRunner().invoke(app, [*args, "--json"])
    assert cli.exit_code == 0, f"{cli.output}\n{cli.exception!r}"
    assert json.loads(cli.stdout)["state"] == "finished"
    flink = read_rows(project.root / "out")

    assert sum(fluvial.values()) >= 5 * len(PAGES)  # 5 minutes of events, every page
    only_flink, only_fluvial = flink - fluvial, fluvial - flink
    assert not only_flink and not only_fluvial, (
        f"{sum(only_flink.values())} rows only on Flink, e.g. {list(only_flink)[:3]}; "
        f"{sum(only_fluvial.values())} only on Fluvial, e.g. {list(only_fluvial)[:3]}"
    )
    # an independent count: every event is in exactly one (minute, page) window
    assert sum(row[3] for row in flink.elements()) == 3000
