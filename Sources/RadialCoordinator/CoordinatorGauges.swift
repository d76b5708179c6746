import Metrics
import RadialModel

extension CoordinatorService {
    /// Point-in-time figures for Prometheus, set just before each scrape: queue, running sessions, memory,
    /// failover history.
    public func refreshGauges() {
        let m = scheduler.currentMetrics
        Gauge(label: "radial_sessions_running").record(m.running)
        Gauge(label: "radial_queue_depth").record(m.queued)
        Gauge(label: "radial_max_sessions").record(scheduler.limits.maxSessions)
        Gauge(label: "radial_weight_bytes").record(scheduler.head.weightBytes)
        Gauge(label: "radial_rss_bytes").record(Int(ProcessMemory.residentBytes))
        let remote = scheduler.pipeline.stages.compactMap { $0 as? RemoteStage }
        Gauge(label: "radial_failover_history_bytes").record(remote.reduce(0) { $0 + $1.historyBytes })
        for w in (scheduler.cluster?.stages ?? []) + (scheduler.cluster?.replicas ?? []) {
            Gauge(label: "radial_worker_healthy", dimensions: [("worker", w.address)]).record(w.snapshot().healthy ? 1 : 0)
        }
    }
}
