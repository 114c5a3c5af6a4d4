package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/recovery"
)

// Re-exported sentinels; see package revenant for their meaning.
var (
	ErrNotFound     = dbx.ErrNotFound
	ErrInvalidInput = dbx.ErrInvalidInput
	ErrCorruptRow   = dbx.ErrCorruptRow
)

// Definition is an actor's recovery policy kept in the database: one row of
// revenant_actor_definitions.
type Definition struct {
	// ID is the actor's id, as in runner.Actor.ID and
	// episodes.CreateParams.ActorID. Required.
	ID string
	// Recovery is what a sweep does with the actor's orphans: recovery.Restart
	// or recovery.Fail. "" states none (ExpectationRecovery must then state
	// one).
	Recovery recovery.Policy
	// ExpectationRecovery overrides Recovery for episodes created with one of
	// these expectations (episodes.CreateParams.Expectation). An expectation
	// not listed falls back to Recovery.
	ExpectationRecovery map[string]recovery.Policy
	// Disabled definitions are kept but ignored by sweeps. The zero value is
	// enabled.
	Disabled bool
	// UpdatedAt is when the definition was last written, by the database
	// clock. Read only: Define ignores it.
	UpdatedAt time.Time
}

// Config configures a Store. A nil *Config is valid.
type Config struct {
	// Logger receives a warning for each stored definition that cannot be
	// read (see List). Defaults to discarding.
	Logger *slog.Logger
}

func (c *Config) withDefaults() *Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.Logger == nil {
		out.Logger = dbx.DiscardLogger()
	}
	return &out
}

// Store reads and writes actor definitions.
type Store struct {
	db     *sqlx.DB
	config *Config
	st     store.Store
}

// New returns a Store on db. db is the caller's and is never closed.
func New(db *sqlx.DB, config *Config) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("actors.New: %w", dbx.ErrNilDB)
	}
	return &Store{db: db, config: config.withDefaults(), st: backend.For(db)}, nil
}

// DB returns the handle the store was built with.
func (s *Store) DB() *sqlx.DB { return s.db }

// Define writes def, replacing any definition of the same actor (its
// Recovery, ExpectationRecovery and Disabled alike). It takes effect from
// the next sweep pass.
func (s *Store) Define(ctx context.Context, def Definition) error {
	return s.DefineTx(ctx, s.db, def)
}

// DefineTx is Define inside the caller's transaction: the definition exists
// only if that transaction commits.
func (s *Store) DefineTx(ctx context.Context, tx Executor, def Definition) error {
	if err := dbx.CheckExecutor("actors.DefineTx", tx); err != nil {
		return err
	}
	if err := def.validate(); err != nil {
		return err
	}
	exps := def.ExpectationRecovery
	if exps == nil {
		exps = map[string]recovery.Policy{}
	}
	raw, err := json.Marshal(exps) // keys sorted
	if err != nil {
		return fmt.Errorf("encoding Definition.ExpectationRecovery of actor %q: %w", def.ID, err)
	}
	row := &store.ActorDefinition{ActorID: def.ID, ExpectationPolicies: raw, Enabled: !def.Disabled}
	if def.Recovery != "" {
		p := string(def.Recovery)
		row.RecoveryPolicy = &p
	}
	if err := s.st.ActorDefinitionUpsert(ctx, tx, row); err != nil {
		return fmt.Errorf("defining actor %q: %w", def.ID, dbx.Explain(err))
	}
	return nil
}

