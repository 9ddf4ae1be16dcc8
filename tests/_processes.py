"""Starting `ea` (or any) processes for a test and stopping them however the test ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def started(commands: Sequence[tuple[Sequence[str], Path]], *, env: dict[str, str],
            cwd: Path) -> Iterator[list[subprocess.Popen]]:
    """Run each ``(argv, log file)`` as a process of its own session (stdout and stderr to the log) for the
    block; then SIGTERM each process group, and SIGKILL it after 30 s."""
    procs: list[subprocess.Popen] = []
    try:
        for argv, log in commands:
            with open(log, "wb") as out:
                procs.append(subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
