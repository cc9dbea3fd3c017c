"""The local stack and isolated ``aisoar worker`` processes for the stack benchmarks.

Like ``tests/e2e/conftest.py``: each run gets its own topics, consumer group, Faust
data dir and index prefix, so benchmarks share one Kafka and one OpenSearch with
tests and each other without seeing their data. A stack is reused when
``--stack-file`` (or ``$AISOAR_STACK_FILE``) names a running one, else started in a
temporary directory and stopped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT

__all__ = ["Worker", "running_stack", "worker_env"]


@contextlib.contextmanager
def running_stack(services: list[str], stack_file: str | None = None) -> Iterator[tuple[dict[str, Any], Path]]:
    """(state, state file) of a stack with ``services``: reused if given and running, else started here."""
    stack_file = stack_file or os.environ.get("AISOAR_STACK_FILE")
    if stack_file and Path(stack_file).exists():
        state = json.loads(Path(stack_file).read_text())
        missing = [s for s in services if s not in state.get("services", {})]
        if not missing:
            yield state, Path(stack_file)
            return
    import stack.manager

    root = Path(tempfile.mkdtemp(prefix="aisoar-bench-stack-"))
    try:
        state = stack.manager.up(services, root=root)
        yield state, stack.manager.state_path(root)
    finally:
        stack.manager.down(root)


def worker_env(state_file: Path, workdir: Path, *, partitions: int = 2, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of an isolated worker: its own topics, group, tables and index prefix."""
    from stack.services.base import free_port

    tag = f"b{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "AISOAR_STACK_FILE": str(state_file),
        "AISOAR_WORKER__ID": f"aisoar-{tag}",
        "AISOAR_WORKER__WEB_PORT": str(free_port()),
        "AISOAR_WORKER__DATA_DIR": str(workdir / f"{tag}-data"),
        "AISOAR_TOPICS__PARTITIONS": str(partitions),
        "AISOAR_SIEM__INDEX_PREFIX": tag,
        "AISOAR_PLAYBOOKS__APPROVALS_PORT": "0",
        "BENCH_TAG": tag,
    }
    for name in ("prompts", "inference", "security", "findings", "incidents", "actions", "deadletter"):
        env[f"AISOAR_TOPICS__{name.upper()}"] = f"{tag}.{name}"
    env.update(extra or {})
    return env


class Worker:
    """``aisoar worker`` as a child process in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "aisoar.cli", "worker"], env=self.env, cwd=ROOT,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 240.0) -> float:
        """Seconds until ``/healthz`` answered 200."""
        from stack.services.base import tail

        assert self.proc is not None
        url = f"http://127.0.0.1:{self.env['AISOAR_WORKER__WEB_PORT']}/healthz"
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{tail(self.log, 40)}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"worker not ready after {timeout:.0f}s:\n{tail(self.log, 40)}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        from stack.services.base import stop_process_group

        if self.proc is not None and self.proc.poll() is None:
            stop_process_group(self.proc.pid, grace=20.0)


def settings_of(env: dict[str, str]) -> Any:
    from aisoar.config import load_settings

    return load_settings(env=env)


async def wait_assigned(settings: Any, topics: list[str], *, timeout: float = 120.0) -> float:
    """Seconds until the worker group has a stable membership (every partition of ``topics`` owned)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.produce import kafka_client_options

    admin = AIOKafkaAdminClient(**kafka_client_options(settings))  # type: ignore[arg-type]
    await admin.start()
    began = time.monotonic()
    try:
        while time.monotonic() - began < timeout:
            try:
                # The detect stage's own group (streams/detect.py) is covered by the workers'
                # /healthz; aiokafka 0.14 cannot decode Kafka 4's description of a plain group.
                groups = await admin.describe_consumer_groups([settings.worker.id])
                if "Stable" in repr(groups):
                    return time.monotonic() - began
            except Exception:
                pass
            await asyncio.sleep(0.5)
        return time.monotonic() - began
    finally:
        await admin.close()
