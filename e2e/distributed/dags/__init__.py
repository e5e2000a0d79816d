"""The DAGs of the distributed end-to-end test (a DAG folder of their own)."""
