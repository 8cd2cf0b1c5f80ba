"""Prometheus metrics of one relay process, in a registry of its own (several apps may share a process).

Counters and the latency histogram move as requests happen; lane depth, consumer lag and workers
online are read from Redis and PostgreSQL when /metrics is scraped.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter("insane_events_accepted", "Events accepted", ["lane"], registry=r)
        self.rejected = Counter("insane_events_rejected", "Events refused, by reason", ["reason"], registry=r)
        self.results = Counter("insane_results", "Result posts per outcome", ["outcome"], registry=r)
        self.dead = Counter("insane_dead_lettered", "Entries moved to the dead-letter stream", registry=r)
        self.requeued = Counter("insane_requeued", "Events re-queued by the reconciler", registry=r)
        self.webhooks = Counter("insane_webhooks", "Webhook attempts per outcome", ["outcome"], registry=r)
        self.depth = Gauge("insane_lane_depth", "Entries of all tenants' lanes not yet acked", ["lane"], registry=r)
        self.lag = Gauge("insane_lane_lag", "Entries of all tenants' lanes not yet delivered", ["lane"], registry=r)
        self.pending = Gauge("insane_lane_pending", "Entries delivered and not yet acked", ["lane"], registry=r)
        self.pool_depth = Gauge(
            "insane_pool_depth",
            "Entries the shared pool may take (the rest wait for tenants' own workers)",
            ["lane"],
            registry=r,
        )
        self.tenants_waiting = Gauge("insane_tenants_waiting", "Tenants with entries in their lanes", registry=r)
        self.workers_online = Gauge("insane_workers_online", "Workers seen in the last 60 s", registry=r)
        self.latency = Histogram(
            "insane_result_latency_seconds",
            "From event accepted to result stored",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
