"""``fluvial aws template``: cfn-lint finds nothing, and the stack says what the project says."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

from conftest import need
from fluvial.aws.grants import Grant
from fluvial.aws.template import build_template, dump_template
from fluvial.errors import ConfigError, UsageError
from fluvial.project import Project

GRANTS = [
    Grant("analyst", "curated", ("SELECT", "DESCRIBE")),
    Grant("analyst", "refined.events", ("SELECT",)),
    Grant("support", "curated.dim_users", ("SELECT",), ("user_id", "country")),
]

STORE_PIPELINE = """
CREATE TABLE clicks (user_id STRING, page STRING, ts TIMESTAMP(3)) WITH ('connector' = 'fluvial', 'topic' = 'clicks');
CREATE TABLE totals (user_id STRING, n BIGINT, PRIMARY KEY (user_id) NOT ENFORCED)
WITH ('connector' = 'store', 'table' = 'user_totals', 'ttl' = '1 d');
CREATE TABLE archive (user_id STRING, page STRING, ts TIMESTAMP(3))
WITH ('connector' = 'lake', 'table' = 'refined.clicks', 'time-column' = 'ts');
INSERT INTO totals SELECT user_id, COUNT(*) FROM clicks GROUP BY user_id;
INSERT INTO archive SELECT user_id, page, ts FROM clicks;
"""


def lint(template: dict[str, Any], tmp_path: Path) -> list[str]:
    """cfn-lint's findings (errors, warnings and informational) on *template*."""
    need(importlib.util.find_spec("cfnlint") is not None, "cfn-lint is not installed")
    from cfnlint.api import ManualArgs, lint_file

    path = tmp_path / "template.json"
    path.write_text(dump_template(template), encoding="utf-8")
    matches = lint_file(path, config=ManualArgs(regions=["us-east-1"]))
    return [f"{m.rule.id} {m.message} ({m.linenumber})" for m in matches]


def of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == type_}


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture
def clickstream(tmp_path: Path) -> Project:
    return Project.init(tmp_path / "shop", example="clickstream")


def test_default_project_passes_cfn_lint(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "p")
    assert lint(build_template(project), tmp_path) == []


def test_clickstream_with_grants_and_store_passes_cfn_lint(
    clickstream: Project, tmp_path: Path
) -> None:
    (clickstream.root / "pipelines" / "user_totals.sql").write_text(STORE_PIPELINE)
    template = build_template(clickstream, GRANTS)
    assert of_type(template, "AWS::DynamoDB::Table")  # the linted template has every kind
    assert lint(template, tmp_path) == []


def test_lint_catches_a_broken_template(tmp_path: Path) -> None:
    """The check above can fail: a misspelt property is an error."""
    template = build_template(Project.init(tmp_path / "p"))
    template["Resources"]["StreamEvents"]["Properties"]["ShardCnt"] = 1
    assert any(f.startswith("E3002") for f in lint(template, tmp_path))


def test_no_role_may_do_anything_anywhere(clickstream: Project) -> None:
    (clickstream.root / "pipelines" / "user_totals.sql").write_text(STORE_PIPELINE)
    template = build_template(clickstream, GRANTS)
    roles = of_type(template, "AWS::IAM::Role")
    assert len(roles) >= 10
    for name, role in roles.items():
        for s in statements(role):
            actions = listed(s["Action"])
            assert all("*" not in a for a in actions), (name, actions)
            if s["Resource"] == "*":  # only what has no resource-level permissions
                assert actions == ["lakeformation:GetDataAccess"], (name, actions)
            assert s["Effect"] == "Allow"


