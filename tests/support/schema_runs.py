"""Running schemathesis cases against the test app: hypothesis settings that keep a run deterministic and
short (every example derived from the document, none from a stored database of earlier failures)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

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
        case.call_and_validate(headers=A, checks=list(checks))

    call()
