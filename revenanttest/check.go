package revenanttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/journal"
)

// What to do about each broken property, said once.
const (
	adviceDeterministic = "step names and their order must depend only on the input and on earlier steps' outputs, " +
		"never on time, randomness, map order or state outside the journal"
	adviceOutputs = "a step's output must depend only on the input and on earlier steps' outputs, not on memory a crash " +
		"loses (set CrashOptions.Equal to compare values that change from run to run, such as timestamps)"
	adviceResult = "the result depends on something a crash loses, such as a Go variable set inside a step " +
		"(a replayed step returns its recorded output without running its function); compute the result from the steps' outputs"
	adviceLost = "an effect was lost: the restarted run skipped an effect the uninterrupted run made, for example because it " +
		"decided from a Go variable the crash lost; decide from the steps' outputs"
)

// compareRun lists the properties a crashed run broke, compared with the
// uninterrupted run.
func compareRun(o *CrashOptions, rep *CrashReport, sc *Scenario, run *scenarioRun) []string {
	name := sc.Name()
	var out []string
	add := func(format string, args ...any) { out = append(out, name+": "+fmt.Sprintf(format, args...)) }
	for _, p := range run.problems {
		add("%s", p)
	}
	ref, got := rep.Reference, run.outcome
	if o.Effects != nil && sc.Effects != rep.ReferenceEffects {
		add("the effect counter rose by %d, the uninterrupted run's by %d: %s", sc.Effects, rep.ReferenceEffects, effectAdvice(sc, rep.ReferenceEffects))
	}
	mismatch := run.mismatch
	if mismatch == "" && got != nil && got.Episode.Status == episodes.StatusFailed {
		// A child process's run: the error it recorded says it.
		if msg := errorOf(got.Episode).Message; strings.Contains(msg, journal.ErrStepMismatch.Error()) {
			mismatch = msg
		}
	}
	if mismatch != "" {
		// The run stopped there: its outcome and steps only repeat it.
		add("on replay the run asked for another step than the journal recorded (journal.ErrStepMismatch): %s; %s",
			mismatch, adviceDeterministic)
		return out
	}
	if got == nil {
		return out
	}
	if run.crashed < len(sc.Crashes) {
		add("the run never reached %s: it recorded the steps %s, the uninterrupted run %s; %s",
			lowerFirst(sc.Crashes[run.crashed].String()), quoteList(stepNames(got.Steps)), quoteList(stepNames(ref.Steps)), adviceDeterministic)
	}
	out = append(out, compareSteps(o, name, ref.Steps, got.Steps)...)
	out = append(out, compareRecorded(name, run.atCrash, got.Steps)...)
	out = append(out, compareOutcome(o, name, ref, got)...)
	return out
}

func effectAdvice(sc *Scenario, want int) string {
	if sc.Effects < want {
		return adviceLost
	}
	if len(sc.Crashes) == 1 && sc.Crashes[0].Point == BeforeRecord {
		return fmt.Sprintf("step %d's effect happened again when the restarted run did the step again (an effect outside StepTx "+
			"runs again on replay); move it into journal.StepTx, where effect and journal entry commit together, or make it "+
			"idempotent with journal.Info(ctx).IdempotencyKey", sc.Crashes[0].Step)
	}
	return "an effect ran again on replay: an effect made between steps runs again whenever the run is replayed, and one " +
		"inside journal.Step runs again when a crash comes before its entry is written; move it into journal.StepTx, or make " +
		"it idempotent with journal.Info(ctx).IdempotencyKey"
}

