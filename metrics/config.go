package metrics

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"time"
)

// Defaults for Config.
const (
	// NamespaceDefault prefixes every metric name: revenant_claims_total.
	NamespaceDefault = "revenant"
	// ScrapeTimeoutDefault bounds the database reads of one scrape.
	ScrapeTimeoutDefault = 5 * time.Second
	// DedupeSizeDefault is how many recent event ids are remembered to
	// drop redeliveries: far more than the events of one outbox poll.
	DedupeSizeDefault = 10_000
	// LookupQueueDefault is how many detection-latency node lookups may
	// wait; past that a sample is dropped (and logged) rather than block
	// the bus.
	LookupQueueDefault = 64
)

// DetectionBucketsDefault are the detection_latency_seconds buckets, from
// 50 ms (a killed process whose lock vanishes at once) to a minute (a
// heartbeat that lapsed past a long TTL).
var DetectionBucketsDefault = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60}

// Config configures Metrics. A nil *Config is valid.
type Config struct {
	// Namespace prefixes every metric name (namespace_claims_total). It
	// must be a valid Prometheus name: letters, digits, underscores and
	// colons, not starting with a digit. Defaults to NamespaceDefault.
	Namespace string
	// ScrapeTimeout bounds the database reads done at scrape time; past
	// it the scrape answers without the database gauges, with
	// database_up 0. Defaults to ScrapeTimeoutDefault.
	ScrapeTimeout time.Duration
	// Logger receives one warning when scrapes start failing to read the
	// database, one line when they succeed again, and a warning when a
	// detection-latency sample is lost. Defaults to discarding.
	Logger *slog.Logger
	// DedupeSize is how many recent event ids are remembered, so that an
	// event delivered twice is counted once. Defaults to
	// DedupeSizeDefault.
	DedupeSize int
	// LookupQueue is how many node lookups for detection_latency_seconds
	// may wait for the lookup goroutine. Defaults to LookupQueueDefault.
	LookupQueue int
	// DetectionBuckets are the upper bounds, in seconds and increasing, of
	// detection_latency_seconds. Defaults to DetectionBucketsDefault.
	DetectionBuckets []float64
}

var nameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// withDefaults returns a copy of c (nil valid) with every zero field set
// to its default.
func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
	}
	if out.Namespace == "" {
		out.Namespace = NamespaceDefault
	}
	if out.ScrapeTimeout == 0 {
		out.ScrapeTimeout = ScrapeTimeoutDefault
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if out.DedupeSize == 0 {
		out.DedupeSize = DedupeSizeDefault
	}
	if out.LookupQueue == 0 {
		out.LookupQueue = LookupQueueDefault
	}
	if out.DetectionBuckets == nil {
		out.DetectionBuckets = DetectionBucketsDefault
	}
	return out
}

// validate checks a config with its defaults applied.
func (c *Config) validate() error {
	var errs []error
	if !nameRE.MatchString(c.Namespace) {
		errs = append(errs, fmt.Errorf("metrics: Namespace %q is not a valid Prometheus name: use letters, digits and underscores, not starting with a digit", c.Namespace))
	}
	if c.ScrapeTimeout < 0 {
		errs = append(errs, fmt.Errorf("metrics: ScrapeTimeout %v is negative: leave it 0 for the default (%v) or give a positive duration", c.ScrapeTimeout, ScrapeTimeoutDefault))
	}
	if c.DedupeSize < 0 {
		errs = append(errs, fmt.Errorf("metrics: DedupeSize %d is negative: leave it 0 for the default (%d)", c.DedupeSize, DedupeSizeDefault))
	}
	if c.LookupQueue < 0 {
		errs = append(errs, fmt.Errorf("metrics: LookupQueue %d is negative: leave it 0 for the default (%d)", c.LookupQueue, LookupQueueDefault))
	}
	if len(c.DetectionBuckets) == 0 {
		errs = append(errs, errors.New("metrics: DetectionBuckets is empty: leave it nil for the default buckets"))
	}
	for i := 1; i < len(c.DetectionBuckets); i++ {
		if c.DetectionBuckets[i] <= c.DetectionBuckets[i-1] {
			errs = append(errs, fmt.Errorf("metrics: DetectionBuckets must increase, but %v follows %v", c.DetectionBuckets[i], c.DetectionBuckets[i-1]))
			break
		}
	}
	return errors.Join(errs...)
}