def test_each_worker_gets_only_its_streams_and_tables(clickstream: Project) -> None:
    (clickstream.root / "pipelines" / "user_totals.sql").write_text(STORE_PIPELINE)
    t = build_template(clickstream, GRANTS)
    roles = of_type(t, "AWS::IAM::Role")

    def resources(role: str, action: str) -> list[Any]:
        return [
            r
            for s in statements(roles[role])
            if action in listed(s["Action"])
            for r in listed(s["Resource"])
        ]

    get_att = lambda logical: {"Fn::GetAtt": [logical, "Arn"]}  # noqa: E731
    assert resources("CollectorRole", "kinesis:PutRecords") == [
        get_att("StreamEvents"),
        get_att("StreamEventsFailed"),
    ]
    # writers may create (adopt) and check their own streams, no others
    assert resources("CollectorRole", "kinesis:CreateStream") == [
        get_att("StreamEvents"),
        get_att("StreamEventsFailed"),
    ]
    assert get_att("StreamActiveUsers") not in resources("CollectorRole", "kinesis:GetRecords")
    # active_users_hop reads events and writes the active_users topic
    assert resources("PipelineActiveUsersHopRole", "kinesis:GetRecords") == [
        get_att("StreamEvents"),
        get_att("StreamActiveUsers"),  # the topic it writes, checked empty before adopting
    ]
    assert resources("PipelineActiveUsersHopRole", "kinesis:CreateStream") == [
        get_att("StreamActiveUsers")
    ]
    assert resources("PipelineActiveUsersHopRole", "kinesis:PutRecords") == [
        get_att("StreamActiveUsers")
    ]
    # the store pipeline: its topic, its own items of the store table, the refined zone
    store = [
        s for s in statements(roles["PipelineUserTotalsRole"]) if "dynamodb:PutItem" in s["Action"]
    ]
    assert [s["Resource"] for s in store] == [get_att("LogTable"), get_att("StoreTable")]
    assert store[1]["Condition"] == {
        "ForAllValues:StringLike": {
            "dynamodb:LeadingKeys": [
                "fluvial_store#meta",
                "fluvial_store#head",
                "fluvial_store#checkpoint",
                "fluvial_store#t#user_totals",
                "fluvial_store#w#user_totals#*",
            ]
        }
    }
    assert resources("PipelineUserTotalsRole", "kinesis:GetRecords") == [get_att("StreamClicks")]
    assert resources("PipelineUserTotalsRole", "s3:PutObject") == [
        {"Fn::Sub": "${RefinedBucket.Arn}/*"}
    ]
    assert resources("ArchiverRole", "s3:PutObject") == [{"Fn::Sub": "${RawBucket.Arn}/*"}]
    # batch writes every zone but raw, which it only reads
    assert {"Fn::Sub": "${RawBucket.Arn}/*"} not in resources("BatchRole", "s3:PutObject")
    assert {"Fn::Sub": "${RawBucket.Arn}/*"} in resources("BatchRole", "s3:GetObject")
    # only the pipelines with a store sink touch the store table; no role scans
    writers = {
        "PipelineUserTotalsRole",
        "PipelinePageViewsPerMinuteRole",
        "PipelineActiveUsersHopRole",
        "PipelineFunnelPerMinuteRole",
        "PipelineRevenuePerMinuteRole",
    }
    for name, role in roles.items():
        for s in statements(role):
            assert "dynamodb:Scan" not in s["Action"]
            if s["Resource"] == get_att("StoreTable") and name not in writers:
                raise AssertionError(f"{name} may use the store table")
    table = t["Resources"]["StoreTable"]["Properties"]
    assert table["TableName"] == "fluvial-store"
    assert table["KeySchema"] == [
        {"AttributeName": "p", "KeyType": "HASH"},
        {"AttributeName": "s", "KeyType": "RANGE"},
    ]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert t["Resources"]["LogTable"]["Properties"]["TableName"] == "fluvial-log"


