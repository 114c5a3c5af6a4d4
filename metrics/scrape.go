package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/inspect"
)

// snapshot is what one scrape reads from the database.
type snapshot struct {
	backlog  []inspect.Backlog
	nodes    []inspect.Node
	breakers []breakers.Breaker
	err      error
}

// flight is a database read under way. Scrapes that arrive meanwhile
// share it rather than start their own. A read can outlive its deadline:
// lib/pq waits for a server's first answer without one unless the DSN sets
// connect_timeout. Once the current read is overdue a scrape starts a fresh
// one, so that a database that answers again is seen at once, but never
// more than maxReads at a time: a database that stopped answering does not
// pile up goroutines and connections.
type flight struct {
	started time.Time
	done    chan struct{}
	snap    snapshot
}

const maxReads = 4

// read returns the database snapshot, waiting at most ScrapeTimeout.
func (m *Metrics) read() snapshot {
	m.scrapeMu.Lock()
	f := m.inflight
	if f == nil || (time.Since(f.started) >= m.config.ScrapeTimeout && m.reads < maxReads) {
		f = &flight{started: time.Now(), done: make(chan struct{})}
		m.inflight = f
		m.reads++
		go m.fly(f)
	}
	m.scrapeMu.Unlock()
	timer := time.NewTimer(m.config.ScrapeTimeout)
	defer timer.Stop()
	select {
	case <-f.done:
		return f.snap
	case <-timer.C:
		return snapshot{err: fmt.Errorf("reading the database took over %v (ScrapeTimeout); with lib/pq, "+
			"a connect_timeout in the DSN bounds a connection attempt", m.config.ScrapeTimeout)}
	}
}

// fly runs one read. Its context is not the scrape's: a scrape that gives
// up does not cancel what other scrapes share.
func (m *Metrics) fly(f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), m.config.ScrapeTimeout)
	defer cancel()
	f.snap = m.readDatabase(ctx)
	m.scrapeMu.Lock()
	m.reads--
	if m.inflight == f {
		m.inflight = nil
	}
	m.scrapeMu.Unlock()
	close(f.done)
}

func (m *Metrics) readDatabase(ctx context.Context) snapshot {
	var s snapshot
	var err error
	if s.backlog, err = m.client.Inspect().Backlog(ctx); err != nil {
		return snapshot{err: fmt.Errorf("reading the backlog: %w", err)}
	}
	if s.nodes, err = m.client.Inspect().Nodes(ctx); err != nil {
		return snapshot{err: fmt.Errorf("reading the nodes: %w", err)}
	}
	if s.breakers, err = m.client.Breakers().List(ctx); err != nil {
		return snapshot{err: fmt.Errorf("reading the breakers: %w", err)}
	}
	return s
}

// noteResult logs the first failure of a streak, and its end.
func (m *Metrics) noteResult(err error) {
	m.scrapeMu.Lock()
	was := m.failing
	m.failing = err != nil
	m.scrapeMu.Unlock()
	switch {
	case err != nil && !was:
		m.logger.Warn("revenant: metrics: scrape cannot read the database; exporting database_up 0 until it can",
			slog.Any("error", err))
	case err == nil && was:
		m.logger.Info("revenant: metrics: scrape reads the database again")
	}
}

func (m *Metrics) collectDatabase(ch chan<- prometheus.Metric) {
	s := m.read()
	m.noteResult(s.err)
	if s.err != nil {
		m.scrapeErrors.Inc()
		ch <- prometheus.MustNewConstMetric(m.d.databaseUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(m.d.databaseUp, prometheus.GaugeValue, 1)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	// A duplicate series would fail the whole scrape; the reads group by
	// these keys, but a scrape must not depend on it.
	seen := map[[4]string]bool{}
	fresh := func(k [4]string) bool {
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
	for _, b := range s.backlog {
		if !fresh([4]string{"backlog", b.ActorID, b.Stack, b.Env}) {
			continue
		}
		for _, st := range []struct {
			state string
			n     int
		}{{"due", b.Due}, {"scheduled", b.Scheduled}, {"running", b.Running}, {"blocked", b.Blocked}, {"failed", b.Failed}} {
			gauge(m.d.episodes, float64(st.n), b.ActorID, b.Stack, b.Env, st.state)
		}
		gauge(m.d.oldestDueWait, b.OldestDueWait.Seconds(), b.ActorID, b.Stack, b.Env)
		unclaimable := 0.0
		if !b.Claimable && b.Due+b.Scheduled > 0 {
			unclaimable = 1 // dead letters alone wait for nobody
		}
		gauge(m.d.unclaimable, unclaimable, b.ActorID, b.Stack, b.Env)
	}

	byLiveness := map[inspect.Liveness]int{inspect.Alive: 0, inspect.Dead: 0, inspect.Stopped: 0}
	for _, n := range s.nodes {
		byLiveness[n.Liveness]++
		// Bounded cardinality: stopped nodes own nothing, and dead ones
		// matter only while they own orphans.
		if (n.Liveness == inspect.Alive || (n.Liveness == inspect.Dead && n.Running > 0)) && fresh([4]string{"node", n.ID}) {
			gauge(m.d.nodeRunning, float64(n.Running), n.ID, string(n.Liveness))
		}
	}
	for l, n := range byLiveness {
		gauge(m.d.nodes, float64(n), string(l))
	}

	for _, b := range s.breakers {
		if !fresh([4]string{"breaker", b.ActorID, b.Stack, b.Env}) {
			continue
		}
		gauge(m.d.breakerState, breakerValue(b.State), b.ActorID, b.Stack, b.Env)
	}
}

// breakerValue orders states by how much they hold back.
func breakerValue(s breakers.State) float64 {
	switch s {
	case breakers.HalfOpen:
		return 1
	case breakers.Open:
		return 2
	default:
		return 0
	}
}

// collectSweeper exports the node's Sweeper statistics.
func (m *Metrics) collectSweeper(ch chan<- prometheus.Metric) {
	st := m.client.SweeperStats()
	ch <- prometheus.MustNewConstMetric(m.d.sweeps, prometheus.CounterValue, float64(st.Passes))
	ch <- prometheus.MustNewConstMetric(m.d.sweepFailures, prometheus.CounterValue, float64(st.Failures))
	if st.LastResult != nil {
		ch <- prometheus.MustNewConstMetric(m.d.lastSweepDuration, prometheus.GaugeValue, st.LastResult.Duration.Seconds())
	}
	if !st.LastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(m.d.lastSweepSuccess, prometheus.GaugeValue,
			float64(st.LastSuccess.UnixNano())/1e9)
	}
}
