"""Run one ``ImageBatch`` in a fresh interpreter, as a worker runs a non-deferrable batch: the test kills it.

``python -m tests.triggers.image_batch_child '<json>'``: the ``ImageBatch`` keyword arguments
(``aidol_default`` comes from the environment).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys


def main(kwargs: dict[str, object]) -> None:
    """Run the batch to its end (unless killed)."""
    from airflow_provider_aidol.triggers.images import ImageBatch

    asyncio.run(ImageBatch(**kwargs, log=logging.getLogger("image-batch-child")).run())  # type: ignore[arg-type]


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
