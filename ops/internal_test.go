package ops

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/inspect"
)

// The DAG is layered: a step's column is its dependency depth, rows
// follow definition order; edges join dependencies; compensations are
// drawn apart.
func TestLayoutDAG(t *testing.T) {
	ep := uuid.New()
	w := &inspect.WorkflowDetail{Defined: true, Steps: []inspect.WorkflowStep{
		{ID: "fetch", Kind: "step", Status: "done", EpisodeID: ep},
		{ID: "resize", Kind: "step", Status: "running", DependsOn: []string{"fetch"}},
		{ID: "charge", Kind: "step", Status: "failed", DependsOn: []string{"fetch"}, Compensate: "refund"},
		{ID: "publish", Kind: "step", Status: "pending", DependsOn: []string{"resize", "charge"}},
		{ID: "compensate:charge", Kind: "compensation", Status: "pending"},
	}}
	d := layoutDAG(w)
	require.Len(t, d.Boxes, 4)
	col := func(i int) int { return (d.Boxes[i].X - pad) / (boxW + gapX) }
	row := func(i int) int { return (d.Boxes[i].Y - pad) / (boxH + gapY) }
	require.Equal(t, []int{0, 1, 1, 2}, []int{col(0), col(1), col(2), col(3)})
	require.Equal(t, []int{0, 0, 1, 0}, []int{row(0), row(1), row(2), row(3)})
	require.Equal(t, "episodes/"+ep.String(), d.Boxes[0].Href)
	require.Empty(t, d.Boxes[1].Href, "no episode yet")
	require.Len(t, d.Edges, 4)
	require.Equal(t, edge{From: "fetch", To: "resize", D: d.Edges[0].D, Head: d.Edges[0].Head}, d.Edges[0])
	require.Equal(t, 2*pad+3*boxW+2*gapX, d.Width)
	require.Equal(t, 2*pad+2*boxH+gapY, d.Height)
	require.Len(t, d.Comp, 1)
	require.Equal(t, "compensate:charge", d.Comp[0].ID)

	// Without the definition's shape: position order, no edges.
	w.Defined = false
	for i := range w.Steps {
		w.Steps[i].DependsOn = nil
	}
	d = layoutDAG(w)
	require.Empty(t, d.Edges)
	require.Equal(t, []int{0, 1, 2, 3}, []int{col(0), col(1), col(2), col(3)})

	// A cycle (which validation refuses) cannot hang the layout.
	require.Equal(t, []int{2, 1}, depths([]inspect.WorkflowStep{{ID: "a", DependsOn: []string{"b"}}, {ID: "b", DependsOn: []string{"a"}}}))
}

func TestRelativePaths(t *testing.T) {
	require.Equal(t, "./", relBase("/"))
	require.Equal(t, "./", relBase("/episodes"))
	require.Equal(t, "../", relBase("/episodes/x"))
	require.Equal(t, "../", relBase("/actions/requeue"))

	r := httptest.NewRequest(http.MethodGet, "/revenant/episodes/x?y=1", nil)
	require.Equal(t, "", mountPrefix(r))
	r.URL.Path = "/episodes/x"
	require.Equal(t, "/revenant", mountPrefix(r))

	require.Equal(t, "episodes/x?status=failed", safeReturn("episodes/x?status=failed"))
	for _, bad := range []string{"/abs", "//evil.example", "https://evil.example", `\\evil`, "../up", "a\r\nSet-Cookie: x"} {
		require.Empty(t, safeReturn(bad), bad)
	}
}

// Errors reach pages and logs without DSNs or passwords.
func TestSanitize(t *testing.T) {
	require.Equal(t, `connecting to [url removed]: refused`, sanitize(`connecting to postgres://app:hunter2@db:5432/prod?sslmode=disable: refused`))
	require.Equal(t, `failed: host=db password=[removed] user=app`, sanitize(`failed: host=db password=hunter2 user=app`))
	require.Equal(t, `password=[removed] x`, sanitize(`password='a b' x`))
	require.Equal(t, "dial tcp 127.0.0.1:5432: connect: connection refused", sanitize("dial tcp 127.0.0.1:5432: connect: connection refused"))
}
