package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/admin"
	"github.com/widgetq/widgetq/internal/fleettest"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/testenv"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// workerBin is the worker built once for the tests that run it as a
// real process.
var workerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "widgetq-worker-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if workerBin, err = fleettest.Build("github.com/widgetq/widgetq/cmd/worker", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestHelpNamesEverySettingAndItsVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if _, err := parseConfig([]string{"-help"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	for _, s := range settings {
		if !strings.Contains(out.String(), "-"+s.Name) || !strings.Contains(out.String(), "["+s.Env+"]") {
			t.Errorf("-help lacks -%s [%s]", s.Name, s.Env)
		}
	}
	for _, must := range []string{"REDIS_URL", "KOMMO_CLIENT_ID", "KOMMO_CLIENT_SECRET", "KOMMO_REDIRECT_URI", "WIDGETQ_CONCURRENCY", "WIDGETQ_RATE_PER_ACCOUNT", "WIDGETQ_RATE_GLOBAL"} {
		if !strings.Contains(out.String(), must) {
			t.Errorf("-help lacks %s", must)
		}
	}
}

func TestFlagsWinOverEnvironment(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]string{"-concurrency", "9", "-queues", "a:3,b"}, env(map[string]string{
		"WIDGETQ_CONCURRENCY": "4", "WIDGETQ_RATE_PER_ACCOUNT": "5.5", "WIDGETQ_LOG_FORMAT": "json", "WIDGETQ_QUEUES": "zzz",
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o := c.opts; o.Concurrency != 9 || o.RatePerAccount != 5.5 || c.logFormat != "json" || o.Queues["a"] != 3 || o.Queues["b"] != 1 || len(o.Queues) != 2 {
		t.Fatalf("config %+v", c)
	}
	c, _ = parseConfig(nil, env(nil), &bytes.Buffer{})
	if o := c.opts; o.Concurrency != 50 || o.RatePerAccount != 7 || o.RateGlobal != 0 || o.Queues[tasks.DefaultQueue] != 1 || o.ShutdownTimeout != 25*time.Second {
		t.Fatalf("defaults %+v", c)
	}
}

func TestInvalidConfigNamesTheSetting(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-concurrency", "0"}, nil, "-concurrency"},
		{nil, map[string]string{"WIDGETQ_CONCURRENCY": "lots"}, "WIDGETQ_CONCURRENCY"},
		{nil, map[string]string{"WIDGETQ_RATE_PER_ACCOUNT": "0"}, "WIDGETQ_RATE_PER_ACCOUNT"},
		{[]string{"-rate-global", "-1"}, nil, "-rate-global"},
		{nil, map[string]string{"WIDGETQ_SHUTDOWN_TIMEOUT": "soon"}, "WIDGETQ_SHUTDOWN_TIMEOUT"},
		{[]string{"-log-format", "xml"}, nil, "-log-format"},
		{[]string{"-log-level", "loud"}, nil, "-log-level"},
		{[]string{"-queues", "a:0"}, nil, "-queues"},
		{nil, map[string]string{"KOMMO_CLIENT_ID": "x"}, "KOMMO_CLIENT_SECRET"},
		{[]string{"-retry-base", "1m", "-retry-cap", "1s"}, nil, "retry-cap"},
		{[]string{"-prefix", "a:b"}, nil, "prefix"},
		{[]string{"-nope"}, nil, "nope"},
		{[]string{"stray"}, nil, "stray"},
	} {
		err := run(context.Background(), c.args, env(c.env), &bytes.Buffer{}, &bytes.Buffer{})
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: %v, want a usage error naming %s", c.args, c.env, err, c.want)
		}
	}
	// A bad REDIS_URL is a usage error too, and hides its password.
	err := run(context.Background(), nil, env(map[string]string{"REDIS_URL": "postgres://u:hunter2@h/0"}), &bytes.Buffer{}, &bytes.Buffer{})
	var ue *usageError
	if !errors.As(err, &ue) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad REDIS_URL: %v", err)
	}
}

