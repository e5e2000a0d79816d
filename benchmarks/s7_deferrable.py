"""Scenario 7: worker-slot time of a 30 s chat image, deferrable or not, with one executor slot.

A real Airflow from ``e2e.stack.AirflowStack`` (api-server, scheduler with LocalExecutor,
dag-processor and triggerer; SQLite) with ``AIRFLOW__CORE__PARALLELISM=1``: the LocalExecutor
has exactly one worker process, so one task at a time holds the one slot. The embedded server
(its own process) takes 30 s per image. Two DAGs, each a ``conversations`` task that creates N
conversations, then ``GenerateChatImageOperator.partial(...).expand(conversation_id=...)`` over
them, one with ``deferrable=False`` and one with ``deferrable=True``; each is run once, first
with Airflow's defaults, then in a second deployment with ``[workers] min_heartbeat_interval=1``.

How slot time is measured: a LocalExecutor worker process retitles itself
``airflow worker -- LocalExecutor: <task instance id>`` for as long as it runs a workload (the
task supervisor, the task process it forks, reporting the end state) and ``... <idle>``
otherwise. A thread here reads the titles of the scheduler's child processes every 50 ms
(psutil), so every interval during which the worker held a task instance is known to within
±50 ms at each end. The worker's own children are the task processes: their lifetime (fork to
exit) is recorded the same way, so the table can tell the task process from the supervisor's
time around it. A deferrable task instance has two segments (``execute()`` up to the deferral,
``execute_complete()`` after the trigger fired). The metadata database's start and end dates
cannot give this: a task instance resumed after deferral keeps its first start date.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from benchmarks.common import (
    Deadline,
    Goal,
    ScenarioResult,
    ServerProcess,
    fmt_ratio,
    fmt_seconds,
    log_file,
    median,
    new_result,
    say,
)
from e2e.stack import AirflowStack

TITLE = "Deferrable image generation"
GENERATION = 30.0  # seconds the server takes per image
TASKS = 4
GOAL = 0.95  # share of the generation for which deferrable mode frees the slot
SAMPLE_INTERVAL = 0.05
WORKER_TITLE = "airflow worker -- LocalExecutor:"
IDLE = "<idle>"
AGENT = "agent-1"
DAG_FILE_NAME = "aidol_bench_image.py"
SYNC, DEFERRABLE = "deferrable=False", "deferrable=True"
MODES = {
    # label: (dag_id, deferrable)
    SYNC: ("aidol_bench_image_sync", False),
    DEFERRABLE: ("aidol_bench_image_deferrable", True),
}
DEFAULTS = "Airflow defaults"
TUNED = "min_heartbeat_interval=1"
CONFIGS: dict[str, dict[str, str]] = {
    DEFAULTS: {},
    # The task supervisor notices its task process's exit only when its select() times out,
    # after up to [workers] min_heartbeat_interval seconds (default 5).
    TUNED: {"AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1"},
}

DAG_FILE = """
from airflow.sdk import DAG, task

from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.operators.image import GenerateChatImageOperator

for dag_id, deferrable in {dags!r}:
    with DAG(dag_id=dag_id, schedule=None, catchup=False):

        @task
        def conversations() -> list[str]:
            hook = AidolHook()
            try:
                return [hook.create_conversation({agent!r}) for _ in range({tasks})]
            finally:
                hook.close()

        GenerateChatImageOperator.partial(
            task_id="generate_image",
            agent_id={agent!r},
            text="a lighthouse at dusk",
            output_path="file://{images}/" + dag_id + "/{{{{ ti.map_index }}}}.png",
            deferrable=deferrable,
            retries=0,
        ).expand(conversation_id=conversations())
