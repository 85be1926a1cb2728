package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/rediscluster"
	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

const seedSettings = `{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`

func fillers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("filler_%04d", i+1)
	}
	return out
}

// runSpec is one batch of installs through worker processes.
type runSpec struct {
	name     string
	accounts int      // sandbox accounts
	stored   int      // of those, stored and given installs (0: all)
	codes    []string // widget codes installed in each account
	settings string
	sandbox  []string // extra kommo-sandbox flags
	workers  int
	args     []string // worker flags
	// enqueueFirst fills the queue before the workers start (throughput
	// from a full queue); else the workers run first and the installs
	// arrive as a producer sends them.
	enqueueFirst bool
	// started, when set, sees each worker process as it starts.
	started func(*exec.Cmd)
}

// runResult is what a run measured.
type runResult struct {
	total   int
	counts  map[store.Status]int64
	dur     time.Duration // from the clock's start to the last result
	c       sandbox.Counters
	cpu     cpuUse // from the clock's start to the last result, per task
	start   time.Time
	workers []*exec.Cmd
}

// installs runs a spec: a sandbox, accounts, workers and installs, until
// every result is final. The namespace is cleaned up; the processes are
// stopped after the scenario.
func (b *bench) installs(ctx context.Context, sp runSpec) (runResult, error) {
	var res runResult
	url, accts, err := b.sandboxProc(ctx, sp.accounts, sp.sandbox...)
	if err != nil {
		return res, err
	}
	if sp.stored > 0 {
		accts = accts[:sp.stored]
	}
	n := b.ns(sp.name)
	defer b.cleanup(n)
	if err := b.putAccounts(ctx, n, accts); err != nil {
		return res, err
	}
	startWorkers := func() error {
		for range max(sp.workers, 1) {
			w, err := b.start("worker", sp.args, b.workerEnv(n)...)
			if err != nil {
				return err
			}
			res.workers = append(res.workers, w)
			if sp.started != nil {
				sp.started(w)
			}
		}
		return nil
	}
	var start time.Time
	var cpu0 cpuSnap
	if sp.enqueueFirst {
		if res.total, err = b.enqueue(ctx, n, accts, sp.codes, sp.settings); err != nil {
			return res, err
		}
		cpu0 = b.snapCPU(ctx)
		start = time.Now()
		if err := startWorkers(); err != nil {
			return res, err
		}
	} else {
		if err := startWorkers(); err != nil {
			return res, err
		}
		if err := b.waitServers(ctx, n.queue, max(sp.workers, 1)); err != nil {
			return res, err
		}
		cpu0 = b.snapCPU(ctx)
		start = time.Now()
		if res.total, err = b.enqueue(ctx, n, accts, sp.codes, sp.settings); err != nil {
			return res, err
		}
	}
	if res.counts, err = b.waitFinal(ctx, n, res.total, 10*time.Minute); err != nil {
		return res, err
	}
	res.dur, res.start = time.Since(start), start
	res.cpu = since(cpu0, b.snapCPU(ctx), res.total)
	res.c, err = b.counters(url)
	return res, err
}

