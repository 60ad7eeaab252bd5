package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/trailaudit/trail/client"
)

// The files a producer needs, as "trail serve" and "trail cert issue" make
// them, and the verifier key as "trail key" prints it.
const (
	serverURL   = "https://127.0.0.1:8443"
	caFile      = "trail-data/pki/ca.crt"
	certFile    = "trail-data/pki/clients/ci-pipeline.crt"
	keyFile     = "trail-data/pki/clients/ci-pipeline.key"
	verifierKey = "example.com/trail/0a1b2c3d+5b0c6f2e+AeWv7TCgJ3a1nE4lWSmU8VnR6D0g2x4QyVt1Ck7q9pXc"
)

// A producer appends an event and reads it back, verified.
func Example() {
	ctx := context.Background()
	c, err := client.New(client.Config{
		URL:         serverURL,
		CAFile:      caFile,
		CertFile:    certFile,
		KeyFile:     keyFile,
		VerifierKey: verifierKey,
	})
	if err != nil {
		log.Fatal(err)
	}
	appended, err := c.Append(ctx, json.RawMessage(`{
		"time": "2026-11-29T08:00:00Z",
		"actor": {"id": "alice"},
		"action": "login",
		"outcome": "success"
	}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("appended at index %d\n", appended[0].Index)

	// Get checks the checkpoint's signature and the inclusion proof.
	e, err := c.Get(ctx, appended[0].Index)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("entry %d is in %v:\n%s\n", e.Index, e.Checkpoint, e.Leaf)
}

// A server's answers carry the HTTP status and its message.
func ExampleError() {
	c, err := client.New(client.Config{URL: serverURL, CAFile: caFile, Token: os.Getenv("TRAIL_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Append(context.Background(), json.RawMessage(`{"action":"login"}`))
	if serr, ok := errors.AsType[*client.Error](err); ok && serr.StatusCode == 400 {
		fmt.Println("the event was refused:", serr.Message) // such as "actor: required"
	} else if err != nil {
		log.Fatal(err)
	}
}

// AppendWithProof returns receipts to keep: C2SP tlog-proofs that anyone
// with the verifier key can check offline.
func ExampleClient_AppendWithProof() {
	c, err := client.New(client.Config{URL: serverURL, CAFile: caFile, CertFile: certFile, KeyFile: keyFile, VerifierKey: verifierKey})
	if err != nil {
		log.Fatal(err)
	}
	appended, err := c.AppendWithProof(context.Background(),
		json.RawMessage(`{"time":"2026-11-29T08:00:00Z","actor":{"id":"deploy-bot"},"action":"deploy","resource":{"type":"service","id":"billing"}}`))
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range appended {
		if err := os.WriteFile(fmt.Sprintf("%d.proof", a.Index), a.Receipt, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// UpdateTrusted is what "trail verify -server" does: it checks that the
// log only ever grew since the last time, and raises the alarm otherwise.
func ExampleClient_UpdateTrusted() {
	c, err := client.New(client.Config{URL: serverURL, CAFile: caFile, CertFile: certFile, KeyFile: keyFile, VerifierKey: verifierKey})
	if err != nil {
		log.Fatal(err)
	}
	state, err := client.NewTrustedState("", verifierKey) // in the user's config directory
	if err != nil {
		log.Fatal(err)
	}
	u, err := c.UpdateTrusted(context.Background(), state)
	if serr, ok := errors.AsType[*client.SecurityError](err); ok {
		// Two checkpoints signed by the log's key that no append-only log
		// can have signed: keep them, and tell the log's operator.
		fmt.Fprintf(os.Stderr, "%v\n\n%s", serr, serr.Evidence())
		os.Exit(1)
	}
	if err != nil {
		log.Fatal(err)
	}
	if u.Previous == nil {
		fmt.Printf("trusting %v on first use\n", u.Current)
	} else {
		fmt.Printf("%v extends %v\n", u.Current, u.Previous)
	}
}
