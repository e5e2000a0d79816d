"""Approval before paying: a batch shows its plan in Airflow's human-in-the-loop UI and waits.

Built on the standard provider's human-in-the-loop support (Airflow 3.1+): the task writes an
approval request (options ``Approve`` and ``Reject``, the plan in its body) and waits for a
person, in Airflow 3.3+'s ``awaiting_input`` state or, before that, deferred to ``HITLTrigger``.
Nothing is sent until the answer is ``Approve``; a rejection or a timeout ends the task with
nothing sent. This module imports nothing from the standard provider until a task asks.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_aidol.exceptions import AidolApprovalError, AidolConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import timedelta

    from airflow.sdk import BaseOperator, Context

APPROVE = "Approve"
REJECT = "Reject"


def require_hitl_support() -> None:
    """Raise ``AidolConfigurationError`` unless this Airflow has human-in-the-loop support."""
    try:
        from airflow.providers.standard.operators import hitl  # noqa: F401
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail  # noqa: F401
    except Exception as error:  # ImportError, or the provider's "needs Airflow 3.1+" refusal
        raise AidolConfigurationError(
            "require_approval=True needs Airflow's human-in-the-loop support: Airflow 3.1 or later "
            "with apache-airflow-providers-standard 1.5 or later (pip install -U "
            f"apache-airflow-providers-standard); here it is missing ({type(error).__name__}: {error}). "
            "Set require_approval=False, or use dry_run=True to see the plan."
        ) from None


def ask_for_approval(
    operator: BaseOperator,
    context: Context,
    plan: Mapping[str, Any],
    *,
    method_name: str,
    timeout: timedelta | None,
) -> NoReturn:
    """Show ``plan`` in Airflow's UI and park the task until a person answers (resumes in ``method_name``)."""
    from airflow.sdk.execution_time.hitl import upsert_hitl_detail
    from airflow.sdk.timezone import utcnow

    ti_id = context["task_instance"].id
    upsert_hitl_detail(
        ti_id=ti_id,
        options=[APPROVE, REJECT],
        subject=f"Approve AI-DOL batch {operator.task_id}: {plan.get('requests_needed')} requests",
        body=plan_markdown(plan),
        defaults=None,
        multiple=False,
        params={},
    )
    operator.log.info("Waiting for a person to approve the plan in Airflow's UI: %s", dict(plan))
    try:
        from airflow.sdk.exceptions import TaskAwaitingInput  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # Airflow 3.1 and 3.2: the triggerer waits
        from airflow.providers.standard.triggers.hitl import HITLTrigger

        operator.defer(
            trigger=HITLTrigger(
                ti_id=ti_id,
                options=[APPROVE, REJECT],
                params={},
                defaults=None,
                multiple=False,
                timeout_datetime=utcnow() + timeout if timeout else None,
            ),
            method_name=method_name,
        )
    raise TaskAwaitingInput(method_name=method_name, timeout=timeout)


def check_approved(event: Mapping[str, Any]) -> str:
    """Return who approved, from the answer event; raise ``AidolApprovalError`` otherwise."""
    if "error" in event:
        kind = "no answer in time" if event.get("error_type") == "timeout" else f"error: {event.get('error')}"
        raise AidolApprovalError(f"The batch was not approved ({kind}); nothing was sent.")
    chosen = list(event.get("chosen_options") or [])
    user = event.get("responded_by_user") or {}
    name = user.get("name") or user.get("id") or "unknown" if isinstance(user, dict) else str(user)
    if chosen != [APPROVE]:
        raise AidolApprovalError(f"The batch was rejected by {name} ({chosen}); nothing was sent.")
    return str(name)


def plan_markdown(plan: Mapping[str, Any]) -> str:
    """Return the plan as the Markdown the approval page shows."""
    rows = "\n".join(f"| {key} | {json.dumps(value)} |" for key, value in plan.items() if key != "dry_run")
    return f"Nothing is sent before you approve.\n\n| | |\n|---|---|\n{rows}\n"