"""

Segment = tuple[float, float]
#: The task supervisor's own account of a workload, in the scheduler's output (LocalExecutor workers
#: log to it): ``Workload finished ... duration=10.59 ... workload_id=<task instance id>``.
WORKLOAD_FINISHED = re.compile(r"Workload finished.*?duration=([0-9.]+).*?workload_id=([0-9a-f-]{36})")


class SlotSampler:
    """Record when LocalExecutor workers hold which task instance, and when its task processes live.

    Workers are the scheduler's children titled ``airflow worker -- LocalExecutor: ...``; a
    worker's children are the task processes it supervises (a zombie counts as exited).
    """

    def __init__(self, scheduler_pid: int, interval: float = SAMPLE_INTERVAL) -> None:
        self.scheduler = psutil.Process(scheduler_pid)
        self.interval = interval
        #: (task instance id, start, end) as Unix timestamps: one per workload a worker ran.
        self.slots: list[tuple[str, float, float]] = []
        #: (task instance id, start, end): one per task process (first seen to last seen alive).
        self.processes: list[tuple[str, float, float]] = []
        self.samples = 0
        self._holding: dict[int, tuple[str, float]] = {}  # worker pid -> (ti id, first seen)
        self._alive: dict[int, tuple[str, float, float]] = {}  # task pid -> (ti id, first, last seen)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slot-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        now = time.time()
        self.slots += [(ti, since, now) for ti, since in self._holding.values()]
        self.processes += list(self._alive.values())
        self._holding.clear()
        self._alive.clear()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no worker holds a workload: a task instance's state is final before its slot is free."""
        deadline = time.monotonic() + timeout
        while self._holding or self._alive:
            if time.monotonic() > deadline:
                raise TimeoutError(f"a worker still holds {list(self._holding.values())} after {timeout:g} s")
            time.sleep(self.interval)

    def _look(self) -> tuple[dict[int, str], dict[int, int]]:
        """Return {worker pid: title after the prefix} and {live task process pid: its worker's pid}."""
        workers: dict[int, str] = {}
        tasks: dict[int, int] = {}
        with suppress(psutil.Error):
            descendants = self.scheduler.children(recursive=True)
            for process in descendants:
                with suppress(psutil.Error):
                    if process.ppid() != self.scheduler.pid:
                        continue
                    title = " ".join(process.cmdline()).strip()
                    if title.startswith(WORKER_TITLE):
                        workers[process.pid] = title[len(WORKER_TITLE) :].strip()
            for process in descendants:
                with suppress(psutil.Error):
                    parent = process.ppid()
                    if parent in workers and process.status() != psutil.STATUS_ZOMBIE:
                        tasks[process.pid] = parent
        return workers, tasks

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            workers, tasks = self._look()
            self.samples += 1
            for pid in list(self._holding):
                ti_id, since = self._holding[pid]
                if workers.get(pid) != ti_id:  # the workload ended (idle, another one, or gone)
                    self.slots.append((ti_id, since, now))
                    del self._holding[pid]
            for pid, title in workers.items():
                if title != IDLE and pid not in self._holding:
                    self._holding[pid] = (title, now)
            for pid in list(self._alive):
                if pid not in tasks:
                    self.processes.append(self._alive.pop(pid))
            for pid, worker in tasks.items():
                held = self._holding.get(worker)
                if pid in self._alive:
                    ti_id, first, _ = self._alive[pid]
                    self._alive[pid] = (ti_id, first, now)
                elif held is not None:
                    self._alive[pid] = (held[0], now, now)
            self._stop.wait(self.interval)

    def slot_segments(self, ti_id: str) -> list[Segment]:
        return sorted((start, end) for seen, start, end in self.slots if seen == ti_id)

    def process_segments(self, ti_id: str) -> list[Segment]:
        return sorted((start, end) for seen, start, end in self.processes if seen == ti_id)


def _logged_workloads(scheduler_log: Path) -> dict[str, list[float]]:
    """The supervisor-logged workload durations per task instance id (a cross-check of the sampler)."""
    found: dict[str, list[float]] = {}
    for match in WORKLOAD_FINISHED.finditer(scheduler_log.read_text(errors="replace")):
        found.setdefault(match.group(2), []).append(float(match.group(1)))
    return found


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _total(segments: list[Segment]) -> float:
    return sum(end - start for start, end in segments)


