package recovery

import (
	"context"
	"fmt"
	"testing"

	"github.com/revenant-go/revenant/sqlite"
	"github.com/revenant-go/revenant/migrations"
)

func TestZZPlan(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir()+"/x.db", nil)
	if err != nil { t.Fatal(err) }
	if _, err := migrations.Migrate(ctx, db); err != nil { t.Fatal(err) }
	c := &config{}
	c.AllStacks, c.AllEnvs = true, true
	scope, sargs := c.scope(2)
	_ = sargs
	for _, q := range []string{sqliteBatchByOwnerSQL(scope, 2), sqliteGroupsSQL(scope)} {
		rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, 1000, "o", "r", "[]", 10)
		if err != nil { t.Fatal(err) }
		for rows.Next() {
			var a, b, c2 int
			var d string
			rows.Scan(&a, &b, &c2, &d)
			fmt.Println(a, b, d)
		}
		rows.Close()
		fmt.Println("---")
	}
}
