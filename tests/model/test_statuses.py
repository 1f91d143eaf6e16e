"""The rule that a message's status only moves forward (model/statuses.py), and the form of it that a
database statement applies (`advances_from`, intake/postgres_reports.py): the same answers for every pair
of statuses, so that the rule is written once."""

from __future__ import annotations

import pytest

from webhook_service.model.statuses import CANONICAL, advances, advances_from

CURRENT = [None, *sorted(CANONICAL)]


@pytest.mark.parametrize("new", sorted(CANONICAL))
def test_advances_from_lists_what_advances_answers(new):
    assert [current for current in CURRENT if current in advances_from(new)] == [
        current for current in CURRENT if advances(current, new)
    ]


def test_the_rule_in_a_few_cases():
    assert advances(None, "unknown") and not advances("sent", "unknown")
    assert advances("sent", "delivered") and not advances("delivered", "sent")
    assert advances("delivered", "read") and not advances("failed", "delivered")
    assert "received" not in advances_from("delivered")  # an inbound message is not delivered by a report
