package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/metrics"
)

// A lost database does not fail a scrape: it answers at once with
// database_up 0 and the counters kept, logs once per outage, and reads the
// database again once it is back.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	ctx := context.Background()
	proxy := testdb.NewProxy(t)
	db, err := sqlx.Open("postgres", proxy.DSN(s.DSN))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	c, err := revenant.New(db, &revenant.Config{Name: "admin", SkipMigrate: true})
	require.NoError(t, err)
	logs, logger := testdb.NewLogs()
	m, err := metrics.New(c, &metrics.Config{Logger: logger})
	require.NoError(t, err)
	t.Cleanup(m.Close)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	_, err = c.Enqueue(ctx, episodes.CreateParams{ActorID: "mailer"})
	require.NoError(t, err)

	f := scrape(t, srv.URL)
	require.True(t, is(f, 1, "revenant_database_up"))
	require.True(t, is(f, 1, "revenant_episodes", "actor", "mailer", "state", "due"))

	proxy.Cut()
	for i := 1; i <= 2; i++ {
		start := time.Now()
		f = scrape(t, srv.URL)
		require.Less(t, time.Since(start), metrics.ScrapeTimeoutDefault+5*time.Second, "the scrape is bounded")
		require.True(t, is(f, 0, "revenant_database_up"))
		require.True(t, is(f, float64(i), "revenant_scrape_errors_total"))
		_, ok := f.value("revenant_episodes", "actor", "mailer")
		require.False(t, ok, "no stale database gauges")
		require.True(t, is(f, 0, "revenant_sweeps_total"), "what is in memory is still exported")
	}
	require.Equal(t, 1, logs.Count("scrape cannot read the database"), "one warning per outage:\n%s", logs.String())
	require.NotContains(t, logs.String(), "password")

	proxy.Restore()
	eventually(t, srv.URL, "the database is read again", func(f families) bool {
		return is(f, 1, "revenant_database_up") && is(f, 1, "revenant_episodes", "actor", "mailer", "state", "due")
	})
	require.Equal(t, 1, logs.Count("scrape reads the database again"))
}

// A database that accepts connections and never answers holds a scrape no
// longer than ScrapeTimeout, leaves fewer stuck reads than failed scrapes,
// and is read again once it answers.
func TestDatabaseHangs(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	stall := newStaller(t)
	db, err := sqlx.Open("postgres", stall.dsn(t, s.DSN))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	c, err := revenant.New(db, &revenant.Config{Name: "admin", SkipMigrate: true})
	require.NoError(t, err)
	m, err := metrics.New(c, &metrics.Config{ScrapeTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(m.Close)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)

	const scrapes = 6
	for i := 1; i <= scrapes; i++ {
		start := time.Now()
		f := scrape(t, srv.URL)
		require.Less(t, time.Since(start), 10*time.Second, "the scrape is bounded by ScrapeTimeout")
		require.True(t, is(f, 0, "revenant_database_up"))
		require.True(t, is(f, float64(i), "revenant_scrape_errors_total"))
	}
	t.Logf("stalled reads: %d", stall.stalled())
	require.Less(t, stall.stalled(), scrapes, "stuck reads are shared, not one per scrape")

	stall.answer()
	eventually(t, srv.URL, "the database is read again", func(f families) bool {
		return is(f, 1, "revenant_database_up")
	})
}

// staller accepts connections and, until answer, holds them without a
// word: a database that stopped answering. Then it drops the held ones
// and forwards new ones to Postgres.
type staller struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	held   []net.Conn
	open   bool
}

func newStaller(t *testing.T) *staller {
	t.Helper()
	u, err := url.Parse(testdb.URL())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	st := &staller{ln: ln, target: u.Host}
	go st.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		st.answer()
	})
	return st
}

func (st *staller) dsn(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.Host = st.ln.Addr().String()
	return u.String()
}

func (st *staller) serve() {
	for {
		conn, err := st.ln.Accept()
		if err != nil {
			return
		}
		st.mu.Lock()
		if !st.open {
			st.held = append(st.held, conn)
			st.mu.Unlock()
			continue
		}
		st.mu.Unlock()
		server, err := net.Dial("tcp", st.target)
		if err != nil {
			_ = conn.Close()
			continue
		}
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		go pipe(server, conn)
		go pipe(conn, server)
	}
}

func (st *staller) stalled() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.held)
}

func (st *staller) answer() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.open = true
	for _, c := range st.held {
		_ = c.Close()
	}
}