def _overlap(segments: list[Segment], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in segments)


def _run_mode(
    stack: AirflowStack,
    server: ServerProcess,
    sampler: SlotSampler,
    dag_id: str,
    images: Path,
    tasks: int,
    generation: float,
) -> dict[str, Any]:
    sampler.wait_idle()
    server.reset()
    triggered = time.time()
    run_id = stack.trigger(dag_id)
    state = stack.wait_run_finished(dag_id, run_id, timeout=tasks * (generation + 15) + 240)
    seen_finished = time.time()
    # The run is final before the supervisor of its last task has let go of the slot.
    sampler.wait_idle()
    run = stack.api("GET", stack.run_path(dag_id, run_id))
    instances = stack.task_instances(dag_id, run_id)
    conversations: list[str] = []
    with suppress(AssertionError):
        conversations = list(stack.xcom(dag_id, run_id, "conversations"))
    stats = server.stats()
    started = {image["conversation_id"]: float(image["started_at"]) for image in stats["images"]}
    origin = _timestamp(run["start_date"])
    per_task: list[dict[str, Any]] = []
    mapped = sorted(
        (t for t in instances if t["task_id"] == "generate_image"), key=lambda t: int(t["map_index"])
    )
    for ti in mapped:
        slots = sampler.slot_segments(ti["id"])
        processes = sampler.process_segments(ti["id"])
        index = int(ti["map_index"])
        conversation = conversations[index] if index < len(conversations) else None
        begin = started.get(conversation) if conversation else None
        start = _timestamp(ti["start_date"]) if ti.get("start_date") else None
        end = _timestamp(ti["end_date"]) if ti.get("end_date") else None
        per_task.append(
            {
                "map_index": index,
                "state": ti["state"],
                "segments": [(a - origin, b - origin) for a, b in slots],
                "process_segments": [(a - origin, b - origin) for a, b in processes],
                "id": ti["id"],
                "slot_s": _total(slots),
                "process_s": _total(processes),
                "generation": None if begin is None else (begin - origin, begin - origin + generation),
                "slot_during_generation_s": None
                if begin is None
                else _overlap(slots, begin, begin + generation),
                "ti_duration_s": end - start if start is not None and end is not None else None,
                "start": start,
                "end": end,
            }
        )
    setup = [
        (a - origin, b - origin)
        for t in instances
        if t["task_id"] == "conversations"
        for a, b in sampler.slot_segments(t["id"])
    ]
    starts = [t["start"] for t in per_task if t["start"] is not None]
    ends = [t["end"] for t in per_task if t["end"] is not None]
    folder = images / dag_id
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": state,
        "run_s": _timestamp(run["end_date"]) - origin if run.get("end_date") else seen_finished - triggered,
        "image_step_s": max(ends) - min(starts) if starts and ends else 0.0,
        "tasks": per_task,
        "setup_segments": setup,
        "succeeded": sum(t["state"] == "success" for t in per_task),
        "images_billed": len(stats["images"]),
        "images_per_conversation_max": max(
            (sum(i["conversation_id"] == c for i in stats["images"]) for c in conversations), default=0
        ),
        "pngs": len(list(folder.glob("*.png"))) if folder.exists() else 0,
    }


