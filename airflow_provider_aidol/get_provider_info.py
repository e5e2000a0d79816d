"""Provider metadata read by Airflow's providers manager.

Every Airflow process calls ``get_provider_info()`` at start-up, so this module (and
``constants``, where its values live) imports nothing but the standard library.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_aidol.constants import CONNECTION_FIELDS, DOCUMENTATION_URL, FIELD_BEHAVIOUR

_HOOK_CLASS = "airflow_provider_aidol.hooks.aidol.AidolHook"


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata: connection type, form fields, hooks and operators."""
    return {
        "package-name": "airflow-provider-aidol",
        "name": "AI-DOL",
        "description": "Create and use AI-DOL agent conversations from Airflow "
        "through the AI-DOL Open API: signed hook, operators and an embedded test server.",
        "documentation-url": DOCUMENTATION_URL,
        "integrations": [
            {"integration-name": "AI-DOL", "tags": ["software"]},
        ],
        "hooks": [{"integration-name": "AI-DOL", "python-modules": ["airflow_provider_aidol.hooks.aidol"]}],
        "operators": [
            {
                "integration-name": "AI-DOL",
                "python-modules": [
                    "airflow_provider_aidol.operators.aidol",
                    "airflow_provider_aidol.operators.batch",
                    "airflow_provider_aidol.operators.image",
                ],
            }
        ],
        "triggers": [
            {"integration-name": "AI-DOL", "python-modules": ["airflow_provider_aidol.triggers.image"]}
        ],
        "connection-types": [
            {
                "connection-type": "aidol",
                "hook-class-name": _HOOK_CLASS,
                "hook-name": "AI-DOL",
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": FIELD_BEHAVIOUR,
            }
        ],
    }
