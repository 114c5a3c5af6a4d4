package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/revenant-go/revenant"
)

// Metrics is a prometheus.Collector for one revenant node: counters fed by
// the node's bus, the Sweeper's statistics, and gauges read from the
// database at scrape time.
type Metrics struct {
	client *revenant.Client
	config Config
	logger *slog.Logger

	claims, completions, cancellations, requeues *prometheus.CounterVec
	failures, retries, restarts, breakerChanges  *prometheus.CounterVec
	scrapeErrors                                 prometheus.Counter
	detection                                    *prometheus.HistogramVec
	d                                            descs

	mu      sync.Mutex
	seen    *ringSet[uuid.UUID] // recent event ids, to drop redeliveries
	sampled *ringSet[string]    // dead nodes whose detection was sampled
	lookups chan lookup

	scrapeMu sync.Mutex
	inflight *flight // the latest database read, shared by scrapes
	reads    int     // database reads under way, overdue ones included
	failing  bool    // the last database read failed

	handler     http.Handler
	unsubscribe func()
	stop        context.CancelFunc
	done        chan struct{}
	closeOnce   sync.Once
}

// descs are the metrics made at scrape time.
type descs struct {
	sweeps, sweepFailures, lastSweepDuration, lastSweepSuccess *prometheus.Desc
	databaseUp, episodes, oldestDueWait, unclaimable           *prometheus.Desc
	nodes, nodeRunning, breakerState                           *prometheus.Desc
}

// New subscribes to c's bus and returns the collector. Call it before
// c.Start so that the events of the startup sweep are counted too. c may
// also be an unstarted client (an admin handle): its bus then delivers
// nothing, and only the database gauges move.
func New(c *revenant.Client, config *Config) (*Metrics, error) {
	if c == nil {
		return nil, errors.New("metrics: New needs a *revenant.Client, got nil")
	}
	cfg := config.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Metrics{
		client:  c,
		config:  cfg,
		logger:  cfg.Logger,
		seen:    newRingSet[uuid.UUID](cfg.DedupeSize),
		sampled: newRingSet[string](sampledOwnersMax),
		lookups: make(chan lookup, cfg.LookupQueue),
		done:    make(chan struct{}),
	}
	m.makeMetrics()

	reg := prometheus.NewRegistry()
	for _, col := range []prometheus.Collector{
		m,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("metrics: registering collectors: %w", err)
		}
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{m.logger},
		ErrorHandling: promhttp.ContinueOnError,
	})

	ctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	go m.lookupLoop(ctx)
	m.unsubscribe = c.Subscribe("", m.handle)
	return m, nil
}

// sampledOwnersMax bounds the dead nodes remembered as sampled: node ids
// are unique per process start, so this is many restarts' worth.
const sampledOwnersMax = 4096

func (m *Metrics) makeMetrics() {
	ns := m.config.Namespace
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	m.claims = counter("claims_total", "Episodes claimed to run (episode.started), by actor. Cluster-wide.", "actor")
	m.completions = counter("completions_total", "Episodes completed (episode.completed), by actor. Cluster-wide.", "actor")
	m.cancellations = counter("cancellations_total", "Episodes canceled (episode.canceled), by actor. Cluster-wide.", "actor")
	m.requeues = counter("requeues_total", "Failed episodes put back to pending by an operator (episode.requeued), by actor. Cluster-wide.", "actor")
	m.failures = counter("failures_total",
		"Episodes failed for good (episode.failed and episode.dead_lettered), by actor and error class. Cluster-wide.", "actor", "class")
	m.retries = counter("retries_total", "Failed attempts that will be retried (episode.retrying), by actor and error class. Cluster-wide.",
		"actor", "class")
	m.restarts = counter("restarts_total",
		"Orphaned episodes a sweep put back to pending (episode.recovered), by actor and the rule that found the owner dead. Cluster-wide.",
		"actor", "reason")
	m.breakerChanges = counter("breaker_transitions_total", "Circuit breaker state changes, by actor and new state. Cluster-wide.",
		"actor", "state")
	m.scrapeErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "scrape_errors_total",
		Help: "Scrapes whose database reads failed or timed out (their database gauges are missing)."})
	m.detection = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "detection_latency_seconds",
		Help: "From a dead node's last heartbeat to the first sweep event recovering its episodes (database clock), " +
			"by the rule that found it dead; one sample per dead node. Includes up to one heartbeat interval.",
		Buckets: m.config.DetectionBuckets}, []string{"rule"})

	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, nil)
	}
	m.d = descs{
		sweeps:            desc("sweeps_total", "Sweep passes of this node's Sweeper."),
		sweepFailures:     desc("sweep_failures_total", "Sweep passes of this node's Sweeper that failed."),
		lastSweepDuration: desc("last_sweep_duration_seconds", "Duration of this node's last sweep pass."),
		lastSweepSuccess: desc("last_sweep_success_timestamp_seconds",
			"Unix time of this node's last successful sweep pass; absent until one succeeds."),
		databaseUp: desc("database_up", "1 when this scrape read the database, 0 when it failed or timed out."),
		episodes: desc("episodes", "Open episodes and dead letters by actor, scope and state "+
			"(due, scheduled, running, blocked, failed), as the database counts them.", "actor", "stack", "env", "state"),
		oldestDueWait: desc("oldest_due_wait_seconds", "How long the longest-waiting due episode has been due (0 when none is due).",
			"actor", "stack", "env"),
		unclaimable: desc("unclaimable", "1 when the actor has pending episodes in the scope that no live node can claim "+
			"(no live node in scope registered the actor).", "actor", "stack", "env"),
		nodes: desc("nodes", "Nodes the database knows, by liveness (alive, dead, stopped). "+
			"Dead and stopped rows stay about a day.", "liveness"),
		nodeRunning: desc("node_running_episodes", "Episodes running under a node: alive nodes, and dead ones "+
			"while they still own orphans not yet recovered.", "node", "liveness"),
		breakerState: desc("breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open. "+
			"Breakers that never counted a failure are absent (closed).", "actor", "stack", "env"),
	}
}

func (m *Metrics) vectors() []prometheus.Collector {
	return []prometheus.Collector{m.claims, m.completions, m.cancellations, m.requeues, m.failures, m.retries,
		m.restarts, m.breakerChanges, m.scrapeErrors, m.detection}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range m.vectors() {
		v.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{m.d.sweeps, m.d.sweepFailures, m.d.lastSweepDuration, m.d.lastSweepSuccess,
		m.d.databaseUp, m.d.episodes, m.d.oldestDueWait, m.d.unclaimable, m.d.nodes, m.d.nodeRunning, m.d.breakerState} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It never fails and returns
// within about ScrapeTimeout: when the database cannot be read, the
// database gauges are left out and database_up is 0.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.collectSweeper(ch)
	m.collectDatabase(ch) // before the vectors: it may count a scrape error
	for _, v := range m.vectors() {
		v.Collect(ch)
	}
}

// Handler serves the Prometheus exposition of a registry holding this
// collector and the Go runtime and process collectors.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Close unsubscribes from the bus and stops the lookup goroutine. The
// collector can still be scraped; its counters stop moving.
func (m *Metrics) Close() {
	m.closeOnce.Do(func() {
		m.unsubscribe()
		m.stop()
		<-m.done
	})
}

// promLogger routes promhttp's error log to the injected logger.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) {
	p.l.Warn("revenant: metrics: serving a scrape", slog.String("error", fmt.Sprint(v...)))
}
