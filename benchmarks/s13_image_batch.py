"""Scenario 13: 200 chat images in ``airflow dags test``, one batch task vs 200 mapped task instances.

The embedded server (its own process) takes ``GENERATION`` seconds per image. A temporary
AIRFLOW_HOME on SQLite (``airflow db migrate`` once, not timed) and a generated DAGs folder with
two DAGs; each starts with ``CreateConversationsOperator`` over 200 distinct (agent, user) pairs:

- ``aidol_bench_images_batch``: then one ``GenerateChatImagesOperator(images=create.output,
  max_concurrency=8)`` (deferrable, the default): the whole batch in one trigger;
- ``aidol_bench_images_mapped``: then ``GenerateChatImageOperator.partial(deferrable=True)
  .expand_kwargs(...)``, one task instance (and one trigger) per image.

Each DAG runs once with ``airflow dags test`` through ``benchmarks.dags_test_timed``, which
records when each task instance runs (``execute()``, then ``execute_complete()`` after the
deferral: the time it would hold a worker slot) and when its trigger runs inline (the time it is
deferred). The server counts the images it generated (and so billed), with each one's start.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    AIRFLOW,
    Deadline,
    Goal,
    ScenarioResult,
    ServerProcess,
    airflow_env,
    check_child,
    fmt_ratio,
    fmt_seconds,
    make_items,
    new_result,
    run_child,
    say,
)

TITLE = "200 chat images in airflow dags test"
IMAGES = 200
GENERATION = 2.0  # seconds the server takes per image
CONCURRENCY = 8
WALL_GOAL = 1.25  # x the ideal: images x generation / concurrency
FREE_GOAL = 0.95  # share of the generation time during which the image task holds no slot
IMAGE_TASK = "generate_images"

DAG_FILE = """
from airflow.sdk import DAG, task

from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.operators.image import GenerateChatImageOperator, GenerateChatImagesOperator

ITEMS = {items!r}
IMAGES = "file://{images}/{{{{ dag.dag_id }}}}"

with DAG(dag_id="aidol_bench_images_batch", schedule=None, catchup=False):
    create = CreateConversationsOperator(task_id="create", conversations=ITEMS, max_workers=8)
    GenerateChatImagesOperator(
        task_id="{task}",
        images=create.output,
        text="a lighthouse at dusk",
        output_path=IMAGES,
        max_concurrency={concurrency},
        retries=0,
    )

with DAG(dag_id="aidol_bench_images_mapped", schedule=None, catchup=False):
    create = CreateConversationsOperator(task_id="create", conversations=ITEMS, max_workers=8)

    @task
    def requests(results: list[dict[str, str]]) -> list[dict[str, str]]:
        keys = ("agent_id", "user_id", "conversation_id")
        return [{{key: result[key] for key in keys}} for result in results]

    GenerateChatImageOperator.partial(
        task_id="{task}",
        text="a lighthouse at dusk",
        output_path=IMAGES + "/{{{{ ti.map_index }}}}.png",
        deferrable=True,
        retries=0,
    ).expand_kwargs(requests(create.output))
