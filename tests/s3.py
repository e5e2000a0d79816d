"""A real S3 API on loopback for the tests: moto's server on a free port, behind an ``aws`` connection.

The Amazon provider (with s3fs) and moto are in the dev dependency group; where they are not
installed the tests that use these fixtures are skipped. Import the fixtures into a test module:
``from tests.s3 import s3_bucket, s3_server`` (tests/batch and tests/operators do, in conftest.py).

``s3_server`` (one per test process) sets ``AIRFLOW_CONN_AIDOL_S3`` in ``os.environ``, so batch
processes started from the tests reach the same server; ``s3_bucket`` is a fresh bucket, as the
base URI ``s3://aidol_s3@<bucket>`` (the connection id before the ``@``, as Airflow's
``ObjectStoragePath`` reads it).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

S3_CONN_ID = "aidol_s3"
S3_ENV_VAR = "AIRFLOW_CONN_AIDOL_S3"


class S3Server:
    """moto's S3 server on ``127.0.0.1``, and a boto3 client of it for the tests' own checks."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def keys(self, bucket: str) -> list[str]:
        """Every key in ``bucket``, sorted."""
        listed = self.client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(str(entry["Key"]) for entry in listed)

    def read(self, bucket: str, key: str) -> bytes:
        """The object's bytes."""
        return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, and ``aidol_s3`` (an ``aws`` connection) pointing at it."""
    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (dev dependency group)")
    pytest.importorskip("s3fs", reason="the S3 tests need apache-airflow-providers-amazon[s3fs]")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    assert server._server is not None
    endpoint = f"http://127.0.0.1:{server._server.server_port}"  # port 0: the one it got
    before = os.environ.get(S3_ENV_VAR)
    os.environ[S3_ENV_VAR] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )
    try:
        yield S3Server(endpoint)
    finally:
        if before is None:
            os.environ.pop(S3_ENV_VAR, None)
        else:
            os.environ[S3_ENV_VAR] = before
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new bucket on ``s3_server``; its base URI ``s3://aidol_s3@<bucket>``."""
    bucket = f"aidol-{uuid.uuid4().hex[:12]}"
    s3_server.client.create_bucket(Bucket=bucket)
    return f"s3://{S3_CONN_ID}@{bucket}"