def _deployment(
    scratch: Path, name: str, extra_env: dict[str, str], tasks: int, generation: float, deadline: Deadline
) -> dict[str, dict[str, Any]]:
    """One Airflow with a triggerer and one slot; both modes run in it, blocking first."""
    home, dags, images = scratch / name / "home", scratch / name / "dags", scratch / name / "images"
    for folder in (home, dags, images):
        folder.mkdir(parents=True)
    (dags / DAG_FILE_NAME).write_text(
        DAG_FILE.format(
            dags=[(dag_id, deferrable) for dag_id, deferrable in MODES.values()],
            agent=AGENT,
            tasks=tasks,
            images=images,
        )
    )
    measured: dict[str, dict[str, Any]] = {}
    with ServerProcess(image_latency=generation, name=f"s7-{name}-server") as server:
        env = {
            "AIRFLOW__CORE__PARALLELISM": "1",
            "AIRFLOW_CONN_AIDOL_DEFAULT": server.connection,
            **extra_env,
        }
        stack = AirflowStack(home, dags, triggerer=True, extra_env=env)
        try:
            started = time.perf_counter()
            stack.migrate()
            stack.start()
            stack.wait_healthy()
            for dag_id, _ in MODES.values():
                stack.wait_dag_parsed(dag_id, dag_file=DAG_FILE_NAME)
            say(f"  {name}: Airflow and a triggerer up in {time.perf_counter() - started:.1f} s (not timed)")
            scheduler = stack.service("scheduler").process
            assert scheduler is not None
            sampler = SlotSampler(scheduler.pid)
            sampler.start()
            try:
                for label, (dag_id, _) in MODES.items():
                    deadline.check()
                    m = measured[label] = _run_mode(stack, server, sampler, dag_id, images, tasks, generation)
                    say(
                        f"  {name}, {label}: run {m['state']} in {m['run_s']:.1f} s, image step "
                        f"{m['image_step_s']:.1f} s, slot per task "
                        + ", ".join(f"{t['slot_s']:.2f}" for t in m["tasks"])
                        + " s (task processes "
                        + ", ".join(f"{t['process_s']:.2f}" for t in m["tasks"])
                        + f" s), {m['images_billed']} images billed, {m['pngs']} PNGs"
                    )
            finally:
                sampler.stop()
                logged = _logged_workloads(stack.service("scheduler").log_path)
                for m in measured.values():
                    m["samples"] = sampler.samples
                    for task in m["tasks"]:
                        durations = logged.get(task["id"], [])
                        task["supervisor_logged_s"] = sum(durations)
                        task["supervisor_logged_segments"] = len(durations)
        finally:
            stack.stop()
            for service in stack.services:
                with suppress(OSError):
                    shutil.copyfile(service.log_path, log_file(f"s7-{name}-{service.name}.log"))
    return measured


def run(*, tasks: int = TASKS, generation: float = GENERATION) -> ScenarioResult:
    config = {
        "tasks": tasks,
        "generation_s": generation,
        "parallelism": 1,
        "executor": "LocalExecutor",
        "database": "SQLite",
        "sample_interval_s": SAMPLE_INTERVAL,
        "deployments": list(CONFIGS),
    }
    result = new_result(7, TITLE, config)
    deadline = Deadline(len(CONFIGS) * (tasks * generation * 2 + 300), "scenario 7")
    measured: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="aidol-bench-deferrable-") as scratch:
        for number, (name, extra_env) in enumerate(CONFIGS.items()):
            measured[name] = _deployment(Path(scratch), f"d{number}", extra_env, tasks, generation, deadline)
    _summarise(result, measured, tasks, generation)
    return result


def _mean_slot(mode: dict[str, Any]) -> float:
    """Slot-seconds per task: all the mode's image tasks' slot time over their number.

    The mean, not the median: slot time is capacity, and every second of it counts (Airflow's
    supervisor tail hits some segments and not others).
    """
    slots = [t["slot_s"] for t in mode["tasks"]]
    return sum(slots) / len(slots) if slots else 0.0


def _saving(modes: dict[str, dict[str, Any]], generation: float) -> tuple[float, float, float]:
    """(slot s per task blocking, the same deferrable, saved share of the generation)."""
    blocking, deferrable = _mean_slot(modes[SYNC]), _mean_slot(modes[DEFERRABLE])
    return blocking, deferrable, (blocking - deferrable) / generation


