"""split_payloads for every content type, and chunked NDJSON file reading."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fluvial.errors import UsageError
from fluvial.events.payload import NDJSON_TYPES, iter_ndjson, split_payloads

DOCS = [{"a": 1}, {"b": [1, 2]}, {"c": "x\ny"}]


@pytest.mark.parametrize("content_type", sorted(NDJSON_TYPES))
def test_ndjson_one_payload_per_non_empty_line(content_type: str) -> None:
    body = b"\n".join(orjson.dumps(d) for d in DOCS)
    body = b"\n  \n" + body.replace(b"\n", b"\r\n\n", 1) + b"\n\n"
    got = split_payloads(body, content_type.upper() + "; charset=utf-8")
    assert [orjson.loads(p) for p in got] == DOCS


def test_ndjson_keeps_bad_lines_for_validation() -> None:
    assert split_payloads(b'{"a":1}\nnot json\n[1]', "application/x-ndjson") == [
        b'{"a":1}',
        b"not json",
        b"[1]",
    ]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "", "application/vnd.x+json"],
)
def test_json_object_array_and_garbage(content_type: str) -> None:
    single = b' {"a": 1} '
    assert split_payloads(single, content_type) == [single]
    array = orjson.dumps([*DOCS, [1], "s"])
    got = split_payloads(array, content_type)
    assert [orjson.loads(p) for p in got] == [*DOCS, [1], "s"]
    assert split_payloads(b'[{"a": 1}, ', content_type) == [b'[{"a": 1}, ']
    assert split_payloads(b"garbage", content_type) == [b"garbage"]
    assert split_payloads(b"  \n", content_type) == []
    assert split_payloads(b"\xef\xbb\xbf[{}]", content_type) == [b"{}"]


def test_unsupported_content_type() -> None:
    with pytest.raises(UsageError, match="unsupported content type 'text/csv'; expected one of"):
        split_payloads(b"a,b", "text/csv")


def test_iter_ndjson_chunks_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    lines = [b'{"n": %d}' % i if i % 4 else b"" for i in range(11)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    chunks = list(iter_ndjson(path, batch_size=3))
    assert [len(c.payloads) for c in chunks] == [3, 3, 2]  # 8 non-empty lines
    numbers = [line for c in chunks for line in c.lines]
    assert numbers == [i for i in range(11) if i % 4]
    assert [orjson.loads(p)["n"] for c in chunks for p in c.payloads] == numbers
    assert chunks[-1].bytes_read == path.stat().st_size
    with pytest.raises(UsageError, match="cannot read"):
        list(iter_ndjson(tmp_path / "missing.ndjson"))
