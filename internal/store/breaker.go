package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
)

// BreakerState is a circuit breaker's state.
type BreakerState string

// The states. A breaker without a row is closed.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half_open"
)

// BreakerKey names one breaker: an actor in the scope of the nodes that
// claim it ("" for no stack or env).
type BreakerKey struct {
	ActorID string
	Stack   string
	Env     string
}

// Breaker is one revenant_breakers row.
type Breaker struct {
	BreakerKey
	State BreakerState
	// Failures counts failed attempts in a row; WindowFailures those since
	// WindowStart.
	Failures       int
	WindowStart    *time.Time
	WindowFailures int
	// CoolDown is how long the breaker stays open before a probe.
	CoolDown time.Duration
	// ReopenAt is when an open breaker lets a probe through (or a
	// half-open one lets another, its probe having gone silent); nil for a
	// breaker an operator opened, which waits for an operator.
	ReopenAt *time.Time
	Manual   bool
	Reason   string
	// ProbeEpisode and ProbeToken name a half-open breaker's trial run
	// (uuid.Nil when none): no other is let through while it runs.
	ProbeEpisode uuid.UUID
	ProbeToken   int64
	// ChangedAt is when the state last changed.
	ChangedAt time.Time
	// Now is the database clock when the row was read.
	Now time.Time
}

// BreakerColumns is what ScanBreaker reads, then the database's now.
const BreakerColumns = `actor_id, stack, env, state, failures, window_start, window_failures, cool_down_ms, reopen_at, manual, reason,
	probe_episode, probe_token, changed_at`

// ScanBreaker reads one row of BreakerColumns and now.
func ScanBreaker(row RowScanner) (*Breaker, error) {
	var (
		b                Breaker
		state            string
		coolMS           int64
		winStart, reopen sql.NullTime
		reason           sql.NullString
		probe            uuid.NullUUID
		probeToken       sql.NullInt64
		changedAt        sql.NullTime
		now              dbTime
	)
	err := row.Scan(&b.ActorID, &b.Stack, &b.Env, &state, &b.Failures, &winStart, &b.WindowFailures, &coolMS,
		&reopen, &b.Manual, &reason, &probe, &probeToken, &changedAt, &now)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dbx.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	b.State = BreakerState(state)
	switch b.State {
	case BreakerClosed, BreakerOpen, BreakerHalfOpen:
	default:
		return nil, fmt.Errorf("%w: breaker of actor %q has unknown state %q", dbx.ErrCorruptRow, b.ActorID, state)
	}
	b.CoolDown = time.Duration(coolMS) * time.Millisecond
	b.ProbeEpisode, b.ProbeToken = probe.UUID, probeToken.Int64
	b.WindowStart, b.ReopenAt = timePtr(winStart), timePtr(reopen)
	b.Reason, b.ChangedAt, b.Now = reason.String, changedAt.Time, time.Time(now)
	return &b, nil
}

// ScanBreakers reads rows of BreakerColumns and now.
func ScanBreakers(rows *sql.Rows, err error) ([]Breaker, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []Breaker
	for rows.Next() {
		b, err := ScanBreaker(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *b)
	}
	return out, rows.Err()
}

// BreakerWriteParams is a breaker's new state, written by whoever locked
// it (BreakerLock) or by an operator.
type BreakerWriteParams struct {
	BreakerKey
	State          BreakerState
	Failures       int
	WindowStart    *time.Time
	WindowFailures int
	CoolDown       time.Duration
	// ReopenInMillis sets ReopenAt that long after now; nil clears it.
	ReopenInMillis *int64
	Manual         bool
	Reason         string
	// ProbeEpisode (uuid.Nil for none) and ProbeToken name the trial run.
	ProbeEpisode uuid.UUID
	ProbeToken   int64
	// Changed stamps ChangedAt with now.
	Changed bool
}

// ActorDue is what a runner needs to know, per actor, to sleep until
// there is something to claim.
type ActorDue struct {
	ActorID string
	// NextDueIn is how long until the actor's first claimable pending
	// episode falls due, by the database clock: 0 when one is due already
	// (it fell due after the claim, or another node's claim holds it),
	// nil when none waits.
	NextDueIn *time.Duration
	// Breaker is the actor's breaker state when not closed, and ReopenIn
	// how long until it lets a probe through (nil: only by hand).
	Breaker  BreakerState
	ReopenIn *time.Duration
}

