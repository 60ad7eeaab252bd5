//go:build linux

package scanrange

import (
	"testing"

	"github.com/trailaudit/trail/internal/scan"
)

func compareTestssl(t *testing.T, rs *rangeSetup, reports map[string]*scan.Report) {
	t.Skip("not yet")
}
