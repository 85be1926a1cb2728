package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/fleettest"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/store"
)

// The issue's bar: one deployment, two integrations, 15 accounts whose
// tokens of both have expired. Every install is installed, each account's
// tokens refreshed once per integration with that integration's own
// client (never the other's), results name the integration, and neither
// the registry's listing nor any process's output shows a secret.
func TestTwoIntegrationsFifteenAccountsExpiredTokens(t *testing.T) {
	t.Parallel()
	const n = 15
	clients := []sandbox.Client{{ID: "vendor-a", Secret: "SECRET-A-4f9c2e"}, {ID: "vendor-b", Secret: "SECRET-B-77d1aa"}}
	widgets := map[string]string{"vendor-a": "filler_0001", "vendor-b": "filler_0002"}
	f := fleettest.New(t, sandbox.Config{Clients: clients, Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(2, 500)...)}, "", nil)
	dir := t.TempDir()
	env := f.WorkerEnv()
	var outputs strings.Builder
	cli := func(stdin string, args ...string) string {
		t.Helper()
		p := fleettest.RunStdin(t, enqueueBin, env, strings.NewReader(stdin), args...)
		if exited, err := p.Exited(time.Minute); !exited || err != nil {
			t.Fatalf("enqueue %v: exited %v, %v:\n%s", args, exited, err, p.Out.String())
		}
		outputs.WriteString(p.Out.String())
		return p.Out.String()
	}
	for _, c := range clients {
		cli(c.Secret+"\n", "integrations", "add", "--name", c.ID, "--client-id", c.ID, "--redirect-uri", "https://vendor.example/kommo/"+c.ID,
			"--widgets", widgets[c.ID], "--client-secret", "-")
	}

	// The accounts file as `kommo-sandbox -clients` writes it: one line per
	// (account, integration), every access token expired.
	var accts bytes.Buffer
	for id := 1; id <= n; id++ {
		if err := f.SB.AddAccount(sandbox.AccountSpec{ID: id, Subdomain: fleettest.Sub(id)}); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			tok, err := f.SB.IssueTokensFor(c.ID, fleettest.Sub(id), 0)
			if err != nil {
				t.Fatal(err)
			}
			line, _ := json.Marshal(map[string]any{"account_id": id, "integration": c.ID, "base_url": sandbox.BaseURL(f.Srv.URL, fleettest.Sub(id)),
				"access_token": tok.AccessToken, "refresh_token": tok.RefreshToken, "expires_at": time.Now().Add(-time.Minute)})
			accts.Write(append(line, '\n'))
		}
		f.SB.ExpireAccessTokens(fleettest.Sub(id))
	}
	acctFile := filepath.Join(dir, "accounts.jsonl")
	if err := os.WriteFile(acctFile, accts.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := cli("", "accounts", "import", acctFile); !strings.Contains(out, fmt.Sprintf("imported %d accounts", 2*n)) {
		t.Fatalf("import: %s", out)
	}

	// The installs name no integration: each widget's owner runs it.
	var lines bytes.Buffer
	for id := 1; id <= n; id++ {
		for _, code := range widgets {
			fmt.Fprintf(&lines, `{"account_id":%d,"widget_code":%q,"settings":{"note":"n"}}`+"\n", id, code)
		}
	}
	bulkFile := filepath.Join(dir, "installs.jsonl")
	if err := os.WriteFile(bulkFile, lines.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	w1 := f.StartWorker(t, workerBin)
	w2 := f.StartWorker(t, workerBin)
	cli("", "bulk", bulkFile)
	counts := f.WaitAllFinal(t, 2*n, 2*time.Minute)
	if counts[store.StatusInstalled] != 2*n {
		t.Fatalf("by status %v", counts)
	}

	c := f.SB.Counters()
	if c.Total.WrongClient != 0 || c.Total.RevokedReuses != 0 || c.Total.RateLimited != 0 {
		t.Fatalf("wrong-client refreshes %d, revoked reuses %d, 429s %d; want none", c.Total.WrongClient, c.Total.RevokedReuses, c.Total.RateLimited)
	}
	for _, cl := range clients {
		if got := c.Clients[cl.ID].Refreshes; got != n {
			t.Errorf("client %s refreshed %d times, want once per account (%d)", cl.ID, got, n)
		}
	}
	for id := 1; id <= n; id++ {
		a := c.Accounts[fmt.Sprint(id)]
		if a.Refreshes != 2 {
			t.Errorf("account %d: %d refreshes, want 2 (one per integration)", id, a.Refreshes)
		}
		for _, code := range widgets {
			if a.Installed[code] != 1 {
				t.Errorf("account %d: %s installed %d times", id, code, a.Installed[code])
			}
		}
	}
	// Each result names the integration that owns its widget.
	for _, l := range strings.Split(strings.TrimSpace(cli("", "results", "--format", "jsonl")), "\n") {
		var r store.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("results line %q: %v", l, err)
		}
		if widgets[r.Integration] != r.WidgetCode || r.Status != store.StatusInstalled {
			t.Fatalf("result %+v: integration %q does not own %s", r, r.Integration, r.WidgetCode)
		}
	}
	if out := cli("", "results", "--integration", "vendor-b", "--format", "csv"); strings.Count(out, "\n") != n+1 || strings.Contains(out, "vendor-a") {
		t.Fatalf("vendor-b's results:\n%s", out)
	}
	list := cli("", "integrations", "list", "--format", "jsonl")
	if !strings.Contains(list, `"vendor-a"`) || !strings.Contains(list, "filler_0002") {
		t.Fatalf("integrations list:\n%s", list)
	}
	outputs.WriteString(w1.Out.String())
	outputs.WriteString(w2.Out.String())
	for _, cl := range clients {
		if strings.Contains(outputs.String(), cl.Secret) {
			t.Fatalf("client %s's secret appears in a process's output", cl.ID)
		}
	}
}

