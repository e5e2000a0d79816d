"""The hook tests' ``hook``: an AidolHook of ``aidol_default``, pointed at ``aidol_default_server``."""

from __future__ import annotations

import pytest

from airflow_provider_aidol.hooks.aidol import AidolHook


@pytest.fixture
def hook(aidol_default_server):
    hook = AidolHook()
    yield hook
    hook.close()
