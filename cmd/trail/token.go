package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/token"
)

const tokenHelp = `Usage:
  trail token create NAME -role writer|reader|auditor|admin [-data DIR]
  trail token list [-data DIR] [-json]
  trail token revoke NAME [-data DIR]

Bearer tokens authenticate producers that cannot present a client
certificate: they send "Authorization: Bearer <token>". create prints the
token once; only its SHA-256 is stored (DIR/pki/tokens.json). A running
server picks up new and revoked tokens within a second. Every create and
revoke is recorded in the log.
`

func init() { commands["token"] = runToken }

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenHelp)
		return usageError{"token: no subcommand given (create, list or revoke)"}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, tokenHelp)
		return nil
	case "create":
		return runTokenCreate(ctx, args[1:], stdout, stderr)
	case "list":
		return runTokenList(args[1:], stdout, stderr)
	case "revoke":
		return runTokenRevoke(ctx, args[1:], stdout, stderr)
	}
	return usageError{fmt.Sprintf("token: unknown subcommand %q: want create, list or revoke", args[0])}
}

func runTokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("token create", stderr, tokenHelp+"\nFlags of create:\n")
	dir := flags.String("data", "trail-data", "the data `directory`")
	roleName := flags.String("role", "", "the `role`: writer, reader, auditor or admin (required)")
	name, err := parseNameAndFlags(flags, args)
	if err != nil {
		return err
	}
	if *roleName == "" {
		return usageError{"token create: -role is required: writer, reader, auditor or admin"}
	}
	role, err := tlsconf.ParseRole(*roleName)
	if err != nil {
		return usageError{"token create: " + err.Error()}
	}
	if err := tlsconf.CheckClientName(name); err != nil {
		return usageError{"token create: " + err.Error()}
	}
	if _, err := openPKI(*dir); err != nil { // the PKI directory, created on first use
		return err
	}
	secret, err := token.Create(filepath.Join(*dir, "pki", token.File), name, role, time.Now())
	if err != nil {
		return err
	}
	index, err := recordOp(ctx, *dir, "trail.token.create", event.Resource{Type: "trail.token", ID: name}, map[string]any{"role": string(role)})
	if err != nil {
		return fmt.Errorf("token created but not recorded in the log: %w", err)
	}
	fmt.Fprintf(stdout, "created %s token for %s (recorded as entry %d); it is shown only now:\n%s\n\nUse it as:\n  curl --cacert %s -H 'Authorization: Bearer %s' ...\n",
		role, name, index, secret, shellQuote(filepath.Join(*dir, "pki", tlsconf.CACertFile)), secret)
	return nil
}

func runTokenList(args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("token list", stderr, tokenHelp+"\nFlags of list:\n")
	dir := flags.String("data", "trail-data", "the data `directory`")
	asJSON := flags.Bool("json", false, "print JSON")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	ts, err := token.Read(filepath.Join(*dir, "pki", token.File))
	if err != nil {
		return err
	}
	if *asJSON {
		type item struct {
			Name    string       `json:"name"`
			Role    tlsconf.Role `json:"role"`
			Created time.Time    `json:"created"`
			Revoked bool         `json:"revoked"`
		}
		items := make([]item, len(ts))
		for i, t := range ts {
			items[i] = item{t.Name, t.Role, t.Created, !t.Revoked.IsZero()}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(items)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tREVOKED")
	for _, t := range ts {
		revoked := "no"
		if !t.Revoked.IsZero() {
			revoked = t.Revoked.Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Role, t.Created.Format(time.DateOnly), revoked)
	}
	return tw.Flush()
}

func runTokenRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("token revoke", stderr, tokenHelp+"\nFlags of revoke:\n")
	dir := flags.String("data", "trail-data", "the data `directory`")
	name, err := parseNameAndFlags(flags, args)
	if err != nil {
		return err
	}
	n, err := token.Revoke(filepath.Join(*dir, "pki", token.File), name, time.Now())
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintf(stdout, "%s has no valid token; nothing to revoke\n", name)
		return nil
	}
	index, err := recordOp(ctx, *dir, "trail.token.revoke", event.Resource{Type: "trail.token", ID: name}, nil)
	if err != nil {
		return fmt.Errorf("token revoked but not recorded in the log: %w", err)
	}
	fmt.Fprintf(stdout, "revoked the token of %s (recorded as entry %d); a running server refuses it within a second\n", name, index)
	return nil
}