func TestBadConfigExitsWith2(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(workerBin, "-concurrency", "-3")
	cmd.Env = append(os.Environ(), "REDIS_URL=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "-concurrency") {
		t.Fatalf("exit %v, output %s", err, out)
	}
}

const seed = `{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`

func newFleet(t *testing.T, cfg sandbox.Config) *fleettest.Fleet {
	return fleettest.New(t, cfg, "", nil)
}

func TestTwoWorkerProcessesInstall300AccountsThroughFaults(t *testing.T) {
	t.Parallel()
	f := newFleet(t, sandbox.Config{Latency: 20 * time.Millisecond, LatencyJitter: 15 * time.Millisecond})
	f.AddAccounts(t, 1000, 300)
	if err := f.SB.SetFaults("", sandbox.Faults{ErrorRate: 0.1, ErrorStatuses: []int{500, 502, 503, 504}, ResetRate: 0.03}); err != nil {
		t.Fatal(err)
	}
	p1, p2 := f.StartWorker(t, workerBin), f.StartWorker(t, workerBin)
	for id := int64(1000); id < 1300; id++ {
		f.Install(t, id, sandbox.WidgetAsterisk, seed)
	}
	counts := f.WaitAllFinal(t, 300, 2*time.Minute)
	if counts[store.StatusInstalled] != 300 {
		t.Fatalf("by status %v, want 300 installed", counts)
	}
	c := f.SB.Counters()
	for id := 1000; id < 1300; id++ {
		if n := c.Installs(id, sandbox.WidgetAsterisk); n != 1 {
			t.Fatalf("account %d installed %d times", id, n)
		}
	}
	if c.Total.RateLimited != 0 || c.Total.InjectedErrors == 0 || c.Total.Resets == 0 {
		t.Fatalf("429s %d (want 0), injected errors %d and resets %d (want some)", c.Total.RateLimited, c.Total.InjectedErrors, c.Total.Resets)
	}
	// Both processes worked, and neither logged a secret.
	for _, p := range []*fleettest.Proc{p1, p2} {
		out := p.Out.String()
		if !strings.Contains(out, `"msg":"attempt"`) {
			t.Errorf("worker %d ran no task", p.Cmd.Process.Pid)
		}
		if strings.Contains(out, "eXaMp1E") || strings.Contains(out, "at_") || strings.Contains(out, "rt_") {
			t.Errorf("worker %d logged a secret", p.Cmd.Process.Pid)
		}
	}
}

func TestOneRefreshAcrossThreeWorkerProcesses(t *testing.T) {
	t.Parallel()
	f := newFleet(t, sandbox.Config{RatePerSecond: 60, Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(50, 500)...)})
	f.AddAccounts(t, 1, 1)
	// The stored access token is expired: every task needs a refresh.
	f.SB.ExpireAccessTokens("a1")
	a, _ := f.St.GetAccount(context.Background(), 1, "")
	a.ExpiresAt = time.Now().Add(-time.Hour)
	if err := f.St.PutAccount(context.Background(), *a); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		f.StartWorker(t, workerBin, "-rate-per-account", "50")
	}
	for i := range 50 {
		f.Install(t, 1, fmt.Sprintf("filler_%04d", i+1), `{"note":"n"}`)
	}
	counts := f.WaitAllFinal(t, 50, time.Minute)
	c := f.SB.Counters().Accounts["1"]
	if counts[store.StatusInstalled] != 50 || c.Refreshes != 1 || c.RevokedReuses != 0 {
		t.Fatalf("by status %v; refreshes %d, revoked reuses %d; want 50 installed, 1 refresh, 0 reuses", counts, c.Refreshes, c.RevokedReuses)
	}
	page, _ := f.St.Results(context.Background(), store.Query{Status: store.StatusFailed})
	if page.Total != 0 {
		t.Fatalf("failures: %+v", page.Results)
	}
}