// compareSteps checks a crashed run's journal against the uninterrupted
// run's: names in order, then outputs.
func compareSteps(o *CrashOptions, name string, ref, got []inspect.Step) []string {
	for i := range min(len(ref), len(got)) {
		if ref[i].Name != got[i].Name {
			return []string{fmt.Sprintf("%s: step %d is named %q, in the uninterrupted run %q; %s", name, i, got[i].Name, ref[i].Name, adviceDeterministic)}
		}
	}
	if len(ref) != len(got) {
		return []string{fmt.Sprintf("%s: the run recorded %d steps %s, the uninterrupted run %d %s; %s",
			name, len(got), quoteList(stepNames(got)), len(ref), quoteList(stepNames(ref)), adviceDeterministic)}
	}
	var out []string
	for i := range got {
		if ref[i].Status != got[i].Status {
			out = append(out, fmt.Sprintf("%s: step %d (%q) is %s, in the uninterrupted run %s", name, i, got[i].Name, got[i].Status, ref[i].Status))
			continue
		}
		if ref[i].Status == "done" && !o.Equal(ref[i].Output, got[i].Output) {
			out = append(out, fmt.Sprintf("%s: step %d (%q) recorded %s, the uninterrupted run %s; %s",
				name, i, got[i].Name, compact(got[i].Output), compact(ref[i].Output), adviceOutputs))
		}
	}
	return out
}

// compareRecorded checks that no entry recorded before a crash reads
// differently at the end: a journal entry is written once.
func compareRecorded(name string, atCrash [][]inspect.Step, final []inspect.Step) []string {
	var out []string
	for _, steps := range atCrash {
		for _, s := range steps {
			if s.Seq >= len(final) {
				out = append(out, fmt.Sprintf("%s: step %d (%q), recorded before the crash, is missing at the end", name, s.Seq, s.Name))
				return out
			}
			f := final[s.Seq]
			if f.Name != s.Name || f.Status != s.Status || !bytes.Equal(canonical(f.Output), canonical(s.Output)) {
				out = append(out, fmt.Sprintf("%s: step %d was recorded as %q = %s before the crash and reads %q = %s at the end: a recorded step changed",
					name, s.Seq, s.Name, compact(s.Output), f.Name, compact(f.Output)))
				return out
			}
		}
	}
	return out
}

// compareOutcome checks the episode's end: status, then result or error.
func compareOutcome(o *CrashOptions, name string, ref, got *RunResult) []string {
	if got.Episode.Status != ref.Episode.Status {
		return []string{fmt.Sprintf("%s: the episode ended %s, the uninterrupted run's %s", name, describeEnd(got), describeEnd(ref))}
	}
	if got.Episode.Status == episodes.StatusDone {
		if !o.Equal(ref.Result, got.Result) {
			return []string{fmt.Sprintf("%s: the result is %s, the uninterrupted run's was %s: %s", name, compact(got.Result), compact(ref.Result), adviceResult)}
		}
		return nil
	}
	re, ge := errorOf(ref.Episode), errorOf(got.Episode)
	if re.Class != ge.Class || withoutID(re.Message, ref.Episode.ID) != withoutID(ge.Message, got.Episode.ID) {
		return []string{fmt.Sprintf("%s: the episode ended %s, the uninterrupted run's %s", name, describeEnd(got), describeEnd(ref))}
	}
	return nil
}

func describeEnd(r *RunResult) string {
	if r.Episode.Status == episodes.StatusDone {
		return "done with " + compact(r.Result)
	}
	e := errorOf(r.Episode)
	return fmt.Sprintf("%s (%s: %s)", r.Episode.Status, e.Class, e.Message)
}

func withoutID(s string, id uuid.UUID) string {
	return strings.ReplaceAll(s, id.String(), "<episode>")
}

func stepNames(steps []inspect.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Name
	}
	return out
}

// jsonEqual reports whether two JSON texts hold the same value (object
// keys in any order; nil and "null" alike).
func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if err := json.Unmarshal(orNull(a), &va); err != nil {
		return false
	}
	if err := json.Unmarshal(orNull(b), &vb); err != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func orNull(b json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(b)) == 0 {
		return json.RawMessage("null")
	}
	return b
}

// canonical re-encodes JSON so that equal values compare byte-equal.
func canonical(b json.RawMessage) []byte {
	var v any
	if json.Unmarshal(orNull(b), &v) != nil {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}

// compact shows a JSON value on one line, cut short when long.
func compact(b json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, orNull(b)) != nil {
		buf.Reset()
		buf.Write(b)
	}
	s := buf.String()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
