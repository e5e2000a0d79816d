"""Test DAGs of the end-to-end tests: the ``e2e-dags`` bundle of the e2e Airflow."""
