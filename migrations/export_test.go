package migrations

import "github.com/jmoiron/sqlx"

// NewWithMigrations builds a Migrator over a given list, to test failures.
func NewWithMigrations(db *sqlx.DB, config *Config, all []Migration) (*Migrator, error) {
	m, err := New(db, config)
	if err != nil {
		return nil, err
	}
	m.all = all
	return m, nil
}
