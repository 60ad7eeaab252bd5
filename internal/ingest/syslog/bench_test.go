package syslog_test

import (
	"crypto/tls"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailaudit/trail/internal/ingest/syslog"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// BenchmarkSyslog is the load generator for the figures: b.N RFC
// 5424 messages of about 200 bytes, with structured data (with or without
// [meta sequenceId], which gives each event an id), sent over TLS
// 1.3 in octet-counting framing from 1 or 16 connections as fast as they
// go, into an in-process server with a real log (every append fsynced).
// The clock stops when every connection has seen the server's clean close
// after its own, that is when every message is durable. It reports msgs/s,
// the process's CPU time per message and the mean messages per append.
//
//	go test -run '^$' -bench Syslog -benchtime 200000x ./internal/ingest/syslog/
func BenchmarkSyslog(b *testing.B) {
	for _, bc := range []struct {
		conns int
		ids   bool // [meta sequenceId], so each event has an id to deduplicate on
	}{{1, true}, {16, true}, {1, false}, {16, false}} {
		conns := bc.conns
		name := fmt.Sprintf("conns=%d/sequenceId=%v", conns, bc.ids)
		b.Run(name, func(b *testing.B) {
			reg := prometheus.NewRegistry()
			e := newEnv(b, func(c *syslog.Config) { c.Registerer = reg; c.Logger = nil })
			cs := make([]*tls.Conn, conns)
			payloads := make([][]byte, conns)
			for i := range cs {
				cs[i] = e.dial(b, fmt.Sprintf("load-%d", i), tlsconf.RoleWriter)
				n := b.N / conns
				if i < b.N%conns {
					n++
				}
				var p []byte
				for j := range n {
					sd := fmt.Sprintf(`[origin ip="192.0.2.7"][meta sequenceId="%d"]`, j+1)
					if !bc.ids {
						sd = fmt.Sprintf(`[origin ip="192.0.2.7"][x@32473 n="%d"]`, j+1)
					}
					msg := fmt.Sprintf(`<86>1 2026-01-02T03:04:05.123456Z web%d.example.com sshd 4242 LOGIN %s Accepted publickey for alice from 192.0.2.7 port 50022 ssh2: ED25519 SHA256:abc message %d`, i, sd, j)
					p = syslog.AppendOctetCounted(p, []byte(msg))
				}
				payloads[i] = p
			}
			b.ResetTimer()
			start, cpuStart := time.Now(), cpuTime()
			var wg sync.WaitGroup
			for i, c := range cs {
				wg.Go(func() {
					for p := payloads[i]; len(p) > 0; {
						n := min(len(p), 64<<10)
						if _, err := c.Write(p[:n]); err != nil {
							b.Error(err)
							return
						}
						p = p[n:]
					}
					if err := closeAndWait(b, c); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
			elapsed, cpu := time.Since(start), cpuTime()-cpuStart
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			// CPU time of the whole process (the senders' TLS included) per
			// message: less sensitive than msgs/s to other work on the machine.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/msg")
			mfs, err := reg.Gather()
			if err != nil {
				b.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == "trail_syslog_batch_messages" {
					h := mf.GetMetric()[0].GetHistogram()
					b.ReportMetric(h.GetSampleSum()/float64(max(h.GetSampleCount(), 1)), "msgs/append")
				}
			}
			if got := e.log.Size(); got != int64(b.N) {
				b.Fatalf("log has %d entries, want %d", got, b.N)
			}
		})
	}
}