def _correct(modes: dict[str, dict[str, Any]], tasks: int) -> bool:
    return all(
        m["state"] == "success"
        and m["succeeded"] == tasks
        and m["images_billed"] == tasks
        and m["images_per_conversation_max"] == 1
        and m["pngs"] == tasks
        for m in modes.values()
    )


def _summarise(
    result: ScenarioResult, measured: dict[str, dict[str, dict[str, Any]]], tasks: int, generation: float
) -> None:
    tails: dict[str, dict[str, float]] = {}
    for name, modes in measured.items():
        blocking, deferrable, share = _saving(modes, generation)
        segments = [len(t["segments"]) for t in modes[DEFERRABLE]["tasks"]]
        tails[name] = {
            label: sum(t["slot_s"] - t["process_s"] for t in m["tasks"]) / max(1, len(m["tasks"]))
            for label, m in modes.items()
        }
        tail = tails[name][DEFERRABLE]
        correct = _correct(modes, tasks)
        goal: Goal = {
            "measure": f"{name}: worker-slot seconds saved per task by deferrable=True, as a share of the "
            f"{generation:.0f} s generation (slot time of all image tasks / tasks, deferrable=False "
            "minus deferrable=True, every segment counted)",
            "goal": f"≥ {GOAL:.0%}",
            "result": f"{share:.1%} ({fmt_seconds(blocking - deferrable)}: {fmt_seconds(blocking)} vs "
            f"{fmt_seconds(deferrable)} per task)",
            "met": share >= GOAL and correct,
        }
        if not correct:
            goal["note"] = "a run did not succeed with exactly one image billed and one PNG written per task"
        elif share < GOAL:
            goal["note"] = (
                f"the deferrable task holds the slot {max(segments, default=0)} times (execute() up to the "
                f"deferral, then execute_complete()), {fmt_seconds(deferrable)} in all, of which "
                f"{fmt_seconds(tail)} is Airflow's task supervisor after the task process exited: it "
                "notices the exit only when its select() times out, after up to [workers] "
                "min_heartbeat_interval (5 s by default) per segment"
            )
        result["goals"].append(goal)
    defaults = measured[DEFAULTS]
    held = [
        t["slot_during_generation_s"]
        for modes in measured.values()
        for t in modes[DEFERRABLE]["tasks"]
        if t["slot_during_generation_s"] is not None
    ]
    result["goals"].append(
        {
            "measure": "deferrable=True: share of each generation during which its task holds no worker slot",
            "goal": "(shown)",
            "result": f"{1 - max(held, default=generation) / generation:.1%} "
            f"(at most {fmt_seconds(max(held, default=0.0))} held during a generation)",
            "met": None,
        }
    )
    sync_wall, deferred_wall = defaults[SYNC]["image_step_s"], defaults[DEFERRABLE]["image_step_s"]
    result["goals"].append(
        {
            "measure": f"{DEFAULTS}: wall time for {tasks} image tasks with 1 worker slot "
            "(first start to last end of the mapped task instances)",
            "goal": "(shown)",
            "result": f"{fmt_seconds(deferred_wall)} deferrable vs {fmt_seconds(sync_wall)} blocking "
            f"({fmt_ratio(sync_wall / deferred_wall) if deferred_wall else '—'} faster)",
            "met": None,
        }
    )
    rows: list[list[str]] = []
    for name, modes in measured.items():
        for label, m in modes.items():
            slots = [t["slot_s"] for t in m["tasks"]] or [0.0]
            processes = [t["process_s"] for t in m["tasks"]] or [0.0]
            durations = [t["ti_duration_s"] for t in m["tasks"] if t["ti_duration_s"] is not None]
            during = [
                t["slot_during_generation_s"] for t in m["tasks"] if t["slot_during_generation_s"] is not None
            ]
            rows.append(
                [
                    name,
                    label,
                    f"{m['state']} ({m['succeeded']}/{tasks})",
                    fmt_seconds(m["run_s"]),
                    fmt_seconds(m["image_step_s"]),
                    f"{_mean_slot(m):.2f} s; {median(slots):.2f} s ({min(slots):.2f}-{max(slots):.2f})",
                    f"{median(processes):.2f} s",
                    "/".join(str(len(t["segments"])) for t in m["tasks"]),
                    f"{median(during):.2f} s" if during else "—",
                    f"{median(durations):.1f} s" if durations else "—",
                    f"{m['images_billed']} ({m['pngs']} PNGs)",
                ]
            )
    result["table"] = {
        "columns": [
            "deployment",
            "mode",
            "run (image tasks succeeded)",
            "whole run",
            f"{tasks} image tasks: first start to last end",
            "slot time per task: mean; median (min-max)",
            "task process time per task (median)",
            "slot segments per task",
            "slot held during the task's own generation (median)",
            "task instance start to end date (median)",
            "images billed (PNGs written)",
        ],
        "rows": rows,
    }
    result["notes"].append(
        f"One run per mode and deployment, {tasks} mapped task instances each, 1 executor slot "
        "(`AIRFLOW__CORE__PARALLELISM=1`: the LocalExecutor's single worker process), a triggerer, and a "
        f"server that takes {generation:.0f} s per image. Slot time: the LocalExecutor worker retitles "
        "itself `airflow worker -- LocalExecutor: <task instance id>` while it runs a workload (task "
        "supervisor, task process, reporting the state) and `<idle>` otherwise; a sampler thread read the "
        f"titles of the scheduler's child processes every {SAMPLE_INTERVAL * 1000:.0f} ms, so each segment "
        "is exact to ±0.05 s at either end. The worker's children are the task processes; their lifetime "
        "(fork to exit) is the task process time. A deferrable task has two segments (execute() up to the "
        "deferral; execute_complete() after the trigger fired), both counted. The task instance's start to "
        "end date from the metadata database is shown for comparison: after a deferral Airflow keeps the "
        "first start date, so that span includes the deferred time and is not slot time."
    )
    result["notes"].append(
        "Slot time minus task process time is the task supervisor's own time in the worker, mostly after "
        "the task process has exited: Airflow 3.3's supervisor waits in select() for up to "
        "`[workers] min_heartbeat_interval` seconds (default 5) before it notices the exit, or at once "
        "when it happens to catch it; which one is a race. Mean per task, blocking / deferrable: "
        + "; ".join(
            f"{fmt_seconds(tail[SYNC])} / {fmt_seconds(tail[DEFERRABLE])} ({name})"
            for name, tail in tails.items()
        )
        + ". The second deployment sets `AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL=1` (the task "
        "supervisor then also heartbeats every second) to show the provider's share without that wait."
    )
    result["notes"].append(
        '"Held during the generation": the part of the task\'s slot segments that overlaps the '
        f"{generation:.0f} s from the moment the server started that task's image (its `started_at`, "
        f"server clock, same machine) to {generation:.0f} s later."
    )
    differences = [
        t["slot_s"] - t["supervisor_logged_s"]
        for modes in measured.values()
        for m in modes.values()
        for t in m["tasks"]
        if t.get("supervisor_logged_segments") == len(t["segments"])
    ]
    checked = sum(len(m["tasks"]) for modes in measured.values() for m in modes.values())
    if differences:
        result["notes"].append(
            "Cross-check: the task supervisor logs each workload's duration (`Workload finished ... "
            f"duration=`); for {len(differences)} of {checked} task instances the segment counts match and "
            f"the sampled slot time exceeds the logged total by {min(differences):+.2f} to "
            f"{max(differences):+.2f} s (the worker's own steps around the supervisor, and sampling)."
        )
    shares = {name: _saving(modes, generation)[2] for name, modes in measured.items()}
    result["data"] = {"deployments": measured, "generation_s": generation, "share_saved": shares}