// overhead: installs/s of one worker against a zero-latency sandbox ÷
// tasks/s of a bare asynq server with a no-op handler; same Redis, same
// concurrency, same count.
func (b *bench) overhead(ctx context.Context) (Scenario, error) {
	const conc = 50
	accounts := b.pick(1000, 2000)
	perAccount := b.pick(3, 5)
	// For information: naive_ratio is the target now (a no-op does no
	// HTTP at all, so it is the wrong anchor).
	sc := Scenario{Name: "overhead_ratio", Target: 0, Unit: "ratio"}

	r, err := b.installs(ctx, runSpec{name: "overhead", accounts: accounts, codes: fillers(perAccount), settings: `{"note":"bench"}`,
		sandbox: []string{"-rate", "-1", "-block-after", "-1", "-filler-widgets", strconv.Itoa(perAccount)},
		args:    []string{"-concurrency", strconv.Itoa(conc), "-rate-per-account", "100000"}, enqueueFirst: true})
	if err != nil {
		return sc, err
	}
	total, counts, wqDur, c := r.total, r.counts, r.dur, r.c

	// bare asynq: the same number of tasks, a no-op handler.
	queue := fmt.Sprintf("q-noop-%d", time.Now().UnixNano())
	client := asynq.NewClientFromRedisClient(b.rdb)
	for i := range total {
		t := asynq.NewTask("noop", []byte(fmt.Sprintf(`{"account_id":%d,"widget_code":"w","settings":%s}`, i, seedSettings)))
		if _, err := client.Enqueue(t, asynq.Queue(queue), asynq.Retention(time.Hour)); err != nil {
			return sc, err
		}
	}
	start := time.Now()
	if _, err := b.start("noop-worker", []string{"-redis-url", b.redisURL, "-queue", queue, "-concurrency", strconv.Itoa(conc)}); err != nil {
		return sc, err
	}
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	for {
		qi, err := insp.GetQueueInfo(queue)
		if err == nil && qi.Completed >= total {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return sc, fmt.Errorf("the bare asynq worker did not finish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	bareDur := time.Since(start)
	b.dropQueue(queue)

	wqRate := float64(counts[store.StatusInstalled]) / wqDur.Seconds()
	bareRate := float64(total) / bareDur.Seconds()
	sc.Value = wqRate / bareRate
	sc.OK = sc.Value >= sc.Target && counts[store.StatusInstalled] == int64(total) && c.Total.RateLimited == 0
	sc.Detail = map[string]any{"tasks": total, "concurrency": conc, "widgetq_installs_per_s": round(wqRate), "bare_asynq_tasks_per_s": round(bareRate),
		"kommo_requests": c.Total.Requests, "rate_limited": c.Total.RateLimited, "results": counts}
	return sc, nil
}

// latency: sandbox with 100 ms latency, concurrency 200: installs/s ÷
// (200 / 0.1 s).
func (b *bench) latency(ctx context.Context) (Scenario, error) {
	const conc = 200
	accounts := b.pick(3000, 8000)
	sc := Scenario{Name: "latency_efficiency", Target: 0.90, Unit: "ratio"}
	r, err := b.installs(ctx, runSpec{name: "latency", accounts: accounts, codes: []string{"amo_asterisk"}, settings: seedSettings,
		sandbox: []string{"-rate", "-1", "-block-after", "-1", "-latency", "100ms"},
		args:    []string{"-concurrency", strconv.Itoa(conc), "-rate-per-account", "100000"}, enqueueFirst: true})
	if err != nil {
		return sc, err
	}
	total, counts, dur, c := r.total, r.counts, r.dur, r.c
	// Each install is one POST (the template GET is cached after the
	// first). The rate is taken over the span of the arrivals, so the
	// worker's start-up and the last answers' latency are not counted.
	rate := spanRate(c.Total.Installs, c.FirstAt, c.LastAt)
	sc.Value = rate / (conc / 0.1)
	sc.OK = sc.Value >= sc.Target && c.Total.RateLimited == 0 && counts[store.StatusInstalled] == int64(total)
	sc.Detail = map[string]any{"installs": counts[store.StatusInstalled], "installs_per_s": round(rate), "ceiling_per_s": conc / 0.1,
		"wall_installs_per_s": round(float64(counts[store.StatusInstalled]) / dur.Seconds()), "seconds": round(dur.Seconds()), "kommo_requests": c.Total.Requests,
		"first_request_after_s": round(c.FirstAt.Sub(r.start).Seconds()), "arrival_span_s": round(c.LastAt.Sub(c.FirstAt).Seconds()), "per_install": r.cpu}
	return sc, nil
}

// accountRate: the sandbox enforces 7/s per account, 3 worker processes,
// a few accounts with many installs each.
func (b *bench) accountRate(ctx context.Context) (Scenario, error) {
	accounts := 3
	perAccount := b.pick(40, 120)
	sc := Scenario{Name: "account_rate_efficiency", Target: 0.90, Unit: "ratio"}
	r, err := b.installs(ctx, runSpec{name: "account", accounts: accounts, codes: fillers(perAccount), settings: `{"note":"bench"}`,
		sandbox: []string{"-filler-widgets", strconv.Itoa(perAccount)}, workers: 3, args: []string{"-concurrency", "20"}})
	if err != nil {
		return sc, err
	}
	total, counts, dur, c := r.total, r.counts, r.dur, r.c
	// Each account's rate over the span of its own arrivals, as Kommo
	// sees it (process start-up and the enqueue are not the limiter's).
	var sum float64
	perAcct := map[string]float64{}
	for id, a := range c.Accounts {
		r := spanRate(a.Requests, a.FirstAt, a.LastAt)
		perAcct[id] = round(r)
		sum += r
	}
	sc.Value = sum / float64(len(c.Accounts)) / 7
	sc.OK = sc.Value >= sc.Target && c.Total.RateLimited == 0 && c.Total.Blocks == 0 && counts[store.StatusInstalled] == int64(total)
	sc.Detail = map[string]any{"accounts": accounts, "installs": counts[store.StatusInstalled], "seconds": round(dur.Seconds()), "requests_per_s_by_account": perAcct,
		"rate_limited": c.Total.RateLimited, "blocks": c.Total.Blocks, "worker_processes": 3}
	return sc, nil
}

// globalRate: the sandbox enforces a global cap, the workers are set to
// it, 3 processes, 1,000 accounts.
func (b *bench) globalRate(ctx context.Context) (Scenario, error) {
	const cap = 50
	accounts := 1000
	sc := Scenario{Name: "global_rate_efficiency", Target: 0.95, Unit: "ratio"}
	r, err := b.installs(ctx, runSpec{name: "global", accounts: accounts, stored: b.pick(600, 1000), codes: []string{"amo_asterisk"}, settings: seedSettings,
		sandbox: []string{"-global-rate", strconv.Itoa(cap)}, workers: 3, args: []string{"-concurrency", "30", "-rate-global", strconv.Itoa(cap)}})
	if err != nil {
		return sc, err
	}
	counts, dur, c := r.counts, r.dur, r.c
	rate := spanRate(c.Total.Requests, c.FirstAt, c.LastAt)
	sc.Value = rate / cap
	sc.OK = sc.Value >= sc.Target && c.Total.RateLimited == 0 && c.Total.Blocks == 0
	sc.Detail = map[string]any{"cap_per_s": cap, "requests": c.Total.Requests, "requests_per_s": round(rate), "seconds": round(dur.Seconds()),
		"arrival_span_s": round(c.LastAt.Sub(c.FirstAt).Seconds()),
		"installs":       counts[store.StatusInstalled], "rate_limited": c.Total.RateLimited}
	return sc, nil
}

// onboard: 10,000 accounts (short 1,000), latency 150 ± 50 ms, a global
// cap of 100/s: (requests ÷ cap) ÷ wall time.
func (b *bench) onboard(ctx context.Context) (Scenario, error) {
	const cap = 100
	accounts := b.pick(1000, 10000)
	sc := Scenario{Name: "onboard_limit_ratio", Target: 0.90, Unit: "ratio"}
	r, err := b.installs(ctx, runSpec{name: "onboard", accounts: accounts, codes: []string{"amo_asterisk"}, settings: seedSettings,
		sandbox: []string{"-global-rate", strconv.Itoa(cap), "-latency", "150ms", "-latency-jitter", "50ms"},
		workers: 2, args: []string{"-concurrency", "60", "-rate-global", strconv.Itoa(cap)}})
	if err != nil {
		return sc, err
	}
	total, counts, dur, c := r.total, r.counts, r.dur, r.c
	sc.Value = float64(c.Total.Requests) / cap / dur.Seconds()
	sc.OK = sc.Value >= sc.Target && c.Total.RateLimited == 0 && c.Total.Blocks == 0 && counts[store.StatusInstalled] == int64(total)
	sc.Detail = map[string]any{"accounts": accounts, "requests": c.Total.Requests, "seconds": round(dur.Seconds()), "fastest_possible_s": round(float64(c.Total.Requests) / cap),
		"installed": counts[store.StatusInstalled], "rate_limited": c.Total.RateLimited,
		// Where the time beyond the cap went: before the first request,
		// between the first and the last, after the last.
		"first_request_after_s": round(c.FirstAt.Sub(r.start).Seconds()), "arrival_span_s": round(c.LastAt.Sub(c.FirstAt).Seconds()),
		"after_last_request_s": round(r.start.Add(dur).Sub(c.LastAt).Seconds())}
	return sc, nil
}

var bulkLine = regexp.MustCompile(`queued (\d+),`)

// bulk: `enqueue bulk` of 100,000 lines (short 20,000) and its rate ÷
// plain parallel asynq Enqueue on the same Redis.
func (b *bench) bulk(ctx context.Context) (Scenario, error) {
	lines := b.pick(20000, 100000)
	sc := Scenario{Name: "bulk", Unit: "lines/s"}
	n := b.ns("bulk")
	defer b.cleanup(n)
	file := filepath.Join(b.out, "logs", "bulk.jsonl")
	var buf bytes.Buffer
	var accts []store.Account
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&buf, `{"account_id":%d,"widget_code":"amo_asterisk","settings":{"login":"user%d","password":"pw-%d","phones":{"504141":"1039"},"script_path":"https://example.com/"}}`+"\n", i, i, i)
		accts = append(accts, store.Account{ID: int64(i), BaseURL: "https://a.kommo.com", AccessToken: "at"})
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		return sc, err
	}
	if err := b.putAccounts(ctx, n, accts); err != nil {
		return sc, err
	}
	var bulkRates, plainRates []float64
	var rss float64
	for round := range 3 {
		cmd := exec.Command(filepath.Join(b.bin, "enqueue"), "bulk", "--no-progress", file)
		q := fmt.Sprintf("%s-%d", n.queue, round)
		cmd.Env = append(os.Environ(), "REDIS_URL="+b.redisURL, "WIDGETQ_PREFIX="+n.prefix, "WIDGETQ_QUEUE="+q)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return sc, err
		}
		mem := watchRSS(cmd.Process.Pid)
		err := cmd.Wait()
		dur := time.Since(start)
		rss = max(rss, mem.MiB())
		if err != nil {
			return sc, fmt.Errorf("bulk: %v: %s", err, out.Bytes())
		}
		if m := bulkLine.FindSubmatch(out.Bytes()); m == nil || string(m[1]) != strconv.Itoa(lines) {
			return sc, fmt.Errorf("bulk did not queue every line: %s", out.Bytes())
		}
		bulkRates = append(bulkRates, float64(lines)/dur.Seconds())
		insp := asynq.NewInspectorFromRedisClient(b.rdb)
		_ = insp.DeleteQueue(q, true)
		// Same count, plain asynq from 8 goroutines.
		pq := "q-plain-" + q
		plainRates = append(plainRates, float64(lines)/plainEnqueue(b, pq, lines, 8).Seconds())
		_ = insp.DeleteQueue(pq, true)
	}
	bulkRate, plainRate := median(bulkRates), median(plainRates)
	sc.Value = bulkRate
	sc.Detail = map[string]any{"lines": lines, "bulk_lines_per_s": roundAll(bulkRates), "plain_enqueue_per_s": roundAll(plainRates),
		"ratio": round(bulkRate / plainRate), "peak_rss_mib": round(rss), "runs": 3}
	return sc, nil
}

