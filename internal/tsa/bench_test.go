package tsa_test

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/tsa"
	"github.com/trailaudit/trail/internal/tsa/tsatest"
)

// BenchmarkStamp measures the round trip of one checkpoint's time-stamp:
// request, HTTPS to a TSA that runs openssl ts -reply per request, and full
// verification of the answer. It reports the median as p50-ms.
//
//	go test ./internal/tsa -run '^$' -bench Stamp -benchtime 200x
func BenchmarkStamp(b *testing.B) {
	a := tsatest.New(b, tsatest.Options{})
	c := &tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client}
	d := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, _, err := c.Stamp(b.Context(), note); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(d[len(d)*99/100])/1e6, "p99-ms")
}

// BenchmarkVerify measures trail's share of a round trip: parsing and
// verifying a stored response (as trail verify does per checkpoint).
func BenchmarkVerify(b *testing.B) {
	der, err := os.ReadFile(seedFile)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		tok, err := tsa.ParseResponse(der)
		if err != nil {
			b.Fatal(err)
		}
		if err := tok.Verify(note, tsa.VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
