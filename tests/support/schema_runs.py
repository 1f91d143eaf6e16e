"""Running schemathesis cases against the test app: hypothesis settings that keep a run deterministic and
short (every example derived from the document, none from a stored database of earlier failures)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from tests.support.media_uploads import A


def call_and_validate(strategy: Any, *, examples: int, checks: Sequence[Any]) -> None:
    """Call the app with `examples` cases drawn from `strategy` (tenant A's credentials) and run `checks`
    on every answer."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: Any) -> None:
        applying = [check for check in checks if not (check is negative_data_rejection and _lost_in_sending(case))]
        case.call_and_validate(headers=A, checks=applying)

    call()


def _lost_in_sending(case: Any) -> bool:
    """A negative case none of whose invalid parts reaches the app: a query value that is an empty list
    (sent as nothing, the same request as leaving it out) or the Authorization header (replaced by tenant
    A's credentials). The API cannot be asked to refuse it: the request it gets is valid. (Read from the
    case's mutations, where this schemathesis version records them; otherwise none is.)"""
    data = getattr(getattr(getattr(case, "meta", None), "phase", None), "data", None)
    mutations = getattr(data, "mutations", None)
    if not mutations:
        return False
    query = case.query or {}
    for mutation in mutations:
        location = getattr(mutation.parameter_location, "value", mutation.parameter_location)
        if location == "header" and str(mutation.parameter).lower() == "authorization":
            continue
        if location == "query" and mutation.parameter is not None and query.get(mutation.parameter, ...) == []:
            continue
        return False
    return True
