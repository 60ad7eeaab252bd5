package event_test

import (
	"encoding/json"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/trailaudit/trail/event"
)

// Example_teleport maps a Teleport audit event, a foreign format, to an Event
// by hand, as an ingestion adapter would, keeping the record in Original.
// The sample is testdata/teleport_app.access.json, from Teleport's audit
// events reference.
func Example_teleport() {
	raw, err := os.ReadFile("testdata/teleport_app.access.json")
	if err != nil {
		log.Fatal(err)
	}
	var rec struct {
		Event      string    `json:"event"`
		Code       string    `json:"code"`
		Time       time.Time `json:"time"`
		UID        string    `json:"uid"`
		User       string    `json:"user"`
		Remote     string    `json:"addr.remote"`
		AppName    string    `json:"app_name"`
		AppURI     string    `json:"app_uri"`
		Cluster    string    `json:"cluster_name"`
		AppSession string    `json:"app_session_id"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		log.Fatal(err)
	}
	ip, _, err := net.SplitHostPort(rec.Remote)
	if err != nil {
		ip = rec.Remote
	}
	details, err := json.Marshal(map[string]string{
		"cluster": rec.Cluster, "code": rec.Code, "app_uri": rec.AppURI, "app_session_id": rec.AppSession,
	})
	if err != nil {
		log.Fatal(err)
	}
	ev := event.Event{
		ID:       rec.UID,
		Time:     rec.Time,
		Actor:    event.Actor{ID: rec.User, Type: "user", IP: ip},
		Action:   rec.Event,
		Resource: event.Resource{Type: "app", ID: rec.AppName},
		// Teleport codes ending in I are informational: the access happened.
		Outcome:  event.Success,
		Details:  details,
		Original: raw,
	}
	if err := ev.Validate(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Actor.ID, ev.Actor.IP, ev.Action, ev.Resource.ID, ev.Time.Format(time.RFC3339Nano))

	leaf, err := event.Encode(event.Envelope{
		Received: time.Date(2022, 8, 10, 19, 54, 43, 500000000, time.UTC),
		Source:   "CN=teleport-event-handler",
		Via:      "teleport",
		Key:      rec.UID,
		Event:    ev,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.120s...\n", leaf)
	// Output:
	// alice 203.0.113.10 app.access grafana 2022-08-10T19:54:43.444Z
	// {"received":"2022-08-10T19:54:43.5Z","source":"CN=teleport-event-handler","via":"teleport","key":"7c9e2b14-3a5d-4f6e-8b1...
}

func ExampleParse() {
	_, err := event.Parse([]byte(`{"time":"2026-01-02T03:04:05Z","actor":{"type":"user"},"action":"user.login"}`))
	fmt.Println(err)
	// Output:
	// actor.id: required
}
