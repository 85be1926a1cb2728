package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/fleettest"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/store"
)

// dumpRedis returns every key and value of a Redis, one line each.
func dumpRedis(t *testing.T, c redis.UniversalClient) (string, int) {
	t.Helper()
	var b strings.Builder
	n, err := redisconn.EachKey(context.Background(), c, func(k string, vals []string) {
		b.WriteString(k + "\n" + strings.Join(vals, "\n") + "\n")
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), n
}

// TestNoSecretLeavesInPlaintext runs a whole batch — refreshes, a revoked
// token, Kommo 503s until failure, invalid settings — with known secrets,
// then searches every log line, every CLI output, every result and error,
// and every Redis key for them.
func TestNoSecretLeavesInPlaintext(t *testing.T) {
	t.Parallel()
	const n = 40
	_, f := ownRedis(t, sandbox.Config{RatePerSecond: -1})
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := base64.StdEncoding.EncodeToString(raw)
	f.Env = append(f.Env, "WIDGETQ_SECRET_KEY="+key, "WIDGETQ_LOG_LEVEL=debug")
	dir := t.TempDir()

	// Accounts, imported through the CLI; 1-10 need a refresh first, 38's
	// tokens are revoked.
	var accts bytes.Buffer
	for id := 1; id <= n; id++ {
		if err := f.SB.AddAccount(sandbox.AccountSpec{ID: id, Subdomain: fleettest.Sub(id)}); err != nil {
			t.Fatal(err)
		}
		tok, _ := f.SB.IssueTokens(fleettest.Sub(id), 0)
		exp := tok.ExpiresAt
		if id <= 10 || id == 38 {
			f.SB.ExpireAccessTokens(fleettest.Sub(id))
			exp = time.Now().Add(-time.Minute)
		}
		line, _ := json.Marshal(map[string]any{"account_id": id, "base_url": sandbox.BaseURL(f.Srv.URL, fleettest.Sub(id)),
			"access_token": tok.AccessToken, "refresh_token": tok.RefreshToken, "expires_at": exp})
		accts.Write(append(line, '\n'))
	}
	f.SB.RevokeTokens(fleettest.Sub(38))
	if err := f.SB.SetFaults(fleettest.Sub(36), sandbox.Faults{ErrorRate: 1, ErrorStatuses: []int{503}, Routes: []string{"POST /api/v4/widgets/{code}"}}); err != nil {
		t.Fatal(err)
	}
	acctFile := filepath.Join(dir, "accounts.jsonl")
	if err := os.WriteFile(acctFile, accts.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var outputs strings.Builder
	cli := func(want int, args ...string) string {
		t.Helper()
		p := fleettest.Run(t, enqueueBin, f.WorkerEnv(), args...)
		exited, err := p.Exited(time.Minute)
		code := 0
		if ee, ok := err.(interface{ ExitCode() int }); ok {
			code = ee.ExitCode()
		}
		if !exited || code != want {
			t.Fatalf("enqueue %v: exited %v, code %d (want %d):\n%s", args, exited, code, want, p.Out.String())
		}
		outputs.WriteString(p.Out.String())
		return p.Out.String()
	}
	cli(0, "accounts", "import", acctFile)

	// Installs with secrets in their settings: users_lp passwords and pass
	// values; 37's settings lack a required field.
	var lines bytes.Buffer
	for id := 1; id <= n; id++ {
		var settings string
		switch {
		case id == 37:
			settings = fmt.Sprintf(`{"login":"x","password":"ASTPW-%d-k3"}`, id)
		case id <= 20:
			settings = fmt.Sprintf(`{"operators":{"1":{"login":"op","password":"LPPASS-%d-x9"}},"api_key":"APIKEY-%d-q7"}`, id, id)
		default:
			settings = fmt.Sprintf(`{"login":"x","password":"ASTPW-%d-k3","phones":{"1":"100"}}`, id)
		}
		code := sandbox.WidgetAsterisk
		if id <= 20 {
			code = sandbox.WidgetTelephonyLP
		}
		fmt.Fprintf(&lines, `{"account_id":%d,"widget_code":"%s","settings":%s}`+"\n", id, code, settings)
	}
	bulkFile := filepath.Join(dir, "installs.jsonl")
	if err := os.WriteFile(bulkFile, lines.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	w1, w2 := f.StartWorker(t, workerBin), f.StartWorker(t, workerBin)
	cli(0, "bulk", bulkFile, "--no-progress")
	counts := f.WaitAllFinal(t, n, 2*time.Minute)
	if counts[store.StatusInstalled] != n-3 || counts[store.StatusFailed] != 3 {
		t.Fatalf("by status %v, want %d installed and 3 failed (36: 503s, 37: invalid, 38: revoked)", counts, n-3)
	}
	// Kommo did get the secrets: the search below looks for real values.
	if got, _ := f.SB.Installed(fleettest.Sub(5), sandbox.WidgetTelephonyLP); !strings.Contains(string(got), "LPPASS-5-x9") || !strings.Contains(string(got), "APIKEY-5-q7") {
		t.Fatalf("Kommo got %s", got)
	}
	if c := f.SB.Counters().Total; c.Refreshes < 10 {
		t.Fatalf("%d refreshes, want the 10 expired accounts refreshed", c.Refreshes)
	}

	cli(0, "results", "--format", "jsonl")
	cli(0, "results", "--status", "failed")
	cli(0, "status")
	cli(0, "accounts", "list", "--format", "jsonl")
	cli(0, "replay", "--class", "server", "--dry-run")
	cli(0, "secrets", "reseal")
	page, err := f.St.Results(context.Background(), store.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	results, _ := json.Marshal(page.Results)
	dump, keys := dumpRedis(t, f.Client)
	if keys < n || !strings.Contains(dump, "wqs1.") {
		t.Fatalf("the dump looks empty (%d keys)", keys)
	}

	secret := regexp.MustCompile(`LPPASS-|APIKEY-|ASTPW-|[ar]t_[0-9a-f]{48}|` + regexp.QuoteMeta(sandbox.DefaultClientSecret) + `|` + regexp.QuoteMeta(key))
	for name, text := range map[string]string{
		"worker 1 log": w1.Out.String(), "worker 2 log": w2.Out.String(), "enqueue outputs": outputs.String(),
		"results and errors": string(results), "Redis": dump,
	} {
		if m := secret.FindString(text); m != "" {
			i := strings.Index(text, m)
			t.Errorf("%s holds a secret (%.12s…) near: %q", name, m, text[max(0, i-80):i])
		}
	}
}
