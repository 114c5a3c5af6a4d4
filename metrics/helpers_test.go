package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		runChild(spec)
		return
	}
	testdb.Main(m)
}

// fast shortens a node's periods so that tests do not wait on defaults.
func fast(cfg revenant.Config) *revenant.Config {
	cfg.SkipMigrate = true
	// A TTL that a loaded machine's late heartbeat never lapses: a live
	// node found dead would show in the gauges. Tests make dead nodes
	// themselves.
	cfg.HeartbeatInterval, cfg.NodeTTL, cfg.PollInterval = 50*time.Millisecond, 5*time.Second, 20*time.Millisecond
	cfg.SweepInterval = 100 * time.Millisecond
	return &cfg
}

// newClient returns an unstarted node on db, stopped when the test ends.
func newClient(t *testing.T, db *sqlx.DB, cfg revenant.Config) *revenant.Client {
	t.Helper()
	c, err := revenant.New(db, fast(cfg))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.StopAndCancel(context.Background()) })
	return c
}

// waitTimeout is generous: two cores are shared by several test binaries.
const (
	waitTimeout = 30 * time.Second
	waitTick    = 20 * time.Millisecond
)

// classErr is an error with an error class.
type classErr string

func (e classErr) Error() string      { return "failed: " + string(e) }
func (e classErr) ErrorClass() string { return string(e) }

// families is one parsed scrape.
type families map[string]*dto.MetricFamily

// scrape GETs url and parses the text exposition.
func scrape(t *testing.T, url string) families {
	t.Helper()
	f, err := tryScrape(url)
	require.NoError(t, err)
	return f
}

func tryScrape(url string) (families, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		return nil, errors.New(res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(res.Body)
}

// value returns the value of the series of family name whose labels
// match pairs (name, value, name, value…; a missing label matches ""):
// a counter's or gauge's value, a histogram's sample count.
func (f families) value(name string, pairs ...string) (float64, bool) {
	mf, ok := f[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if !matches(m, pairs) {
			continue
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		default:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// histogram returns the matching histogram series.
func (f families) histogram(name string, pairs ...string) *dto.Histogram {
	mf, ok := f[name]
	if !ok {
		return nil
	}
	for _, m := range mf.GetMetric() {
		if matches(m, pairs) {
			return m.GetHistogram()
		}
	}
	return nil
}

func matches(m *dto.Metric, pairs []string) bool {
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		if labels[pairs[i]] != pairs[i+1] {
			return false
		}
	}
	return true
}

// eventually scrapes until cond holds, and returns that scrape; it
// reports the last scrape's error when cond never holds.
func eventually(t *testing.T, url, what string, cond func(f families) bool) families {
	t.Helper()
	var mu sync.Mutex
	var last families
	var lastErr error
	ok := assert.Eventually(t, func() bool {
		f, err := tryScrape(url)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			lastErr = err
			return false
		}
		last = f
		return cond(f)
	}, waitTimeout, waitTick, what)
	mu.Lock()
	defer mu.Unlock()
	if !ok {
		t.Fatalf("%s: last scrape error: %v", what, lastErr)
	}
	return last
}

func is(f families, want float64, name string, pairs ...string) bool {
	v, ok := f.value(name, pairs...)
	return ok && v == want
}