// An account arrives through Kommo's install redirect to `enqueue serve`,
// gets its install-on-connect widget installed by a worker, then
// disconnects: Kommo's signed revoke hook makes its next task fail
// token_revoked without a request. Real processes, real HTTP.
func TestAnAccountConnectsThroughTheRedirectAndDisconnects(t *testing.T) {
	t.Parallel()
	const redirect = "https://vendor.example/kommo/cb"
	clients := []sandbox.Client{{ID: "vendor-a", Secret: "SECRET-A-c0ffee", RedirectURI: redirect}}
	f := fleettest.New(t, sandbox.Config{Clients: clients, Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(2, 500)...)}, "", nil)
	if err := f.SB.AddAccount(sandbox.AccountSpec{ID: 5, Subdomain: fleettest.Sub(5)}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	onConnect := filepath.Join(dir, "on-connect.json")
	if err := os.WriteFile(onConnect, []byte(`{"filler_0001":{"note":"welcome"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(f.WorkerEnv(), "WIDGETQ_API_TOKEN=tok-test")
	run := func(stdin string, args ...string) string {
		t.Helper()
		p := fleettest.RunStdin(t, enqueueBin, env, strings.NewReader(stdin), args...)
		if exited, err := p.Exited(time.Minute); !exited || err != nil {
			t.Fatalf("enqueue %v: exited %v, %v:\n%s", args, exited, err, p.Out.String())
		}
		return p.Out.String()
	}
	run(clients[0].Secret+"\n", "integrations", "add", "--name", "vendor-a", "--client-id", "vendor-a", "--redirect-uri", redirect,
		"--widgets", "filler_0001,filler_0002", "--state", "st-77", "--install-on-connect", onConnect, "--client-secret", "-")
	addr := fmt.Sprintf("127.0.0.1:%d", fleettest.FreePort(t))
	serve := fleettest.Run(t, enqueueBin, env, "serve", "--addr", addr)
	serve.WaitOutput(t, "serving the producer API", 30*time.Second)
	w := f.StartWorker(t, workerBin)
	ctx := context.Background()
	cb := "http://" + addr + "/oauth/callback"

	// A forged state is refused and queues nothing.
	if res, err := f.SB.Connect(ctx, "vendor-a", fleettest.Sub(5), "forged", cb, f.Srv.URL); err != nil || res.Status != 403 {
		t.Fatalf("forged state: %+v %v", res, err)
	}
	res, err := f.SB.Connect(ctx, "vendor-a", fleettest.Sub(5), "st-77", cb, f.Srv.URL)
	if err != nil || res.Status != 202 {
		t.Fatalf("install redirect: %+v %v", res, err)
	}
	f.WaitCount(t, store.StatusInstalled, 1, time.Minute)
	st := f.St
	r, err := st.Result(ctx, 5, "filler_0001")
	if err != nil || r.Integration != "vendor-a" {
		t.Fatalf("install on connect: %+v %v", r, err)
	}
	if a, err := st.GetAccount(ctx, 5, "vendor-a"); err != nil || a.BaseURL != sandbox.BaseURL(f.Srv.URL, fleettest.Sub(5)) {
		t.Fatalf("connected account: %v %v", a, err)
	}

	// The user disconnects the integration: Kommo calls the revoke hook.
	if code, err := f.SB.Revoke(ctx, "vendor-a", fleettest.Sub(5), "http://"+addr+"/oauth/revoked"); err != nil || code != 204 {
		t.Fatalf("revoke hook: %d %v", code, err)
	}
	before := f.SB.Counters().Total.Requests
	run("", "install", "--account", "5", "--widget", "filler_0002", "--settings", `{"note":"n"}`)
	f.WaitCount(t, store.StatusFailed, 1, time.Minute)
	r, _ = st.Result(ctx, 5, "filler_0002")
	if r.LastError == nil || r.LastError.Class != "token_revoked" || r.Integration != "vendor-a" {
		t.Fatalf("after the revoke hook: %+v", r)
	}
	if n := f.SB.Counters().Total.Requests - before; n != 0 {
		t.Fatalf("%d requests sent after the revoke hook", n)
	}
	for _, out := range []string{serve.Out.String(), w.Out.String()} {
		if strings.Contains(out, res.Code) || strings.Contains(out, clients[0].Secret) {
			t.Fatal("a code or the client secret reached a log")
		}
	}
}
