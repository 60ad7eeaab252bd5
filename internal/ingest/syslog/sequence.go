package syslog

import (
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
// between two connections show as a gap too. Memory only: the first
// message after trail starts is compared with nothing.
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
