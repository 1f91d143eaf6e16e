"""Which tenants' rows a query may return: the read API's caller has one tenant, an operator some or all.
Every query function that reads tenant data takes `tenants` and applies it with `within`."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

# A set of tenant ids, or None for every tenant (and for rows of no tenant, such as requests to URLs no
# connection answers).
Tenants = Collection[str] | None


def within(column: Any, tenants: Tenants) -> Any:
    """The condition that `column` (a tenant id) is one of `tenants`; None when anything goes."""
    if tenants is None:
        return None
    if len(tenants) == 1:
        return column == next(iter(tenants))
    return column.in_(list(tenants))


def visible(tenant_id: str | None, tenants: Tenants) -> bool:
    """Whether a row of `tenant_id` is within `tenants` (for rows read by primary key)."""
    return tenants is None or tenant_id in tenants
