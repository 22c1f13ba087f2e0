"""The clickstream example: stream pipelines, batch models (refined → curated star schema →
marts), quality rules and the shop's product catalogue feed. See ``README.md`` here."""

from __future__ import annotations

from fluvial.examples.clickstream.catalogue import (
    CATALOGUE_SCHEMA,
    CATALOGUE_TABLE,
    load_catalogue,
    product_catalogue,
)

__all__ = ["CATALOGUE_SCHEMA", "CATALOGUE_TABLE", "load_catalogue", "product_catalogue"]
