package postgres

import (
	"context"

	"github.com/revenant-go/revenant/internal/store"
)

const nodeDeclareDeadSQL = `UPDATE revenant_nodes SET stopped_at = now(), stop_reason = $2
WHERE node_id = $1 AND stopped_at IS NULL`

// NodeDeclareDead implements store.Store.
func (Store) NodeDeclareDead(ctx context.Context, q store.Querier, nodeID, reason string) (bool, error) {
	return store.Affected(q.ExecContext(ctx, nodeDeclareDeadSQL, nodeID, reason))
}
