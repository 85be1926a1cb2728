package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/autopipe"
	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/tasks"
)

// NaiveWorker is the handler a user would write instead of widgetq: it
// reads the accounts file into memory once, and for each task decodes the
// payload and POSTs the settings to /api/v4/widgets/{code} with the
// account's token, checking the status and nothing else — no limits, no
// refresh, no result, no in-flight mark. It runs in its own process like
// the worker, as `widgetq-bench naive-worker`.
//
// With -empty-scripts it is the floor of widgetq's design instead: the
// same handler making two script calls per task that do nothing, with as
// many keys and arguments as widgetq's state read and result record,
// through the worker's auto-pipeline (asynq's calls too, as in the
// worker). What widgetq costs above it is the work in its scripts and in
// its Go, not the round trips.
func NaiveWorker(args []string) int {
	fs := flag.NewFlagSet("naive-worker", flag.ContinueOnError)
	url := fs.String("redis-url", "", "Redis")
	queue := fs.String("queue", "", "queue")
	conc := fs.Int("concurrency", 50, "concurrency")
	accountsFile := fs.String("accounts", "", "accounts file (JSON lines: account_id, base_url, access_token)")
	emptyScripts := fs.Bool("empty-scripts", false, "two empty script calls per task, shaped like widgetq's, through the worker's auto-pipeline")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	conn, err := redisconn.Parse(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	raw, err := os.ReadFile(*accountsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	type account struct {
		ID      int64  `json:"account_id"`
		BaseURL string `json:"base_url"`
		Token   string `json:"access_token"`
	}
	accts := map[int64]account{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var a account
		if json.Unmarshal([]byte(line), &a) == nil {
			accts[a.ID] = a
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1000, 100
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	acfg := asynq.Config{Concurrency: *conc, Queues: map[string]int{*queue: 1}, LogLevel: asynq.WarnLevel}
	srv := asynq.NewServer(conn.Opt, acfg)
	var pipe *autopipe.Client
	if *emptyScripts {
		pipe = autopipe.NewWith(conn.Opt.MakeRedisClient().(redis.UniversalClient), worker.PipeOptions())
		defer pipe.Close()
		srv = asynq.NewServerFromRedisClient(pipe, acfg)
	}
	err = srv.Run(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		var p tasks.InstallWidgetPayload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		a, ok := accts[p.AccountID]
		if !ok {
			return fmt.Errorf("no account %d: %w", p.AccountID, asynq.SkipRetry)
		}
		if pipe != nil {
			if err := emptyScript.Run(ctx, pipe, floorBeginKeys(p), floorBeginArgs...).Err(); err != nil {
				return err
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.BaseURL+"/api/v4/widgets/"+p.WidgetCode, bytes.NewReader(p.Settings))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+a.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("install %s into %d: %d", p.WidgetCode, p.AccountID, resp.StatusCode)
		}
		if pipe != nil {
			return emptyScript.Run(ctx, pipe, floorRecordKeys(p), floorRecordArgs(p)...).Err()
		}
		return nil
	}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// emptyScript and the floor's keys and arguments stand for widgetq's two
// script calls per install: as many keys and arguments, of about the same
// sizes (the result's JSON included), and nothing done with them.
var emptyScript = redis.NewScript("return 1")

var floorBeginArgs = []any{"2026-12-04T12:00:00.123456789Z", 5, 142857, 0, 2000000, 0, 142857}

func floorBeginKeys(p tasks.InstallWidgetPayload) []string {
	a := strconv.FormatInt(p.AccountID, 10)
	return []string{"{floor}:res:" + a + ":" + p.WidgetCode, "{floor}:acct:" + a, "{floor}:blocked:" + a, "{floor}:kommo:pause",
		"{floor}:rl:tat:" + a, "{floor}:rl:pause:" + a, "{floor}:rl:slow:" + a, "{floor}:rl:tat:global", "{floor}:rl:total:" + a}
}

func floorRecordKeys(p tasks.InstallWidgetPayload) []string {
	keys := []string{"{floor}:res:" + strconv.FormatInt(p.AccountID, 10) + ":" + p.WidgetCode, "{floor}:idx:all"}
	for _, st := range store.Statuses {
		keys = append(keys, "{floor}:idx:status:"+string(st))
	}
	return append(keys, "{floor}:kommo:blocks", "{floor}:batch:b_floor", "{floor}:outbox", "{floor}:batches")
}

func floorRecordArgs(p tasks.InstallWidgetPayload) []any {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	data, _ := json.Marshal(store.Result{AccountID: p.AccountID, WidgetCode: p.WidgetCode, Operation: "install", Status: store.StatusInstalled,
		TaskID: "t", Queue: "q", EnqueueID: "e", WidgetID: 101, WidgetVersion: "1.0.3", Attempts: 1, BatchID: "b_floor"})
	return []any{strconv.FormatInt(p.AccountID, 10) + ":" + p.WidgetCode, p.AccountID, "installed", data, "e", now, "b_floor", "", now, "{floor}:batch:", 86400000}
}

// naive: widgetq's worker and the naive handler (NaiveWorker) install the
// same number of widgets into the same kind of sandbox (no rate limit, no
// latency) from a full queue, on the same Redis with the same concurrency,
// one after the other, three times; each handler's best rate. The target
// is issue 17's.
func (b *bench) naive(ctx context.Context) (Scenario, error) {
	sc := Scenario{Name: "naive_ratio", Target: 0.8, Unit: "ratio"}
	sp := naiveSpec{accounts: b.pick(1000, 2000), perAccount: b.pick(3, 5), conc: 50, floor: true}
	r, err := b.naiveRounds(ctx, sp)
	if err != nil {
		return sc, err
	}
	// Each handler at its best of three: a ratio of one pair would let a
	// slow moment of either side decide.
	bw, bn, bf := best(r.wq), best(r.naive), best(r.floor)
	bestWQ, bestNaive := r.wq[bw], r.naive[bn]
	sc.Value = round(bestWQ / bestNaive)
	sc.OK = sc.Value >= sc.Target
	sc.Detail = map[string]any{"installs": sp.accounts * sp.perAccount, "concurrency": sp.conc, "ratios": roundAll(r.ratios),
		"widgetq_installs_per_s": roundAll(r.wq), "naive_installs_per_s": roundAll(r.naive),
		// What each handler's best pass cost per install, by process (the
		// sandbox's and Redis's included) and Redis command.
		"widgetq_per_install": r.wqCPU[bw], "naive_per_install": r.naiveCPU[bn],
		// The naive handler plus two empty script calls per install through
		// the worker's auto-pipeline: what widgetq's round trips alone
		// cost, so the rest of the gap is the work in them.
		"floor_installs_per_s": roundAll(r.floor), "floor_of_naive": round(r.floor[bf] / bestNaive), "floor_per_install": r.floorCPU[bf],
		// widgetq against the floor: what its work costs once the round
		// trips any Redis-backed design pays are on both sides.
		"widgetq_of_floor": round(bestWQ / r.floor[bf])}
	return sc, nil
}

// naiveLatency (information): naive_ratio where Kommo answers in 100 ms,
// as the real one does at best, with concurrency 200 (the
// latency_efficiency setting): what a user sees of the gap when the
// requests' latency, not the CPU, decides the rate. Rates are wall-clock,
// from the worker's start to the last install, for both handlers
// (widgetq's template GET included).
func (b *bench) naiveLatency(ctx context.Context) (Scenario, error) {
	sc := Scenario{Name: "naive_latency_ratio", Unit: "ratio"}
	sp := naiveSpec{accounts: b.pick(3000, 8000), perAccount: 1, conc: 200, latency: "100ms"}
	r, err := b.naiveRounds(ctx, sp)
	if err != nil {
		return sc, err
	}
	bw, bn := best(r.wq), best(r.naive)
	sc.Value = round(r.wq[bw] / r.naive[bn])
	sc.OK = true
	ceiling := float64(sp.conc) / 0.1
	sc.Detail = map[string]any{"installs": sp.accounts, "concurrency": sp.conc, "kommo_latency_ms": 100, "ratios": roundAll(r.ratios),
		"widgetq_installs_per_s": roundAll(r.wq), "naive_installs_per_s": roundAll(r.naive), "ceiling_per_s": ceiling,
		"widgetq_of_ceiling": round(r.wq[bw] / ceiling), "naive_of_ceiling": round(r.naive[bn] / ceiling),
		"widgetq_per_install": r.wqCPU[bw], "naive_per_install": r.naiveCPU[bn]}
	return sc, nil
}

// naiveSpec is one side-by-side of widgetq's worker and the naive handler.
type naiveSpec struct {
	accounts, perAccount, conc int
	latency                    string // the sandbox's -latency (empty: none)
	floor                      bool   // also time the floor (NaiveWorker -empty-scripts)
}

// naiveResult is three rounds' rates and CPU per install of each handler.
type naiveResult struct {
	wq, naive, floor, ratios  []float64
	wqCPU, naiveCPU, floorCPU []cpuUse
}

// naiveRounds times widgetq's worker, then the naive handler (then the
// floor), three rounds, each on a fresh sandbox and queue.
func (b *bench) naiveRounds(ctx context.Context, sp naiveSpec) (naiveResult, error) {
	var res naiveResult
	sbFlags := []string{"-rate", "-1", "-block-after", "-1", "-filler-widgets", strconv.Itoa(sp.perAccount)}
	if sp.latency != "" {
		sbFlags = append(sbFlags, "-latency", sp.latency)
	}
	for range 3 {
		r, err := b.installs(ctx, runSpec{name: "naive-wq", accounts: sp.accounts, codes: fillers(sp.perAccount), settings: `{"note":"bench"}`,
			sandbox: sbFlags, args: []string{"-concurrency", strconv.Itoa(sp.conc), "-rate-per-account", "100000"}, enqueueFirst: true})
		if err != nil {
			return res, err
		}
		if r.counts[store.StatusInstalled] != int64(r.total) {
			return res, fmt.Errorf("widgetq installed %d of %d", r.counts[store.StatusInstalled], r.total)
		}
		wqRate := float64(r.total) / r.dur.Seconds()
		b.stopAll()

		nRate, nCPU, err := b.naiveRun(ctx, sp.accounts, sp.perAccount, sp.conc, sbFlags, false)
		if err != nil {
			return res, err
		}
		b.stopAll()
		fmt.Fprintf(b.log, "   widgetq %.0f/s: %s\n   naive   %.0f/s: %s\n", wqRate, r.cpu, nRate, nCPU)
		res.wq, res.naive, res.ratios = append(res.wq, wqRate), append(res.naive, nRate), append(res.ratios, wqRate/nRate)
		res.wqCPU, res.naiveCPU = append(res.wqCPU, r.cpu), append(res.naiveCPU, nCPU)
		if !sp.floor {
			continue
		}
		// The floor (information): the naive handler with two empty
		// script calls shaped like widgetq's.
		fRate, fCPU, err := b.naiveRun(ctx, sp.accounts, sp.perAccount, sp.conc, sbFlags, true)
		if err != nil {
			return res, err
		}
		b.stopAll()
		fmt.Fprintf(b.log, "   floor   %.0f/s: %s\n", fRate, fCPU)
		res.floor, res.floorCPU = append(res.floor, fRate), append(res.floorCPU, fCPU)
	}
	return res, nil
}

// best is the index of the largest of rates (the first, on a tie).
func best(rates []float64) int {
	b := 0
	for i := range rates {
		if rates[i] > rates[b] {
			b = i
		}
	}
	return b
}

// naiveRun fills a queue with the installs and times NaiveWorker on it.
// With emptyScripts it times the floor (NaiveWorker's -empty-scripts).
func (b *bench) naiveRun(ctx context.Context, accounts, perAccount, conc int, sbFlags []string, emptyScripts bool) (float64, cpuUse, error) {
	_, accts, err := b.sandboxProc(ctx, accounts, sbFlags...)
	if err != nil {
		return 0, cpuUse{}, err
	}
	file := filepath.Join(b.out, "logs", fmt.Sprintf("naive-accounts-%d.jsonl", time.Now().UnixNano()))
	var buf bytes.Buffer
	for _, a := range accts {
		line, _ := json.Marshal(map[string]any{"account_id": a.ID, "base_url": a.BaseURL, "access_token": a.AccessToken})
		buf.Write(append(line, '\n'))
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		return 0, cpuUse{}, err
	}
	defer os.Remove(file)
	queue := fmt.Sprintf("q-naive-%d", time.Now().UnixNano())
	defer b.dropQueue(queue)
	client := asynq.NewClientFromRedisClient(b.rdb)
	total := 0
	for _, code := range fillers(perAccount) {
		for _, a := range accts {
			t, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: a.ID, WidgetCode: code, Settings: json.RawMessage(`{"note":"bench"}`)},
				asynq.Queue(queue), asynq.Retention(time.Hour))
			if err != nil {
				return 0, cpuUse{}, err
			}
			if _, err := client.EnqueueContext(ctx, t); err != nil {
				return 0, cpuUse{}, err
			}
			total++
		}
	}
	cpu0 := b.snapCPU(ctx)
	start := time.Now()
	args := []string{"-redis-url", b.redisURL, "-queue", queue, "-concurrency", strconv.Itoa(conc), "-accounts", file}
	if emptyScripts {
		args = append(args, "-empty-scripts")
	}
	if _, err := b.start("naive-worker", args); err != nil {
		return 0, cpuUse{}, err
	}
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	for {
		qi, err := insp.GetQueueInfo(queue)
		if err == nil && qi.Completed >= total {
			break
		}
		if time.Since(start) > 10*time.Minute || ctx.Err() != nil {
			return 0, cpuUse{}, fmt.Errorf("the naive worker did not finish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rate := float64(total) / time.Since(start).Seconds()
	return rate, since(cpu0, b.snapCPU(ctx), total), nil
}