@pytest.mark.parametrize(
    ("peak", "event_bytes"), [(100, 1024), (1000, 1024), (2500, 1024), (2500, 4096), (10_000, 200)]
)
def test_events_stream_shards_follow_the_peak_rate(
    tmp_path: Path, peak: int, event_bytes: int
) -> None:
    env = {
        "FLUVIAL_AWS__PEAK_EVENTS_PER_SECOND": str(peak),
        "FLUVIAL_AWS__EVENT_BYTES": str(event_bytes),
    }
    Project.init(tmp_path / "p")
    t = build_template(Project(tmp_path / "p", env=env))
    # one shard takes 1,000 records/s and 1 MiB/s
    expected = max(1, math.ceil(max(peak / 1000, peak * event_bytes / (1024 * 1024))))
    assert t["Resources"]["StreamEvents"]["Properties"]["ShardCount"] == expected
    assert t["Resources"]["StreamEventsFailed"]["Properties"]["ShardCount"] == 1


def test_stream_retention_follows_the_log(tmp_path: Path) -> None:
    Project.init(tmp_path / "p")
    for hours, expected in (("168", 168), ("2", 24), ("0", 8760), ("100000", 8760)):
        env = {"FLUVIAL_LOG__RETENTION_HOURS": hours}
        t = build_template(Project(tmp_path / "p", env=env))
        assert t["Resources"]["StreamEvents"]["Properties"]["RetentionPeriodHours"] == expected


def test_lifecycle_expiration_is_the_zone_retention(tmp_path: Path) -> None:
    """Data files of every table the project names expire after their zone's retention;
    Iceberg metadata never does (a quiet table must stay readable)."""
    Project.init(tmp_path / "shop", example="clickstream")
    env = {
        "FLUVIAL_LAKE__RAW_RETENTION_DAYS": "90",
        "FLUVIAL_LAKE__QUARANTINE_RETENTION_DAYS": "14",
    }
    t = build_template(Project(tmp_path / "shop", env=env))
    expiry: dict[str, dict[str, int]] = {}
    for zone in ("raw", "refined", "curated", "quarantine"):
        rules = t["Resources"][f"{zone.capitalize()}Bucket"]["Properties"][
            "LifecycleConfiguration"
        ]["Rules"]
        expiry[zone] = {
            r["Prefix"]: r["ExpirationInDays"] for r in rules if "ExpirationInDays" in r
        }
        assert all(p.endswith("/data/") for p in expiry[zone])
    # raw: the archiver's tables and the example's raw table with quality rules
    assert expiry["raw"] == {
        "events/data/": 90,
        "events_failed/data/": 90,
        "product_catalog/data/": 90,
    }
    assert expiry["refined"] == expiry["curated"] == {}  # kept forever
    # quarantine: one table per table with quality rules (quarantine.<zone>__<name>)
    assert expiry["quarantine"]["raw__events/data/"] == 14
    assert expiry["quarantine"]["curated__dim_users/data/"] == 14
    assert set(expiry["quarantine"].values()) == {14}
    # raw kept forever by default: no expiration at all
    default = build_template(Project(tmp_path / "shop"))
    rules = default["Resources"]["RawBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert not any("ExpirationInDays" in r for r in rules)


def test_glue_databases_and_buckets_per_zone(tmp_path: Path) -> None:
    Project.init(tmp_path / "p")
    t = build_template(Project(tmp_path / "p", env={"FLUVIAL_AWS__RESOURCE_PREFIX": "shop-prod"}))
    names = sorted(
        r["Properties"]["DatabaseInput"]["Name"] for r in of_type(t, "AWS::Glue::Database").values()
    )
    assert names == [
        "shop_prod_curated",
        "shop_prod_quarantine",
        "shop_prod_raw",
        "shop_prod_refined",
    ]
    raw = t["Resources"]["RawBucket"]["Properties"]
    assert raw["BucketName"] == {"Fn::Sub": "shop-prod-raw-${AWS::AccountId}-${AWS::Region}"}
    assert all(raw["PublicAccessBlockConfiguration"].values())
    assert t["Resources"]["StreamEvents"]["Properties"]["Name"] == "shop-prod-events"
    registered = [
        r["Properties"]["ResourceArn"] for r in of_type(t, "AWS::LakeFormation::Resource").values()
    ]
    assert {"Fn::GetAtt": ["RawBucket", "Arn"]} in registered and len(registered) == 4


def test_lake_formation_permissions_mirror_the_grants(tmp_path: Path) -> None:
    t = build_template(Project.init(tmp_path / "p"), GRANTS)
    perms = of_type(t, "AWS::LakeFormation::PrincipalPermissions")
    mirrored = sorted(
        (
            p["Properties"]["Principal"]["DataLakePrincipalIdentifier"]["Fn::GetAtt"][0],
            json.dumps(p["Properties"]["Resource"], sort_keys=True),
            tuple(p["Properties"]["Permissions"]),
        )
        for name, p in perms.items()
        if name.startswith("Query")
    )
    account = {"Ref": "AWS::AccountId"}

    def res(**kw: Any) -> str:
        return json.dumps(kw, sort_keys=True)

    assert mirrored == sorted(
        [
            (
                "QueryAnalystRole",
                res(
                    Table={
                        "CatalogId": account,
                        "DatabaseName": "fluvial_curated",
                        "TableWildcard": {},
                    }
                ),
                ("DESCRIBE", "SELECT"),
            ),
            (
                "QueryAnalystRole",
                res(
                    Table={
                        "CatalogId": account,
                        "DatabaseName": "fluvial_refined",
                        "Name": "events",
                    }
                ),
                ("SELECT",),
            ),
            (
                "QuerySupportRole",
                res(
                    TableWithColumns={
                        "CatalogId": account,
                        "DatabaseName": "fluvial_curated",
                        "Name": "dim_users",
                        "ColumnNames": ["user_id", "country"],
                    }
                ),
                ("SELECT",),
            ),
        ]
    )
    # a query role reads the catalog of its granted zones only, and queries through Athena
    support = statements(t["Resources"]["QuerySupportRole"])
    glue = [r for s in support if "glue:GetTable" in s["Action"] for r in s["Resource"]]
    assert not any("fluvial_refined" in json.dumps(r) for r in glue)
    assert any("athena:StartQueryExecution" in s["Action"] for s in support)


def test_no_grants_no_query_roles(tmp_path: Path) -> None:
    t = build_template(Project.init(tmp_path / "p"), [])
    assert not [k for k in t["Resources"] if k.startswith("Query") and k.endswith("Role")]


def test_bad_grants_and_prefix_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="privileges among"):
        Grant("a", "curated", ("READ",))
    with pytest.raises(UsageError, match="column grants are SELECT on a table"):
        Grant("a", "curated", ("SELECT",), ("x",))
    Project.init(tmp_path / "p")
    with pytest.raises(ConfigError, match=r"aws\.resource_prefix"):
        build_template(Project(tmp_path / "p", env={"FLUVIAL_AWS__RESOURCE_PREFIX": "Shop_Prod"}))


