"""Prometheus metrics of the worker, served on the Faust web port at ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACTIONS",
    "CONTAINMENT_BACKLOG",
    "DEAD_LETTERS",
    "DETECT_PAUSED_SECONDS",
    "DETECT_SECONDS",
    "EVENTS_IN",
    "EVENTS_OUT",
    "FINDINGS",
    "INCIDENTS",
    "MTTC_SECONDS",
    "MTTD_SECONDS",
    "SIEM_DOCS",
]

EVENTS_IN = Counter("aisoar_events_in_total", "Records consumed", ["topic"])
EVENTS_OUT = Counter("aisoar_events_out_total", "Records produced", ["topic"])
FINDINGS = Counter("aisoar_findings_total", "Findings emitted", ["rule", "severity"])
INCIDENTS = Counter("aisoar_incidents_total", "Incident updates emitted", ["rule", "status"])
ACTIONS = Counter("aisoar_actions_total", "Action records by outcome", ["action", "status"])
DEAD_LETTERS = Counter("aisoar_dead_letters_total", "Records dead-lettered", ["topic", "reason"])
SIEM_DOCS = Counter("aisoar_siem_documents_total", "Documents indexed in the SIEM", ["index", "outcome"])
DETECT_SECONDS = Histogram(
    "aisoar_detect_seconds", "Detection time per record", ["kind"],
    buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1),
)
DETECT_PAUSED_SECONDS = Counter(
    "aisoar_detect_paused_seconds_total",
    "Time the detect stage waited for fan-out, correlation and respond to catch up (containment first)",
)
CONTAINMENT_BACKLOG = Gauge(
    "aisoar_containment_backlog",
    "Records fetched for fan-out, correlation and respond and not yet taken (-1: unknown)",
)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
MTTD_SECONDS = Histogram("aisoar_mttd_seconds", "Event time to finding emitted", buckets=_LATENCY_BUCKETS)
MTTC_SECONDS = Histogram("aisoar_mttc_seconds", "Event time to containment action done", buckets=_LATENCY_BUCKETS)


def reason_label(reason: str) -> str:
    """A low-cardinality label for a dead-letter reason."""
    head = reason.split(":", 1)[0]
    return head[:40]


def or_minus_one(read: Callable[[], int]) -> Callable[[], float]:
    """``read`` for a gauge's ``set_function``: -1 instead of an exception at scrape time."""

    def safe() -> float:
        try:
            return float(read())
        except Exception:  # noqa: BLE001 -- a scrape must not fail on one gauge
            return -1.0

    return safe
