package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ledger"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// cliSource is the Envelope.Source of operations the CLI records in the
// log itself. The ':' cannot occur in a client's name.
const cliSource = "trail:cli"

// recordOp appends an event about an operation on the data directory (a
// certificate or token issued or revoked) to its log, so that every change
// of who may reach the log is itself in the log. With no server running,
// the CLI opens the log and appends; while a server holds the log, the
// event goes through its API with the admin certificate.
func recordOp(ctx context.Context, dataDir, action string, res event.Resource, details map[string]any) (int64, error) {
	ev := event.Event{
		Time:     time.Now().UTC(),
		Actor:    event.Actor{ID: osUser(), Type: "user"},
		Action:   action,
		Resource: res,
		Outcome:  event.Success,
	}
	if details != nil {
		b, err := json.Marshal(details)
		if err != nil {
			return 0, err
		}
		ev.Details = b
	}
	store, err := storagefs.Open(dataDir, nil)
	if errors.Is(err, storagefs.ErrLocked) {
		return recordViaServer(ctx, dataDir, ev)
	}
	if err != nil {
		return 0, err
	}
	keys, err := ledger.LoadOrCreateKeys(dataDir)
	if err != nil {
		store.Close()
		return 0, err
	}
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier})
	if err != nil {
		store.Close()
		return 0, err
	}
	leaf, err := event.Encode(event.Envelope{Received: ev.Time, Source: cliSource, Via: "trail", Event: ev})
	if err != nil {
		return 0, errors.Join(err, l.Close())
	}
	index, err := l.Append(ctx, leaf)
	return index, errors.Join(err, l.Close())
}

// osUser names the operating-system user running the command.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprintf("uid:%d", os.Getuid())
}

// recordViaServer appends ev through the running server of dataDir, as
// the admin client.
func recordViaServer(ctx context.Context, dataDir string, ev event.Event) (int64, error) {
	info, err := readServeInfo(dataDir)
	if err == nil && info == nil {
		err = fmt.Errorf("%s is missing", serveInfoFile)
	}
	if err != nil {
		return 0, fmt.Errorf("the log is in use but no server is listening for it (%v)", err)
	}
	pkiDir := filepath.Join(dataDir, "pki")
	c, err := client.New(client.Config{
		URL:      info.URL,
		CAFile:   filepath.Join(pkiDir, tlsconf.CACertFile),
		CertFile: filepath.Join(pkiDir, adminCertFile),
		KeyFile:  filepath.Join(pkiDir, adminKeyFile),
	})
	if err != nil {
		return 0, err
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return 0, err
	}
	got, err := c.Append(ctx, raw)
	if err != nil {
		return 0, fmt.Errorf("couldn't record the operation through the server at %s: %w", info.URL, err)
	}
	return got[0].Index, nil
}
