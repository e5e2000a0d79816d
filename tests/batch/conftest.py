"""Fixtures of the tests in this folder: a real S3 API on loopback (tests/s3.py)."""

from tests.s3 import s3_bucket, s3_server  # noqa: F401  (fixtures)
