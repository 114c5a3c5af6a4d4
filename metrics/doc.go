// Package metrics exports a revenant node's metrics to Prometheus.
//
//	client, _ := revenant.New(db, cfg)
//	m, _ := metrics.New(client, nil) // before Start: counts the startup sweep
//	defer m.Close()
//	http.Handle("/metrics", m.Handler())
//	_ = client.Start(ctx)
//
// Metrics is a prometheus.Collector, so it can also be registered in a
// registry of one's own instead of served by Handler.
//
// Counters (claims_total, completions_total, failures_total, retries_total,
// restarts_total, requeues_total, cancellations_total,
// breaker_transitions_total) count bus events. Every node's bus sees every
// node's events, so these counters (and detection_latency_seconds) are
// cluster-wide, not per node: scrape one pod, or aggregate across pods
// with max(), never sum(). A redelivered event is counted once (the ids of
// recent events are remembered). Counters start from zero when the
// process starts, and count only events delivered after Start.
//
// The Sweeper's figures (sweeps_total, sweep_failures_total,
// last_sweep_duration_seconds, last_sweep_success_timestamp_seconds) are
// this node's own.
//
// Gauges (episodes, oldest_due_wait_seconds, unclaimable, nodes,
// node_running_episodes, breaker_state) are read from the database at each
// scrape, within Config.ScrapeTimeout; they too describe the whole cluster
// (in every scope). When the database cannot be read the scrape still
// answers, at once, without them: database_up is 0 and scrape_errors_total
// counts it; the failure is logged once per streak.
//
// detection_latency_seconds{rule} measures, once per dead node, from its
// last heartbeat to the first sweep event recovering its episodes, by the
// database clock. It includes up to one heartbeat interval before the
// actual death (and the TTL, for rule owner_ttl_expired).
//
// Label values come from actor ids, error classes (an actor's
// ErrorClass()), recovery rules, scopes and node ids: keep error classes a
// small fixed set. Nodes appear in node_running_episodes only while alive,
// or dead with orphans not yet recovered.
package metrics
