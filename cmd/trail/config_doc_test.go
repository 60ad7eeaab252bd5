package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigDocParses loads the example in docs/config.md, which lists
// every setting: a key documented but not in serveConfig, or misspelt,
// fails here.
func TestConfigDocParses(t *testing.T) {
	b, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	if !ok {
		t.Fatal("no ```yaml block in docs/config.md")
	}
	block, _, _ := strings.Cut(rest, "```")
	path := filepath.Join(t.TempDir(), "trail.yaml")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadServeConfig(path); err != nil {
		// The example's placeholder values (a witness key, say) may not
		// validate; its keys must.
		if strings.Contains(err.Error(), "unknown key") || strings.Contains(err.Error(), "cannot unmarshal") {
			t.Fatalf("docs/config.md's example does not match serveConfig: %v", err)
		}
		t.Logf("the example's placeholder values: %v", err)
	}
}
