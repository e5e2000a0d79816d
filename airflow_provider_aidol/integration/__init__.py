"""The Airflow glue after a request: asset events, lineage, metrics and request usage."""