// ScanActorDue reads rows of (actor, next due in ms, breaker state,
// reopen in ms).
func ScanActorDue(rows *sql.Rows, err error) ([]ActorDue, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []ActorDue
	for rows.Next() {
		var (
			d           ActorDue
			due, reopen sql.NullInt64
			state       sql.NullString
		)
		if err := rows.Scan(&d.ActorID, &due, &state, &reopen); err != nil {
			return nil, err
		}
		d.NextDueIn, d.ReopenIn = millisPtr(due), millisPtr(reopen)
		d.Breaker = BreakerState(state.String)
		if d.Breaker == "" {
			d.Breaker = BreakerClosed
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func millisPtr(v sql.NullInt64) *time.Duration {
	if !v.Valid {
		return nil
	}
	d := time.Duration(max(v.Int64, 0)) * time.Millisecond
	return &d
}

// RequeueParams puts failed (or canceled) episodes back to pending with
// fresh attempts: those in IDs, or, without IDs, up to Limit matching the
// filter. Archived episodes and workflow steps are left out (a workflow
// decides about its steps).
type RequeueParams struct {
	IDs []uuid.UUID
	// Filter, without IDs. Statuses defaults to failed; only failed and
	// canceled are requeueable.
	Statuses                      []Status
	ActorID                       string
	ErrorClass                    string
	FinishedAfter, FinishedBefore time.Time
	Limit                         int
	// RunAt (not zero) or DelayMillis from now: when they fall due.
	RunAt       time.Time
	DelayMillis int64
	// Clean deletes every journal entry (a clean start); otherwise only
	// failed steps are deleted, so that they run again.
	Clean      bool
	By, Reason string
}

// RequeueFilter writes p's conditions on revenant_episodes (unqualified)
// with arg adding parameters; idsArg is the backend's form of p.IDs.
func RequeueFilter(p *RequeueParams, arg func(any) string, timeArg func(time.Time) any, idsCond func(ph string) string, idsArg any) string {
	statuses := p.Statuses
	if len(statuses) == 0 {
		statuses = []Status{StatusFailed}
	}
	var ph []string
	for _, st := range statuses {
		ph = append(ph, arg(string(st)))
	}
	where := "status IN (" + strings.Join(ph, ", ") + ") AND status IN ('failed', 'canceled') AND archived_at IS NULL AND workflow_instance_id IS NULL"
	if len(p.IDs) > 0 {
		return where + " AND " + idsCond(arg(idsArg))
	}
	if p.ActorID != "" {
		where += " AND actor_id = " + arg(p.ActorID)
	}
	if p.ErrorClass != "" {
		where += " AND error_class = " + arg(p.ErrorClass)
	}
	if !p.FinishedAfter.IsZero() {
		where += " AND finished_at >= " + arg(timeArg(p.FinishedAfter))
	}
	if !p.FinishedBefore.IsZero() {
		where += " AND finished_at < " + arg(timeArg(p.FinishedBefore))
	}
	return where
}

// ScanEpisodes reads rows of EpisodeColumns; an unreadable row is an error.
func ScanEpisodes(rows *sql.Rows, err error) ([]*Episode, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []*Episode
	for rows.Next() {
		ep, err := ScanEpisode(rows)
		if err != nil {
			return out, err
		}
		out = append(out, ep)
	}
	return out, rows.Err()
}

// ScanBool reads one boolean; no row reads as false.
func ScanBool(row *sql.Row) (bool, error) {
	var v bool
	err := row.Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return v, err
}

// BreakerPolicy configures an actor's circuit breaker. The public breakers
// package names it breakers.Policy.
//
// A breaker counts its actor's failed attempts (errors, panics and
// timeouts; not crashes, which are the node's fault) across the whole
// cluster. When they reach ConsecutiveFailures in a row, or WindowFailures
// within Window, it opens: no node claims the actor's episodes. After
// CoolDown one probe episode is let through (half-open); its success
// closes the breaker, its failure opens it for another CoolDown.
type BreakerPolicy struct {
	// ConsecutiveFailures opens the breaker after that many failed
	// attempts in a row. 0 turns this trigger off.
	ConsecutiveFailures int
	// WindowFailures opens it after that many failed attempts within
	// Window (which defaults to BreakerWindowDefault). 0 turns this
	// trigger off.
	WindowFailures int
	Window         time.Duration
	// CoolDown is how long the breaker stays open before a probe.
	// Defaults to BreakerCoolDownDefault.
	CoolDown time.Duration
}

// Breaker defaults.
const (
	BreakerWindowDefault   = time.Minute
	BreakerCoolDownDefault = 30 * time.Second
)

// Validate checks the policy and fills its defaults; field names it.
func (p *BreakerPolicy) Validate(field string) error {
	if p == nil {
		return nil
	}
	if p.ConsecutiveFailures < 0 || p.WindowFailures < 0 || p.Window < 0 || p.CoolDown < 0 {
		return fmt.Errorf("%w: %s has a negative setting; use 0 for off (or the default)", dbx.ErrInvalidInput, field)
	}
	if p.ConsecutiveFailures == 0 && p.WindowFailures == 0 {
		return fmt.Errorf("%w: %s sets neither ConsecutiveFailures nor WindowFailures, so it would never open; set one, or leave the policy nil", dbx.ErrInvalidInput, field)
	}
	if p.Window == 0 {
		p.Window = BreakerWindowDefault
	}
	if p.CoolDown == 0 {
		p.CoolDown = BreakerCoolDownDefault
	}
	if p.Window > MaxBackoffLimit || p.CoolDown > MaxBackoffLimit || p.CoolDown < 10*time.Millisecond {
		return fmt.Errorf("%w: %s: Window (%s) and CoolDown (%s) must be at most %s, and CoolDown at least 10ms", dbx.ErrInvalidInput, field, p.Window, p.CoolDown, MaxBackoffLimit)
	}
	return nil
}

// AfterFailure is the breaker's next state after one more failed attempt,
// of episode (under policy p; nil: only the probe's failure changes the
// state), by the database clock b.Now. Only a closed breaker opens on
// counts; a half-open one re-opens when its probe, and only its probe,
// fails. changed is true when the state changes.
func (b *Breaker) AfterFailure(p *BreakerPolicy, episode uuid.UUID) (w BreakerWriteParams, changed bool) {
	w = BreakerWriteParams{BreakerKey: b.BreakerKey, State: b.State, Failures: b.Failures + 1, WindowStart: b.WindowStart,
		WindowFailures: b.WindowFailures + 1, CoolDown: b.CoolDown, Manual: b.Manual, Reason: b.Reason,
		ProbeEpisode: b.ProbeEpisode, ProbeToken: b.ProbeToken}
	if b.ReopenAt != nil {
		ms := b.ReopenAt.Sub(b.Now).Milliseconds()
		w.ReopenInMillis = &ms
	}
	if p != nil {
		w.CoolDown = p.CoolDown
		if b.WindowStart == nil || b.Now.Sub(*b.WindowStart) >= p.Window {
			start := b.Now
			w.WindowStart, w.WindowFailures = &start, 1
		}
	}
	if b.Manual {
		return w, false // an operator's state holds
	}
	open := func(reason string) {
		ms := w.CoolDown.Milliseconds()
		w.State, w.ReopenInMillis, w.Reason, w.Changed = BreakerOpen, &ms, reason, true
		w.ProbeEpisode, w.ProbeToken = uuid.Nil, 0
	}
	switch {
	case b.State == BreakerHalfOpen && episode != uuid.Nil && episode == b.ProbeEpisode:
		open("the half-open probe failed")
	case b.State != BreakerClosed:
		// A straggler that was running when it opened: counted only.
	case p != nil && p.ConsecutiveFailures > 0 && w.Failures >= p.ConsecutiveFailures:
		open(fmt.Sprintf("%d failed attempts in a row", w.Failures))
	case p != nil && p.WindowFailures > 0 && w.WindowFailures >= p.WindowFailures:
		open(fmt.Sprintf("%d failed attempts within %s", w.WindowFailures, p.Window))
	}
	return w, w.Changed
}

// dbTime scans the database clock selected as an expression: a time on
// Postgres, text on SQLite (only columns declared timestamp read back as
// times there).
type dbTime time.Time

func (t *dbTime) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		*t = dbTime(v)
		return nil
	case string:
		p, err := parseDBTime(v)
		*t = dbTime(p)
		return err
	case []byte:
		p, err := parseDBTime(string(v))
		*t = dbTime(p)
		return err
	}
	return fmt.Errorf("unreadable database time %T", src)
}
