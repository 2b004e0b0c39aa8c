"""The real ``moair`` command and server in processes of their own, as benchmarks and tests run them.

- ``measured_moair(ARGS)``: run ``moair ARGS``; its result and its peak memory.
- ``moair_server(index, log, ...)``: ``moair serve`` on a free loopback port, ready when entered
  (``/health`` answers), stopped when left (also on Ctrl-C or an error).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

_installed = Path(sys.executable).parent / "moair"
MOAIR = str(_installed) if _installed.exists() else shutil.which("moair") or "moair"
# The moair command, printing its peak memory at exit: VmHWM, which starts again at exec (ru_maxrss
# would carry the forking process's own).
_MEASURED_MOAIR = (
    "import re, sys\nfrom api.cli import main\nsys.argv[0] = 'moair'\ntry:\n    main()\nfinally:\n"
    "    print('peak KiB', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1), file=sys.stderr)"
)


def measured_moair(*args, timeout: float = 900) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``moair ARGS`` (stdin closed: a read from it would hang); its result and peak memory in MiB."""
    run = subprocess.run(
        [sys.executable, "-c", _MEASURED_MOAIR, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    before, _, peak_kib = run.stderr.rpartition("peak KiB ")
    run.stderr = before
    return run, int(peak_kib.strip()) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_memory_mib(pid: int) -> float:
    """The peak resident memory of process ``pid`` so far (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


@contextmanager
def moair_server(index: Path, log: Path, *options: str, key: str = "") -> Iterator[tuple[str, subprocess.Popen]]:
    """``moair serve --index INDEX OPTIONS`` (API key ``key``, "" for none) in its own process and
    session (so Ctrl-C reaches only this one, which stops it), its output in ``log``; yields its
    URL and process."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [MOAIR, "serve", "--index", str(index), "--port", str(port), *options],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOAIR_API_KEY": key},
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moair serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moair serve did not answer /health in 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
