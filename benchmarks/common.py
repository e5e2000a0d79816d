"""Shared pieces of the benchmarks: the server process, environments, timing, peak RSS, results."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, NotRequired, Self, TypedDict

import psutil  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / ".out"  # logs and scratch files (git-ignored)
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")

AGENTS = ("agent-1", "agent-2", "agent-3")
API_KEY = "bench-api-key"
API_SECRET = "bench-api-secret-0123456789abcdef"
USER_ID = "bench-user"
CONVERSATION_PATH = "/v1/chat/conversation"
RATE_LIMITED_CODE = "10429"

MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Console and client logs

# The terminal as it was at start; scenario bodies send fds 1 and 2 to a log file (Airflow's
# logging writes every hook log line to stdout), progress lines go here.
_CONSOLE = os.fdopen(os.dup(1), "w", buffering=1)


def say(text: str) -> None:
    """Print a progress line to the terminal, even while client output goes to a log file."""
    _CONSOLE.write(text + "\n")
    _CONSOLE.flush()


@contextmanager
def output_to(name: str) -> Iterator[Path]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to benchmarks/.out/logs/NAME."""
    path = log_file(name)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield path
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# ---------------------------------------------------------------------------------------------
# Results


class Goal(TypedDict):
    """One goal of a scenario as shown in the summary table."""

    measure: str
    goal: str
    result: str
    met: bool | None
    note: NotRequired[str]


class Table(TypedDict):
    """A detail table: preformatted cells."""

    columns: list[str]
    rows: list[list[str]]


class ScenarioResult(TypedDict):
    """What one scenario reports; ``data`` holds the raw numbers the chart is drawn from."""

    id: int
    title: str
    status: Literal["ok", "skipped", "error"]
    measured_at: str
    seconds: float
    config: dict[str, Any]
    goals: list[Goal]
    table: Table
    notes: list[str]
    data: dict[str, Any]


def new_result(scenario_id: int, title: str, config: Mapping[str, Any]) -> ScenarioResult:
    """Return an empty result, to be filled in by the scenario."""
    return ScenarioResult(
        id=scenario_id,
        title=title,
        status="ok",
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=0.0,
        config=dict(config),
        goals=[],
        table=Table(columns=[], rows=[]),
        notes=[],
        data={},
    )


def at_most(value: float, limit: float) -> bool:
    """Whether a measured ``value`` meets a "≤ limit" goal."""
    return value <= limit


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def fmt_seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


# ---------------------------------------------------------------------------------------------
# Time bounds


@dataclass
class Deadline:
    """A wall-clock budget for a loop: ``check()`` raises once it is spent."""

    seconds: float
    what: str
    start: float = field(default_factory=time.monotonic)

    @property
    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def check(self) -> None:
        if self.left <= 0:
            raise TimeoutError(f"{self.what}: gave up after {self.seconds:g} s")


# ---------------------------------------------------------------------------------------------
# Items and checks


def make_items(count: int, prefix: str) -> list[dict[str, str]]:
    """``count`` items, each a distinct (agent, user) pair, so duplicates show on the server."""
    return [{"agent_id": AGENTS[i % len(AGENTS)], "user_id": f"{prefix}-{i:06d}"} for i in range(count)]


def pairs_digest(pairs: Iterable[tuple[str, str]]) -> str:
    """Return the SHA-256 of the sorted ``agent<TAB>user`` lines (order-independent)."""
    text = "\n".join(sorted(f"{agent}\t{user}" for agent, user in pairs))
    return hashlib.sha256(text.encode()).hexdigest()


def items_digest(items: Sequence[Mapping[str, str]]) -> str:
    return pairs_digest((item["agent_id"], item["user_id"]) for item in items)


def exactly_once(stats: Mapping[str, Any], items: Sequence[Mapping[str, str]]) -> bool:
    """Whether the server created one conversation per item and no other."""
    return bool(
        stats["conversations"] == len(items)
        and stats["distinct_pairs"] == len(items)
        and stats["max_per_pair"] == 1
        and stats["pairs_sha256"] == items_digest(items)
    )


