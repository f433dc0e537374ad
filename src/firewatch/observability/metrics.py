"""Prometheus metrics about firewatch itself, correct across uvicorn worker processes.

Every metric firewatch exports is defined here, once. Other features never touch a
``prometheus_client`` object directly; they call the small helpers below, whose label
values are checked or normalised so that a metric's cardinality stays bounded:

============================  ===============================================
helper                        metric
============================  ===============================================
``observe_request``           ``firewatch_http_request_duration_seconds``
                              (called by the HTTP middleware, not by features)
``record_alerts_ingested``    ``firewatch_alerts_ingested_total{source}``
``record_incident_opened``    ``firewatch_incidents_opened_total{severity}``
``record_notification``       ``firewatch_notification_deliveries_total{outcome}``
``observe_score``             ``firewatch_detection_score{stream}``
``record_anomaly``            ``firewatch_detection_anomalies_total{stream}``
``record_auth_failure``       ``firewatch_auth_failures_total{reason}``
``register_queue_depth``      ``firewatch_queue_depth{queue}`` (scrape time)
(none: from the database)     ``firewatch_open_incidents{severity}``
(none: from the database)     ``firewatch_detection_drift_psi{stream}``
============================  ===============================================

**Several workers.** ``firewatch serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at an empty
directory under the data dir before uvicorn starts its workers (see
:func:`firewatch.observability.multiproc.prepare`), so every worker's counters and
histograms live in memory-mapped files that ``/metrics`` sums on each scrape, whichever
worker answers. The request histogram reaches its file at most
:data:`REQUEST_FLUSH_SECONDS` after each request (counted in memory first, see
:func:`observe_request`).
Values that describe the *system* rather than the process (open incidents, queue
depth, the latest drift check of each stream) are never kept in a process: they are
read from PostgreSQL at scrape time (:func:`collect_database_gauges`), so every
worker reports the same, true figure.
Without ``PROMETHEUS_MULTIPROC_DIR`` (tests, single in-process app) the metrics live
in the default in-memory registry.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import functools
import math
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from firewatch.http.methods import KNOWN_METHODS, OTHER_METHOD
from firewatch.observability.multiproc import MULTIPROC_ENV
from firewatch.runtime.database import Conn

__all__ = [
    "AUTH_FAILURE_REASONS",
    "CONTENT_TYPE_LATEST",
    "NOTIFICATION_OUTCOMES",
    "collect_database_gauges",
    "flush_requests",
    "multiprocess_dir",
    "observe_request",
    "observe_score",
    "record_alerts_ingested",
    "record_anomaly",
    "record_auth_failure",
    "record_incident_opened",
    "record_notification",
    "register_queue_depth",
    "render",
]


_pid = os.getpid()


def _remember_pid() -> None:
    global _pid
    _pid = os.getpid()


def _current_pid() -> int:
    return _pid


# In multiprocess mode every update of a value first asks ``os.getpid()`` whether the
# process forked since (then it reopens its files): two system calls per observed
# request (its histogram's bucket and sum), 3-8 us each on the VM the bench runs on
# as ``strace -c`` of ``firewatch serve`` under wrk timed them. The pid it is given here is the
# same, kept current by a fork hook instead of asked of the kernel each time. Metric
# values are created on first use (``labels()``) or below this line, so none exists
# yet with the default class.
_multi_process_value: Callable[..., type] = values.MultiProcessValue  # (unannotated upstream)
if values.ValueClass is not values.MutexValue:
    os.register_at_fork(after_in_child=_remember_pid)
    values.ValueClass = _multi_process_value(process_identifier=_current_pid)

# ``*_created`` series exist only in single-process mode; without them, both modes expose
# the same names (and Prometheus does not need them). (Unannotated upstream.)
_disable_created: Callable[[], object] = disable_created_metrics
_disable_created()

#: Label value used when a caller passes something outside a closed set, so a bug or
#: hostile input can never create unbounded label values.
OTHER: Final = "other"

#: Why an authentication attempt failed. Pass one of these to :func:`record_auth_failure`.
AUTH_FAILURE_REASONS: Final = frozenset(
    {
        "missing_credentials",  # no Authorization header / API key / session
        "malformed",  # credentials present but unparseable
        "invalid_credentials",  # wrong password / unknown key / bad signature
        "expired",  # token or key past its expiry
        "revoked",  # key or session revoked
        "forbidden",  # authenticated but the role does not allow the action
        "rate_limited",  # too many failed attempts
        "locked",  # account locked
    }
)

#: Result of one notification delivery attempt; see :func:`record_notification`.
NOTIFICATION_OUTCOMES: Final = frozenset(
    {
        "delivered",  # the receiver accepted it (2xx)
        "retry",  # network error, timeout, 408, 425, 429 or 5xx: will be retried
        "dead",  # dead-lettered: any other status, or the last allowed attempt failed
    }
)

#: Seconds. Covers fast cached reads (~1 ms) up to slow exports, SLO boundary at 0.25/1 s.
REQUEST_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Anomaly scores are normalised to [0, 1] by the detector (1 = most anomalous).
SCORE_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class CountedHistogram(Histogram):
    """A ``Histogram`` that also takes observations counted elsewhere (:meth:`add`).

    prometheus-client's ``observe`` is ~16 Python calls in multiprocess mode (its
    checks, and a locked, pid-checked memory-mapped write for the sum and for the
    bucket). The request histogram is fed by every request; it counts requests in
    the process (:func:`observe_request`) and adds them here in batches
    (:func:`flush_requests`). ``add`` uses the parent class's own value objects, as
    ``observe`` does; tests/observability/test_metrics.py checks that both give the
    same exposition."""

    def add(self, total: float, counts: Sequence[float]) -> None:
        """As many ``observe`` calls as ``counts`` holds, one count per bucket (the
        ``le`` bounds in order, ``+Inf`` last), whose values summed to ``total``."""
        if len(counts) != len(self._buckets):
            raise ValueError(f"{len(counts)} counts for {len(self._buckets)} buckets")
        self._sum.inc(total)
        for bucket, n in zip(self._buckets, counts, strict=True):
            if n:
                bucket.inc(n)


REQUEST_DURATION = CountedHistogram(
    "firewatch_http_request_duration_seconds",
    "HTTP request duration by method, route template and status class (2xx, 4xx, ...).",
    ["method", "route", "status_class"],
    buckets=REQUEST_BUCKETS,
)
ALERTS_INGESTED = Counter(
    "firewatch_alerts_ingested",
    "Alerts accepted by an ingestion endpoint, by source.",
    ["source"],
)
INCIDENTS_OPENED = Counter(
    "firewatch_incidents_opened",
    "Incidents opened (created or opened by grouping/detection), by severity.",
    ["severity"],
)
NOTIFICATION_DELIVERIES = Counter(
    "firewatch_notification_deliveries",
    "Notification delivery attempts, by outcome.",
    ["outcome"],
)
DETECTION_SCORE = Histogram(
    "firewatch_detection_score",
    "Anomaly scores computed by the detector (0..1, higher is more anomalous), by stream.",
    ["stream"],
    buckets=SCORE_BUCKETS,
)
DETECTION_ANOMALIES = Counter(
    "firewatch_detection_anomalies",
    "Scores the detector flagged as anomalous, by stream.",
    ["stream"],
)
AUTH_FAILURES = Counter(
    "firewatch_auth_failures",
    "Rejected authentication or authorization attempts, by reason.",
    ["reason"],
)

#: Names of the scrape-time gauges (not process-local objects; see collect_database_gauges).
OPEN_INCIDENTS_NAME: Final = "firewatch_open_incidents"
QUEUE_DEPTH_NAME: Final = "firewatch_queue_depth"
DRIFT_PSI_NAME: Final = "firewatch_detection_drift_psi"

#: Every metric family name firewatch exposes (as it appears in the exposition format,
#: i.e. counters end in ``_total``). The dashboard test checks against this.
METRIC_NAMES: Final = frozenset(
    {
        "firewatch_http_request_duration_seconds",
        "firewatch_alerts_ingested_total",
        "firewatch_incidents_opened_total",
        "firewatch_notification_deliveries_total",
        "firewatch_detection_score",
        "firewatch_detection_anomalies_total",
        "firewatch_auth_failures_total",
        OPEN_INCIDENTS_NAME,
        QUEUE_DEPTH_NAME,
        DRIFT_PSI_NAME,
    }
)

_SEVERITIES: Final = frozenset({"SEV1", "SEV2", "SEV3", "SEV4"})
_MAX_LABEL_LEN: Final = 64


def _bounded(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


def _free_label(value: str) -> str:
    """A caller-chosen label (source, stream, queue): non-empty and of bounded length."""
    value = value.strip()
    return value[:_MAX_LABEL_LEN] if value else "unknown"


def _severity(severity: int | str) -> str:
    label = f"SEV{severity}" if isinstance(severity, int) else severity.strip().upper()
    return _bounded(label, _SEVERITIES)


def status_class(status: int) -> str:
    """``404`` -> ``"4xx"``; the request histogram's status label."""
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