def test_grants_come_from_the_projects_access_policies(tmp_path: Path) -> None:
    """``fluvial grant`` → the template's Lake Formation permissions, with grant option."""
    import pyarrow as pa

    from fluvial.govern.policy import open_policy
    from fluvial.lake.catalog import open_lake

    project = Project.init(tmp_path / "p")
    users = pa.schema([("user_id", pa.string()), ("email", pa.string()), ("country", pa.string())])
    with open_lake(project) as lake:
        lake.create_table("curated.dim_users", users)
    policy = open_policy(project)
    policy.principals.create_role("analyst")
    policy.principals.create_role("support")
    policy.grant(["SELECT", "DESCRIBE"], on="curated", to="analyst", grant_option=True)
    policy.grant(["SELECT"], on="curated.dim_users", to="support", columns=["user_id", "country"])
    t = build_template(Project(project.root))
    perms = of_type(t, "AWS::LakeFormation::PrincipalPermissions")
    analyst = [p["Properties"] for k, p in perms.items() if k.startswith("QueryAnalystRole")]
    assert [(p["Permissions"], p["PermissionsWithGrantOption"]) for p in analyst] == [
        (["DESCRIBE", "SELECT"], ["DESCRIBE", "SELECT"])
    ]
    assert analyst[0]["Resource"]["Table"]["TableWildcard"] == {}
    support = [p["Properties"] for k, p in perms.items() if k.startswith("QuerySupportRole")]
    assert [sorted(p["Resource"]["TableWithColumns"]["ColumnNames"]) for p in support] == [
        ["country", "user_id"]
    ]
    assert lint(t, tmp_path) == []


