"""The signed client: everything between a hook method and the wire.

Signing, the prepared request, TLS trust and proxies, reading an answer, the request transport
and its async twin, the watchdog, the answer envelope, size and time limits, retries, rate
limiting, redaction, the endpoints, the connection settings and input validation. Only
``transport`` and ``watchdog`` import ``requests`` and ``urllib3``. Nothing here knows about
operators or batches.
"""
