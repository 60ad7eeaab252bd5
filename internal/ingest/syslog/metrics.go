package syslog

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the listener's Prometheus metrics: counts only, never message
// content.
type metrics struct {
	connections *prometheus.CounterVec // by result
	open        prometheus.Gauge
	messages    prometheus.Counter
	frameErrors *prometheus.CounterVec // by kind
	gaps        prometheus.Counter
	missing     prometheus.Counter
	dropped     *prometheus.CounterVec // by reason
	batchSize   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trail_syslog_connections_total",
			Help: "Syslog connections by result: accepted (an authenticated writer), handshake_failed, refused (a role that may not write, or the listener shutting down), over_limit.",
		}, []string{"result"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trail_syslog_open_connections",
			Help: "Syslog connections open now, handshakes included.",
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trail_syslog_messages_total",
			Help: "Syslog messages appended to the log and durable.",
		}),
		frameErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trail_syslog_frame_errors_total",
			Help: "Connections closed for a bad frame, by kind: malformed, too_large, truncated (the stream ended inside a frame).",
		}, []string{"kind"}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trail_syslog_sequence_gaps_total",
			Help: "Jumps in a sender's [meta sequenceId], each recorded as a syslog.sequence_gap event.",
		}),
		missing: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trail_syslog_sequence_missing_total",
			Help: "Messages missing according to senders' [meta sequenceId] (the sum of the gaps).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trail_syslog_messages_dropped_total",
			Help: "Syslog messages received but not appended, by reason: append_failed (the log refused them), revoked (the sender's certificate was revoked or expired while connected).",
		}, []string{"reason"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trail_syslog_batch_messages",
			Help:    "Messages per append from one syslog connection: what arrived while the previous append was being made durable.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7), // 1 to 4096
		}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.open, m.messages, m.frameErrors, m.gaps, m.missing, m.dropped, m.batchSize)
	}
	return m
}
