package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// SelfSource is the Envelope.Source of the events the server writes about
// its own use: reads of events, its start and stop. The ':' cannot occur in
// a client's name, so no producer can write under it.
const SelfSource = "trail:server"

// selfVia is the Envelope.Via of self-audit events.
const selfVia = "trail"

// Audit appends an event about the server's own use, done by actor (the
// server itself when actor is the zero Identity), and returns once it is
// durable. Reads of the log call it before they answer, so that no read
// goes unrecorded (PCI DSS 10.2.1.3 and 10.2.1.6).
func (s *Server) Audit(ctx context.Context, actor tlsconf.Identity, action string, res event.Resource, details map[string]any) (int64, error) {
	ev := event.Event{
		Time:     s.cfg.Now().UTC(),
		Action:   action,
		Resource: res,
		Outcome:  event.Success,
		Actor:    event.Actor{ID: actor.Name, Type: "client"},
	}
	if actor.Name == "" {
		ev.Actor = event.Actor{ID: SelfSource, Type: "service"}
	} else {
		if details == nil {
			details = map[string]any{}
		}
		details["role"] = string(actor.Role)
	}
	if len(details) > 0 {
		b, err := json.Marshal(details)
		if err != nil {
			return 0, err
		}
		ev.Details = b
	}
	leaf, err := event.Encode(event.Envelope{Received: ev.Time, Source: SelfSource, Via: selfVia, Event: ev})
	if err != nil {
		return 0, fmt.Errorf("self-audit event: %w", err)
	}
	index, err := s.cfg.Log.Append(context.WithoutCancel(ctx), leaf)
	if err != nil {
		return 0, fmt.Errorf("couldn't record %s in the log: %w", action, err)
	}
	s.metrics.events.Inc()
	return index, nil
}

// auditRead records that actor read entry index.
func (s *Server) auditRead(ctx context.Context, actor tlsconf.Identity, index int64) error {
	_, err := s.Audit(ctx, actor, "trail.event.read", event.Resource{Type: "trail.entry", ID: strconv.FormatInt(index, 10)}, nil)
	return err
}
