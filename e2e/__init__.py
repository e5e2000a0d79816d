"""End-to-end test: Airflow UI in headless Chromium, a real Airflow, the embedded AI-DOL server."""