func TestSIGTERMThenRestartLosesAndDoublesNothing(t *testing.T) {
	t.Parallel()
	f := newFleet(t, sandbox.Config{Latency: 400 * time.Millisecond, RatePerSecond: -1})
	f.AddAccounts(t, 1, 150)
	p := f.StartWorker(t, workerBin, "-shutdown-timeout", "200ms")
	for id := int64(1); id <= 150; id++ {
		f.Install(t, id, sandbox.WidgetAsterisk, seed)
	}
	// Stop it in the middle of the run.
	f.WaitCount(t, store.StatusInstalled, 20, time.Minute)
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited, err := p.Exited(30 * time.Second)
	if !exited {
		t.Fatal("worker did not stop on SIGTERM")
	}
	if err != nil {
		t.Fatalf("worker exit after SIGTERM: %v\n%s", err, fleettest.Tail(p.Out.String(), 2000))
	}
	if !strings.Contains(p.Out.String(), "worker stopped") {
		t.Fatalf("no clean stop:\n%s", fleettest.Tail(p.Out.String(), 2000))
	}
	mid, _ := f.St.CountByStatus(context.Background())
	if mid[store.StatusInstalled] == 150 {
		t.Fatal("the run finished before the stop: nothing was tested")
	}
	f.StartWorker(t, workerBin)
	counts := f.WaitAllFinal(t, 150, 2*time.Minute)
	if counts[store.StatusInstalled]+counts[store.StatusAlreadyInstalled] != 150 {
		t.Fatalf("after restart: %v", counts)
	}
	c := f.SB.Counters()
	for id := 1; id <= 150; id++ {
		if n := c.Installs(id, sandbox.WidgetAsterisk); n != 1 {
			t.Fatalf("account %d installed %d times", id, n)
		}
	}
	t.Logf("stopped with %v; after restart %v", mid, counts)
}

func TestSecretKeyAtStart(t *testing.T) {
	t.Parallel()
	f := newFleet(t, sandbox.Config{})
	f.AddAccounts(t, 1, 1)
	// Without a key: a warning, and the worker runs.
	p := f.StartWorker(t, workerBin)
	if !strings.Contains(p.Out.String(), "no WIDGETQ_SECRET_KEY") {
		t.Fatalf("no warning without a key:\n%s", p.Out.String())
	}
	_ = p.Cmd.Process.Kill()

	// Tokens sealed with key A; a worker given key B refuses to start,
	// naming the setting, not the key.
	keyA, keyB := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)), base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	ka, _ := seal.FromEnv(keyA, "")
	a, _ := f.St.GetAccount(context.Background(), 1, "")
	if err := store.New(f.Client, f.Prefix).WithKeys(ka).PutAccount(context.Background(), *a); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ env []string }{{[]string{"WIDGETQ_SECRET_KEY=" + keyB}}, {nil}} {
		w := fleettest.Run(t, workerBin, append(f.WorkerEnv(), c.env...))
		exited, err := w.Exited(30 * time.Second)
		var ee *exec.ExitError
		if !exited || !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(w.Out.String(), "WIDGETQ_SECRET_KEY") || strings.Contains(w.Out.String(), keyB) {
			t.Fatalf("env %v: exited %v (%v):\n%s", c.env, exited, err, w.Out.String())
		}
	}
	// With key B and A as the previous key, it starts, and quietly.
	w2 := fleettest.Run(t, workerBin, append(f.WorkerEnv(), "WIDGETQ_SECRET_KEY="+keyB, "WIDGETQ_SECRET_KEY_PREVIOUS="+keyA))
	w2.WaitOutput(t, "worker started", 30*time.Second)
	if strings.Contains(w2.Out.String(), "no WIDGETQ_SECRET_KEY") || !strings.Contains(w2.Out.String(), `"secrets_sealed":true`) {
		t.Fatalf("with keys:\n%s", w2.Out.String())
	}
}

