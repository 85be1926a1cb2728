// Package bench measures widgetq side by side with what it is
// compared to, with real processes: the worker, the Kommo sandbox, the
// enqueue binary, a bare asynq worker, and Redis. It prints a table and
// writes bench/out/results.json. cmd/widgetq-bench is its command; `make
// bench` and `make bench-short` run it; the sandbox's counters are the referee (a 429 or a block it should
// not have seen fails a scenario whatever its speed).
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/keyspace"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// Scenario is one measured figure.
type Scenario struct {
	Name   string         `json:"name"`
	Value  float64        `json:"value"`
	Target float64        `json:"target"`
	Unit   string         `json:"unit"`
	OK     bool           `json:"ok"`
	Detail map[string]any `json:"detail"`
}

type bench struct {
	short    bool
	bin      string
	out      string
	redisURL string
	rdb      redis.UniversalClient
	log      io.Writer
	procs    []*exec.Cmd
	mu       sync.Mutex
	seq      int
	// shards splits each scenario's queue by account (the cluster run).
	shards int
}

// Run runs the scenarios that args select (see -help).
func Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("widgetq-bench", flag.ContinueOnError)
	short := fs.Bool("short", false, "smaller counts of the same scenarios (about 90 s)")
	bin := fs.String("bin", "bin", "folder with the worker, kommo-sandbox, enqueue and widgetq-bench binaries")
	out := fs.String("out", "bench/out", "where results.json and the processes' logs go")
	only := fs.String("only", "", "comma-separated scenario names to run (default all)")
	redisPort := fs.Int("redis-port", 6391, "without REDIS_URL: the loopback port of the redis-server this run starts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b := &bench{short: *short, bin: *bin, out: *out, log: os.Stderr}
	if err := os.MkdirAll(filepath.Join(b.out, "logs"), 0o755); err != nil {
		return err
	}
	defer b.stopAll()
	b.redisURL = os.Getenv("REDIS_URL")
	if b.redisURL == "" {
		url, stop, err := startRedis(ctx, *redisPort, filepath.Join(b.out, "logs"))
		if err != nil {
			return err
		}
		defer stop()
		b.redisURL = url
	}
	conn, err := redisconn.Parse(b.redisURL)
	if err != nil {
		return err
	}
	b.rdb = conn.Client()
	defer b.rdb.Close()
	if err := conn.Ping(ctx, b.rdb); err != nil {
		return err
	}

	all := []struct {
		name string
		fn   func(context.Context) (Scenario, error)
	}{
		{"naive_ratio", b.naive},
		{"naive_latency_ratio", b.naiveLatency},
		{"overhead_ratio", b.overhead},
		{"latency_efficiency", b.latency},
		{"account_rate_efficiency", b.accountRate},
		{"global_rate_efficiency", b.globalRate},
		{"onboard_limit_ratio", b.onboard},
		{"bulk", b.bulk},
		{"worker_peak_rss_mib", b.workerRSS},
		{"cluster_vs_single", b.cluster},
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n != "" {
			want[n] = true
		}
	}
	var results []Scenario
	for _, s := range all {
		if len(want) > 0 && !want[s.name] {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		start := time.Now()
		fmt.Fprintf(b.log, "== %s\n", s.name)
		sc, err := s.fn(ctx)
		b.stopAll()
		if err != nil {
			sc = Scenario{Name: s.name, Detail: map[string]any{"error": err.Error()}}
			fmt.Fprintf(b.log, "   failed: %v\n", err)
		}
		if s.name == "bulk" {
			results = append(results, splitBulk(sc)...)
		} else {
			results = append(results, sc)
		}
		fmt.Fprintf(b.log, "   %.1fs\n", time.Since(start).Seconds())
	}
	return b.report(results)
}

// report prints the table and writes results.json.
func (b *bench) report(results []Scenario) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tVALUE\tTARGET\tUNIT\tOK")
	for _, r := range results {
		cmp := "≥"
		if r.Name == "worker_peak_rss_mib" {
			cmp = "<"
		}
		fmt.Fprintf(tw, "%s\t%.3g\t%s %.3g\t%s\t%v\n", r.Name, r.Value, cmp, r.Target, r.Unit, r.OK)
	}
	tw.Flush()
	host, _ := os.Hostname()
	doc := map[string]any{
		"scenarios": results,
		"machine":   map[string]any{"cpus": runtime.NumCPU(), "goos": runtime.GOOS, "goarch": runtime.GOARCH, "go": runtime.Version(), "host": host, "short": b.short, "when": time.Now().UTC().Format(time.RFC3339)},
	}
	raw, _ := json.MarshalIndent(doc, "", "  ")
	path := filepath.Join(b.out, "results.json")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwritten %s\n", path)
	return nil
}

