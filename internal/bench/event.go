package bench

import (
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"time"
)

// Events returns n synthetic audit events: leaf envelopes as the server
// writes them (received, source, via, key, event), each a JSON object of
// about 500 bytes. Every event differs from the others (times, identifiers,
// addresses, sizes), so that the bytes stored are as incompressible as real
// ones. The same seed gives the same events.
//
// The events share a few large arrays rather than one allocation each, so
// that holding a million of them costs the garbage collector nothing.
func Events(n int, seed uint64) [][]byte {
	g := generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	out := make([][]byte, n)
	var chunk, scratch []byte
	for i := range out {
		scratch = g.event(scratch[:0], i)
		if cap(chunk)-len(chunk) < len(scratch) {
			chunk = make([]byte, 0, max(chunkSize, len(scratch)))
		}
		start := len(chunk)
		chunk = append(chunk, scratch...)
		out[i] = chunk[start:len(chunk):len(chunk)]
	}
	return out
}

const chunkSize = 4 << 20

// Word lists, chosen so that the events look like the traffic of a real
// SaaS back office: a mix of humans, services and the Kubernetes API.
var (
	sources = []string{
		"CN=billing-api,O=acme", "CN=auth-gateway,O=acme", "spiffe://acme.example/ns/prod/sa/orders",
		"CN=kube-apiserver,O=system:masters", "CN=rsyslog-relay-eu1,O=acme", "token:ci-deployer",
	}
	vias       = []string{"json", "json", "json", "k8s", "syslog", "otlp"}
	actorTypes = []string{"user", "user", "user", "service", "serviceaccount"}
	actions    = []string{
		"user.login", "user.logout", "user.password_change", "invoice.create", "invoice.update",
		"invoice.delete", "document.read", "document.share", "role.grant", "role.revoke",
		"secret.read", "deployment.patch", "configmap.update", "pod.exec", "apikey.create",
	}
	resourceTypes = []string{"user", "invoice", "document", "role", "secret", "deployment", "configmap", "pod", "apikey"}
	outcomes      = []string{"success", "success", "success", "success", "success", "success", "failure", "unknown"}
	reasons       = []string{"denied by policy", "invalid credentials", "rate limited", "upstream timeout"}
	agents        = []string{
		"Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0.0.0",
		"Mozilla/5.0 (Macintosh) Version/17.5 Safari/605.1.15",
		"kubectl/v1.30.2 (linux/amd64) kubernetes/39683505",
		"Go-http-client/2.0",
		"python-requests/2.32.3",
		"terraform-provider-acme/4.12.0",
	}
	methods = []string{"GET", "POST", "PATCH", "PUT", "DELETE"}
)

// base is the received time of the first event.
var base = time.Date(2025, 5, 1, 8, 0, 0, 0, time.UTC)

type generator struct {
	rng *rand.Rand
	at  time.Time
}

func (g *generator) pick(list []string) string { return list[g.rng.IntN(len(list))] }

// hexID appends n random hex digits.
func (g *generator) hexID(b []byte, n int) []byte {
	var raw [16]byte
	for i := 0; i < (n+1)/2; i += 8 {
		v := g.rng.Uint64()
		for j := 0; j < 8 && i+j < len(raw); j++ {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.AppendEncode(b, raw[:(n+1)/2])[:len(b)+n]
}

func (g *generator) event(b []byte, i int) []byte {
	if g.at.IsZero() {
		g.at = base
	}
	g.at = g.at.Add(time.Duration(g.rng.IntN(2_000_000))) // about 1,000 events/s
	happened := g.at.Add(-time.Duration(g.rng.IntN(50_000_000)))
	action := g.pick(actions)
	resType := g.pick(resourceTypes)
	outcome := g.pick(outcomes)

	b = append(b, `{"received":"`...)
	b = g.at.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","source":"`...)
	b = append(b, g.pick(sources)...)
	b = append(b, `","via":"`...)
	b = append(b, g.pick(vias)...)
	if g.rng.IntN(4) == 0 { // the idempotency key is optional
		b = append(b, `","key":"`...)
		b = g.hexID(b, 32)
	}
	b = append(b, `","event":{"actor":{"id":"`...)
	switch g.pick(actorTypes) {
	case "user":
		b = append(b, "u-"...)
		b = strconv.AppendInt(b, int64(g.rng.IntN(900_000)+100_000), 10)
		b = append(b, `","type":"user`...)
	case "service":
		b = append(b, "svc-"...)
		b = g.hexID(b, 8)
		b = append(b, `","type":"service`...)
	default:
		b = append(b, "system:serviceaccount:prod:deployer-"...)
		b = strconv.AppendInt(b, int64(g.rng.IntN(40)), 10)
		b = append(b, `","type":"serviceaccount`...)
	}
	b = append(b, `","ip":"10.`...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(g.rng.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(g.rng.IntN(254)+1), 10)
	b = append(b, `","user_agent":"`...)
	b = append(b, g.pick(agents)...)
	b = append(b, `"},"action":"`...)
	b = append(b, action...)
	b = append(b, `","resource":{"type":"`...)
	b = append(b, resType...)
	b = append(b, `","id":"`...)
	idStart := len(b)
	b = append(b, resType[:3]...)
	b = append(b, '-')
	b = g.hexID(b, 12)
	idEnd := len(b)
	b = append(b, `"},"time":"`...)
	b = happened.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","outcome":"`...)
	b = append(b, outcome...)
	if outcome != "success" {
		b = append(b, `","reason":"`...)
		b = append(b, g.pick(reasons)...)
	}
	b = append(b, `","details":{"request_id":"req-`...)
	b = g.hexID(b, 12)
	b = append(b, `","method":"`...)
	b = append(b, g.pick(methods)...)
	b = append(b, `","path":"/v1/`...)
	b = append(b, resType...)
	b = append(b, "s/"...)
	b = append(b, b[idStart:idEnd]...)
	b = append(b, `","status":`...)
	if outcome == "success" {
		b = strconv.AppendInt(b, int64(200+4*g.rng.IntN(2)), 10)
	} else {
		b = strconv.AppendInt(b, int64(400+g.rng.IntN(4)), 10)
	}
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(64_000)), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `}}}`...)
	return b
}
