package demo

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTheDemoRunsTheWholeJob runs a small demo: every account ends with a
// result, the planned failures fail for their reasons, nothing is
// installed twice and no secret rests in Redis in plaintext (Run checks
// the last two itself and fails otherwise).
func TestTheDemoRunsTheWholeJob(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	// 250 accounts: three of them blocked by Kommo for earlier abuse, among
	// healthy ones — which must not look like an IP block.
	err := Run(context.Background(), Config{Accounts: 250, Concurrency: 100, LogPath: filepath.Join(t.TempDir(), "demo.log"), Within: 2 * time.Minute}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"widgetq demo: 252 accounts",
		"252/252 done",
		"blocked          3 (20043,20143,20243)",
		"forbidden        3 (20008,20108,20208)",
		"invalid          3 (20014,20114,20214)",
		"token_revoked    2 (20065,20165)",
		"account_unknown  2 (99001,99002)",
		"none was installed twice",
		"no token or password in plaintext",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in:\n%s", want, s)
		}
	}
	if !regexp.MustCompile(`installed +239\n`).MatchString(s) {
		t.Errorf("not 239 installed:\n%s", s)
	}
}