func (b *bench) pick(short, full int) int {
	if b.short {
		return short
	}
	return full
}

// start runs a binary in the background, its output in a log file.
func (b *bench) start(name string, args []string, env ...string) (*exec.Cmd, error) {
	b.mu.Lock()
	b.seq++
	logPath := filepath.Join(b.out, "logs", fmt.Sprintf("%02d-%s.log", b.seq, name))
	b.mu.Unlock()
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(b.bin, name)
	if name == "noop-worker" || name == "naive-worker" {
		bin = filepath.Join(b.bin, "widgetq-bench")
		args = append([]string{name}, args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	b.mu.Lock()
	b.procs = append(b.procs, cmd)
	b.mu.Unlock()
	return cmd, nil
}

func (b *bench) stopAll() {
	b.mu.Lock()
	procs := b.procs
	b.procs = nil
	b.mu.Unlock()
	for _, p := range procs {
		if p.ProcessState == nil {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for p.ProcessState == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if p.ProcessState == nil {
			_ = p.Process.Kill()
		}
	}
}

// sandboxProc starts kommo-sandbox with n accounts, waits until it
// serves, and returns its URL and the accounts' credentials.
func (b *bench) sandboxProc(ctx context.Context, n int, extra ...string) (string, []store.Account, error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	accountsFile := filepath.Join(b.out, "logs", fmt.Sprintf("accounts-%d.jsonl", port))
	args := append([]string{"-addr", addr, "-accounts", strconv.Itoa(n), "-first-account-id", "100001", "-accounts-out", accountsFile, "-token-lifetime", "72h"}, extra...)
	if _, err := b.start("kommo-sandbox", args); err != nil {
		return "", nil, err
	}
	url := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get(url + "/_sandbox/counters"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", nil, fmt.Errorf("the sandbox did not start at %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	raw, err := os.ReadFile(accountsFile)
	if err != nil {
		return "", nil, err
	}
	var accts []store.Account
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var a struct {
			ID           int64     `json:"account_id"`
			BaseURL      string    `json:"base_url"`
			AccessToken  string    `json:"access_token"`
			RefreshToken string    `json:"refresh_token"`
			ExpiresAt    time.Time `json:"expires_at"`
		}
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			return "", nil, fmt.Errorf("accounts file: %w", err)
		}
		accts = append(accts, store.Account{ID: a.ID, BaseURL: a.BaseURL, AccessToken: a.AccessToken, RefreshToken: a.RefreshToken, ExpiresAt: a.ExpiresAt})
	}
	if len(accts) != n {
		return "", nil, fmt.Errorf("the sandbox wrote %d accounts, want %d", len(accts), n)
	}
	return url, accts, nil
}

func (b *bench) counters(url string) (sandbox.Counters, error) {
	var c sandbox.Counters
	resp, err := http.Get(url + "/_sandbox/counters")
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	return c, json.NewDecoder(resp.Body).Decode(&c)
}

// run is one scenario's namespace in Redis.
type nsp struct {
	prefix, queue string
	st            *store.Store
	prod          *producer.Producer
}

func (b *bench) ns(name string) *nsp {
	prefix := fmt.Sprintf("bench-%s-%d", name, time.Now().UnixNano())
	n := &nsp{prefix: prefix, queue: "q-" + prefix, st: store.New(b.rdb, prefix)}
	n.prod = producer.New(b.rdb, prefix, asynq.Queue(n.queue))
	n.prod.Shard(n.queue, b.shards)
	return n
}

func (b *bench) cleanup(n *nsp) {
	n.prod.Close()
	for _, q := range tasks.ShardQueues(n.queue, b.shards) {
		b.dropQueue(q)
	}
	b.unlink(keyspace.New(n.prefix).Pattern())
}

// dropQueue deletes a queue and every key of it: asynq's DeleteQueue
// leaves completed tasks' keys behind, 10,000 a scenario.
func (b *bench) dropQueue(q string) {
	_ = asynq.NewInspectorFromRedisClient(b.rdb).DeleteQueue(q, true)
	b.unlink("asynq:{" + q + "}:*")
}

// unlink deletes the keys matching pattern.
func (b *bench) unlink(pattern string) {
	ctx := context.Background()
	var cursor uint64
	for {
		keys, next, err := b.rdb.Scan(ctx, cursor, pattern, 5000).Result()
		if err != nil {
			return
		}
		// One UNLINK a key, pipelined: on a Cluster the keys are in many
		// slots, and go-redis splits the pipeline by node.
		_, _ = b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Unlink(ctx, k)
			}
			return nil
		})
		if next == 0 {
			return
		}
		cursor = next
	}
}