// validate checks def before any statement runs.
func (d *Definition) validate() error {
	if err := checkID("Definition.ID", d.ID); err != nil {
		return err
	}
	if d.Recovery != "" && !d.Recovery.Valid() {
		return fmt.Errorf("%w: Definition.Recovery of actor %q is %q; use recovery.Restart, recovery.Fail, or \"\" to state none (recovery.Skip is only a recovery.Options.DefaultPolicy)",
			ErrInvalidInput, d.ID, d.Recovery)
	}
	for _, exp := range slices.Sorted(maps.Keys(d.ExpectationRecovery)) {
		if exp == "" {
			return fmt.Errorf("%w: Definition.ExpectationRecovery of actor %q has an empty key; key each entry by an expectation name (episodes.CreateParams.Expectation), and put the actor-wide policy in Definition.Recovery",
				ErrInvalidInput, d.ID)
		}
		if err := dbx.CheckName(fmt.Sprintf("Definition.ExpectationRecovery key %q of actor %q", exp, d.ID), exp, true); err != nil {
			return err
		}
		if p := d.ExpectationRecovery[exp]; !p.Valid() {
			return fmt.Errorf("%w: Definition.ExpectationRecovery[%q] of actor %q is %q; use recovery.Restart or recovery.Fail, or remove the entry to fall back to Definition.Recovery",
				ErrInvalidInput, exp, d.ID, p)
		}
	}
	if d.Recovery == "" && len(d.ExpectationRecovery) == 0 {
		return fmt.Errorf("%w: the definition of actor %q states no policy; set Recovery or ExpectationRecovery, or Delete the definition",
			ErrInvalidInput, d.ID)
	}
	return nil
}

// checkID refuses an actor id revenant cannot store.
func checkID(field, id string) error {
	if id == "" {
		return fmt.Errorf("%w: %s is required; set it to the actor's id (runner.Actor.ID, episodes.CreateParams.ActorID)", ErrInvalidInput, field)
	}
	return dbx.CheckName(field, id, true)
}

// Get returns the definition of actor id, or an error wrapping ErrNotFound
// when there is none. A stored definition this version cannot read (a
// hand-edited row) is an error wrapping ErrCorruptRow and
// recovery.ErrBadPolicy that names the actor.
func (s *Store) Get(ctx context.Context, id string) (*Definition, error) {
	return s.GetTx(ctx, s.db, id)
}

// GetTx is Get inside the caller's transaction.
func (s *Store) GetTx(ctx context.Context, tx Executor, id string) (*Definition, error) {
	if err := dbx.CheckExecutor("actors.GetTx", tx); err != nil {
		return nil, err
	}
	if err := checkID("actors.Get: id", id); err != nil {
		return nil, err
	}
	rows, err := s.st.ActorDefinitions(ctx, tx, []string{id})
	if err != nil {
		return nil, fmt.Errorf("getting the definition of actor %q: %w", id, dbx.Explain(err))
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("getting the definition of actor %q: %w", id, ErrNotFound)
	}
	def, err := decode(&rows[0])
	if err != nil {
		return nil, err
	}
	return &def, nil
}

// List returns every definition, enabled or not, ordered by actor id.
//
// A stored definition this version cannot read (a hand-edited row: an
// unknown policy, expectation policies that are not a JSON object of
// policies) is left out, never guessed at: List then returns the readable
// definitions together with an error joining one error per unreadable row,
// each wrapping ErrCorruptRow and recovery.ErrBadPolicy and naming the
// actor. Fix such a row with
// Define, or remove it with Delete. Any other error comes with no
// definitions.
func (s *Store) List(ctx context.Context) ([]Definition, error) {
	return s.ListTx(ctx, s.db)
}

// ListTx is List inside the caller's transaction.
func (s *Store) ListTx(ctx context.Context, tx Executor) ([]Definition, error) {
	if err := dbx.CheckExecutor("actors.ListTx", tx); err != nil {
		return nil, err
	}
	rows, err := s.st.ActorDefinitionList(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("listing actor definitions: %w", dbx.Explain(err))
	}
	out := make([]Definition, 0, len(rows))
	var errs []error
	for i := range rows {
		def, err := decode(&rows[i])
		if err != nil {
			s.config.Logger.WarnContext(ctx, "revenant: unreadable actor definition left out", "actor", rows[i].ActorID, "err", err)
			errs = append(errs, err)
			continue
		}
		out = append(out, def)
	}
	return out, errors.Join(errs...)
}

