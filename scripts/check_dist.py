"""``make dist``'s check of the built packages, as a user and a packager would meet them.

1. The wheel, installed into a new, empty virtual environment (pinned by constraints.txt), is
   discovered by Airflow: ``airflow providers list`` shows it with its version, ``airflow
   providers get`` with the documentation URL, and the ``aidol-server`` console script runs.
2. The sdist holds everything the test suite needs: unpacked, pytest collects as many tests
   there as in this checkout, and a few quick test modules pass.

Usage: ``python scripts/check_dist.py dist`` (the folder ``python -m build`` wrote).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from airflow_provider_aidol.constants import DOCUMENTATION_URL

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "airflow-provider-aidol"
#: Quick test modules run from the unpacked sdist (the whole suite runs in make test).
SDIST_TESTS = ["tests/client/test_signing.py", "tests/test_docs_site.py", "tests/test_packaging.py"]
TIMEOUT = 900


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


def check_wheel(wheel: Path, work: Path) -> None:
    """Install the wheel alone into a new venv; Airflow must list the provider."""
    venv = work / "venv"
    started = time.monotonic()
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", "-c", REPO / "constraints.txt", wheel)
    home = work / "airflow-home"
    env = {"PATH": str(venv / "bin"), "HOME": str(work), "AIRFLOW_HOME": str(home)}
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
    print(f"{wheel.name}: installed alone into a new venv, listed by airflow providers list ", end="")
    print(f"({time.monotonic() - started:.0f} s)")


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


if __name__ == "__main__":
    main()