// splitBulk turns the bulk measurement into its two named scenarios.
func splitBulk(sc Scenario) []Scenario {
	rate := Scenario{Name: "bulk_lines_per_s", Value: sc.Value, Target: 20000, Unit: "lines/s", Detail: sc.Detail}
	rate.OK = rate.Value >= rate.Target
	ratio := Scenario{Name: "bulk_enqueue_ratio", Target: 0.8, Unit: "ratio", Detail: sc.Detail}
	if r, ok := sc.Detail["ratio"].(float64); ok {
		ratio.Value = r
	}
	ratio.OK = ratio.Value >= ratio.Target
	return []Scenario{rate, ratio}
}

func plainEnqueue(b *bench, queue string, n, parallel int) time.Duration {
	client := asynq.NewClientFromRedisClient(b.rdb)
	var next atomic.Int64
	done := make(chan struct{}, parallel)
	start := time.Now()
	for range parallel {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				payload := fmt.Sprintf(`{"account_id":%d,"widget_code":"amo_asterisk","settings":{"login":"user%d","password":"pw-%d","phones":{"504141":"1039"},"script_path":"https://example.com/"}}`, i, i, i)
				_, _ = client.Enqueue(asynq.NewTask(tasks.TypeInstallWidget, []byte(payload)), asynq.Queue(queue), asynq.TaskID(fmt.Sprintf("install:%d:amo_asterisk", i)))
			}
		}()
	}
	for range parallel {
		<-done
	}
	return time.Since(start)
}

