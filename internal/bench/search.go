package bench

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"
)

// The search events (trail bench -events search) are shaped for the search
// figures of docs/search.md: SearchActors actors, received evenly over
// SearchDays(n) days from SearchStart, so that one actor has about 100
// events a day, and 4 or 5 words in each that no other event has (a
// request id, a trace id, resource ids), the rare words of a free-text
// search.
const SearchActors = 10_000

// SearchStart is the received time of search event 0.
var SearchStart = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// SearchDays is the number of days that n search events span: n/1,000,000,
// at least one.
func SearchDays(n int64) int { return max(1, int(n/1_000_000)) }

var (
	searchActions = []string{"user.login", "user.logout", "invoice.create", "invoice.update", "document.read", "document.share",
		"role.grant", "secret.read", "deployment.patch", "namespace.delete", "pod.exec", "apikey.create"}
	searchRTypes  = []string{"user", "invoice", "document", "role", "secret", "deployment", "namespace", "pod", "apikey"}
	searchSources = []string{"billing-api", "auth-gateway", "kube-apiserver", "rsyslog-relay-eu1", "ci-deployer"}
	searchVias    = []string{"json", "json", "k8s", "syslog", "otlp"}
	searchAgents  = []string{"Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0.0.0", "kubectl/v1.30.2 (linux/amd64) kubernetes/39683505", "Go-http-client/2.0", "python-requests/2.32.3"}
	searchOut     = []string{"success", "success", "success", "success", "success", "failure", "unknown"}
	searchReasons = []string{"denied by policy", "invalid credentials", "rate limited", "upstream timeout"}
	searchMethods = []string{"GET", "POST", "PATCH", "DELETE"}
)

// SearchEvent appends search event i of n spread over days days (a leaf
// envelope of about 500 bytes, deterministic in i, n and days) and returns
// its request id, a word no other event has.
func SearchEvent(b []byte, i, n int64, days int) ([]byte, string) {
	rng := rand.New(rand.NewPCG(uint64(i), 0x5eed))
	span := time.Duration(days) * 24 * time.Hour
	at := SearchStart.Add(time.Duration(float64(span) * float64(i) / float64(n)))
	happened := at.Add(-time.Duration(rng.IntN(5_000_000_000)))
	var raw [8]byte
	for j := range raw {
		raw[j] = byte(rng.Uint32())
	}
	reqID := hex.EncodeToString(raw[:])
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	rtype := pick(searchRTypes)
	out := pick(searchOut)
	b = append(b, `{"received":"`...)
	b = at.AppendFormat(b, time.RFC3339Nano)
	b = fmt.Appendf(b, `","source":"%s","via":"%s","event":{"time":"`, pick(searchSources), pick(searchVias))
	b = happened.AppendFormat(b, time.RFC3339Nano)
	b = fmt.Appendf(b, `","actor":{"id":"user-%05d","type":"user","ip":"10.%d.%d.%d","user_agent":"%s"},"action":"%s","resource":{"type":"%s","id":"%s-%06x"},"outcome":"%s"`,
		rng.IntN(SearchActors), rng.IntN(256), rng.IntN(256), rng.IntN(256), pick(searchAgents), pick(searchActions), rtype, rtype[:3], rng.IntN(1<<24), out)
	if out != "success" {
		b = fmt.Appendf(b, `,"reason":"%s"`, pick(searchReasons))
	}
	b = fmt.Appendf(b, `,"details":{"request_id":"%s","method":"%s","path":"/v1/%ss/%06x","status":%d,"bytes":%d,"trace":"%016x%016x"}}}`,
		reqID, pick(searchMethods), rtype, rng.IntN(1<<24), 200+rng.IntN(4)*100, rng.IntN(64000), rng.Uint64(), rng.Uint64())
	return b, reqID
}
