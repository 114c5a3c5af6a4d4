package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"
)

// Database creates an empty database of its own for a test that must not
// share one with others (LISTEN/NOTIFY channels and server statistics are
// per database, not per schema), drops it at cleanup, and returns its
// DSN. Postgres only.
func Database(t testing.TB) string {
	t.Helper()
	Require(t)
	admin, err := admin()
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "revenant_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("testdb: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Logf("testdb: dropping database %s: %v", name, err)
		}
	})
	u, err := url.Parse(URL())
	if err != nil {
		t.Fatalf("testdb: TEST_DATABASE_URL is not a URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}