// workerRSS: peak RSS of one worker at concurrency 500 over 50,000 tasks
// (short 10,000).
func (b *bench) workerRSS(ctx context.Context) (Scenario, error) {
	accounts := b.pick(2000, 10000)
	perAccount := 5
	sc := Scenario{Name: "worker_peak_rss_mib", Target: 150, Unit: "MiB"}
	var mem *hwm
	r, err := b.installs(ctx, runSpec{name: "rss", accounts: accounts, codes: fillers(perAccount), settings: `{"note":"bench"}`,
		sandbox: []string{"-rate", "-1", "-block-after", "-1", "-filler-widgets", strconv.Itoa(perAccount)},
		args:    []string{"-concurrency", "500", "-rate-per-account", "100000"}, enqueueFirst: true,
		started: func(w *exec.Cmd) { mem = watchRSS(w.Process.Pid) }})
	if err != nil {
		return sc, err
	}
	sc.Value = mem.MiB()
	sc.OK = sc.Value < sc.Target && r.counts[store.StatusInstalled] == int64(r.total)
	sc.Detail = map[string]any{"tasks": r.total, "concurrency": 500, "seconds": round(r.dur.Seconds()), "installs_per_s": round(float64(r.total) / r.dur.Seconds()), "kommo_requests": r.c.Total.Requests}
	return sc, nil
}