def test_filters_and_masks_narrow_the_mirrored_grants(tmp_path: Path) -> None:
    """A data filter becomes a data cells filter the grantee selects through instead of the
    table; a masked column is left out (Lake Formation cannot mask); neither can narrow a
    zone-wide SELECT, which is refused."""
    import pyarrow as pa

    from fluvial.govern.model import Mask
    from fluvial.govern.policy import open_policy
    from fluvial.lake.catalog import open_lake

    project = Project.init(tmp_path / "p")
    cols = ["user_id", "email", "phone", "country"]
    with open_lake(project) as lake:
        lake.create_table("curated.dim_users", pa.schema([(c, pa.string()) for c in cols]))
    policy = open_policy(project)
    for role in ("emea", "support", "auditor"):
        policy.principals.create_role(role)
    policy.grant(["SELECT", "DESCRIBE"], on="curated.dim_users", to="emea")
    policy.set_filter(
        "emea_rows", "emea", "curated.dim_users", "country IN ('DE', 'FR')", exclude=["phone"]
    )
    policy.grant(["SELECT"], on="curated.dim_users", to="support", grant_option=True)
    policy.set_mask("support", "curated.dim_users", "email", Mask("partial"))
    t = build_template(Project(project.root))
    r = t["Resources"]
    (flt,) = of_type(t, "AWS::LakeFormation::DataCellsFilter").values()
    assert flt["Properties"]["Name"] == "emea_rows"
    assert flt["Properties"]["TableName"] == "dim_users"
    assert "DE" in flt["Properties"]["RowFilter"]["FilterExpression"]
    assert flt["Properties"]["ColumnWildcard"] == {"ExcludedColumnNames": ["phone"]}
    emea = [p["Properties"] for k, p in r.items() if k.startswith("QueryEmeaRoleGrant")]
    by_kind = {next(iter(p["Resource"])): p["Permissions"] for p in emea}
    # DESCRIBE stays on the table; SELECT only through the filter, never on the table
    assert by_kind == {"Table": ["DESCRIBE"], "DataCellsFilter": ["SELECT"]}
    support = [p["Properties"] for k, p in r.items() if k.startswith("QuerySupportRoleGrant")]
    assert [p["Resource"]["TableWithColumns"]["ColumnWildcard"] for p in support] == [
        {"ExcludedColumnNames": ["email"]}
    ]
    assert support[0]["PermissionsWithGrantOption"] == ["SELECT"]
    assert lint(t, tmp_path) == []
    # a zone-wide SELECT cannot be narrowed by the filter on one of its tables
    policy.grant(["SELECT"], on="curated", to="emea")
    with pytest.raises(UsageError, match="cannot narrow a grant on a whole database"):
        build_template(Project(project.root))


def test_narrow_column_grants_by_filters_and_masks() -> None:
    from fluvial.aws.grants import DataFilter, narrow
    from fluvial.govern.model import Mask
    from fluvial.govern.policy import ColumnMask, RowFilter

    grants = [
        Grant("ops", "raw.events", ("SELECT",), ("a", "b", "c")),
        Grant("ops", "raw.clicks", ("SELECT",), ("a", "b")),
        Grant("ops", "curated", ("DESCRIBE",)),  # not SELECT: nothing to narrow
    ]
    filters = [
        RowFilter("f1", "ops", "raw.events", "a > 1", ("b", "c", "d"), None, None, ""),
        RowFilter("f2", "nobody", "raw.events", None, None, ("a",), None, ""),  # no grant: none
    ]
    masks = [
        ColumnMask("ops", "raw.events", "c", Mask("hash")),
        ColumnMask("ops", "raw.clicks", "b", Mask("redact")),
    ]
    assert narrow(grants, filters, masks) == [
        Grant("ops", "raw.clicks", ("SELECT",), ("a",)),  # b masked
        Grant("ops", "curated", ("DESCRIBE",)),
        # granted a, b, c; the filter includes b, c, d; c is masked: b, on rows a > 1
        Grant("ops", "raw.events", ("SELECT",), data_filter=DataFilter("f1", "a > 1", ("b",))),
    ]


