"""Canonical message statuses and the rule that a message's status only moves forward.

Providers deliver reports late, twice and out of order. The current status therefore follows a rank:
a report applies only if it is further along than what we have, terminal states stay terminal, and the
one exception is delivered -> read. Every report is still kept in the message's history.
"""

from __future__ import annotations

import functools

RECEIVED = "received"
UNKNOWN = "unknown"

# Progress of an outbound message before it reaches a final state.
_IN_FLIGHT_RANK = {"accepted": 10, "scheduled": 20, "queued": 30, "sending": 40, "sent": 50}
TERMINAL = frozenset(
    {"delivered", "undelivered", "failed", "rejected", "expired", "canceled", "deleted", "read", RECEIVED}
)
CANONICAL = frozenset(_IN_FLIGHT_RANK) | TERMINAL | {UNKNOWN}


def advances(current: str | None, new: str) -> bool:
    """Whether a report with status `new` should replace the current status."""
    if new == UNKNOWN:
        return current is None
    if current is None or current == UNKNOWN:
        return True
    if current == "delivered" and new == "read":
        return True
    if current in TERMINAL:
        return False
    if new in TERMINAL:
        return True
    return _IN_FLIGHT_RANK[new] > _IN_FLIGHT_RANK[current]


@functools.cache
def advances_from(new: str) -> tuple[str | None, ...]:
    """The current statuses (None: none yet) that a report with status `new` replaces, by `advances`:
    for a database statement that applies the rule to a status it reads itself."""
    return tuple(current for current in (None, *sorted(CANONICAL)) if advances(current, new))


def canonical(mapping: dict[str, str], provider_status: str | None) -> str:
    """Look a provider's status up in an adapter's mapping table; anything unmapped is `unknown`
    (the provider's own word is still stored beside it)."""
    if not provider_status:
        return UNKNOWN
    return mapping.get(provider_status.strip().lower(), UNKNOWN)


def why_not_applied(current: str | None, new: str) -> str:
    """Why a report with status `new` left the current status as it was (for operators; `advances` is
    the rule)."""
    if new == UNKNOWN:
        return f"an unmapped provider status does not replace {current!r}"
    if current in TERMINAL:
        return f"the message was already {current}, a final state"
    if new == current:
        return f"the message was already {current}"
    return f"{new} comes before {current}: a late or out-of-order report"