# --------------------------------------------------------------------- helpers to call


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Record one HTTP request. ``route`` is the route *template* (``/incidents/{id}``),
    never the raw path; the middleware passes ``"unmatched"`` for 404s without a route.
    A method outside :data:`~firewatch.http.methods.KNOWN_METHODS` is recorded as
    ``_OTHER``.

    Kept here, in the process, and written to the histogram (the memory-mapped files
    every worker's scrape reads) by :func:`flush_requests` at most
    :data:`REQUEST_FLUSH_SECONDS` later, before this process answers a scrape, and
    when the app stops: per request one list append under a lock (its bucket and
    status class are found at the flush, in C for all of a row's requests at once),
    where prometheus-client's ``observe`` made ~16 Python calls (21k instructions a
    request on the bench's VM) and counting each request's bucket here ~76 opcodes
    (``sys.settrace``, ADR-007 eleventh note). Outside an event loop (no timer to
    flush later) the request is written at once."""
    global _flush_loop
    key = (method if method in KNOWN_METHODS else OTHER_METHOD, route, status)
    loop = _running_loop()
    with _pending_lock:
        durations = _pending.get(key)
        if durations is None:
            durations = _pending[key] = []
        durations.append(seconds)
        if loop is not None:
            if _flush_loop is loop:  # this loop's timer will write it
                return
            _flush_loop = loop
    if loop is None:
        flush_requests()
    else:
        loop.call_later(REQUEST_FLUSH_SECONDS, flush_requests)


#: The running event loop or None, without raising (``asyncio.get_running_loop``'s
#: own C function).
_running_loop: Final = asyncio._get_running_loop
_STATUS_CLASSES: Final = {status: status_class(status) for status in range(100, 600)}
#: How long a request may stay counted in its process before the histogram has it.
REQUEST_FLUSH_SECONDS: Final = 1.0
_REQUEST_BOUNDS: Final = (*REQUEST_BUCKETS, math.inf)
#: A duration's bucket: the index of the first ``le`` bound >= it (as Histogram.observe).
_bucket_of: Final = functools.partial(bisect.bisect_left, _REQUEST_BOUNDS)
#: (method, route template, status code) -> the durations of its requests since the
#: last flush, in seconds.
_pending: dict[tuple[str, str, int], list[float]] = {}
_pending_lock = threading.Lock()  # the event loop counts; a scrape's thread flushes
#: The event loop whose timer will flush what _pending holds (None: no timer is due);
#: a loop that stopped with its timer (a test's) is replaced by the next caller's.
_flush_loop: asyncio.AbstractEventLoop | None = None


def _forget_pending() -> None:
    """In a forked child: what was counted before the fork is the parent's to write."""
    global _pending, _pending_lock, _flush_loop
    _pending, _pending_lock, _flush_loop = {}, threading.Lock(), None


os.register_at_fork(after_in_child=_forget_pending)


def flush_requests() -> None:
    """Write the requests counted since the last flush to the histogram."""
    global _pending, _flush_loop
    with _pending_lock:
        pending, _pending = _pending, {}
        _flush_loop = None
    buckets = len(_REQUEST_BOUNDS)
    for (method, route, status), durations in pending.items():
        key = (method, route, _STATUS_CLASSES.get(status, OTHER))
        child = _request_children.get(key)
        if child is None:
            child = _request_children[key] = REQUEST_DURATION.labels(*key)
        per_bucket = collections.Counter(map(_bucket_of, durations))
        child.add(math.fsum(durations), [per_bucket.get(i, 0) for i in range(buckets)])


#: The histogram's labelled children by (method, route template, status class), so a
#: flush skips ``labels()``'s validation and lock. Bounded like the histogram itself:
#: known methods x route templates x classes.
_request_children: dict[tuple[str, str, str], CountedHistogram] = {}


def record_alerts_ingested(n: int, source: str) -> None:
    """Count ``n`` alerts accepted from ``source`` (e.g. ``"alertmanager"``,
    ``"webhook"``, ``"detection"``). Call once per accepted batch, after commit; a
    retried (idempotent) delivery counts again, since it was ingested again."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if n:
        ALERTS_INGESTED.labels(_free_label(source)).inc(n)


def record_incident_opened(severity: int | str) -> None:
    """Count one newly opened incident. ``severity`` is 1..4, ``"SEV2"`` or a
    ``Severity`` enum member. Call after the transaction that opened it commits."""
    INCIDENTS_OPENED.labels(_severity(severity)).inc()


def record_notification(outcome: str) -> None:
    """Count one notification delivery attempt; ``outcome`` is one of
    :data:`NOTIFICATION_OUTCOMES` (anything else is counted as ``"other"``)."""
    NOTIFICATION_DELIVERIES.labels(_bounded(outcome, NOTIFICATION_OUTCOMES)).inc()


def observe_score(stream: str, score: float) -> None:
    """Record one anomaly score (0..1) computed for metric stream ``stream``.
    Stream names are configured by operators, so their number is bounded."""
    DETECTION_SCORE.labels(_free_label(stream)).observe(score)


def record_anomaly(stream: str) -> None:
    """Count one score that the detector flagged as anomalous on ``stream``."""
    DETECTION_ANOMALIES.labels(_free_label(stream)).inc()


def record_auth_failure(reason: str) -> None:
    """Count one rejected authentication/authorization; ``reason`` is one of
    :data:`AUTH_FAILURE_REASONS` (anything else is counted as ``"other"``). Never pass
    user names, key ids or other identifying data."""
    AUTH_FAILURES.labels(_bounded(reason, AUTH_FAILURE_REASONS)).inc()


# ------------------------------------------------------- scrape-time database gauges

#: queue name -> coroutine counting its pending items on a connection.
QueueDepthSource = Callable[[Conn], Awaitable[int]]
_QUEUE_DEPTH_SOURCES: dict[str, QueueDepthSource] = {}


def register_queue_depth(queue: str, count: QueueDepthSource) -> None:
    """Expose ``firewatch_queue_depth{queue=...}``, computed at scrape time by
    ``await count(conn)`` (e.g. ``SELECT count(*) FROM outbox WHERE delivered_at IS
    NULL``, kept in the feature's store). Register once at import or start-up; a
    second registration for the same queue replaces the first."""
    _QUEUE_DEPTH_SOURCES[_free_label(queue)] = count


_OPEN_INCIDENTS_SQL: Final = """
SELECT severity, count(*) AS n
FROM incidents
WHERE status NOT IN ('resolved', 'closed')
GROUP BY severity
"""

# The latest drift check of each stream (POST .../drift/check stores it).
_DRIFT_SQL: Final = """
SELECT s.name, d.psi
FROM signal_drift d
JOIN signal_streams s ON s.id = d.stream_id
"""


class DatabaseGauges(Collector):
    """Gauges read from PostgreSQL for one scrape (the same figure on every worker)."""

    def __init__(
        self,
        open_incidents: Mapping[str, int],
        queue_depth: Mapping[str, int],
        drift_psi: Mapping[str, float] | None = None,
    ):
        self.open_incidents = dict(open_incidents)
        self.queue_depth = dict(queue_depth)
        self.drift_psi = dict(drift_psi or {})

    def collect(self) -> Iterable[Metric]:
        open_incidents = GaugeMetricFamily(
            OPEN_INCIDENTS_NAME,
            "Incidents not yet resolved or closed, by severity (from the database).",
            labels=["severity"],
        )
        for severity in sorted(_SEVERITIES):
            open_incidents.add_metric([severity], self.open_incidents.get(severity, 0))
        yield open_incidents
        depth = GaugeMetricFamily(
            QUEUE_DEPTH_NAME,
            "Items waiting in a durable work queue (from the database), by queue.",
            labels=["queue"],
        )
        for queue, n in sorted(self.queue_depth.items()):
            depth.add_metric([queue], n)
        yield depth
        drift = GaugeMetricFamily(
            DRIFT_PSI_NAME,
            "PSI of the latest drift check of each signal stream, recent window against "
            "its reference (from the database; >= 0.1 moderate, >= 0.25 significant).",
            labels=["stream"],
        )
        for stream, psi in sorted(self.drift_psi.items()):
            drift.add_metric([stream], psi)
        yield drift


async def collect_database_gauges(conn: Conn) -> DatabaseGauges:
    """Read the system-wide gauges in one read-only snapshot."""
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        rows = await conn.fetch(_OPEN_INCIDENTS_SQL)
        depth = {queue: await count(conn) for queue, count in _QUEUE_DEPTH_SOURCES.items()}
        drift = {r["name"]: float(r["psi"]) for r in await conn.fetch(_DRIFT_SQL)}
    return DatabaseGauges({f"SEV{r['severity']}": int(r["n"]) for r in rows}, depth, drift)


# ------------------------------------------------------------------ exposition


#: prometheus-client's multiprocess collector (its __init__ is unannotated upstream);
#: constructing it registers it, reading every worker's files on each collect().
_MULTIPROCESS_COLLECTOR: Callable[[CollectorRegistry], object] = multiprocess.MultiProcessCollector


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def render(gauges: DatabaseGauges | None) -> bytes:
    """The exposition text: every worker's metrics (or this process's) plus ``gauges``;
    this process's counted requests are written first (:func:`flush_requests`)."""
    flush_requests()
    registry: CollectorRegistry
    if multiprocess_dir() is not None:
        registry = CollectorRegistry(auto_describe=False)
        _MULTIPROCESS_COLLECTOR(registry)
    else:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_DefaultRegistryView())
    if gauges is not None:
        registry.register(gauges)
    return generate_latest(registry)


class _DefaultRegistryView(Collector):
    """The default registry's metrics, so they can be combined with per-scrape gauges."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()
