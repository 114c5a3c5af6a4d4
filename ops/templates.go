package ops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/recovery"
)

// pageNames are the templates under templates/, each parsed with the
// layout.
var pageNames = []string{"overview", "recovery", "episodes", "episode", "deadletters", "workflows", "workflow", "error"}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		pages[name] = t
	}
	return pages, nil
}

var funcs = template.FuncMap{
	"dur":    fmtDuration,
	"ts":     fmtTime,
	"tsp":    fmtTimePtr,
	"short":  shortID,
	"isNil":  func(id uuid.UUID) bool { return id == uuid.Nil },
	"json":   prettyJSON,
	"pct":    func(f float64) string { return fmt.Sprintf("%.2f%%", f) },
	"join":   strings.Join,
	"reason": describeReason,
	"source": describeSource,
	"bytes":  fmtBytes,
	"none":   func(s string) string { return cmpOr(s, "—") },
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
	"add": func(a, b int) int { return a + b },
	"btn": func(v *view, action string, id uuid.UUID, label, class string) button {
		return button{V: v, Action: action, ID: id, Label: label, Class: class}
	},
	"breakerBtn": func(v *view, b breakers.Breaker, open bool) breakerButton {
		return breakerButton{V: v, B: b, Open: open}
	},
}

// button is a one-button action form.
type button struct {
	V                    *view
	Action, Label, Class string
	ID                   uuid.UUID
}

// breakerButton opens (Open) or closes breaker B.
type breakerButton struct {
	V    *view
	B    breakers.Breaker
	Open bool
}

// shortID abbreviates an id for tables (the full id is the link's title):
// its head and its tail, since UUIDv7 ids made close together share their
// leading timestamp.
func shortID(id uuid.UUID) string {
	s := id.String()
	return s[:8] + "…" + s[len(s)-4:]
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fmtDuration rounds d for people: 850ms, 12.3s, 4m05s, 3h12m, 2d4h.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDuration(-d)
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return fmtTime(*t)
}

func fmtBytes(n int) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// prettyJSON indents a JSON value for a <pre>; "" for none.
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// describeReason says in words why a sweep finds an episode orphaned.
func describeReason(reason string) string {
	switch reason {
	case recovery.ReasonOwnerStopped:
		return "its owner stopped without handing it back"
	case recovery.ReasonOwnerLockGone:
		return "its owner's session lock was released: the process or its connection died"
	case recovery.ReasonOwnerExpired:
		return "its owner's heartbeat lapsed: paused, partitioned, or dead"
	case recovery.ReasonNoActivity:
		return "its owner is not a known node and it has had no journal activity for StaleAfter"
	}
	return reason
}

// describeSource says where a recovery policy comes from.
func describeSource(src string) string {
	switch src {
	case recovery.SourceCallback:
		return "the ResolvePolicy callback"
	case recovery.SourceRegistry:
		return "this node's registered actor"
	case recovery.SourceOwner:
		return "published by the dead owner"
	case recovery.SourceDefinitions:
		return "the actor's definition (package actors)"
	case recovery.SourceDefault:
		return "no source states one: the default policy"
	}
	return src
}
