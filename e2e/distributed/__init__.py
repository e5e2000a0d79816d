"""``make e2e-distributed``: the provider on Airflow with the CeleryExecutor, a worker killed mid-run."""
