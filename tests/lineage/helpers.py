"""Test helpers: the OpenLineage schema subset, and a Marquez-like receiver app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SUBSET = json.loads((Path(__file__).parent / "openlineage_subset.json").read_text())
VALIDATOR = jsonschema_rs.Draft202012Validator(SUBSET, validate_formats=True)


def spec_errors(event: dict[str, Any]) -> list[str]:
    """What makes *event* break the spec subset (empty when valid)."""
    return [f"{e.instance_path}: {e.message}" for e in VALIDATOR.iter_errors(event)]


class Receiver:
    """A Marquez-like receiver: POST /api/v1/lineage stores the JSON body, answers 201."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.status = 201
        self.app = Starlette(routes=[Route("/api/v1/lineage", self.post, methods=["POST"])])

    async def post(self, request: Request) -> Response:
        self.content_types.append(request.headers.get("content-type", ""))
        if self.status >= 400:
            return JSONResponse({"error": "refused"}, status_code=self.status)
        self.events.append(await request.json())
        return Response(status_code=self.status)
