"""The IAM actions the Kinesis log calls, by role: for policies and templates to grant.

Streams are ``<resource_prefix>-<topic>``; the bookkeeping table is
``<resource_prefix>-log``. A *writer* appends (and, taking over a topic, reads its shards
up to its fence); a *reader* reads and commits consumer-group offsets; *admin* creates and
deletes topics. The tests record every API call the backend makes and check it is listed.

>>> "kinesis:PutRecords" in STREAM_ACTIONS["writer"]
True
"""

from __future__ import annotations

__all__ = ["CALLS", "ROLES", "STREAM_ACTIONS", "TABLE_ACTIONS", "actions"]

ROLES = ("reader", "writer", "admin")

_STREAM_READ = (
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
)
_TABLE_READ = ("dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query")

#: role -> actions on the topics' streams
STREAM_ACTIONS: dict[str, tuple[str, ...]] = {
    "reader": _STREAM_READ,
    "writer": (*_STREAM_READ, "kinesis:PutRecords"),
    "admin": (*_STREAM_READ, "kinesis:CreateStream", "kinesis:DeleteStream"),
}

#: role -> actions on the bookkeeping table
TABLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "reader": (*_TABLE_READ, "dynamodb:UpdateItem"),  # consumer-group offsets
    # TransactWriteItems has no IAM action of its own: its Put and Update need these
    "writer": (*_TABLE_READ, "dynamodb:PutItem", "dynamodb:UpdateItem"),
    "admin": (
        *_TABLE_READ,
        "dynamodb:BatchWriteItem",
        "dynamodb:CreateTable",
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ),
}


#: API calls whose IAM actions are not their own name: the actions they need
CALLS: dict[str, tuple[str, ...]] = {
    "dynamodb:TransactWriteItems": ("dynamodb:PutItem", "dynamodb:UpdateItem"),
}


def actions(*roles: str) -> set[str]:
    """Every action the given roles need, streams and table together.

    >>> sorted(a for a in actions("reader") if a.startswith("dynamodb:"))
    ['dynamodb:DescribeTable', 'dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem']
    """
    out: set[str] = set()
    for role in roles:
        out |= {*STREAM_ACTIONS[role], *TABLE_ACTIONS[role]}
    return out
