package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/bulk"
	"github.com/widgetq/widgetq/internal/tty"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

type bulkOptions struct {
	format     string
	rejects    string
	dryRun     bool
	parallel   int
	batch      int
	noProgress bool
	maxRetry   int
	redisWait  time.Duration
}

func newBulkCmd(a *app) *cobra.Command {
	var o bulkOptions
	cmd := &cobra.Command{
		Use:   "bulk FILE|-",
		Short: "Enqueue installs from a JSON-lines or CSV file",
		Long: `Enqueues one install a line, streaming (memory stays flat whatever the
file's size) and in parallel.

JSONL: {"account_id":123,"widget_code":"amo_asterisk","settings":{…}}
CSV:   a header account_id,widget_code,settings (settings as JSON text)

The format comes from the extension (.jsonl, .ndjson, .json, .csv) or
--format; for stdin it is guessed from the first line. A UTF-8 BOM, CRLF
line ends and blank lines are fine.

A line is rejected — reported on stderr with its number and reason, and
copied to the rejects file so it can be fixed and fed back — for bad JSON
or CSV, missing or mistyped fields, an account without credentials, a
malformed widget code, settings that are not a JSON object or too large,
invalid UTF-8, or a duplicate of an earlier line. The good lines still go
in. Running the same file again queues nothing twice ("already queued"),
which is also how an interrupted run is resumed.

Exit code 1 when any line was rejected or could not be enqueued, else 0.`,
		Args:    cobra.ExactArgs(1),
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runBulk(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "", "jsonl or csv (default: from the extension)")
	f.StringVar(&o.rejects, "rejects", "", "where to copy rejected lines (default: FILE.rejects.EXT, or bulk-rejects.EXT for stdin)")
	f.BoolVar(&o.dryRun, "dry-run", false, "check every line (and its account) but enqueue nothing")
	f.IntVar(&o.parallel, "parallel", 8, "enqueues in flight at once")
	f.IntVar(&o.batch, "batch", 200, "lines per batch (one round trip for account checks and queued marks)")
	f.BoolVar(&o.noProgress, "no-progress", false, "no progress bar or lines")
	f.DurationVar(&o.redisWait, "redis-wait", time.Minute, "how long to keep retrying, with backoff, lines Redis failed to take (0: no retry)")
	f.IntVar(&o.maxRetry, "max-retry", 0, "attempts per task (0: the default, "+strconv.Itoa(tasks.DefaultMaxRetry)+")")
	return cmd
}

func (a *app) runBulk(ctx context.Context, arg string, o bulkOptions) error {
	if o.parallel < 1 || o.parallel > 256 {
		return usagef("--parallel: want 1..256, got %d", o.parallel)
	}
	if o.maxRetry < 0 || o.maxRetry > 100 {
		return usagef("--max-retry: want 0..100, got %d", o.maxRetry)
	}
	var taskOpts []asynq.Option
	if o.maxRetry > 0 {
		taskOpts = append(taskOpts, asynq.MaxRetry(o.maxRetry))
	}
	if o.batch < 1 || o.batch > 10000 {
		return usagef("--batch: want 1..10000, got %d", o.batch)
	}
	in, name, closeIn, err := a.open(arg)
	if err != nil {
		return err
	}
	defer closeIn()
	var size int64
	if f, ok := in.(*os.File); ok && arg != "-" {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
	}
	counted := &countReader{r: in}
	var src io.Reader = counted
	format := bulk.Format(strings.ToLower(o.format))
	switch {
	case format == "" && arg != "-":
		format = bulk.FormatOf(arg)
		if format == "" {
			return usagef("cannot tell the format of %s from its extension: use --format jsonl or --format csv", arg)
		}
	case format == "":
		format, src = bulk.Sniff(counted)
	case format != bulk.JSONL && format != bulk.CSV:
		return usagef("--format: want jsonl or csv, got %q", o.format)
	}
	rd, err := bulk.NewReader(src, format)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}

	rejectsPath := o.rejects
	if rejectsPath == "" {
		ext := "." + string(format)
		if arg == "-" {
			rejectsPath = "bulk-rejects" + ext
		} else {
			rejectsPath = strings.TrimSuffix(arg, filepath.Ext(arg)) + ".rejects" + ext
		}
	}
	rw := &rejectWriter{path: rejectsPath, header: rd.CSVHeader, stderr: a.stderr, name: name}
	defer rw.close()

	var st bulk.Stats
	start := time.Now()
	stopProgress := a.progress(&st, counted, size, o.noProgress, start)
	// The whole run is one batch, sealed once every line is in.
	batchID := ""
	if !o.dryRun {
		batchID = tasks.NewBatchID()
	}
	readErr, enqErr := bulk.Load(ctx, a.prod, rd, bulk.LoadOptions{
		Batch: o.batch, Parallel: o.parallel, RedisWait: o.redisWait, Reject: rw.write,
		Enqueue: producer.BatchOptions{RequireAccounts: true, DryRun: o.dryRun, Options: taskOpts, BatchID: batchID, KeepOpen: true},
		Retrying: func(n int, err error) {
			a.warnRedis.Do(func() {
				fmt.Fprintf(a.stderr, "Redis did not take %d lines (%v): retrying with backoff for up to %s\n", n, err, o.redisWait)
			})
		},
	}, &st)
	stopProgress()
	elapsed := time.Since(start)

	verb := "queued"
	if o.dryRun {
		verb = "would queue"
	}
	rate := float64(st.Lines.Load()) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(a.stdout, "%s: %d lines in %.1fs (%.0f lines/s): %s %d, already queued %d, rejected %d",
		name, st.Lines.Load(), elapsed.Seconds(), rate, verb, st.Queued.Load(), st.Already.Load(), st.Rejected.Load())
	if n := st.Failed.Load(); n > 0 {
		fmt.Fprintf(a.stdout, ", not enqueued %d", n)
	}
	if batchID != "" {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		serr := a.prod.SealBatch(sctx, batchID, "")
		cancel()
		fmt.Fprintf(a.stdout, "; batch %s", batchID)
		if serr != nil {
			fmt.Fprintf(a.stderr, "batch %s could not be sealed (%v): it will not report done\n", batchID, serr)
		}
	}
	fmt.Fprintln(a.stdout)
	if n := st.Unmarked.Load(); n > 0 {
		fmt.Fprintf(a.stderr, "%d queued lines have no \"queued\" result yet (Redis did not take the mark): their tasks are in the queue, and a worker records their results\n", n)
	}
	if rw.count() > 0 {
		fmt.Fprintf(a.stdout, "rejected lines are in %s: fix them and run bulk on that file\n", rw.path)
	}
	if readErr != nil {
		return fmt.Errorf("reading %s stopped after %d lines: %w", name, st.Lines.Load(), readErr)
	}
	if ctx.Err() != nil {
		return &exitError{code: exitFailure, msg: "interrupted: run the same file again to finish (nothing is queued twice)"}
	}
	if enqErr != nil {
		return &exitError{code: exitFailure, msg: enqErr.Error()}
	}
	if rw.count() > 0 || st.Rejected.Load() > 0 {
		return &exitError{code: exitFailure}
	}
	if rw.err != nil {
		return rw.err
	}
	return nil
}

