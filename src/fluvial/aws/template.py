"""A CloudFormation template for a project's AWS deployment, as a Python dict.

:func:`build_template` declares, from the project's :func:`~fluvial.aws.inventory.inventory`
and its grants (:func:`~fluvial.aws.grants.project_grants`):

- a Kinesis stream per topic (the events stream's shards sized for ``[aws]
  peak_events_per_second``, see :func:`~fluvial.aws.cost.kinesis_shards`), retention from
  ``[log] retention_hours``, encrypted;
- an S3 bucket per lake zone (encrypted, private, TLS only) whose lifecycle expires the
  data files of the zone's tables (``<table>/data/``) after the zone's retention,
  registered with Lake Formation, and a Glue database per zone (tables live at
  ``s3://<bucket>/<table>/``);
- an Athena workgroup with a bytes-scanned cutoff and a results bucket that forgets results
  after a week;
- a DynamoDB table (on demand, encrypted, TTL when rows expire) per store table a pipeline
  writes;
- IAM roles with only what each worker does: the collector puts to the events streams, the
  archiver reads the events stream and writes the raw zone, each pipeline reads and writes
  its own topics, store tables and lake tables, batch reads every zone and writes the
  others, maintenance rewrites every zone; and a query role per governance role, whose
  Lake Formation permissions mirror the project's grants.

Names: streams and DynamoDB tables ``<prefix>-<name>``, buckets
``<prefix>-<zone>-<account>-<region>``, Glue databases ``<prefix>_<zone>``.

>>> import tempfile
>>> from fluvial.project import Project
>>> t = build_template(Project.init(tempfile.mkdtemp()))
>>> t["Resources"]["StreamEvents"]["Properties"]["ShardCount"]
1
>>> sorted(r["Type"] for r in t["Resources"].values()).count("AWS::Glue::Database")
4
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fluvial.aws.grants import DataFilter, Grant, project_grants
from fluvial.aws.inventory import Inventory, inventory
from fluvial.aws.tags import TagMirror, TagPolicy, project_tags

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["build_template", "dump_template", "logical_id"]

ACCOUNT = {"Ref": "AWS::AccountId"}
LF_PERMISSIONS = "AWS::LakeFormation::PrincipalPermissions"
GiB = 2**30

KINESIS_READ = [
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
]
#: a writer creates its topic on first use: the Kinesis log then adopts the declared stream
#: (CreateStream answers ResourceInUse, and it checks the stream is empty before adopting)
KINESIS_WRITE = [
    "kinesis:CreateStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "kinesis:PutRecord",
    "kinesis:PutRecords",
]
#: what the store and the log backends do with their items (no Scan: every read is a Query)
DYNAMODB_ITEMS = [
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
]
S3_OBJECT_READ = ["s3:GetObject"]
S3_OBJECT_WRITE = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
S3_BUCKET = ["s3:GetBucketLocation", "s3:ListBucket"]
GLUE_READ = [
    "glue:GetDatabase",
    "glue:GetDatabases",
    "glue:GetPartitions",
    "glue:GetTable",
    "glue:GetTables",
]
GLUE_WRITE = [*GLUE_READ, "glue:CreateTable", "glue:UpdateTable"]
ATHENA_QUERY = [
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:GetWorkGroup",
    "athena:StartQueryExecution",
    "athena:StopQueryExecution",
]
#: Lake Formation permissions for a role that writes (reads) every table of a zone
LF_ZONE_WRITE = ["ALTER", "DELETE", "DESCRIBE", "INSERT", "SELECT"]
LF_ZONE_READ = ["DESCRIBE", "SELECT"]


def logical_id(*parts: str) -> str:
    """A CloudFormation logical id from names: ``("stream", "events_failed")`` -> ``StreamEventsFailed``.

    >>> logical_id("pipeline", "page-views.v2", "role")
    'PipelinePageViewsV2Role'
    """
    words = [w for part in parts for w in re.split(r"[^A-Za-z0-9]+", part) if w]
    return "".join(w[0].upper() + w[1:] for w in words)


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _arn(resource: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [resource, "Arn"]}


class _Builder:
    def __init__(self, inv: Inventory, project: Project) -> None:
        self.inv = inv
        self.project = project
        self.resources: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.last_grant: str | None = None
        self.tag_keys: list[str] = []

    # ------------------------------------------------------------- names
    def stream_id(self, topic: str) -> str:
        return logical_id("stream", topic)

    def bucket_id(self, zone: str) -> str:
        return logical_id(zone, "bucket")

    def database(self, zone: str) -> str:
        return f"{self.inv.prefix}_{zone}".replace("-", "_")

    def add(self, logical: str, type_: str, properties: dict[str, Any], **extra: Any) -> str:
        if type_ == LF_PERMISSIONS:
            # Lake Formation refuses concurrent grants: CloudFormation makes them one by one
            if self.last_grant is not None:
                extra["DependsOn"] = [*extra.get("DependsOn", []), self.last_grant]
            self.last_grant = logical
        self.resources[logical] = {"Type": type_, "Properties": properties, **extra}
        return logical

    def output(self, name: str, value: Any, description: str) -> None:
        self.outputs[logical_id(name)] = {"Description": description, "Value": value}

    # ------------------------------------------------------------- resources
    def streams(self) -> None:
        for spec in self.inv.streams:
            logical = self.add(
                self.stream_id(spec.topic),
                "AWS::Kinesis::Stream",
                {
                    "Name": f"{self.inv.prefix}-{spec.topic}",
                    "ShardCount": spec.shards,
                    "RetentionPeriodHours": spec.retention_hours,
                    "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                    "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
                },
            )
            self.output(
                f"{logical} name", {"Ref": logical}, f"Kinesis stream of topic {spec.topic}"
            )

    def bucket(self, logical: str, name: str, rules: list[dict[str, Any]]) -> None:
        self.add(
            logical,
            "AWS::S3::Bucket",
            {
                "BucketName": _sub(f"{name}-${{AWS::AccountId}}-${{AWS::Region}}"),
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {
                            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                            "BucketKeyEnabled": True,
                        }
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {"Rules": rules},
            },
            DeletionPolicy="Retain",
            UpdateReplacePolicy="Retain",
        )
        self.add(
            logical_id(logical, "policy"),
            "AWS::S3::BucketPolicy",
            {
                "Bucket": {"Ref": logical},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [_arn(logical), _sub(f"${{{logical}.Arn}}/*")],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        )

    def lake(self) -> None:
        for zone in self.inv.zones.values():
            rules: list[dict[str, Any]] = [
                {
                    "Id": "AbortIncompleteUploads",
                    "Status": "Enabled",
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                }
            ]
            if zone.retention_days > 0:
                # data files only: an Iceberg table's metadata must outlive quiet spells
                rules += [
                    {
                        "Id": f"Retention-{table}"[:255],
                        "Status": "Enabled",
                        "Prefix": f"{table}/data/",
                        "ExpirationInDays": zone.retention_days,
                    }
                    for table in self.inv.lake_tables.get(zone.name, ())
                ]
            bucket = self.bucket_id(zone.name)
            self.bucket(bucket, f"{self.inv.prefix}-{zone.name}", rules)
            self.add(
                logical_id(zone.name, "lake", "location"),
                "AWS::LakeFormation::Resource",
                {"ResourceArn": _arn(bucket), "UseServiceLinkedRole": True},
            )
            self.add(
                logical_id(zone.name, "database"),
                "AWS::Glue::Database",
                {
                    "CatalogId": ACCOUNT,
                    "DatabaseInput": {
                        "Name": self.database(zone.name),
                        "Description": f"Fluvial {zone.name} zone: {zone.description}",
                        "LocationUri": _sub(f"s3://${{{bucket}}}/"),
                    },
                },
            )
            self.output(
                f"{zone.name} bucket name", {"Ref": bucket}, f"S3 bucket of the {zone.name} zone"
            )
        self.bucket(
            "QueryResultsBucket",
            f"{self.inv.prefix}-results",
            [
                {"Id": "ForgetResults", "Status": "Enabled", "ExpirationInDays": 7},
                {
                    "Id": "AbortIncompleteUploads",
                    "Status": "Enabled",
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                },
            ],
        )
        cutoff = max(10_000_000, int(self.project.settings.aws.athena_max_scan_gb * GiB))
        self.add(
            "QueryWorkGroup",
            "AWS::Athena::WorkGroup",
            {
                "Name": self.inv.prefix,
                "Description": "Fluvial queries over the lake",
                "State": "ENABLED",
                "RecursiveDeleteOption": True,
                "WorkGroupConfiguration": {
                    "EnforceWorkGroupConfiguration": True,
                    "PublishCloudWatchMetricsEnabled": True,
                    "BytesScannedCutoffPerQuery": cutoff,
                    "ResultConfiguration": {
                        "OutputLocation": _sub("s3://${QueryResultsBucket}/"),
                        "EncryptionConfiguration": {"EncryptionOption": "SSE_S3"},
                    },
                },
            },
        )
        self.output("query workgroup", {"Ref": "QueryWorkGroup"}, "Athena workgroup")

    def dynamodb_table(
        self, logical: str, name: str, sort_type: str, keys: tuple[str, str], ttl: bool
    ) -> None:
        props: dict[str, Any] = {
            "TableName": f"{self.inv.prefix}-{name}",
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": keys[0], "AttributeType": "S"},
                {"AttributeName": keys[1], "AttributeType": sort_type},
            ],
            "KeySchema": [
                {"AttributeName": keys[0], "KeyType": "HASH"},
                {"AttributeName": keys[1], "KeyType": "RANGE"},
            ],
            "SSESpecification": {"SSEEnabled": True},
        }
        if ttl:
            props["TimeToLiveSpecification"] = {"AttributeName": "expires_at", "Enabled": True}
        self.add(logical, "AWS::DynamoDB::Table", props)
        self.output(f"{logical} name", {"Ref": logical}, f"DynamoDB table {self.inv.prefix}-{name}")

    def store(self) -> None:
        """The event log's bookkeeping table, and the operational store's table when used
        (the layouts of :mod:`fluvial.log.kinesis` and :mod:`fluvial.serve.store.dynamodb`)."""
        self.dynamodb_table("LogTable", "log", "S", ("pk", "sk"), ttl=False)
        if self.inv.uses_store:
            self.dynamodb_table("StoreTable", "store", "B", ("p", "s"), ttl=True)

    # ------------------------------------------------------------- access
    def zone_statements(self, zone: str, *, write: bool) -> list[dict[str, Any]]:
        bucket, db = self.bucket_id(zone), self.database(zone)
        glue = [
            _sub("arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:catalog"),
            _sub(
                f"arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:database/{db}"
            ),
            _sub(f"arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:table/{db}/*"),
        ]
        return [
            {"Effect": "Allow", "Action": S3_BUCKET, "Resource": _arn(bucket)},
            {
                "Effect": "Allow",
                "Action": S3_OBJECT_WRITE if write else S3_OBJECT_READ,
                "Resource": _sub(f"${{{bucket}.Arn}}/*"),
            },
            {"Effect": "Allow", "Action": GLUE_WRITE if write else GLUE_READ, "Resource": glue},
        ]

    def zone_permissions(self, role: str, zone: str, *, write: bool) -> None:
        principal = {"DataLakePrincipalIdentifier": _arn(role)}
        db = self.database(zone)
        depends = [logical_id(zone, "database")]
        self.add(
            logical_id(role, zone, "database", "access"),
            LF_PERMISSIONS,
            {
                "Catalog": ACCOUNT,
                "Principal": principal,
                "Resource": {"Database": {"CatalogId": ACCOUNT, "Name": db}},
                "Permissions": ["CREATE_TABLE", "DESCRIBE"] if write else ["DESCRIBE"],
                "PermissionsWithGrantOption": [],
            },
            DependsOn=depends,
        )
        self.add(
            logical_id(role, zone, "tables", "access"),
            LF_PERMISSIONS,
            {
                "Catalog": ACCOUNT,
                "Principal": principal,
                "Resource": {
                    "Table": {"CatalogId": ACCOUNT, "DatabaseName": db, "TableWildcard": {}}
                },
                "Permissions": LF_ZONE_WRITE if write else LF_ZONE_READ,
                "PermissionsWithGrantOption": [],
            },
            DependsOn=depends,
        )
        if write:
            self.add(
                logical_id(role, zone, "location", "access"),
                LF_PERMISSIONS,
                {
                    "Catalog": ACCOUNT,
                    "Principal": principal,
                    "Resource": {
                        "DataLocation": {
                            "CatalogId": ACCOUNT,
                            "ResourceArn": _arn(self.bucket_id(zone)),
                        }
                    },
                    "Permissions": ["DATA_LOCATION_ACCESS"],
                    "PermissionsWithGrantOption": [],
                },
                DependsOn=[logical_id(zone, "lake", "location")],
            )

    def role(self, name: str, description: str, statements: list[dict[str, Any]]) -> str:
        logical = logical_id(name, "role")
        statements = [st for i, st in enumerate(statements) if st not in statements[:i]]
        self.add(
            logical,
            "AWS::IAM::Role",
            {
                "Description": description,
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {
                                "AWS": _sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
                            },
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": logical_id(name, "access"),
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                    }
                ],
            },
        )
        self.output(f"{logical} arn", _arn(logical), description)
        return logical

    def streams_statement(self, topics: Iterable[str], actions: list[str]) -> list[dict[str, Any]]:
        arns = [_arn(self.stream_id(t)) for t in dict.fromkeys(topics)]
        if not arns:
            return []
        return [
            {"Effect": "Allow", "Action": actions, "Resource": arns},
            # the log's offsets and schemas: items of the log table
            {
                "Effect": "Allow",
                "Action": [*DYNAMODB_ITEMS, "dynamodb:DescribeTable"],
                "Resource": _arn("LogTable"),
            },
        ]

    def store_statements(self, tables: Iterable[str]) -> list[dict[str, Any]]:
        """Items of the store table whose partition keys belong to *tables* (and the
        namespace's shared items: metadata, heads, checkpoints), nothing else."""
        ns = self.inv.store_namespace
        keys = [f"{ns}#meta", f"{ns}#head", f"{ns}#checkpoint"]
        for t in dict.fromkeys(tables):
            keys += [f"{ns}#t#{t}", f"{ns}#w#{t}#*"]
        return [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:DescribeTable"],
                "Resource": _arn("StoreTable"),
            },
            {
                "Effect": "Allow",
                "Action": DYNAMODB_ITEMS,
                "Resource": _arn("StoreTable"),
                "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": keys}},
            },
        ]

    def roles(self, grants: list[Grant], tags: TagMirror) -> None:
        inv = self.inv
        zone_names = list(inv.zones)
        lf_data = {"Effect": "Allow", "Action": ["lakeformation:GetDataAccess"], "Resource": "*"}
        self.role(
            "collector",
            "Fluvial collector: puts events and dead letters",
            self.streams_statement([inv.events_topic, inv.failed_topic], KINESIS_WRITE),
        )
        archiver = self.role(
            "archiver",
            "Fluvial lake archiver: events stream to the raw zone",
            [
                *self.streams_statement([inv.events_topic], KINESIS_READ),
                *self.zone_statements("raw", write=True),
                lf_data,
            ],
        )
        self.zone_permissions(archiver, "raw", write=True)
        for use in inv.pipelines:
            statements = [
                *self.streams_statement(use.reads_topics, KINESIS_READ),
                *self.streams_statement(use.writes_topics, KINESIS_WRITE),
            ]
            if use.writes_store:
                statements += self.store_statements(use.writes_store)
            lake_zones = sorted({t.partition(".")[0] for t in use.writes_lake} & set(zone_names))
            for zone in lake_zones:
                statements += self.zone_statements(zone, write=True)
            if lake_zones:
                statements.append(lf_data)
            if not statements:
                continue
            role = self.role(
                f"pipeline {use.name}", f"Fluvial stream pipeline {use.name}", statements
            )
            for zone in lake_zones:
                self.zone_permissions(role, zone, write=True)
        written = [z for z in zone_names if z != "raw"]
        batch = self.role(
            "batch",
            "Fluvial batch models: read every zone, write the others than raw",
            [s for z in zone_names for s in self.zone_statements(z, write=z != "raw")] + [lf_data],
        )
        maintenance = self.role(
            "maintenance",
            "Fluvial lake maintenance: compaction, snapshot expiry, retention in every zone",
            [s for z in zone_names for s in self.zone_statements(z, write=True)] + [lf_data],
        )
        for zone in zone_names:
            self.zone_permissions(batch, zone, write=zone in written)
            self.zone_permissions(maintenance, zone, write=True)
        self.query_roles(grants, tags, lf_data)

    def query_roles(self, grants: list[Grant], tags: TagMirror, lf_data: dict[str, Any]) -> None:
        by_principal: dict[str, list[Grant]] = {}
        for g in grants:
            if g.zone in self.inv.zones:
                by_principal.setdefault(g.principal, []).append(g)
        by_tags: dict[str, list[TagPolicy]] = {}
        for policy in tags.policies:
            by_tags.setdefault(policy.principal, []).append(policy)
            by_principal.setdefault(policy.principal, [])
        tagged_zones = {obj.partition(".")[0] for obj, _, _ in tags.associations}
        workgroup = _sub(
            f"arn:${{AWS::Partition}}:athena:${{AWS::Region}}:${{AWS::AccountId}}:workgroup/{self.inv.prefix}"
        )
        for principal, held in sorted(by_principal.items()):
            zones = {g.zone for g in held}
            if principal in by_tags:  # tag grants reach the tagged zones
                zones |= tagged_zones & set(self.inv.zones)
            dbs = sorted(self.database(z) for z in zones)
            glue = [_sub("arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:catalog")]
            for db in dbs:
                glue += [
                    _sub(
                        f"arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:database/{db}"
                    ),
                    _sub(
                        f"arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:table/{db}/*"
                    ),
                ]
            role = self.role(
                f"query {principal}",
                f"Fluvial role {principal}: Athena queries, data as its grants allow",
                [
                    {"Effect": "Allow", "Action": ATHENA_QUERY, "Resource": workgroup},
                    {
                        "Effect": "Allow",
                        "Action": S3_BUCKET,
                        "Resource": _arn("QueryResultsBucket"),
                    },
                    {
                        "Effect": "Allow",
                        "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                        "Resource": _sub("${QueryResultsBucket.Arn}/*"),
                    },
                    {"Effect": "Allow", "Action": GLUE_READ, "Resource": glue},
                    lf_data,
                ],
            )
            for i, policy in enumerate(by_tags.get(principal, [])):
                self.tag_grant(role, i, policy)
            for i, g in enumerate(held):
                self.grant(role, i, g)

    def grant(self, role: str, index: int, g: Grant) -> None:
        db = self.database(g.zone)
        depends = [logical_id(g.zone, "database")]
        resource: dict[str, Any]
        if g.table is None:
            resource = {"Table": {"CatalogId": ACCOUNT, "DatabaseName": db, "TableWildcard": {}}}
        elif g.data_filter is not None:
            depends.append(self.data_filter(g.zone, g.table, g.data_filter))
            resource = {
                "DataCellsFilter": {
                    "TableCatalogId": ACCOUNT,
                    "DatabaseName": db,
                    "TableName": g.table,
                    "Name": g.data_filter.name,
                }
            }
        elif g.columns or g.excluded:
            columns: dict[str, Any] = (
                {"ColumnNames": list(g.columns)}
                if g.columns
                else {"ColumnWildcard": {"ExcludedColumnNames": list(g.excluded)}}
            )
            resource = {
                "TableWithColumns": {
                    "CatalogId": ACCOUNT,
                    "DatabaseName": db,
                    "Name": g.table,
                    **columns,
                }
            }
        else:
            resource = {"Table": {"CatalogId": ACCOUNT, "DatabaseName": db, "Name": g.table}}
        self.add(
            logical_id(role, "grant", str(index + 1)),
            LF_PERMISSIONS,
            {
                "Catalog": ACCOUNT,
                "Principal": {"DataLakePrincipalIdentifier": _arn(role)},
                "Resource": resource,
                "Permissions": sorted(set(g.privileges)),
                "PermissionsWithGrantOption": sorted(set(g.grantable)),
            },
            DependsOn=depends,
        )

    def tag_id(self, key: str) -> str:
        return f"LfTag{sorted(self.tag_keys).index(key) + 1}"

    def lf_tags(self, tags: TagMirror) -> None:
        """The LF-Tags (one per key, with every value used) and their associations."""
        self.tag_keys = list(tags.tags)
        for key, values in tags.tags.items():
            self.add(
                self.tag_id(key),
                "AWS::LakeFormation::Tag",
                {"CatalogId": ACCOUNT, "TagKey": key, "TagValues": list(values)},
            )
        by_object: dict[str, list[tuple[str, str]]] = {}
        for obj, key, value in tags.associations:
            by_object.setdefault(obj, []).append((key, value))
        for i, (obj, pairs) in enumerate(sorted(by_object.items())):
            zone, _, rest = obj.partition(".")
            if zone not in self.inv.zones:
                continue
            table, _, column = rest.partition(".")
            db = self.database(zone)
            resource: dict[str, Any]
            if not table:
                resource = {"Database": {"CatalogId": ACCOUNT, "Name": db}}
            elif not column:
                resource = {"Table": {"CatalogId": ACCOUNT, "DatabaseName": db, "Name": table}}
            else:
                resource = {
                    "TableWithColumns": {
                        "CatalogId": ACCOUNT,
                        "DatabaseName": db,
                        "Name": table,
                        "ColumnNames": [column],
                    }
                }
            self.add(
                f"LfTagAssociation{i + 1}",
                "AWS::LakeFormation::TagAssociation",
                {
                    "Resource": resource,
                    "LFTags": [
                        {"CatalogId": ACCOUNT, "TagKey": k, "TagValues": [v]} for k, v in pairs
                    ],
                },
                DependsOn=[
                    logical_id(zone, "database"),
                    *sorted({self.tag_id(k) for k, _ in pairs}),
                ],
            )

    def tag_grant(self, role: str, index: int, policy: TagPolicy) -> None:
        self.add(
            logical_id(role, "tag", "grant", str(index + 1)),
            LF_PERMISSIONS,
            {
                "Catalog": ACCOUNT,
                "Principal": {"DataLakePrincipalIdentifier": _arn(role)},
                "Resource": {
                    "LFTagPolicy": {
                        "CatalogId": ACCOUNT,
                        "ResourceType": "TABLE",
                        "Expression": [
                            {"TagKey": k, "TagValues": list(v)} for k, v in policy.expression
                        ],
                    }
                },
                "Permissions": list(policy.privileges),
                "PermissionsWithGrantOption": list(policy.grantable),
            },
            DependsOn=sorted({self.tag_id(k) for k, _ in policy.expression}),
        )

    def data_filter(self, zone: str, table: str, f: DataFilter) -> str:
        """A data cells filter of ``zone.table``; its logical id."""
        db = self.database(zone)
        logical = logical_id("filter", f.name)
        row: dict[str, Any] = (
            {"FilterExpression": f.row_filter} if f.row_filter else {"AllRowsWildcard": {}}
        )
        columns: dict[str, Any] = (
            {"ColumnNames": list(f.columns)}
            if f.columns is not None
            else {"ColumnWildcard": {"ExcludedColumnNames": list(f.excluded)}}
        )
        self.add(
            logical,
            "AWS::LakeFormation::DataCellsFilter",
            {
                "TableCatalogId": ACCOUNT,
                "DatabaseName": db,
                "TableName": table,
                "Name": f.name,
                "RowFilter": row,
                **columns,
            },
            DependsOn=[logical_id(zone, "database")],
        )
        return logical


def build_template(
    project: Project, grants: Iterable[Grant] | None = None, tags: TagMirror | None = None
) -> dict[str, Any]:
    """The CloudFormation template of *project*'s deployment (*grants* default to
    :func:`~fluvial.aws.grants.project_grants`, *tags* to
    :func:`~fluvial.aws.tags.project_tags`)."""
    inv = inventory(project)
    b = _Builder(inv, project)
    mirror = project_tags(project) if tags is None else tags
    b.streams()
    b.lake()
    b.store()
    b.lf_tags(mirror)
    b.roles(list(project_grants(project) if grants is None else grants), mirror)
    name = project.settings.project.name
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Fluvial project {name}: event streams, lake, store, catalog and roles",
        "Resources": b.resources,
        "Outputs": b.outputs,
    }


def dump_template(template: dict[str, Any]) -> str:
    """The template as CloudFormation JSON text."""
    return json.dumps(template, indent=2, sort_keys=False) + "\n"
