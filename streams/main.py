"""Starting the worker process: topics first, then the Faust worker."""

from __future__ import annotations

import asyncio
import sys

__all__ = ["run_worker"]


def run_worker(*, loglevel: str = "info") -> None:
    """Create the topics, register the agents and web views, and run Faust until stopped."""
    from streams.admin import ensure_topics
    from streams.app import app, settings

    asyncio.run(ensure_topics(settings))
    import streams.agents  # noqa: F401  (registers the agents)
    import streams.web  # noqa: F401  (registers /metrics, /healthz, approvals API)

    # JSON logs: Faust's --quiet drops its banner table and spinner (plain text on stdout);
    # streams.app.Worker logs the banner's facts as one JSON record instead.
    quiet = ["--quiet"] if settings.worker.log_format == "json" else []
    sys.argv = [
        "aisoar-worker", *quiet, "worker", "--loglevel", loglevel,
        "--web-host", settings.worker.web_host, "--web-port", str(settings.worker.web_port),
    ]
    app.main()