def test_tags_and_tag_grants_become_lf_tags(tmp_path: Path) -> None:
    """Tags become LF-Tags on their database, table or column; a positive tag grant an
    LF-Tag policy grant per conjunction; a negating one is left out; a tag grant reaching a
    table a filter narrows for its grantee is refused."""
    import pyarrow as pa

    from fluvial.govern.policy import open_policy
    from fluvial.lake.catalog import open_lake

    project = Project.init(tmp_path / "p")
    cols = ["user_id", "email", "country"]
    with open_lake(project) as lake:
        lake.create_table("curated.dim_users", pa.schema([(c, pa.string()) for c in cols]))
    policy = open_policy(project)
    for role in ("sales", "privacy", "careful"):
        policy.principals.create_role(role)
    policy.tag("curated", key="domain", value="sales")
    policy.tag("curated.dim_users", column="email", key="pii", value="email")
    policy.grant_on_tags("domain=sales OR pii IN (email, phone)", ["SELECT"], to="sales")
    policy.grant_on_tags("pii=*", ["SELECT", "DESCRIBE"], to="privacy", grant_option=True)
    policy.grant_on_tags("domain=sales AND pii!=*", ["SELECT"], to="careful")
    t = build_template(Project(project.root))
    r = t["Resources"]
    lf_tags = {
        p["Properties"]["TagKey"]: p["Properties"]["TagValues"]
        for p in of_type(t, "AWS::LakeFormation::Tag").values()
    }
    assert lf_tags == {"domain": ["sales"], "pii": ["email", "phone"]}
    associations = sorted(
        (
            json.dumps(a["Properties"]["Resource"], sort_keys=True),
            json.dumps(a["Properties"]["LFTags"]),
        )
        for a in of_type(t, "AWS::LakeFormation::TagAssociation").values()
    )
    assert len(associations) == 2
    assert (
        '"ColumnNames": ["email"]' in associations[1][0]
        or '"ColumnNames": ["email"]' in associations[0][0]
    )

    def policies(role: str) -> list[tuple[list[Any], list[str], list[str]]]:
        return [
            (
                p["Properties"]["Resource"]["LFTagPolicy"]["Expression"],
                p["Properties"]["Permissions"],
                p["Properties"]["PermissionsWithGrantOption"],
            )
            for k, p in r.items()
            if k.startswith(role) and "TagGrant" in k
        ]

    assert policies("QuerySalesRole") == [
        ([{"TagKey": "domain", "TagValues": ["sales"]}], ["SELECT"], []),
        ([{"TagKey": "pii", "TagValues": ["email", "phone"]}], ["SELECT"], []),
    ]
    # pii=*: every value the LF-Tag has (on objects or named by an expression)
    assert policies("QueryPrivacyRole") == [
        (
            [{"TagKey": "pii", "TagValues": ["email", "phone"]}],
            ["DESCRIBE", "SELECT"],
            ["DESCRIBE", "SELECT"],
        )
    ]
    assert "QueryCarefulRole" not in r  # NOT cannot be said in Lake Formation: nothing given
    assert lint(t, tmp_path) == []
    # the sales role's tag grant reaches dim_users; a filter there for sales is refused
    policy.set_filter("sales_de", "sales", "curated.dim_users", "country = 'DE'")
    with pytest.raises(UsageError, match="cannot narrow a tag grant"):
        build_template(Project(project.root))
