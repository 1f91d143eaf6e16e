"""What the console's pages work with: the parts the composition root gives it (`ConsoleParts`), and the
signed-in operator, the audit log and who may act (`Console`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from werkzeug.wrappers import Response

from webhook_service.config.model import Settings
from webhook_service.console.access import ActionLimiter, Operators, SignedIn
from webhook_service.console.rendering import error_page
from webhook_service.database.audit import Action, record_actions
from webhook_service.database.engine import Database
from webhook_service.delivery.endpoints import EndpointStore
from webhook_service.media.links import MediaLinks
from webhook_service.observability.health import Probe
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.console")


class ReplayResult(Protocol):
    """What the intake's replay answers (intake.processing.IntakeResult)."""

    status: int
    reason_code: str | None
    detail: str | None
    store: Any  # has message_ids once stored


@dataclass(frozen=True)
class ConsoleParts:
    """Made by the composition root: the database, signed media links, and the intake's and the
    pipeline's own operations for the console's actions."""

    db: Database
    links: MediaLinks
    settings: Settings
    # Intake.replay(entry_id, trust=...): None when the entry or its connection is gone.
    replay: Callable[..., ReplayResult | None]
    # AttachmentPipeline.retry(ids): the ids put back to pending.
    retry: Callable[[list[str]], list[str]]
    # The readiness probes /readyz runs, and how many download tasks wait in the queue.
    probes: Mapping[str, Probe]
    queue_waiting: Callable[[], int]
    # Push delivery's endpoints: their replays, retries and re-enabling wake the workers.
    endpoints: EndpointStore


@dataclass(frozen=True)
class Console:
    """What each page module registers its views with."""

    parts: ConsoleParts
    operators: Operators
    actions: ActionLimiter

    def operator(self) -> SignedIn:
        signed_in = self.operators.signed_in()
        assert signed_in is not None  # every page but the sign-in requires one (blueprint.py)
        return signed_in

    def audit(self, actions: list[Action]) -> None:
        """Keep what an operator did, in the audit log and as log lines."""
        record_actions(self.parts.db, actions)
        for action in actions:
            log(
                logger,
                "console_action",
                operator=action.actor,
                action=action.action,
                target=f"{action.target_type}:{action.target_id}",
                result=action.result,
            )

    def action(
        self, action: str, target_type: str, target_id: str | None, tenant_id: str | None, result: str, detail: str = ""
    ) -> Action:
        return Action(self.operator().username, action, target_type, target_id, tenant_id, result, detail)

    def refusal(self, action: str, target_type: str, target_id: str | None, tenant_id: str | None) -> Response | None:
        """The answer to an action the operator may not take now (a viewer's: 403; one past
        console.action_limit_per_operator: 429), audited; None when they may."""
        operator = self.operator()
        if not operator.is_admin:
            self.audit([self.action(action, target_type, target_id, tenant_id, "refused", "viewer")])
            return error_page(403, "Not allowed")
        if not self.actions.attempt(operator.username):
            self.audit([self.action(action, target_type, target_id, tenant_id, "refused", "rate limited")])
            response = error_page(429, "Too many actions")
            response.headers["Retry-After"] = "60"
            return response
        return None
