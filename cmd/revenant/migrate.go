package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/sqlite"
)

func (a *app) migrateCommand() *cobra.Command {
	return group("migrate", "Apply, check or export revenant's schema", a.migrateUpCommand(), a.migrateStatusCommand(), a.migrateExportCommand())
}

type migrationJSON struct {
	Version    int    `json:"version"`
	Name       string `json:"name"`
	DurationMS *int64 `json:"duration_ms,omitempty"`
	SQL        string `json:"sql,omitempty"`
}

type migrateUpJSON struct {
	Applied []migrationJSON `json:"applied"`
	Version int             `json:"version"`
	// Unknown are versions a newer binary applied (Postgres).
	Unknown []int `json:"unknown,omitempty"`
}

func (a *app) migrateUpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Apply the pending migrations (creates a missing SQLite file)",
		Long: `Apply every pending migration, each in its own transaction (advisory-locked on
Postgres, so nodes starting at the same time are safe). Asks for confirmation
unless --yes. Nothing pending is success.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			// A new SQLite file is asked about before it is created.
			created := a.missingSQLite()
			if created != "" {
				if err := a.confirm(fmt.Sprintf("create the SQLite database %s and apply %d migration(s)", created, len(migrations.AllSQLite()))); err != nil {
					return err
				}
			}
			db, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			m, err := migrations.New(db, &migrations.Config{Logger: a.logger})
			if err != nil {
				return err
			}
			pending, err := m.Pending(ctx)
			if err != nil {
				return fmt.Errorf("reading the schema version: %w", err)
			}
			out := migrateUpJSON{Applied: []migrationJSON{}}
			if len(pending) > 0 {
				if created == "" {
					if err := a.confirm(fmt.Sprintf("apply %d migration(s) (versions %d to %d)", len(pending), pending[0].Version, pending[len(pending)-1].Version)); err != nil {
						return err
					}
				}
				res, err := m.Migrate(ctx)
				if err != nil {
					return fmt.Errorf("migrating: %w", err)
				}
				for _, ap := range res.Applied {
					d := ms(ap.Duration)
					out.Applied = append(out.Applied, migrationJSON{Version: ap.Version, Name: ap.Name, DurationMS: &d})
				}
				out.Version, out.Unknown = res.Version, res.Unknown
			} else if out.Version, err = m.Version(ctx); err != nil {
				return fmt.Errorf("reading the schema version: %w", err)
			}
			if a.jsonOut {
				return a.printJSON(out)
			}
			for _, ap := range out.Applied {
				_, _ = fmt.Fprintf(a.stdout, "applied %04d %s (%dms)\n", ap.Version, ap.Name, *ap.DurationMS)
			}
			if len(out.Applied) == 0 {
				_, _ = fmt.Fprintf(a.stdout, "schema is current at version %d: nothing to apply\n", out.Version)
			} else {
				_, _ = fmt.Fprintf(a.stdout, "schema at version %d\n", out.Version)
			}
			if len(out.Unknown) > 0 {
				_, _ = fmt.Fprintf(a.stdout, "versions %v were applied by a newer revenant and left alone\n", out.Unknown)
			}
			return nil
		},
	}
}

type migrateStatusJSON struct {
	Backend  string          `json:"backend"`
	Version  int             `json:"version"`
	Latest   int             `json:"latest"`
	UpToDate bool            `json:"up_to_date"`
	Pending  []migrationJSON `json:"pending"`
}

func (a *app) migrateStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the schema version and the pending migrations",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			db, err := a.open(ctx, false)
			if err != nil {
				return err
			}
			m, err := migrations.New(db, &migrations.Config{Logger: a.logger})
			if err != nil {
				return err
			}
			out := migrateStatusJSON{Backend: backendPostgres, Pending: []migrationJSON{}}
			all := migrations.All()
			if db.DriverName() == sqlite.DriverName {
				out.Backend, all = backendSQLite, migrations.AllSQLite()
			}
			out.Latest = all[len(all)-1].Version
			if out.Version, err = m.Version(ctx); err != nil {
				return fmt.Errorf("reading the schema version: %w", err)
			}
			pending, err := m.Pending(ctx)
			if err != nil {
				return fmt.Errorf("reading the pending migrations: %w", err)
			}
			for _, p := range pending {
				out.Pending = append(out.Pending, migrationJSON{Version: p.Version, Name: p.Name})
			}
			out.UpToDate = len(pending) == 0
			if a.jsonOut {
				return a.printJSON(out)
			}
			_, _ = fmt.Fprintf(a.stdout, "schema version %d of %d (%s)\n", out.Version, out.Latest, out.Backend)
			switch {
			case out.Version > out.Latest:
				_, _ = fmt.Fprintln(a.stdout, "the database was migrated by a newer revenant than this binary")
			case out.UpToDate:
				_, _ = fmt.Fprintln(a.stdout, "up to date")
			default:
				_, _ = fmt.Fprintln(a.stdout, "pending (apply with 'revenant migrate up'):")
				for _, p := range out.Pending {
					_, _ = fmt.Fprintf(a.stdout, "  %04d %s\n", p.Version, p.Name)
				}
			}
			return nil
		},
	}
}

// The export formats.
const (
	formatGoose         = "goose"
	formatGolangMigrate = "golang-migrate"
	formatSQL           = "sql"
)

type exportFileJSON struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Path    string `json:"path"`
	// Status is written, unchanged or overwritten.
	Status string `json:"status"`
}

type exportJSON struct {
	Format     string           `json:"format"`
	Dialect    string           `json:"dialect"`
	Dir        string           `json:"dir,omitempty"`
	Files      []exportFileJSON `json:"files,omitempty"`
	Migrations []migrationJSON  `json:"migrations,omitempty"`
}

func (a *app) migrateExportCommand() *cobra.Command {
	var format, dir, dialect string
	var force bool
	c := &cobra.Command{
		Use:   "export --format goose|golang-migrate|sql [--dir D]",
		Short: "Export the schema's migrations for your own migration tool",
		Long: `Export revenant's migrations for the tool that runs your schema changes; no
