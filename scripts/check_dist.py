"""``make dist``'s check of the built packages, as a user and a packager would meet them.

1. The wheel publishes only the user-facing extras (the development tools are dependency
   groups). Installed into a new, empty virtual environment (pinned by constraints.txt), its
   requirements are consistent (``pip check``), its provider info validates against Airflow's
   ``provider_info.schema.json``, Airflow discovers it (``airflow providers list`` shows it
   with its version, ``airflow providers get`` with the documentation URL), and the
   ``aidol-server`` console script runs.
2. The sdist holds everything the test suite needs: unpacked, pytest collects as many tests
   there as in this checkout, and a few quick test modules pass.
3. A new user on the oldest supported Airflow: the wheel alone installed with Airflow 3.0's
   constraints (constraints-airflow-3.0.txt) into a new venv, ``airflow db migrate`` in a new
   AIRFLOW_HOME, ``airflow providers list`` shows the provider, and the README's quick-start DAG
   runs (``airflow dags test``) against ``aidol-server``.

Packages are installed by uv (the Makefile's, or ``$UV``): it is several times faster than pip.

Usage: ``python scripts/check_dist.py dist`` (the folder ``python -m build`` wrote).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from airflow_provider_aidol.constants import DOCUMENTATION_URL

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "airflow-provider-aidol"
#: Quick test modules run from the unpacked sdist (the whole suite runs in make test).
SDIST_TESTS = ["tests/client/test_signing.py", "tests/test_docs_site.py", "tests/test_packaging.py"]
TIMEOUT = 900
UV = Path(os.environ.get("UV", REPO / ".venv-uv" / "bin" / "uv"))
#: The oldest supported Airflow's pins, which the new user's check installs the wheel with.
OLDEST_CONSTRAINTS = REPO / "constraints-airflow-3.0.txt"
QUICKSTART_DAG = "aidol_quickstart"
#: The extras users install; the development tools are dependency groups, never published.
EXTRAS = {"postgres", "sqlite", "openlineage"}
#: Run by the wheel's venv: its provider info against the schema of the Airflow installed there.
VALIDATE_PROVIDER_INFO = """
import json, pathlib, jsonschema
from airflow import providers_manager
from airflow_provider_aidol.get_provider_info import get_provider_info
schema = pathlib.Path(providers_manager.__file__).with_name("provider_info.schema.json")
jsonschema.validate(get_provider_info(), json.loads(schema.read_text()))
"""


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command; on failure show its output and stop."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if result.returncode:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"{' '.join(map(str, command))} failed with exit code {result.returncode}")
    return result.stdout


def version() -> str:
    """Return the version in the package's __init__.py (what hatch builds)."""
    text = (REPO / "airflow_provider_aidol" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"', text, flags=re.MULTILINE)
    if found is None:
        raise SystemExit("no __version__ in airflow_provider_aidol/__init__.py")
    return found.group(1)


def check_extras(wheel: Path) -> None:
    """Fail unless the wheel's metadata offers exactly the user-facing extras."""
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", text, flags=re.MULTILINE))
    if extras != EXTRAS:
        raise SystemExit(f"{wheel.name} publishes the extras {sorted(extras)}, not {sorted(EXTRAS)}")


def check_wheel(wheel: Path, work: Path) -> None:
    """Install the wheel alone into a new venv; it must be consistent, valid, and listed by Airflow."""
    check_extras(wheel)
    venv = work / "venv"
    started = time.monotonic()
    run(sys.executable, "-m", "venv", venv)
    install(venv, wheel, REPO / "constraints.txt")
    home = work / "airflow-home"
    env = {"PATH": str(venv / "bin"), "HOME": str(work), "AIRFLOW_HOME": str(home)}
    run(venv / "bin" / "pip", "check", env=env)
    run(venv / "bin" / "python", "-c", VALIDATE_PROVIDER_INFO, env=env)
    listing = run(venv / "bin" / "airflow", "providers", "list", "--output", "json", env=env)
    providers = {entry["package_name"]: entry for entry in json.loads(listing[listing.index("[") :])}
    if providers.get(PACKAGE, {}).get("version") != version():
        raise SystemExit(f"airflow providers list does not show {PACKAGE} {version()}:\n{listing}")
    details = json.loads(
        run(venv / "bin" / "airflow", "providers", "get", "-f", PACKAGE, "-o", "json", env=env)
    )
    documentation = details[0].get("documentation-url")
    if documentation != DOCUMENTATION_URL:
        raise SystemExit(
            f"airflow providers get shows documentation-url {documentation!r}, not {DOCUMENTATION_URL}"
        )
    run(venv / "bin" / "aidol-server", "--help", env=env)
    print(
        f"{wheel.name}: installed alone into a new venv, pip check passes, its provider info is valid, ",
        end="",
    )
    print("listed by airflow providers list ", end="")
    print(f"({time.monotonic() - started:.0f} s)")


def install(venv: Path, wheel: Path, constraints: Path) -> None:
    """Install ``wheel`` (and what it requires, pinned by ``constraints``) into ``venv`` with uv."""
    run(UV, "pip", "install", "--quiet", "--python", venv / "bin" / "python", "-c", constraints, wheel)


def quickstart_dag() -> str:
    """Return the README's quick-start DAG: the first Python block after "## Quick start"."""
    section = (REPO / "README.md").read_text().split("\n## Quick start\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    if found is None or f'dag_id="{QUICKSTART_DAG}"' not in found.group(1):
        raise SystemExit(f"README.md's quick start has no {QUICKSTART_DAG} DAG")
    return found.group(1)


def check_new_user(wheel: Path, work: Path) -> None:
    """Install the wheel alone on the oldest Airflow: Airflow lists it, the quick start runs."""
    venv, home, dags = work / "venv", work / "airflow-home", work / "dags"
    started = time.monotonic()
    run(sys.executable, "-m", "venv", venv)
    install(venv, wheel, OLDEST_CONSTRAINTS)
    installed = time.monotonic()
    dags.mkdir(parents=True)
    (dags / "quickstart.py").write_text(quickstart_dag())
    env = {
        "PATH": str(venv / "bin"),
        "HOME": str(work),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    run(venv / "bin" / "airflow", "db", "migrate", env=env)
    listing = run(venv / "bin" / "airflow", "providers", "list", "--output", "json", env=env)
    if PACKAGE not in {entry["package_name"] for entry in json.loads(listing[listing.index("[") :])}:
        raise SystemExit(f"airflow providers list on Airflow 3.0 does not show {PACKAGE}:\n{listing}")
    env_file = work / "aidol.env"
    server = subprocess.Popen(
        [venv / "bin" / "aidol-server", "--port", "0", "--env-file", env_file],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        name, value = _assignment(env_file, server)
        output = run(venv / "bin" / "airflow", "dags", "test", QUICKSTART_DAG, env={**env, name: value})
    finally:
        server.terminate()
        server.wait(timeout=30)
    if not re.search(rf"DagRun Finished: dag_id={QUICKSTART_DAG},.* state=success", output):
        raise SystemExit(f"the quick-start DAG did not succeed on Airflow 3.0:\n{output[-4000:]}")
    print(
        f"{wheel.name} with constraints-airflow-3.0.txt: listed by airflow providers list, the quick-start "
        f"DAG runs against aidol-server ({time.monotonic() - started:.0f} s, "
        f"{installed - started:.0f} s of them installing)"
    )


def _assignment(env_file: Path, server: subprocess.Popen[bytes]) -> tuple[str, str]:
    """Wait for aidol-server's ``AIRFLOW_CONN_AIDOL_DEFAULT=...`` line; return the name and the value."""
    deadline = time.monotonic() + 60
    while not env_file.exists() or not env_file.read_text().endswith("\n"):
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("aidol-server did not start (no --env-file line within 60 s)")
        time.sleep(0.1)
    [assignment] = shlex.split(env_file.read_text())
    name, _, value = assignment.partition("=")
    return name, value


def collected(folder: Path) -> int:
    """How many tests pytest collects in ``folder`` (with this environment's pytest)."""
    output = run(sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", cwd=folder)
    found = re.search(r"(\d+) tests? collected", output)
    if found is None:
        raise SystemExit(f"pytest collected nothing in {folder}:\n{output[-2000:]}")
    return int(found.group(1))


def check_sdist(sdist: Path, work: Path) -> None:
    """Unpack the sdist; its tests must all be there and the quick ones must pass."""
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    [unpacked] = list(work.glob(f"{PACKAGE.replace('-', '_')}-*"))
    expected, found = collected(REPO), collected(unpacked)
    if found != expected:
        raise SystemExit(f"{sdist.name}: pytest collects {found} tests, the checkout {expected}")
    run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SDIST_TESTS, cwd=unpacked)
    print(f"{sdist.name}: all {found} tests collect from the unpacked sdist; {len(SDIST_TESTS)} modules pass")


def main() -> None:
    """Check the wheel and the sdist in the folder named on the command line."""
    dist = Path(sys.argv[1] if len(sys.argv) > 1 else "dist").resolve()
    [wheel] = list(dist.glob("*.whl"))
    [sdist] = list(dist.glob("*.tar.gz"))
    with tempfile.TemporaryDirectory(prefix="aidol-dist-check-") as work:
        check_sdist(sdist, Path(work) / "sdist")
        check_wheel(wheel, Path(work) / "wheel")
        check_new_user(wheel, Path(work) / "new-user")


if __name__ == "__main__":
    main()