def rate_limited(stats: Mapping[str, Any]) -> int:
    return int(stats["codes"].get(RATE_LIMITED_CODE, 0))


def rate_limited_run(
    stats: Mapping[str, Any], items: Sequence[Mapping[str, str]], *, seconds: float, failed: int
) -> dict[str, Any]:
    """One rate-limited run's record: time, requests, rate-limited share, failures, exactly once."""
    limited = rate_limited(stats)
    return {
        "seconds": seconds,
        "requests": stats["requests"],
        "rate_limited": limited,
        "limited_share": limited / max(stats["requests"], 1),
        "failed": failed,
        "conversations": stats["conversations"],
        "exactly_once": exactly_once(stats, items),
    }


def rate_limited_summary(runs: Sequence[Mapping[str, Any]], ideal: float) -> dict[str, Any]:
    """Runs of one mode (``rate_limited_run`` records): median time, its ratio to ``ideal``,
    median share rate-limited, and whether every run created each item exactly once."""
    seconds = median(r["seconds"] for r in runs)
    return {
        "median_s": seconds,
        "ratio": seconds / ideal,
        "limited_share": median(r["limited_share"] for r in runs),
        "exactly_once": all(r["exactly_once"] and r["failed"] == 0 for r in runs),
    }


def rate_limited_cells(summed: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The table cells of one mode's rate-limited runs, by column: its ``rate_limited_summary``
    (median wall, x ideal, median share, exactly once) and each run's seconds and rate-limited
    requests."""
    return {
        "median wall": fmt_seconds(summed["median_s"]),
        "x ideal": fmt_ratio(summed["ratio"]),
        "runs (s)": " / ".join(f"{r['seconds']:.2f}" for r in runs),
        "rate-limited / requests": "; ".join(f"{r['rate_limited']} of {r['requests']}" for r in runs),
        "median share": f"{summed['limited_share']:.1%}",
        "exactly once": "yes" if summed["exactly_once"] else "NO",
    }


def rate_limited_result(cells: Mapping[str, str], *more: str) -> str:
    """A goal's result from ``rate_limited_cells``: x ideal (median wall); median share; ``more``;
    exactly once."""
    ratio = f"{cells['x ideal']} ({cells['median wall']})"
    return "; ".join([ratio, cells["median share"], *more, cells["exactly once"]])


# ---------------------------------------------------------------------------------------------
# Environments


def airflow_env(home: Path, *, connection: str | None = None, dags: Path | None = None) -> dict[str, str]:
    """This environment without any AIRFLOW_* variable, plus a throw-away Airflow home on SQLite."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    if dags is not None:
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    if connection is not None:
        env["AIRFLOW_CONN_AIDOL_DEFAULT"] = connection
    return env


def log_file(name: str) -> Path:
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    return OUT / "logs" / name


# ---------------------------------------------------------------------------------------------
# The server process


class ServerProcess:
    """The embedded AI-DOL server in its own process (benchmarks.server_process), with a control channel.

    Use as a context manager; ``stats()`` and ``reset()`` reach the server's inspection API.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        image_latency: float = 0.0,
        rate_limit: float | None = None,
        burst: int = 5,
        name: str = "server",
        max_seconds: float = 1800,
        startup_timeout: float = 60,
    ) -> None:
        self.settings: dict[str, Any] = {
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "user_id": USER_ID,
            "agents": list(AGENTS),
            "latency": latency,
            "image_latency": image_latency,
            "rate_limit": rate_limit,
            "burst": burst,
            "max_seconds": max_seconds,
        }
        self.name = name
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: IO[str] | None = None
        self.url = ""
        self.connection = ""

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("server process not started")
        return self._process.pid

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def start(self) -> Self:
        self._stderr = log_file(f"{self.name}.stderr.log").open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.server_process", json.dumps(self.settings)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")},
        )
        threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True).start()
        hello = self._answer(self.startup_timeout)
        self.url = hello["url"]
        self.connection = hello["connection"]
        return self

    def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no answer within {timeout:g} s") from None
        if line is None:
            raise RuntimeError(f"{self.name} exited; see {log_file(f'{self.name}.stderr.log')}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, command: str, timeout: float = 120) -> dict[str, Any]:
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._answer(timeout)

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def conversations(self) -> dict[str, str | None]:
        """Every conversation created so far: the X-Request-ID that created it, by conversation id."""
        return dict(self.command("conversations")["conversations"])

    def reset(self) -> None:
        self.command("reset")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            assert process.stdin is not None
            process.stdin.write("stop\n")
            process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if self._stderr is not None:
            self._stderr.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Subprocesses: time and peak RSS


@dataclass
class ChildRun:
    """A finished child process: exit status, output, wall time, and memory."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int  # bytes, from wait4()'s ru_maxrss (the child and the children it waited for)
    rss_samples: list[tuple[float, int]]  # (seconds since start, RSS bytes) polled with psutil
    cpu_seconds: float  # user + system of the child


def run_child(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    poll: float | None = None,
    cwd: Path = REPO,
    name: str = "child",
) -> ChildRun:
    """Run ``args`` and wait at most ``timeout`` seconds; optionally poll its RSS every ``poll`` seconds.

    Output goes to files under benchmarks/.out/logs (so a chatty child cannot fill a pipe) and is
    returned. The peak RSS comes from ``os.wait4`` for exactly this child, unlike
    ``RUSAGE_CHILDREN``, which keeps the maximum over every child this process ever waited for.
    """
    out_path, err_path = log_file(f"{name}.stdout.log"), log_file(f"{name}.stderr.log")
    samples: list[tuple[float, int]] = []
    with out_path.open("w") as out, err_path.open("w") as err:
        start = time.perf_counter()
        process = subprocess.Popen(list(args), env=dict(env), cwd=cwd, stdout=out, stderr=err, text=True)
        watched = psutil.Process(process.pid)
        deadline = start + timeout
        while True:
            pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            if now > deadline:
                process.kill()
                _, wait_status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(wait_status)
                raise TimeoutError(f"{name}: {' '.join(args[:4])} ... did not finish within {timeout:g} s")
            if poll:
                with suppress(psutil.Error):
                    samples.append((now - start, int(watched.memory_info().rss)))
            time.sleep(poll or 0.02)
        seconds = time.perf_counter() - start
        status = process.returncode = os.waitstatus_to_exitcode(wait_status)
    return ChildRun(
        returncode=status,
        stdout=out_path.read_text(),
        stderr=err_path.read_text(),
        seconds=seconds,
        peak_rss=usage.ru_maxrss * 1024,  # Linux reports kilobytes
        rss_samples=samples,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
    )


def check_child(run: ChildRun, what: str) -> None:
    if run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).splitlines()[-40:])
        raise RuntimeError(f"{what} failed with exit code {run.returncode}:\n{tail}")


def migrated_airflow_env(home: Path, dags: Path, server: ServerProcess, name: str) -> dict[str, str]:
    """Create ``home`` and ``dags``, migrate a throw-away Airflow there (not timed); return its environment.

    The environment is ``airflow_env``'s, with ``dags`` as the DAGs folder and the connection
    ``aidol_default`` to ``server``; ``name`` prefixes the migration's log files.
    """
    home.mkdir(parents=True)
    dags.mkdir(parents=True)
    env = airflow_env(home, connection=server.connection, dags=dags)
    migrate = run_child([AIRFLOW, "db", "migrate"], env=env, timeout=600, name=f"{name}-db-migrate")
    check_child(migrate, "airflow db migrate")
    say(f"  airflow db migrate: {migrate.seconds:.1f} s (not counted)")
    return env


def environment() -> dict[str, Any]:
    """Describe the machine and versions the numbers were measured with."""
    from importlib.metadata import version

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "airflow": version("apache-airflow"),
        "provider": version("airflow-provider-aidol"),
        "requests": version("requests"),
        "uvicorn": version("uvicorn"),
        "git_commit": commit,
    }
