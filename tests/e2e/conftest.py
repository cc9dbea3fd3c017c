"""End-to-end fixtures: the real worker process against the real local stack.

Every test gets its own topics, consumer group, Faust tables and index prefix,
so tests share one Kafka and one OpenSearch without seeing each other's data.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aisoar.config import Settings, load_settings
from stack.services.base import free_port, stop_process_group, tail

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """``aisoar worker`` as a child process, with the environment that isolates it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> Settings:
        return load_settings(env=self.env)

    def start(self, timeout: float = 240.0) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "aisoar.cli", "worker"], env=self.env, cwd=ROOT,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{self.env['AISOAR_WORKER__WEB_PORT']}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{tail(self.log, 60)}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"worker not ready after {timeout:.0f}s:\n{tail(self.log, 60)}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit: a crash."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process_group(self.proc.pid, grace=20.0)


def isolated_worker_env(stack: Any, directory: Path, services: Iterable[str] = ()) -> dict[str, str]:
    """Environment for an isolated worker on the session's stack (Kafka + OpenSearch, and
    ``services``): its own topics, consumer group, Faust tables and index prefix."""
    stack["kafka"], stack["opensearch"]  # start both (in parallel, on first use)
    for name in services:
        stack[name]
    tag = f"t{uuid.uuid4().hex[:10]}"
    state_file = directory / "state.json"
    state_file.write_text(json.dumps(stack.state()))
    env = {
        **os.environ,
        "AISOAR_STACK_FILE": str(state_file),
        "AISOAR_WORKER__ID": f"aisoar-{tag}",
        "AISOAR_WORKER__WEB_PORT": str(free_port()),
        "AISOAR_PLAYBOOKS__APPROVALS_PORT": str(free_port()),
        "AISOAR_WORKER__DATA_DIR": str(directory / "worker-data"),
        "AISOAR_TOPICS__PARTITIONS": "2",
        "AISOAR_SIEM__INDEX_PREFIX": tag,
        "AISOAR_SIEM__FLUSH_INTERVAL_S": "0.1",
    }
    for name in ("prompts", "inference", "security", "findings", "incidents", "actions", "deadletter"):
        env[f"AISOAR_TOPICS__{name.upper()}"] = f"{tag}.{name}"
    return env


@pytest.fixture
def worker_env(stack: Any, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for an isolated worker on the session's stack (Kafka + OpenSearch, and
    what the test's ``stack_services`` marker names)."""
    services = [name for marker in request.node.iter_markers("stack_services") for name in marker.args]
    return isolated_worker_env(stack, tmp_path, services)


@pytest.fixture
def start_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(**extra_env: str) -> Worker:
        worker = Worker({**worker_env, **extra_env}, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def module_worker(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One isolated worker shared by the tests of a module (for modules that feed it once and
    then check many things)."""
    directory = tmp_path_factory.mktemp("module-worker")
    worker = Worker(isolated_worker_env(stack, directory), directory / "worker.log")
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()