// countReader counts the bytes read, for progress.
type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// rejectWriter reports rejects on stderr and copies their lines to the
// rejects file, opened on the first one.
type rejectWriter struct {
	mu     sync.Mutex
	path   string
	header []byte
	stderr io.Writer
	name   string
	f      *os.File
	w      *bufio.Writer
	n      int
	err    error
}

func (r *rejectWriter) write(line int, reason string, raw []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	fmt.Fprintf(r.stderr, "%s: line %d: %s\n", r.name, line, reason)
	if raw == nil || r.err != nil {
		return
	}
	if r.f == nil {
		f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			r.err = fmt.Errorf("cannot write the rejects file: %w", unwrapPathErr(err))
			fmt.Fprintf(r.stderr, "%s: %v\n", r.name, r.err)
			return
		}
		r.f, r.w = f, bufio.NewWriter(f)
		if r.header != nil {
			r.w.Write(r.header)
			r.w.WriteByte('\n')
		}
	}
	r.w.Write(raw)
	r.w.WriteByte('\n')
}

func (r *rejectWriter) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *rejectWriter) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil {
		if err := r.w.Flush(); err != nil && r.err == nil {
			r.err = err
		}
		r.f.Close()
	}
}

// progress shows a bar on a terminal, plain lines every two seconds
// otherwise; it returns the function that stops it.
func (a *app) progress(st *bulk.Stats, counted *countReader, size int64, off bool, start time.Time) func() {
	if off {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	tty := tty.Is(a.stderr)
	var bar *progressbar.ProgressBar
	if tty {
		total := size
		if total == 0 {
			total = -1
		}
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(a.stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("bulk"), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	go func() {
		defer wg.Done()
		every := 2 * time.Second
		if tty {
			every = 100 * time.Millisecond
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if bar != nil {
					_ = bar.Finish()
				}
				return
			case <-t.C:
				if bar != nil {
					_ = bar.Set64(counted.n.Load())
					bar.Describe(fmt.Sprintf("bulk: %d lines, %d queued, %d rejected", st.Lines.Load(), st.Queued.Load(), st.Rejected.Load()))
					continue
				}
				el := time.Since(start).Seconds()
				fmt.Fprintf(a.stderr, "bulk: %d lines · %d queued · %d already queued · %d rejected · %.0f lines/s\n",
					st.Lines.Load(), st.Queued.Load(), st.Already.Load(), st.Rejected.Load(), float64(st.Lines.Load())/max(el, 1e-9))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