func (b *bench) putAccounts(ctx context.Context, n *nsp, accts []store.Account) error {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	ch := make(chan store.Account)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range ch {
				if err := n.st.PutAccount(ctx, a); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, a := range accts {
		ch <- a
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// enqueue queues installs of codes for each account, in batches.
func (b *bench) enqueue(ctx context.Context, n *nsp, accts []store.Account, codes []string, settings string) (int, error) {
	var batch []tasks.InstallWidgetPayload
	total := 0
	flush := func() error {
		for _, r := range n.prod.InstallMany(ctx, batch, producer.BatchOptions{}) {
			if r.Outcome != producer.Queued {
				return fmt.Errorf("enqueue: %s %v", r.Outcome, r.Err)
			}
			total++
		}
		batch = batch[:0]
		return nil
	}
	for _, code := range codes {
		for _, a := range accts {
			batch = append(batch, tasks.InstallWidgetPayload{AccountID: a.ID, WidgetCode: code, Settings: json.RawMessage(settings)})
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return total, err
				}
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return total, err
		}
	}
	return total, nil
}

// waitFinal waits until n results are final; it returns when the last
// one was.
func (b *bench) waitFinal(ctx context.Context, n *nsp, want int, within time.Duration) (map[store.Status]int64, error) {
	deadline := time.Now().Add(within)
	for {
		counts, err := n.st.CountByStatus(ctx)
		if err != nil {
			return nil, err
		}
		var final int64
		for s, c := range counts {
			if s.Final() {
				final += c
			}
		}
		if final >= int64(want) {
			return counts, nil
		}
		if time.Now().After(deadline) {
			return counts, fmt.Errorf("%d of %d results final after %v: %v", final, want, within, counts)
		}
		select {
		case <-ctx.Done():
			return counts, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (b *bench) workerEnv(n *nsp) []string {
	return []string{"REDIS_URL=" + b.redisURL, "WIDGETQ_PREFIX=" + n.prefix, "WIDGETQ_QUEUES=" + n.queue,
		"KOMMO_CLIENT_ID=" + sandbox.DefaultClientID, "KOMMO_CLIENT_SECRET=" + sandbox.DefaultClientSecret,
		"WIDGETQ_LOG_LEVEL=warn", "WIDGETQ_RETRY_BASE=500ms", "WIDGETQ_RETRY_CAP=5s", "WIDGETQ_ADMIN_ADDR=127.0.0.1:0", "WIDGETQ_KOMMO_HOSTS=127.0.0.1",
		"WIDGETQ_SHARDS=" + strconv.Itoa(max(b.shards, 1))}
}

// waitStarted waits for a worker process's queue to be served: asynq
// lists its server once it runs.
func (b *bench) waitServers(ctx context.Context, queue string, want int) error {
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	deadline := time.Now().Add(60 * time.Second)
	for {
		servers, err := insp.Servers()
		if err == nil {
			n := 0
			for _, s := range servers {
				if _, ok := s.Queues[queue]; ok {
					n++
				}
			}
			if n >= want {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d worker processes never came up on %s", want, queue)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts a redis-server on a loopback port for this run.
func startRedis(ctx context.Context, port int, logDir string) (string, func(), error) {
	logDir, _ = filepath.Abs(logDir)
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, errors.New("no REDIS_URL and no redis-server on PATH: set REDIS_URL or install redis-server")
	}
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", os.TempDir(),
		"--logfile", filepath.Join(logDir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return "", nil, fmt.Errorf("redis-server on port %d did not answer", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return url, func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }, nil
}

// hwm follows a process's peak resident set (VmHWM in /proc) while it
// runs. (wait4's ru_maxrss is no good here: Go starts children with
// CLONE_VM, and the child's high-water mark can then be the parent's.)
type hwm struct {
	kib  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func watchRSS(pid int) *hwm {
	h := &hwm{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		path := fmt.Sprintf("/proc/%d/status", pid)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if raw, err := os.ReadFile(path); err == nil {
				for _, line := range strings.Split(string(raw), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
						if n > h.kib.Load() {
							h.kib.Store(n)
						}
					}
				}
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// MiB stops watching and returns the peak seen.
func (h *hwm) MiB() float64 {
	close(h.stop)
	<-h.done
	return float64(h.kib.Load()) / 1024
}
