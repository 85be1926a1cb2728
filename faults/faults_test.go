package faults

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/fleettest"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/tasks"
)

var workerBin, enqueueBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "widgetq-faults")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for pkg, out := range map[string]*string{"github.com/widgetq/widgetq/cmd/worker": &workerBin, "github.com/widgetq/widgetq/cmd/enqueue": &enqueueBin} {
		if *out, err = fleettest.Build(pkg, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const seed = `{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`

// ownRedis starts a redis-server of the test's own and a fleet on it.
func ownRedis(t *testing.T, cfg sandbox.Config) (*fleettest.Server, *fleettest.Fleet) {
	t.Helper()
	srv := fleettest.NewServer(t, fleettest.FreePort(t))
	srv.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: 20, MinRetryBackoff: 50 * time.Millisecond, MaxRetryBackoff: 500 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return srv, fleettest.New(t, cfg, srv.URL, c)
}

func TestKill9OneOfTwoWorkersLosesAndDoublesNothing(t *testing.T) {
	t.Parallel()
	const n = 500
	f := fleettest.New(t, sandbox.Config{Latency: 30 * time.Millisecond, LatencyJitter: 20 * time.Millisecond}, "", nil)
	f.AddAccounts(t, 1, n)
	victim := f.StartWorker(t, workerBin)
	f.StartWorker(t, workerBin)
	for id := int64(1); id <= n; id++ {
		f.Install(t, id, sandbox.WidgetAsterisk, seed)
	}
	f.WaitCount(t, store.StatusInstalled, 100, 2*time.Minute)
	if err := victim.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if exited, _ := victim.Exited(10 * time.Second); !exited {
		t.Fatal("the killed worker is still running")
	}
	mid, _ := f.St.CountByStatus(context.Background())
	if mid[store.StatusInstalled] == n {
		t.Fatal("the run ended before the kill: nothing was tested")
	}
	// asynq hands the dead worker's leased tasks back after the lease
	// (30 s) and its recoverer's next pass (up to a minute).
	counts := f.WaitAllFinal(t, n, 4*time.Minute)
	if counts[store.StatusInstalled]+counts[store.StatusAlreadyInstalled] != n {
		t.Fatalf("after the kill: %v", counts)
	}
	f.InstalledOnceEach(t, 1, n, sandbox.WidgetAsterisk)
	if a := f.Archived(t); a != 0 {
		t.Fatalf("%d tasks archived", a)
	}
	t.Logf("killed at %v; ended %v", mid, counts)
}

func TestRedisRestartMidRunLosesNoTask(t *testing.T) {
	t.Parallel()
	const n = 300
	srv, f := ownRedis(t, sandbox.Config{Latency: 20 * time.Millisecond, RatePerSecond: -1})
	f.AddAccounts(t, 1, n)
	workers := []*fleettest.Proc{f.StartWorker(t, workerBin), f.StartWorker(t, workerBin)}

	// enqueue bulk reads its lines from a pipe the test writes slowly, so
	// it is mid-run when Redis goes away.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.Close() })
	bulk := fleettest.RunStdin(t, enqueueBin, f.WorkerEnv(), pr, "bulk", "-", "--format", "jsonl", "--batch", "10", "--no-progress", "--redis-wait", "2m")
	pr.Close() // the child has its copy
	line := func(id int) string {
		return fmt.Sprintf(`{"account_id":%d,"widget_code":"%s","settings":%s}`+"\n", id, sandbox.WidgetAsterisk, seed)
	}
	for id := 1; id <= 100; id++ {
		fmt.Fprint(pw, line(id))
	}
	f.WaitCount(t, store.StatusInstalled, 50, time.Minute)

	srv.Stop()
	for id := 101; id <= 200; id++ { // written while Redis is down
		fmt.Fprint(pw, line(id))
	}
	bulk.WaitOutput(t, "retrying with backoff", 30*time.Second)
	srv.Start(t)
	for id := 201; id <= n; id++ {
		fmt.Fprint(pw, line(id))
	}
	pw.Close()
	if exited, err := bulk.Exited(2 * time.Minute); !exited || err != nil {
		t.Fatalf("bulk: exited %v, %v\n%s", exited, err, bulk.Out.String())
	}
	if !strings.Contains(bulk.Out.String(), "300 lines") || strings.Contains(bulk.Out.String(), "not enqueued") {
		t.Fatalf("bulk output:\n%s", bulk.Out.String())
	}
	counts := f.WaitAllFinal(t, n, 3*time.Minute)
	if counts[store.StatusInstalled]+counts[store.StatusAlreadyInstalled] != n {
		t.Fatalf("after the restart: %v", counts)
	}
	f.InstalledOnceEach(t, 1, n, sandbox.WidgetAsterisk)
	for _, w := range workers {
		if exited, _ := w.Exited(0); exited {
			t.Fatalf("a worker died with Redis:\n%s", fleettest.Tail(w.Out.String(), 2000))
		}
	}
}

func TestRedisUnreachableAtStart(t *testing.T) {
	t.Parallel()
	port := fleettest.FreePort(t)
	srv := fleettest.NewServer(t, port)
	env := []string{"REDIS_URL=" + srv.URL, "WIDGETQ_PREFIX=nobody", "WIDGETQ_LOG_FORMAT=json", "WIDGETQ_ADMIN_ADDR=127.0.0.1:0"}

	// enqueue fails fast, naming the address.
	enq := fleettest.Run(t, enqueueBin, env, "status")
	exited, err := enq.Exited(time.Minute)
	if !exited || err == nil || !strings.Contains(enq.Out.String(), srv.Addr) || !strings.Contains(enq.Out.String(), "does not answer") {
		t.Fatalf("enqueue without Redis: exited %v (%v):\n%s", exited, err, enq.Out.String())
	}

	// The worker says so, names the address, and keeps retrying with a
	// growing delay until Redis answers; then it works.
	w := fleettest.Run(t, workerBin, env)
	w.WaitOutput(t, `"retry_in":"2s"`, 30*time.Second)
	out := w.Out.String()
	if !strings.Contains(out, srv.Addr) || !strings.Contains(out, "does not answer") || !strings.Contains(out, `"retry_in":"1s"`) {
		t.Fatalf("worker output:\n%s", out)
	}
	if exited, _ := w.Exited(0); exited {
		t.Fatalf("the worker gave up:\n%s", out)
	}
	srv.Start(t)
	w.WaitOutput(t, "worker started", time.Minute)
}

func TestKommoFaultStormThenClears(t *testing.T) {
	t.Parallel()
	const n = 200
	f := fleettest.New(t, sandbox.Config{Latency: 10 * time.Millisecond, RatePerSecond: -1}, "", nil)
	f.AddAccounts(t, 1, n)
	// 40 % 503s, 15 % resets, 15 % hangs, until 300 of them were served.
	if err := f.SB.SetFaults("", sandbox.Faults{ErrorRate: 0.4, ErrorStatuses: []int{503}, ResetRate: 0.15, HangRate: 0.15, HangFor: sandbox.Duration(30 * time.Second), Limit: 300}); err != nil {
		t.Fatal(err)
	}
	f.Env = append(f.Env, "WIDGETQ_REQUEST_TIMEOUT=1s")
	f.StartWorker(t, workerBin)
	f.StartWorker(t, workerBin)
	for id := int64(1); id <= n; id++ {
		f.Install(t, id, sandbox.WidgetAsterisk, seed)
	}
	counts := f.WaitAllFinal(t, n, 3*time.Minute)
	c := f.SB.Counters().Total
	if c.InjectedErrors == 0 || c.Resets == 0 || c.Hangs == 0 {
		t.Fatalf("the storm did not happen: %+v", c)
	}
	if counts[store.StatusInstalled]+counts[store.StatusAlreadyInstalled] != n {
		page, _ := f.St.Results(context.Background(), store.Query{Status: store.StatusFailed, Limit: 5})
		for _, r := range page.Results {
			t.Logf("failed: %d %+v", r.AccountID, r.LastError)
		}
		t.Fatalf("by status %v", counts)
	}
	f.InstalledOnceEach(t, 1, n, sandbox.WidgetAsterisk)
	if a := f.Archived(t); a != 0 {
		t.Fatalf("%d tasks archived for transient errors", a)
	}
	t.Logf("storm: %d 503s, %d resets, %d hangs; %v", c.InjectedErrors, c.Resets, c.Hangs, counts)
}

func TestA429StormSlowsTheWorkersBeforeAnyBlock(t *testing.T) {
	t.Parallel()
	const accounts, per = 4, 25
	// Kommo allows 3 requests/s per account; the workers are set to 7.
	f := fleettest.New(t, sandbox.Config{RatePerSecond: 3, BlockAfter: 10, BlockWindow: time.Minute, BlockFor: time.Hour,
		Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(per, 500)...)}, "", nil)
	f.AddAccounts(t, 1, accounts)
	for range 3 {
		f.StartWorker(t, workerBin, "-rate-per-account", "7")
	}
	installFillers(t, f, accounts, per)
	counts := f.WaitAllFinal(t, accounts*per, 3*time.Minute)
	c := f.SB.Counters()
	if c.Total.RateLimited == 0 {
		t.Fatal("no 429 was answered: the storm did not happen")
	}
	if c.Total.BlockedAnswers != 0 || counts[store.StatusInstalled] != accounts*per {
		t.Fatalf("429s %d, blocked answers %d, results %v", c.Total.RateLimited, c.Total.BlockedAnswers, counts)
	}
	blocked, _ := f.St.ListBlocked(context.Background())
	if len(blocked) != 0 {
		t.Fatalf("accounts marked blocked: %+v", blocked)
	}
	for id := 1; id <= accounts; id++ {
		if a := c.Accounts[fmt.Sprint(id)]; a.RateLimited >= 10 {
			t.Fatalf("account %d took %d 429s: at the block threshold", id, a.RateLimited)
		}
	}
	t.Logf("429s answered: %d, none blocked", c.Total.RateLimited)
}

func TestTokensExpiringAtOnceRefreshOncePerAccount(t *testing.T) {
	t.Parallel()
	const accounts, per = 10, 15
	f := fleettest.New(t, sandbox.Config{RatePerSecond: 60, Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(per, 500)...)}, "", nil)
	f.AddAccounts(t, 1, accounts)
	ctx := context.Background()
	for id := 1; id <= accounts; id++ {
		f.SB.ExpireAccessTokens(fleettest.Sub(id))
		a, _ := f.St.GetAccount(ctx, int64(id), "")
		a.ExpiresAt = time.Now().Add(-time.Minute)
		if err := f.St.PutAccount(ctx, *a); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		f.StartWorker(t, workerBin, "-rate-per-account", "50")
	}
	installFillers(t, f, accounts, per)
	counts := f.WaitAllFinal(t, accounts*per, 2*time.Minute)
	if counts[store.StatusInstalled] != accounts*per {
		t.Fatalf("by status %v", counts)
	}
	c := f.SB.Counters()
	for id := 1; id <= accounts; id++ {
		a := c.Accounts[fmt.Sprint(id)]
		if a.Refreshes != 1 || a.RevokedReuses != 0 {
			t.Fatalf("account %d: %d refreshes, %d revoked reuses; want 1 and 0", id, a.Refreshes, a.RevokedReuses)
		}
	}
}

