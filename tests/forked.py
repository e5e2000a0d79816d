"""Child processes forked from the test's own process, for the kill, race and quota tests.

A forked child is a real process of its own: its own pid, its own database connections and
HTTP sessions, and SIGKILL ends it without a word, exactly as it ends a worker. What it does not
do is start from nothing: Python, Airflow and the provider are already imported, where a new
``python -m ...`` spends 3 to 5 s of CPU importing them before its first line runs. The kill,
race and quota tests start dozens of children, so that is most of their time.

``ForkedProcess(main, *args)`` runs ``main(*args)`` in the child, with the parts of
``subprocess.Popen`` those tests use: ``stdin``, ``stdout`` and ``stderr`` pipes (text),
``pid``, ``poll``, ``wait``, ``communicate``, ``send_signal``, ``kill`` and ``returncode``
(negative for the signal that ended it, as Popen has it). The child ends with ``os._exit``, so
none of pytest's exit handlers or fixture finalisers run in it.

Airflow disposes of its metadata database's connection pool in a forked child by itself
(``airflow.settings`` registers that with ``os.register_at_fork``); the provider opens its
registry, ledger and HTTP connections per use, so a child never shares a socket with its parent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import threading
import time
import traceback
import warnings
import weakref
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

# The parent's ends of the pipes of every child still open, which a new child closes.
_PARENT_ENDS: set[int] = set()


class ForkedProcess:
    """``main(*args)`` running in a child forked from this process, with Popen's pipes and methods."""

    def __init__(
        self,
        main: Callable[..., object],
        *args: object,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a process with threads may deadlock in the child
            # if another thread held a lock. The children run only the provider's own code, which
            # takes no lock a test's server or pool thread may hold, and every wait on them is
            # bounded, so a deadlock would fail the test rather than hang it.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child
            _PARENT_ENDS.update((stdin_write, stdout_read, stderr_read))
            _run_child(main, args, env, cwd, (stdin_read, stdout_write, stderr_write))
        for end in (stdin_read, stdout_write, stderr_write):
            os.close(end)
        _PARENT_ENDS.update((stdin_write, stdout_read, stderr_read))
        # Forget these ends when this object goes away unclosed (its files close with it then).
        weakref.finalize(self, _PARENT_ENDS.difference_update, (stdin_write, stdout_read, stderr_read))
        self._stdin_fd = stdin_write
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: TextIO = open(stdin_write, "w", encoding="utf-8")  # noqa: SIM115 - closed by communicate
        self.stdout: TextIO = open(stdout_read, encoding="utf-8")  # noqa: SIM115
        self.stderr: TextIO = open(stderr_read, encoding="utf-8")  # noqa: SIM115

    def poll(self) -> int | None:
        """The return code if the child has ended, else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to end, at most ``timeout`` seconds (TimeoutError after that)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"child {self.pid} still running after {timeout} s")
            time.sleep(0.01)
        return code

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        """Send ``input``, close stdin, and return everything the child writes until it ends."""
        if not self.stdin.closed:
            if input:
                self.stdin.write(input)
            _PARENT_ENDS.discard(self._stdin_fd)
            self.stdin.close()
        read: dict[str, str] = {}
        readers = [
            threading.Thread(
                target=lambda name=name, pipe=pipe: read.__setitem__(name, pipe.read()), daemon=True
            )
            for name, pipe in (("stdout", self.stdout), ("stderr", self.stderr))
        ]
        for reader in readers:
            reader.start()
        self.wait(timeout)
        for reader in readers:
            reader.join(timeout=30)
        return read.get("stdout", ""), read.get("stderr", "")

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the child unless it has already been reaped."""
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the child."""
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> ForkedProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """SIGKILL the child if it still runs, reap it and close the pipes."""
        self.kill()
        self.wait(timeout=30)
        for pipe in (self.stdin, self.stdout, self.stderr):
            if not pipe.closed:
                _PARENT_ENDS.discard(pipe.fileno())
                pipe.close()


def _run_child(
    main: Callable[..., object],
    args: tuple[object, ...],
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    fds: tuple[int, int, int],
) -> None:
    code = 1
    try:
        # Out of the way first: a pytest-xdist worker may have no fd 0, so a pipe may have got it.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
        for fd in {*fds, *_PARENT_ENDS}:  # a child holding another's stdin would keep it from EOF
            with contextlib.suppress(OSError):
                os.close(fd)
        for target, fd in enumerate(high):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        main(*args)
        code = 0
    except SystemExit as stop:
        if isinstance(stop.code, int):
            code = stop.code
        else:
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run(main: Callable[..., Any], *args: object, timeout: float = 120, **kwargs: Any) -> tuple[int, str, str]:
    """Run ``main(*args)`` in a forked child to its end: its return code, stdout and stderr."""
    with ForkedProcess(main, *args, **kwargs) as child:
        out, err = child.communicate(timeout=timeout)
        return child.returncode if child.returncode is not None else child.wait(), out, err
