"""What a finished task tells OpenLineage: the files it wrote, the AI-DOL host, its counts.

The operators' ``get_openlineage_facets_on_complete`` builds its answer here. This module imports
the OpenLineage provider (the ``openlineage`` extra) at the top, so the operators import it only
when the provider's listener asks, and answer ``None`` when it is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.providers.openlineage.utils.utils import translate_airflow_asset
from airflow.sdk import Asset
from attrs import define
from openlineage.client.facet_v2 import JobFacet, RunFacet

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

from airflow_provider_aidol import __version__
from airflow_provider_aidol.constants import DOCUMENTATION_URL, SOURCE_URL

ENDPOINT_FACET = "aidol_endpoint"
"""The key of the AI-DOL job facet in an OpenLineage event (the spec's ``{prefix}_{name}``)."""
RUN_FACET = "aidol_run"
"""The key of the AI-DOL run facet in an OpenLineage event."""
FACET_SCHEMAS = f"{DOCUMENTATION_URL}spec/facets/1-0-0/"
"""Where the facets' JSON schemas are published (the docs site's ``spec/facets/<version>/``)."""
PRODUCER = f"{SOURCE_URL}/tree/{__version__}"
"""The facets' ``_producer``: this package's source at its version."""


@define
class AidolEndpointJobFacet(JobFacet):
    """The AI-DOL API a job talks to: the host (and port) of the connection's base URL, nothing else."""

    host: str

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._producer = PRODUCER

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMAS}AidolEndpointJobFacet.json#/$defs/AidolEndpointJobFacet"


@define
class AidolRunFacet(RunFacet):
    """What one task try did: its results' ``counts``, the requests it sent (``usage``), its ``cost``."""

    counts: dict[str, Any]
    usage: dict[str, int]
    cost: dict[str, Any] | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._producer = PRODUCER

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMAS}AidolRunFacet.json#/$defs/AidolRunFacet"


def endpoint_host(base_url: str) -> str:
    """Return ``host[:port]`` of ``base_url``: no scheme, user, password, path or query."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def operator_lineage(
    *,
    base_url: str,
    written: Iterable[str],
    counts: Mapping[str, Any],
    usage: Mapping[str, int],
    cost: Mapping[str, Any] | None = None,
) -> OperatorLineage[Any, Any]:
    """Return the OpenLineage facets of a finished AI-DOL task.

    :param base_url: the connection's base URL; only its host goes out.
    :param written: URIs or absolute paths of the files the task wrote (its output datasets).
    :param counts: the task's result counts (the custom run facet's ``counts``).
    :param usage: the try's request counts (``RequestUsage.counts()``).
    :param cost: what the try cost at the connection's prices (``{cost, currency}``), if it has any.
    """
    outputs = []
    for uri in written:
        dataset = translate_airflow_asset(Asset(f"file://{uri}" if uri.startswith("/") else uri), None)
        if dataset is not None:
            outputs.append(dataset)
    return OperatorLineage(
        outputs=outputs,
        job_facets={ENDPOINT_FACET: AidolEndpointJobFacet(host=endpoint_host(base_url))},
        run_facets={
            RUN_FACET: AidolRunFacet(
                counts=dict(counts), usage=dict(usage), cost=dict(cost) if cost else None
            )
        },
    )
