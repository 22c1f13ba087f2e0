"""Governance (our Lake Formation and CloudTrail): principals, grants, tags, row filters,
column masks, one enforcement point for every query, the audit log, right to be forgotten.

The contract between its parts is :mod:`fluvial.govern.model`: policies answer a
:class:`~fluvial.govern.model.TableAccess` per principal and table; enforcement rewrites
user SQL with it; every decision is written to the :mod:`~fluvial.govern.audit` log.
"""

from __future__ import annotations

from fluvial.govern.audit import AuditLog, AuditRecord, Verification, open_audit
from fluvial.govern.enforce import GovernedResult, run_governed
from fluvial.govern.model import AccessResolver, Mask, Principal, TableAccess
from fluvial.govern.policy import PolicyStore, open_policy
from fluvial.govern.principals import PrincipalStore, Role, open_principals

__all__ = [
    "AccessResolver",
    "AuditLog",
    "AuditRecord",
    "GovernedResult",
    "Mask",
    "PolicyStore",
    "Principal",
    "PrincipalStore",
    "Role",
    "TableAccess",
    "Verification",
    "open_audit",
    "open_policy",
    "open_principals",
    "run_governed",
]