// NoopWorker is the bare asynq baseline: a server whose handler does
// nothing, in its own process like the worker.
func NoopWorker(args []string) int {
	fs := flag.NewFlagSet("noop-worker", flag.ContinueOnError)
	url := fs.String("redis-url", "", "Redis")
	queue := fs.String("queue", "", "queue")
	conc := fs.Int("concurrency", 50, "concurrency")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	conn, err := redisconn.Parse(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv := asynq.NewServer(conn.Opt, asynq.Config{Concurrency: *conc, Queues: map[string]int{*queue: 1}, LogLevel: asynq.WarnLevel})
	if err := srv.Run(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// spanRate is the rate of n arrivals between first and last: n-1
// intervals over the span.
func spanRate(n int64, first, last time.Time) float64 {
	span := last.Sub(first).Seconds()
	if n < 2 || span <= 0 {
		return 0
	}
	return float64(n-1) / span
}

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func roundAll(fs []float64) []float64 {
	out := make([]float64, len(fs))
	for i, f := range fs {
		out[i] = round(f)
	}
	return out
}

func median(fs []float64) float64 {
	s := append([]float64(nil), fs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// cluster: one batch through one Redis, then the same through a 3-node
// Redis Cluster (started here, on loopback ports) with the queue split in
// 6 shards; two worker processes each time. Its value is the Cluster's
// installs/s ÷ one Redis's: on one machine the nodes share its cores, so
// this measures what the Cluster costs, not what it scales to.
func (b *bench) cluster(ctx context.Context) (Scenario, error) {
	sc := Scenario{Name: "cluster_vs_single", Target: 0.5, Unit: "ratio"}
	spec := runSpec{name: "single", accounts: b.pick(600, 3000), codes: []string{"amo_asterisk"}, settings: seedSettings,
		sandbox: []string{"-rate", "-1", "-block-after", "-1"}, workers: 2,
		args: []string{"-concurrency", "50", "-rate-per-account", "100000"}, enqueueFirst: true}
	single, err := b.installs(ctx, spec)
	if err != nil {
		return sc, err
	}
	b.stopAll()
	dir, err := os.MkdirTemp("", "widgetq-bench-cluster")
	if err != nil {
		return sc, err
	}
	defer os.RemoveAll(dir)
	rc, err := rediscluster.Start(3, dir, 30*time.Second)
	if err != nil {
		return sc, err
	}
	defer rc.Stop()
	cc := rc.Client()
	defer cc.Close()
	rdb, url, shards := b.rdb, b.redisURL, b.shards
	b.rdb, b.redisURL, b.shards = cc, rc.URL, 6
	defer func() { b.rdb, b.redisURL, b.shards = rdb, url, shards }()
	spec.name = "cluster"
	clustered, err := b.installs(ctx, spec)
	if err != nil {
		return sc, err
	}
	sRate := float64(single.counts[store.StatusInstalled]) / single.dur.Seconds()
	cRate := float64(clustered.counts[store.StatusInstalled]) / clustered.dur.Seconds()
	sc.Value = cRate / sRate
	sc.OK = sc.Value >= sc.Target && single.counts[store.StatusInstalled] == int64(single.total) &&
		clustered.counts[store.StatusInstalled] == int64(clustered.total) && single.c.Total.RateLimited == 0 && clustered.c.Total.RateLimited == 0
	sc.Detail = map[string]any{"installs": single.total, "single_installs_per_s": round(sRate), "cluster_installs_per_s": round(cRate),
		"cluster_nodes": 3, "shards": 6, "workers": 2}
	return sc, nil
}
