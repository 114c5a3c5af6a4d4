package storetest

import (
	"testing"

	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }
