package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/tasks"
)

// BenchmarkBulk runs `enqueue bulk` — the real binary, as a user would —
// on a file of BULK_LINES lines (default 100,000) against REDIS_URL's
// server (miniredis when unset: then the figures mean little), and in the
// same run plain asynq.Client.Enqueue calls with the same parallelism on
// the same Redis. It reports lines/s, the ratio of the two, and the peak
// RSS of the enqueue process.
//
//	REDIS_URL=redis://127.0.0.1:6379/9 go test ./cmd/enqueue -run '^$' -bench Bulk -benchtime 1x
func BenchmarkBulk(b *testing.B) {
	lines := 100_000
	if v := os.Getenv("BULK_LINES"); v != "" {
		lines, _ = strconv.Atoi(v)
	}
	parallel := 8
	r := redistest.New(b)
	dir := b.TempDir()
	bin := filepath.Join(dir, "enqueue")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		prefix := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
		queue := "q-" + prefix
		file := filepath.Join(dir, "bulk.jsonl")
		writeBulkFile(b, file, lines)
		importAccounts(b, r.Client, prefix, lines)

		// widgetq's bulk, as a process.
		cmd := exec.Command(bin, "bulk", "--no-progress", "--parallel", strconv.Itoa(parallel), file)
		cmd.Env = append(os.Environ(), "REDIS_URL="+r.URL, "WIDGETQ_PREFIX="+prefix, "WIDGETQ_QUEUE="+queue)
		var outBuf strings.Builder
		cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		peak := watchPeakRSS(cmd.Process.Pid)
		err := cmd.Wait()
		bulkDur := time.Since(start)
		rss := peak() // KiB
		out := outBuf.String()
		if err != nil {
			b.Fatalf("bulk: %v\n%s", err, out)
		}
		if !strings.Contains(out, fmt.Sprintf("queued %d,", lines)) {
			b.Fatalf("bulk did not queue every line:\n%s", out)
		}

		// Plain asynq, same Redis, same parallelism, same count.
		plainDur := plainEnqueue(b, r.Client, "q-plain-"+prefix, lines, parallel)

		bulkRate := float64(lines) / bulkDur.Seconds()
		plainRate := float64(lines) / plainDur.Seconds()
		b.ReportMetric(bulkRate, "bulk_lines/s")
		b.ReportMetric(plainRate, "plain_enqueue/s")
		b.ReportMetric(bulkRate/plainRate, "bulk/plain")
		b.ReportMetric(float64(rss)/1024, "peak_rss_MiB")
		b.Logf("%d lines: bulk %.0f lines/s in %v (peak RSS %.1f MiB); plain asynq %.0f/s in %v; ratio %.2f",
			lines, bulkRate, bulkDur.Round(time.Millisecond), float64(rss)/1024, plainRate, plainDur.Round(time.Millisecond), bulkRate/plainRate)
		cleanup(ctx, r.Client, prefix, []string{queue, "q-plain-" + prefix})
	}
}

// watchPeakRSS follows a process's VmHWM until the returned function is
// called, which returns the peak in KiB. (wait4's ru_maxrss can report
// the parent's resident set: Go starts children with CLONE_VM.)
func watchPeakRSS(pid int) func() int64 {
	var peak atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			if raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, line := range strings.Split(string(raw), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
						if n > peak.Load() {
							peak.Store(n)
						}
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() int64 { close(stop); <-done; return peak.Load() }
}

func writeBulkFile(b *testing.B, path string, n int) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, `{"account_id":%d,"widget_code":"amo_asterisk","settings":{"login":"user%d","password":"pw-%d","phones":{"504141":"1039"},"script_path":"https://example.com/"}}`+"\n", i, i, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// importAccounts stores n accounts straight through a pipeline (the
// import command is not what is measured).
func importAccounts(b *testing.B, rdb *redis.Client, prefix string, n int) {
	b.Helper()
	ctx := context.Background()
	for lo := 1; lo <= n; lo += 1000 {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for id := lo; id < lo+1000 && id <= n; id++ {
				p.HSet(ctx, fmt.Sprintf("{%s}:acct:%d", prefix, id), "base_url", "https://a.kommo.com", "access_token", "at")
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func plainEnqueue(b *testing.B, rdb *redis.Client, queue string, n, parallel int) time.Duration {
	b.Helper()
	client := asynq.NewClientFromRedisClient(rdb)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				payload := fmt.Sprintf(`{"account_id":%d,"widget_code":"amo_asterisk","settings":{"login":"user%d","password":"pw-%d","phones":{"504141":"1039"},"script_path":"https://example.com/"}}`, i, i, i)
				t := asynq.NewTask(tasks.TypeInstallWidget, []byte(payload))
				if _, err := client.Enqueue(t, asynq.Queue(queue), asynq.TaskID(fmt.Sprintf("install:%d:amo_asterisk", i))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// cleanup removes what a run wrote, so repeated runs do not fill Redis.
func cleanup(ctx context.Context, rdb *redis.Client, prefix string, queues []string) {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for _, q := range queues {
		_ = insp.DeleteQueue(q, true)
	}
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "{"+prefix+"}:*", 5000).Result()
		if err != nil {
			return
		}
		if len(keys) > 0 {
			rdb.Unlink(ctx, keys...)
		}
		if next == 0 {
			return
		}
		cursor = next
	}
}