// adminAddr is the address a worker process's admin server listens on.
func adminAddr(t *testing.T, p *fleettest.Proc) string {
	t.Helper()
	p.WaitOutput(t, `"msg":"admin server listening"`, 30*time.Second)
	m := regexp.MustCompile(`"msg":"admin server listening","addr":"([^"]+)"`).FindStringSubmatch(p.Out.String())
	if m == nil {
		t.Fatalf("no admin address in:\n%s", p.Out.String())
	}
	return m[1]
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminServerHealthReadinessAndMetrics(t *testing.T) {
	t.Parallel()
	f := newFleet(t, sandbox.Config{})
	f.AddAccounts(t, 1, 2)
	p := f.StartWorker(t, workerBin)
	base := "http://" + adminAddr(t, p)
	if code, body := get(t, base+"/healthz", ""); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := get(t, base+"/readyz", ""); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
	// Before any task: every counter's known series, at zero.
	_, first := get(t, base+"/metrics", "")
	for _, want := range []string{
		`widgetq_tasks_total{class="",outcome="installed",type="widget:install"} 0`,
		`widgetq_tasks_total{class="blocked",outcome="failed",type="widget:install"} 0`,
		`widgetq_tasks_total{class="server",outcome="retrying",type="widget:uninstall"} 0`,
		`widgetq_token_refreshes_total{result="error"} 0`,
		`widgetq_kommo_rate_limited_total 0`,
		`widgetq_limiter_deferrals_total 0`,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("no %s on the first scrape", want)
		}
	}
	f.Install(t, 1, sandbox.WidgetAsterisk, seed)
	f.Install(t, 2, sandbox.WidgetAsterisk, `{"login":"x","password":"eXaMp1E"}`) // invalid: no phones
	f.WaitAllFinal(t, 2, time.Minute)
	_, body := get(t, base+"/metrics", "")
	for _, want := range []string{
		`widgetq_tasks_total{class="",outcome="installed",type="widget:install"} 1`,
		`widgetq_tasks_total{class="invalid",outcome="failed",type="widget:install"} 1`,
		`widgetq_kommo_request_duration_seconds_count{route="POST /api/v4/widgets/{code}",status="200"}`,
		`widgetq_kommo_request_duration_seconds_count{route="GET /api/v4/widgets/{code}",status="200"}`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in /metrics", want)
		}
	}
	a, _ := f.St.GetAccount(context.Background(), 1, "")
	if strings.Contains(body, a.AccessToken) || strings.Contains(body, "eXaMp1E") || strings.Contains(body, "a1") {
		t.Fatal("/metrics holds an account's data")
	}
	// An IP block (blocks from three accounts at once): /readyz says all
	// Kommo traffic is paused; the gauge follows with the refresh.
	for _, a := range []int64{91, 92, 93} {
		if _, err := f.St.NoteBlock(context.Background(), a, time.Minute, 3, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := get(t, base+"/readyz", ""); code != 200 || !strings.Contains(body, "kommo: all traffic paused until") || !strings.Contains(body, "[91 92 93]") {
		t.Fatalf("readyz during a pause: %d %s", code, body)
	}
	// Queue state arrives from the background refresh (every 10 s).
	waitfor.Until(t, 30*time.Second, func() (bool, string) {
		_, body = get(t, base+"/metrics", "")
		return strings.Contains(body, `widgetq_queue_tasks{queue="`+f.Queue+`",state="completed"} 1`) && strings.Contains(body, "widgetq_blocked_accounts 0") &&
			regexp.MustCompile(`(?m)^widgetq_kommo_paused_seconds [1-9]`).MatchString(body), "no queue state in /metrics:\n" + body
	})

	// Beyond loopback: a token is required to start, then on every route
	// but /healthz.
	w := fleettest.Run(t, workerBin, append(f.WorkerEnv(), "WIDGETQ_ADMIN_ADDR=0.0.0.0:0"))
	if exited, err := w.Exited(30 * time.Second); !exited || err == nil || !strings.Contains(w.Out.String(), "WIDGETQ_ADMIN_TOKEN") {
		t.Fatalf("no token, wide address: exited %v %v\n%s", exited, err, w.Out.String())
	}
	w = fleettest.Run(t, workerBin, append(f.WorkerEnv(), "WIDGETQ_ADMIN_ADDR=0.0.0.0:0", "WIDGETQ_ADMIN_TOKEN=tok-123"))
	base = "http://" + strings.Replace(adminAddr(t, w), "[::]", "127.0.0.1", 1)
	base = strings.Replace(base, "0.0.0.0", "127.0.0.1", 1)
	if code, _ := get(t, base+"/healthz", ""); code != 200 {
		t.Fatalf("healthz without a token: %d", code)
	}
	for _, path := range []string{"/metrics", "/readyz"} {
		if code, _ := get(t, base+path, ""); code != 401 {
			t.Fatalf("%s without a token: %d", path, code)
		}
		if code, _ := get(t, base+path, "wrong"); code != 401 {
			t.Fatalf("%s with a wrong token: %d", path, code)
		}
	}
	w.WaitOutput(t, "worker started", 30*time.Second)
	if code, _ := get(t, base+"/readyz", "tok-123"); code != 200 {
		t.Fatalf("readyz with the token: %d", code)
	}
	// The exec probe the Kubernetes manifest uses.
	probeEnv := []string{"WIDGETQ_ADMIN_ADDR=" + strings.TrimPrefix(base, "http://"), "WIDGETQ_ADMIN_TOKEN=tok-123"}
	pr := fleettest.Run(t, workerBin, probeEnv, "probe", "readyz")
	if exited, err := pr.Exited(30 * time.Second); !exited || err != nil || !strings.Contains(pr.Out.String(), "ready") {
		t.Fatalf("probe readyz: %v %v %s", exited, err, pr.Out.String())
	}
	pr = fleettest.Run(t, workerBin, append(probeEnv, "WIDGETQ_ADMIN_TOKEN=wrong"), "probe", "readyz")
	if exited, err := pr.Exited(30 * time.Second); !exited || err == nil {
		t.Fatalf("probe with a wrong token passed: %s", pr.Out.String())
	}
}

// TestWorkersShareAHostWithoutAdminAddr starts two workers with no admin
// address set while the default (9090) is taken: each takes the next free
// port up to 9099, says which, and serves there. An address set explicitly
// that is taken refuses to start.
func TestWorkersShareAHostWithoutAdminAddr(t *testing.T) {
	t.Parallel()
	// Hold the default, if nothing else does, so the fallback must happen.
	if l, err := net.Listen("tcp", admin.DefaultAddr); err == nil {
		t.Cleanup(func() { l.Close() })
	}
	f := newFleet(t, sandbox.Config{})
	env := append(f.WorkerEnv(), "WIDGETQ_ADMIN_ADDR=") // unset: the default
	seen := map[string]bool{}
	for range 2 {
		w := fleettest.Run(t, workerBin, env)
		w.WaitOutput(t, "worker started", time.Minute)
		addr := adminAddr(t, w)
		_, port, _ := net.SplitHostPort(addr)
		if n, _ := strconv.Atoi(port); n < 9091 || n > 9099 || seen[addr] {
			t.Fatalf("admin server on %s, want a port of its own in 9091-9099 (taken: %v)", addr, seen)
		}
		seen[addr] = true
		if !strings.Contains(w.Out.String(), `"msg":"admin address taken`) {
			t.Errorf("the worker on %s did not say the default was taken:\n%s", addr, w.Out.String())
		}
		if code, _ := get(t, "http://"+addr+"/healthz", ""); code != 200 {
			t.Fatalf("healthz on %s: %d", addr, code)
		}
		if exited, err := w.Exited(0); exited {
			t.Fatalf("the worker on %s exited: %v", addr, err)
		}
	}
	// Set explicitly and taken: no fallback.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	w := fleettest.Run(t, workerBin, append(f.WorkerEnv(), "WIDGETQ_ADMIN_ADDR="+taken.Addr().String()))
	if exited, err := w.Exited(time.Minute); !exited || err == nil || !strings.Contains(w.Out.String(), taken.Addr().String()+" is taken") {
		t.Fatalf("an explicit address that is taken: exited %v (%v)\n%s", exited, err, w.Out.String())
	}
}

// chromium finds Debian's Chromium (.ci/run installs it); without it the
// test is skipped, or fails with CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	return testenv.Program(t, "chromium")
}