// decode reads a stored row as a sweep would, refusing what a sweep would
// refuse, and also expectation policies that are not a JSON object.
func decode(row *store.ActorDefinition) (Definition, error) {
	def := Definition{ID: row.ActorID, Disabled: !row.Enabled, UpdatedAt: row.UpdatedAt}
	corrupt := func(detail error) (Definition, error) {
		return Definition{}, fmt.Errorf("%w: the definition of actor %q: %w; rewrite it with actors.Store.Define or remove it with Delete",
			ErrCorruptRow, row.ActorID, detail)
	}
	if row.RecoveryPolicy != nil {
		p, err := recovery.ParsePolicy(*row.RecoveryPolicy)
		if err != nil {
			return corrupt(fmt.Errorf("recovery_policy: %w", err))
		}
		def.Recovery = p
	}
	trimmed := bytes.TrimSpace(row.ExpectationPolicies)
	var raw map[string]json.RawMessage
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return corrupt(fmt.Errorf("%w: expectation_policies is %.100q, not a JSON object", recovery.ErrBadPolicy, trimmed))
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return corrupt(fmt.Errorf("%w: expectation_policies is not a JSON object: %w", recovery.ErrBadPolicy, err))
	}
	for _, exp := range slices.Sorted(maps.Keys(raw)) {
		var s string
		if err := json.Unmarshal(raw[exp], &s); err != nil {
			return corrupt(fmt.Errorf("%w: expectation_policies[%q] is %.100s, not a string", recovery.ErrBadPolicy, exp, raw[exp]))
		}
		p, err := recovery.ParsePolicy(s)
		if err != nil {
			return corrupt(fmt.Errorf("expectation_policies[%q]: %w", exp, err))
		}
		if def.ExpectationRecovery == nil {
			def.ExpectationRecovery = map[string]recovery.Policy{}
		}
		def.ExpectationRecovery[exp] = p
	}
	return def, nil
}

// Disable keeps actor id's definition but makes sweeps ignore it, or returns
// an error wrapping ErrNotFound when there is none.
func (s *Store) Disable(ctx context.Context, id string) error {
	return s.DisableTx(ctx, s.db, id)
}

// DisableTx is Disable inside the caller's transaction.
func (s *Store) DisableTx(ctx context.Context, tx Executor, id string) error {
	return s.setEnabled(ctx, tx, "actors.DisableTx", "disabling", id, false)
}

// Enable makes sweeps honour actor id's definition again, or returns an
// error wrapping ErrNotFound when there is none.
func (s *Store) Enable(ctx context.Context, id string) error {
	return s.EnableTx(ctx, s.db, id)
}

// EnableTx is Enable inside the caller's transaction.
func (s *Store) EnableTx(ctx context.Context, tx Executor, id string) error {
	return s.setEnabled(ctx, tx, "actors.EnableTx", "enabling", id, true)
}

func (s *Store) setEnabled(ctx context.Context, tx Executor, method, verb, id string, enabled bool) error {
	if err := dbx.CheckExecutor(method, tx); err != nil {
		return err
	}
	if err := checkID(method+": id", id); err != nil {
		return err
	}
	found, err := s.st.ActorDefinitionSetEnabled(ctx, tx, id, enabled)
	if err != nil {
		return fmt.Errorf("%s the definition of actor %q: %w", verb, id, dbx.Explain(err))
	}
	if !found {
		return fmt.Errorf("%s the definition of actor %q: %w (Define it first)", verb, id, ErrNotFound)
	}
	return nil
}

// Delete removes actor id's definition, or returns an error wrapping
// ErrNotFound when there is none. Orphans of the actor are then recovered
// by the remaining sources (ultimately recovery.Options.DefaultPolicy).
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.DeleteTx(ctx, s.db, id)
}

// DeleteTx is Delete inside the caller's transaction.
func (s *Store) DeleteTx(ctx context.Context, tx Executor, id string) error {
	if err := dbx.CheckExecutor("actors.DeleteTx", tx); err != nil {
		return err
	}
	if err := checkID("actors.DeleteTx: id", id); err != nil {
		return err
	}
	found, err := s.st.ActorDefinitionDelete(ctx, tx, id)
	if err != nil {
		return fmt.Errorf("deleting the definition of actor %q: %w", id, dbx.Explain(err))
	}
	if !found {
		return fmt.Errorf("deleting the definition of actor %q: %w", id, ErrNotFound)
	}
	return nil
}

// Executor is what the …Tx methods accept: *sql.Tx or *sqlx.Tx (also
// *sql.DB, *sql.Conn, *sqlx.DB), so revenant's writes commit or roll back
// with the caller's own work. It is the same type as revenant.Executor.
type Executor = dbx.Executor
