"""Apache Airflow provider for the AI-DOL Open API."""

from __future__ import annotations

__version__ = "0.1.0"