// dom renders url in headless Chromium, scripts run, and returns the DOM.
func dom(t *testing.T, bin, url string) string {
	t.Helper()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=10000", "--dump-dom", url)
	var out bytes.Buffer
	cmd.Stdout = &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("chromium %s: %v", url, err)
		}
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("chromium did not render %s", url)
	}
	return out.String()
}

func TestConsoleInAHeadlessBrowser(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	f := newFleet(t, sandbox.Config{})
	f.AddAccounts(t, 1, 3)
	p := f.StartWorker(t, workerBin)
	base := "http://" + adminAddr(t, p)
	f.Install(t, 1, sandbox.WidgetAsterisk, seed)
	f.Install(t, 3, sandbox.WidgetAsterisk, `{"login":"x","password":"eXaMp1E"}`) // no phones: fails
	// A task held in a queue no worker serves, to see a payload in the UI.
	held := f.Queue + "-held"
	hp := producer.New(f.Client, f.Prefix, asynq.Queue(held))
	defer hp.Close()
	if _, err := hp.Install(context.Background(), tasks.InstallWidgetPayload{AccountID: 2, WidgetCode: sandbox.WidgetTelephonyLP,
		Settings: json.RawMessage(`{"operators":{"1":{"login":"op","password":"eXaMp1E"}},"api_key":"eXaMp1E"}`)}); err != nil {
		t.Fatal(err)
	}
	f.WaitCount(t, store.StatusInstalled, 1, time.Minute)
	f.WaitCount(t, store.StatusFailed, 1, time.Minute)
	a1, _ := f.St.GetAccount(context.Background(), 1, "")
	secretFree := func(name, page string) {
		t.Helper()
		if strings.Contains(page, "eXaMp1E") || strings.Contains(page, a1.AccessToken) || strings.Contains(page, a1.RefreshToken) {
			t.Fatalf("%s shows a secret", name)
		}
	}

	ui := dom(t, bin, base+"/ui/")
	if !strings.Contains(ui, f.Queue) || !strings.Contains(ui, held) || !strings.Contains(ui, `FLAG_READ_ONLY="true"`) {
		t.Fatalf("/ui/ does not list the queues read-only:\n%s", fleettest.Tail(ui, 3000))
	}
	secretFree("/ui/", ui)
	pending := dom(t, bin, base+"/ui/queues/"+held+"?status=pending")
	if !strings.Contains(pending, sandbox.WidgetTelephonyLP) || !strings.Contains(pending, "•••") {
		t.Fatalf("the held task's payload is not shown (hidden values) in /ui:\n%s", fleettest.Tail(pending, 3000))
	}
	secretFree("the pending tasks page", pending)

	all := dom(t, bin, base+"/results")
	for _, want := range []string{">1<", ">3<", "installed", "failed", "enqueue replay --account 3 --widget amo_asterisk", "phones: required"} {
		if !strings.Contains(all, want) {
			t.Errorf("/results lacks %q", want)
		}
	}
	secretFree("/results", all)
	one := dom(t, bin, base+"/results?status=failed&class=invalid")
	if !strings.Contains(one, ">3<") || strings.Contains(one, `<td class="installed">`) {
		t.Fatalf("filtered /results:\n%s", fleettest.Tail(one, 3000))
	}
}

func TestGCPercentIsTheDefaultUnlessGOGCIsSet(t *testing.T) {
	for _, tc := range []struct {
		gogc string
		pct  int
		set  bool
	}{
		{"", defaultGOGC, true},
		{"100", 0, false},
		{"off", 0, false},
		{"50", 0, false},
	} {
		pct, set := gcPercent(func(k string) string {
			if k == "GOGC" {
				return tc.gogc
			}
			return ""
		})
		if pct != tc.pct || set != tc.set {
			t.Errorf("GOGC=%q: gcPercent = %d, %v; want %d, %v", tc.gogc, pct, set, tc.pct, tc.set)
		}
	}
}
