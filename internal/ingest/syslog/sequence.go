package syslog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/trailaudit/trail/event"
)

// maxSequenceID is where RFC 5424 §7.3.1's sequenceId wraps back to 1.
const maxSequenceID = 2147483647

// sequences remembers the last [meta sequenceId] seen from each sender (the
// authenticated identity), across its connections, so that messages lost
// between two connections show as a gap too. At start it is filled from the
// newest entries of the log (recall), so a gap across a restart or a crash
// of trail shows too.
type sequences struct {
	mu   sync.Mutex
	last map[string]int64
}

// step is what observe learned from one sequenceId.
type step struct {
	prev    int64 // the previous sequenceId, 0 if none
	missing int64 // > 0: that many numbers were skipped
	back    bool  // the number went back: a resend, or a restarted sender
}

// observe records seq as sender's latest and compares it with the one
// before.
func (s *sequences) observe(sender string, seq int64) step {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = make(map[string]int64)
	}
	prev, ok := s.last[sender]
	s.last[sender] = seq
	switch {
	case !ok:
		return step{}
	case seq == prev+1, prev == maxSequenceID && seq == 1:
		return step{prev: prev}
	case seq > prev+1:
		return step{prev: prev, missing: seq - prev - 1}
	}
	return step{prev: prev, back: true}
}

// sequenceID returns m's [meta sequenceId] if it is a valid one.
func sequenceID(m *Message) (int64, bool) {
	v, ok := m.Param("meta", "sequenceId")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > maxSequenceID {
		return 0, false
	}
	return n, true
}

// gapEvent records that sender skipped st.missing sequence numbers before
// seq. It is appended just before the message that revealed the gap. It is
// trail's observation, not the sender's message, so it is a separate event
// rather than a field of the message's event: that event must stay the
// same whenever the message is sent, for deduplication.
func gapEvent(sender string, m *Message, st step, seq int64, received time.Time) event.Event {
	d := struct {
		Previous int64  `json:"previous_sequence_id"`
		Next     int64  `json:"sequence_id"`
		Missing  int64  `json:"missing"`
		Hostname string `json:"hostname,omitempty"`
		AppName  string `json:"app_name,omitempty"`
	}{st.prev, seq, st.missing, clean(m.Hostname), clean(m.AppName)}
	return event.Event{
		Time:     received,
		Actor:    event.Actor{ID: "trail:syslog", Type: "service"},
		Action:   "syslog.sequence_gap",
		Resource: event.Resource{Type: "syslog-sender", ID: sender},
		Outcome:  event.Failure,
		Reason:   fmt.Sprintf("%s skipped from sequenceId %d to %d: %d messages missing", sender, st.prev, seq, st.missing),
		Details:  marshal(d),
	}
}

// EntryReader reads the log's entries; *ledger.Log implements it.
type EntryReader interface {
	Size() int64
	// ReadEntries returns the leaves of entries [start, end).
	ReadEntries(ctx context.Context, start, end int64) ([][]byte, error)
	// Body returns the entry a leaf stands for (a large entry's body).
	Body(ctx context.Context, leaf []byte) ([]byte, error)
}

// recall reads the newest n entries of log and remembers the last
// sequenceId of each sender's syslog messages.
func (s *sequences) recall(ctx context.Context, log EntryReader, n int64) error {
	size := log.Size()
	via := []byte(`"via":"` + Via + `"`)
	const chunk = 256
	for lo := max(0, size-n); lo < size; lo += chunk {
		leaves, err := log.ReadEntries(ctx, lo, min(lo+chunk, size))
		if err != nil {
			return fmt.Errorf("couldn't read entries to recall syslog sequence numbers: %w", err)
		}
		for _, leaf := range leaves {
			if body, err := log.Body(ctx, leaf); err == nil {
				leaf = body
			}
			if !bytes.Contains(leaf, via) {
				continue // cheaper than decoding every leaf
			}
			env, err := event.DecodeLeaf(leaf)
			if err != nil || env.Via != Via {
				continue
			}
			var o struct{ Raw *string }
			if json.Unmarshal(env.Event.Original, &o) != nil || o.Raw == nil {
				continue
			}
			m := Parse([]byte(*o.Raw), env.Received)
			if seq, ok := sequenceID(&m); ok {
				s.mu.Lock()
				if s.last == nil {
					s.last = make(map[string]int64)
				}
				s.last[env.Source] = seq
				s.mu.Unlock()
			}
		}
	}
	return nil
}