"""

BATCH_LABEL = f"GenerateChatImagesOperator (max_concurrency={CONCURRENCY})"
MAPPED_LABEL = "mapped GenerateChatImageOperator (deferrable)"
RUNS = {BATCH_LABEL: "aidol_bench_images_batch", MAPPED_LABEL: "aidol_bench_images_mapped"}

Segment = tuple[float, float]


def _overlap(segments: list[Segment], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in segments)


def _total(segments: list[Segment]) -> float:
    return sum(b - a for a, b in segments)


def _run_dag(
    server: ServerProcess, env: dict[str, str], scratch: Path, dag_id: str, generation: float
) -> dict[str, Any]:
    server.reset()
    timings = scratch / f"{dag_id}.timings.jsonl"
    test = run_child(
        [sys.executable, "-m", "benchmarks.dags_test_timed", str(timings), dag_id],
        env=env,
        timeout=1500,
        name=f"s13-{dag_id}",
    )
    check_child(test, f"airflow dags test {dag_id}")
    records = [json.loads(line) for line in timings.read_text().splitlines()]
    image_records = [r for r in records if r["task_id"] == IMAGE_TASK]
    running = sorted((r["start"], r["end"]) for r in image_records if r["kind"] == "task")
    deferred = sorted((r["start"], r["end"]) for r in image_records if r["kind"] == "trigger")
    by_map_index: dict[int, list[Segment]] = {}
    for r in image_records:
        if r["kind"] == "task":
            by_map_index.setdefault(int(r["map_index"]), []).append((r["start"], r["end"]))
    stats = server.stats()
    images = stats["images"]
    starts = sorted(float(image["started_at"]) for image in images)
    # The slot time during generation: for each image, the part of its 2 s during which a task
    # instance of the image step ran (the batch: its one task; mapped: any instance, an upper bound).
    held = sum(_overlap(running, start, start + generation) for start in starts)
    folder = scratch / "images" / dag_id
    return {
        "dag_id": dag_id,
        "wall_s": test.seconds,
        "image_step_s": (max(b for _, b in running) - min(a for a, _ in running)) if running else 0.0,
        "generation_span_s": (starts[-1] + generation - starts[0]) if starts else 0.0,
        "running_s": _total(running),
        "deferred_s": _total(deferred),
        "running_segments": len(running),
        "task_instances": len(by_map_index) if by_map_index else 0,
        "generation_s": len(starts) * generation,
        "held_during_generation_s": held,
        "images_billed": len(images),
        "distinct_conversations": len({image["conversation_id"] for image in images}),
        "pngs": len(list(folder.rglob("*.png"))) if folder.exists() else 0,
        "peak_rss_mb": test.peak_rss / 2**20,
    }


def run(
    *, images: int = IMAGES, generation: float = GENERATION, concurrency: int = CONCURRENCY
) -> ScenarioResult:
    config = {
        "images": images,
        "generation_s": generation,
        "max_concurrency": concurrency,
        "database": "SQLite",
        "runner": "airflow dags test",
    }
    result = new_result(13, TITLE, config)
    deadline = Deadline(2400, "scenario 13")
    items = make_items(images, "s13")
    measured: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="aidol-bench-images-") as scratch_dir:
        scratch = Path(scratch_dir)
        home, dags = scratch / "home", scratch / "dags"
        for folder in (home, dags, scratch / "images"):
            folder.mkdir()
        (dags / "aidol_bench_images.py").write_text(
            DAG_FILE.format(items=items, images=scratch / "images", task=IMAGE_TASK, concurrency=concurrency)
        )
        with ServerProcess(image_latency=generation, name="s13-server", max_seconds=2400) as server:
            env = airflow_env(home, connection=server.connection, dags=dags)
            migrate = run_child([AIRFLOW, "db", "migrate"], env=env, timeout=600, name="s13-db-migrate")
            check_child(migrate, "airflow db migrate")
            say(f"  airflow db migrate: {migrate.seconds:.1f} s (not counted)")
            for label, dag_id in RUNS.items():
                deadline.check()
                m = measured[label] = _run_dag(server, env, scratch, dag_id, generation)
                say(
                    f"  {label}: airflow dags test {m['wall_s']:.1f} s, image step {m['image_step_s']:.1f} s "
                    f"(running {m['running_s']:.1f} s in {m['running_segments']} segments, deferred "
                    f"{m['deferred_s']:.1f} s), {m['images_billed']} billed, {m['pngs']} PNGs"
                )
    _summarise(result, measured, images, generation, concurrency)
    return result


def _free_share(m: dict[str, Any]) -> float:
    return 1 - m["held_during_generation_s"] / m["generation_s"] if m["generation_s"] else 0.0


def _summarise(
    result: ScenarioResult,
    measured: dict[str, dict[str, Any]],
    images: int,
    generation: float,
    concurrency: int,
) -> None:
    batch, mapped = measured[BATCH_LABEL], measured[MAPPED_LABEL]
    ideal = images * generation / concurrency
    correct = {
        label: m["images_billed"] == images and m["distinct_conversations"] == images and m["pngs"] == images
        for label, m in measured.items()
    }
    x_ideal = batch["image_step_s"] / ideal
    wall: Goal = {
        "measure": f"GenerateChatImagesOperator: the image task's span (execute() start to "
        f"execute_complete() end) against the ideal {images} x {generation:g} s / {concurrency}",
        "goal": f"≤ {WALL_GOAL:.2f}x ({fmt_seconds(ideal * WALL_GOAL)})",
        "result": f"{fmt_ratio(x_ideal)} ({fmt_seconds(batch['image_step_s'])}; images generated over "
        f"{fmt_seconds(batch['generation_span_s'])})",
        "met": x_ideal <= WALL_GOAL and correct[BATCH_LABEL],
    }
    billed: Goal = {
        "measure": "images billed (generations started, counted on the server)",
        "goal": f"exactly {images}",
        "result": f"{batch['images_billed']} ({batch['distinct_conversations']} conversations, "
        f"{batch['pngs']} PNGs); mapped: {mapped['images_billed']}",
        "met": correct[BATCH_LABEL],
    }
    free = _free_share(batch)
    slot: Goal = {
        "measure": "GenerateChatImagesOperator: share of the generation time (image-seconds) during which "
        "the task held no worker slot (it was deferred, its trigger running)",
        "goal": f"≥ {FREE_GOAL:.0%}",
        "result": f"{free:.1%} (running {fmt_seconds(batch['running_s'])} in {batch['running_segments']} "
        f"segments, deferred {fmt_seconds(batch['deferred_s'])})",
        "met": free >= FREE_GOAL and correct[BATCH_LABEL],
    }
    ratio = mapped["image_step_s"] / batch["image_step_s"] if batch["image_step_s"] else 0.0
    side: Goal = {
        "measure": "mapped / batch: the image step (first start to last end of the image task instances)",
        "goal": "(shown)",
        "result": f"{fmt_ratio(ratio)} ({fmt_seconds(mapped['image_step_s'])} vs "
        f"{fmt_seconds(batch['image_step_s'])})",
        "met": None,
        "note": "`airflow dags test` runs mapped task instances, and their triggers, one after another",
    }
    result["goals"] += [wall, billed, slot, side]
    result["table"] = {
        "columns": [
            "DAG",
            "`airflow dags test` wall",
            "image step",
            "x ideal",
            "task running (slot held)",
            "deferred (trigger)",
            "slot held during generation",
            "images billed (PNGs)",
            "peak RSS",
        ],
        "rows": [
            [
                label,
                fmt_seconds(m["wall_s"]),
                fmt_seconds(m["image_step_s"]),
                fmt_ratio(m["image_step_s"] / ideal),
                f"{fmt_seconds(m['running_s'])} ({m['running_segments']} segments)",
                fmt_seconds(m["deferred_s"]),
                f"{fmt_seconds(m['held_during_generation_s'])} of {fmt_seconds(m['generation_s'])} "
                f"({1 - _free_share(m):.1%})",
                f"{m['images_billed']} ({m['pngs']})",
                f"{m['peak_rss_mb']:.0f} MB",
            ]
            for label, m in measured.items()
        ],
    }
    result["notes"].append(
        f"One run per DAG, {images} images, the server taking {generation:g} s per image, so the ideal "
        f"with {concurrency} in flight is {fmt_seconds(ideal)}. `airflow dags test` runs through "
        "`benchmarks.dags_test_timed`, which times the two steps `dag.test()` takes per task instance: "
        "`run_task_in_process` (the task runs: execute(), or execute_complete() after the deferral; "
        "in a deployment the time it holds a worker slot) and the inline trigger run (the task is "
        "deferred). Image step: first start to last end of the image task's runs. Slot held during "
        "generation: for every image the server generated, the part of its generation (server start "
        f"time + {generation:g} s) during which an image task instance was running, summed."
    )
    result["notes"].append(
        "Both DAGs first create the 200 conversations with one CreateConversationsOperator (not "
        "counted in the image step); the whole `airflow dags test` wall time also holds the "
        "interpreter start, parsing and serialising the DAG. The machine was shared with other "
        "workers while this ran (2 cores), so times are upper bounds."
    )
    result["data"] = {"runs": measured, "ideal_s": ideal, "ratio": ratio}
