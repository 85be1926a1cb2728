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
	err := Run(context.Background(), Config{Accounts: 20, Concurrency: 20, LogPath: filepath.Join(t.TempDir(), "demo.log"), Within: 2 * time.Minute}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"widgetq demo: 22 accounts",
		"22/22 done",
		"forbidden        1 (20008)",
		"invalid          1 (20014)",
		"account_unknown  2 (99001,99002)",
		"none was installed twice",
		"no token or password in plaintext",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in:\n%s", want, s)
		}
	}
	if !regexp.MustCompile(`installed +18\n`).MatchString(s) {
		t.Errorf("not 18 installed:\n%s", s)
	}
}
