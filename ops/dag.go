package ops

import (
	"fmt"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/workflow"
)

// Geometry of the DAG drawing, in SVG user units (pixels).
const (
	boxW, boxH   = 170, 48
	gapX, gapY   = 70, 18
	pad          = 14
	undefinedRow = 5 // steps per row when the shape is unknown
	labelRunes   = 22
)

// stepStatuses are the step states, in the legend's order.
var stepStatuses = []string{workflow.StepPending, workflow.StepRunning, workflow.StepRetrying, workflow.StepPaused,
	workflow.StepDone, workflow.StepFailed, workflow.StepCanceled}

// dag is a workflow instance drawn as a layered graph: a step's column is
// its dependency depth, its row its order among the column's steps.
type dag struct {
	Width, Height int
	Boxes         []box
	Edges         []edge
	// Comp are the compensations, drawn apart in a row: they run newest
	// first when the instance aborts, outside the DAG.
	Comp                  []box
	CompWidth, CompHeight int
	// Defined is false when no node published the definition's shape:
	// steps are drawn in order, without edges.
	Defined bool
	Legend  []string
}

// box is one step.
type box struct {
	ID, Status, Actor, Label string
	Attempts                 int
	// Href links the step's episode ("" when it has none).
	Href       string
	X, Y, W, H int
}

// edge is a dependency, from the step depended on to the dependent.
type edge struct {
	From, To string
	// D is the curve's SVG path and Head its arrowhead's: drawn as a
	// shape rather than a marker, whose url(#id) a <base> element can
	// break.
	D, Head string
}

// layoutDAG draws the steps of w.
func layoutDAG(w *inspect.WorkflowDetail) *dag {
	d := &dag{Defined: w.Defined, Legend: stepStatuses}
	var steps, comps []inspect.WorkflowStep
	for _, s := range w.Steps {
		if s.Kind == "compensation" {
			comps = append(comps, s)
		} else {
			steps = append(steps, s)
		}
	}
	col := make([]int, len(steps))
	if w.Defined {
		col = depths(steps)
	} else {
		for i := range steps {
			col[i] = i % undefinedRow
		}
	}
	rows := map[int]int{} // column -> rows used
	at := map[string]*box{}
	maxCol, maxRow := 0, 0
	for i, s := range steps {
		c, r := col[i], rows[col[i]]
		if !w.Defined {
			c, r = i%undefinedRow, i/undefinedRow
		}
		rows[col[i]]++
		maxCol, maxRow = max(maxCol, c), max(maxRow, r)
		d.Boxes = append(d.Boxes, newBox(s, pad+c*(boxW+gapX), pad+r*(boxH+gapY)))
	}
	for i := range d.Boxes {
		at[d.Boxes[i].ID] = &d.Boxes[i]
	}
	if len(steps) > 0 {
		d.Width = 2*pad + (maxCol+1)*boxW + maxCol*gapX
		d.Height = 2*pad + (maxRow+1)*boxH + maxRow*gapY
	}
	if w.Defined {
		for _, s := range steps {
			to := at[s.ID]
			for _, dep := range s.DependsOn {
				from, ok := at[dep]
				if !ok {
					continue
				}
				x1, y1 := from.X+from.W, from.Y+from.H/2
				x2, y2 := to.X-6, to.Y+to.H/2 // leave room for the arrowhead
				mx := (x1 + x2) / 2
				d.Edges = append(d.Edges, edge{From: dep, To: s.ID,
					D:    fmt.Sprintf("M%d %d C%d %d, %d %d, %d %d", x1, y1, mx, y1, mx, y2, x2, y2),
					Head: fmt.Sprintf("M%d %d L%d %d L%d %d Z", to.X, y2, x2-3, y2-5, x2-3, y2+5)})
			}
		}
	}
	for i, s := range comps {
		d.Comp = append(d.Comp, newBox(s, pad+i*(boxW+gapX/2), pad))
	}
	if n := len(comps); n > 0 {
		d.CompWidth = 2*pad + n*boxW + (n-1)*gapX/2
		d.CompHeight = 2*pad + boxH
	}
	return d
}

func newBox(s inspect.WorkflowStep, x, y int) box {
	b := box{ID: s.ID, Status: s.Status, Actor: s.Actor, Label: truncate(s.ID, labelRunes), Attempts: s.Attempts,
		X: x, Y: y, W: boxW, H: boxH}
	if s.EpisodeID != uuid.Nil {
		b.Href = "episodes/" + s.EpisodeID.String()
	}
	return b
}

// depths is each step's dependency depth: 0 for a root, else one more
// than its deepest dependency. Unknown dependencies count as roots, and a
// cycle (which validation refuses) cannot loop.
func depths(steps []inspect.WorkflowStep) []int {
	index := map[string]int{}
	for i, s := range steps {
		index[s.ID] = i
	}
	depth := make([]int, len(steps))
	state := make([]int, len(steps)) // 0 new, 1 visiting, 2 done
	var visit func(i int) int
	visit = func(i int) int {
		switch state[i] {
		case 1:
			return 0
		case 2:
			return depth[i]
		}
		state[i] = 1
		d := 0
		for _, dep := range steps[i].DependsOn {
			if j, ok := index[dep]; ok {
				d = max(d, visit(j)+1)
			}
		}
		depth[i], state[i] = d, 2
		return d
	}
	for i := range steps {
		visit(i)
	}
	return depth
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