func TestGarbageInTheQueueIsArchivedAndTheWorkerGoesOn(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, sandbox.Config{}, "", nil)
	f.AddAccounts(t, 1, 1)
	w := f.StartWorker(t, workerBin, "-concurrency", "2")
	client := asynq.NewClientFromRedisClient(f.Client)
	garbage := []string{"not json", `{"account_id":"1"}`, `{"account_id":0,"widget_code":"w"}`, `{"account_id":1,"widget_code":"w","extra":1}`,
		"\xff\xfe", `[]`, `{"account_id":1,"widget_code":"w","settings":"` + strings.Repeat("x", 70000) + `"}`, ``}
	for i, p := range garbage {
		for _, typ := range []string{tasks.TypeInstallWidget, tasks.TypeUninstallWidget} {
			if _, err := client.Enqueue(asynq.NewTask(typ, []byte(p)), asynq.Queue(f.Queue), asynq.TaskID(fmt.Sprintf("garbage-%s-%d", typ, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.Install(t, 1, sandbox.WidgetAsterisk, seed)
	counts := f.WaitAllFinal(t, 1, time.Minute)
	if counts[store.StatusInstalled] != 1 {
		t.Fatalf("the good task: %v", counts)
	}
	waitfor.Until(t, 30*time.Second, func() (bool, string) {
		n := f.Archived(t)
		return n == 2*len(garbage), fmt.Sprintf("%d archived, want %d", n, 2*len(garbage))
	})
	if exited, _ := w.Exited(0); exited {
		t.Fatalf("the worker died:\n%s", w.Out.String())
	}
	if n := strings.Count(w.Out.String(), `"msg":"task rejected"`); n != 2*len(garbage) || !strings.Contains(w.Out.String(), `"class":"invalid"`) {
		t.Fatalf("%d rejections logged:\n%s", n, fleettest.Tail(w.Out.String(), 3000))
	}
}

// installFillers enqueues per filler widgets into each of accounts 1..n.
func installFillers(t *testing.T, f *fleettest.Fleet, n, per int) {
	t.Helper()
	for id := int64(1); id <= int64(n); id++ {
		for i := range per {
			f.Install(t, id, fmt.Sprintf("filler_%04d", i+1), `{"note":"n"}`)
		}
	}
}