database is needed.

  --format goose            one goose file per migration (00001_revenant_core.sql) into --dir
  --format golang-migrate   one up-file per migration (000001_revenant_core.up.sql) into --dir;
                            also atlas's golang-migrate format
  --format sql              plain SQL: to stdout, or with --dir one file per migration
                            (0001_revenant_core.sql)

--dialect picks the Postgres (default) or SQLite set. Files that exist with the
same content are left as they are; a file that differs is refused unless
--force (migrations are forward-only: a differing file was edited, or comes
from another revenant version). Then apply the files with your tool, and start
nodes with SkipMigrate.`,
		Args: noArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			var all []migrations.Migration
			switch dialect {
			case backendPostgres:
				all = migrations.All()
			case backendSQLite:
				all = migrations.AllSQLite()
			default:
				return usagef("--dialect must be postgres or sqlite (got %q)", dialect)
			}
			var name func(migrations.Migration) string
			body := func(m migrations.Migration) string { return m.SQL }
			switch format {
			case formatGoose:
				name, body = migrations.GooseFileName, migrations.WriteGoose
			case formatGolangMigrate:
				name = migrations.GolangMigrateFileName
			case formatSQL:
				name = func(m migrations.Migration) string { return fmt.Sprintf("%04d_revenant_%s.sql", m.Version, m.Name) }
			case "":
				return usagef("pass --format goose, golang-migrate or sql")
			default:
				return usagef("--format must be goose, golang-migrate or sql (got %q)", format)
			}
			out := exportJSON{Format: format, Dialect: dialect, Dir: dir}
			if dir == "" {
				if format != formatSQL {
					return usagef("--format %s writes one file per migration: pass --dir (e.g. --dir db/migrations)", format)
				}
				return a.exportStdout(out, all)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // a source directory, readable by all like the rest of the repository
				return fmt.Errorf("creating %s: %w", dir, err)
			}
			for _, m := range all {
				path := filepath.Join(dir, name(m))
				status, err := writeMigration(path, []byte(body(m)), force)
				if err != nil {
					return err
				}
				out.Files = append(out.Files, exportFileJSON{Version: m.Version, Name: m.Name, Path: path, Status: status})
			}
			if a.jsonOut {
				return a.printJSON(out)
			}
			for _, f := range out.Files {
				_, _ = fmt.Fprintf(a.stdout, "%-11s %s\n", f.Status, f.Path)
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "", "goose, golang-migrate or sql")
	c.Flags().StringVar(&dir, "dir", "", "directory to write the files into (created if missing); sql without it prints to stdout")
	c.Flags().StringVar(&dialect, "dialect", backendPostgres, "postgres or sqlite")
	c.Flags().BoolVar(&force, "force", false, "overwrite files whose content differs")
	return c
}

// exportStdout prints every migration's SQL.
func (a *app) exportStdout(out exportJSON, all []migrations.Migration) error {
	if a.jsonOut {
		for _, m := range all {
			out.Migrations = append(out.Migrations, migrationJSON{Version: m.Version, Name: m.Name, SQL: m.SQL})
		}
		return a.printJSON(out)
	}
	for _, m := range all {
		_, _ = fmt.Fprintf(a.stdout, "-- revenant migration %04d %s (%s)\n%s", m.Version, m.Name, out.Dialect, m.SQL)
		if !strings.HasSuffix(m.SQL, "\n") {
			_, _ = fmt.Fprintln(a.stdout)
		}
		_, _ = fmt.Fprintln(a.stdout)
	}
	return nil
}

// writeMigration writes one exported file: written, unchanged, or
// overwritten (with force); a differing file is refused otherwise.
func writeMigration(path string, data []byte, force bool) (string, error) {
	old, err := os.ReadFile(filepath.Clean(path))
	status := "written"
	switch {
	case err == nil && bytes.Equal(old, data):
		return "unchanged", nil
	case err == nil && !force:
		return "", fmt.Errorf("%s exists with other content (edited, or from another revenant version); migrations are forward-only: compare it, then pass --force to overwrite", path)
	case err == nil:
		status = "overwritten"
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil { //nolint:gosec // a migration is source code, readable by all like the rest of the repository
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return status, nil
}
