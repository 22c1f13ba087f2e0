"""How grants, tag grants, filters and masks combine into one :class:`TableAccess`.

Pure functions over rows already read from the policy database, so the rules can be read
(and tested) on their own. The rules (docs/adr/0007-access-policies.md):

1. A principal acts with the union of what it and every role it holds (transitively) were
   granted: namespace and table grants give every column, column grants one column, a tag
   grant every column whose tags match its expression.
2. A row filter belongs to one grantee on one table and narrows that grantee's grants on
   the table to its rows and columns. Each filter is a *slice* (rows x columns); a grantee
   with no filter on the table contributes one unfiltered slice.
3. Slices combine by union, kept rectangular and sound: the rows are the OR of the slices'
   predicates (every row when one slice is unfiltered); a column is readable when an
   unfiltered slice has it, or when every slice has it. A column that only some filtered
   slices give is denied rather than shown on rows it was not granted for.
4. A mask belongs to one grantee's view of one column. When an unfiltered slice gives the
   column, the least restrictive of those slices' masks applies (none beats any); when only
   filtered slices do, the most restrictive of all of them, since each row may come from
   any slice. Strictness: none < partial (longer kept suffix is weaker) < hash < redact <
   null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fluvial.govern.model import Mask, TableAccess

__all__ = ["Slice", "combine", "mask_strictness"]

_STRICTNESS = {"partial": 1, "hash": 2, "redact": 3, "null": 4}


def mask_strictness(mask: Mask | None) -> tuple[int, int]:
    """An order on masks: higher hides more.

    >>> sorted([Mask("redact"), None, Mask("partial", 2), Mask("partial", 4)], key=mask_strictness)
    [None, Mask(kind='partial', keep_last=4), Mask(kind='partial', keep_last=2), Mask(kind='redact', keep_last=4)]
    """
    if mask is None:
        return (0, 0)
    return (_STRICTNESS[mask.kind], -mask.keep_last if mask.kind == "partial" else 0)


@dataclass
class Slice:
    """What one grantee may read of a table: a row predicate (None: every row), columns
    with the grant that gives each, and the grantee's masks on them."""

    grantee: str
    columns: dict[str, str]
    row_filter: str | None = None
    filter_name: str | None = None
    masks: Mapping[str, Mask] = field(default_factory=dict)


def combine(
    table: str,
    columns: Sequence[str],
    slices: Sequence[Slice],
    deny_reasons: Mapping[str, str],
) -> TableAccess:
    """The :class:`TableAccess` of the union of *slices* (see the module's rules 3 and 4).

    *deny_reasons* says why each column no slice gives is denied (e.g. its tags).

    >>> full = Slice("analyst", {"id": "grant", "country": "grant"})
    >>> de = Slice("de_team", {"id": "g", "email": "g"}, "country = 'DE'", "de_only")
    >>> access = combine("t", ["id", "email", "country"], [full, de], {})
    >>> access.columns, access.row_filter, access.denied["email"]
    (('id', 'country'), None, 'readable only on the rows of filter de_only')
    >>> combine("t", ["id", "email", "country"], [de], {"country": "no grant"}).row_filter
    "country = 'DE'"
    """
    slices = [s for s in slices if s.columns]
    unfiltered = [s for s in slices if s.row_filter is None]
    row_filter: str | None = None
    if not unfiltered and slices:
        predicates = list(dict.fromkeys(s.row_filter for s in slices if s.row_filter))
        row_filter = (
            predicates[0] if len(predicates) == 1 else " OR ".join(f"({p})" for p in predicates)
        )
    readable: list[str] = []
    denied: dict[str, str] = {}
    masks: dict[str, Mask] = {}
    sources: dict[str, str] = {}
    for column in columns:
        covering = [s for s in unfiltered if column in s.columns]
        if covering:
            mask = min((s.masks.get(column) for s in covering), key=mask_strictness)
        elif slices and all(column in s.columns for s in slices):
            covering = list(slices)
            mask = max((s.masks.get(column) for s in covering), key=mask_strictness)
        else:
            partial = [s.filter_name for s in slices if column in s.columns]
            if partial:
                denied[column] = (
                    f"readable only on the rows of filter {', '.join(map(str, partial))}"
                )
            else:
                denied[column] = deny_reasons.get(column, "no grant")
            continue
        readable.append(column)
        first = covering[0]
        via = f" through filter {first.filter_name}" if first.filter_name else ""
        sources[column] = first.columns[column] + via
        if mask is not None:
            masks[column] = mask
            owner = next(s.grantee for s in covering if s.masks.get(column) == mask)
            sources[f"mask:{column}"] = f"mask {mask.kind} on {column} for {owner}"
    filters = [s for s in slices if s.filter_name is not None]
    if row_filter is not None:
        sources["filter"] = "; ".join(
            f"filter {s.filter_name} for {s.grantee}: {s.row_filter}" for s in filters
        )
    return TableAccess(table, tuple(readable), denied, row_filter, masks, sources)
