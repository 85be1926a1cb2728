package bulk

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// Stats are a load's running counts, safe to read while it runs.
// Unmarked counts lines queued whose "queued" result mark Redis did not
// take (a restart at that moment): the task is in the queue and its worker
// records its result; only `results` shows it late.
type Stats struct {
	Lines, Queued, Already, Rejected, Failed, Unmarked atomic.Int64
}

// LoadOptions tune Load.
type LoadOptions struct {
	// Batch is how many lines go to Redis in one round trip, Parallel how
	// many batches are in flight at once.
	Batch, Parallel int
	// Enqueue is how each batch is enqueued (accounts required, dry run,
	// task options).
	Enqueue producer.BatchOptions
	// RedisWait is how long lines Redis failed to take are retried, with
	// backoff (0: not retried).
	RedisWait time.Duration
	// Reject receives every rejected line: its number, why, and the line
	// as read (for a rejects file). Called from several goroutines.
	Reject func(line int, reason string, raw []byte)
	// Retrying is told, each time, that Redis did not take n lines.
	Retrying func(n int, err error)
}

// Load enqueues every install rd reads through p: batches of lines, in
// parallel, counted in st. A bad line is rejected and the others go in.
// It returns the error that stopped reading, if any, and the first error
// Redis gave for a line it did not take (a line queued whose result mark
// failed is counted in Unmarked, not returned).
func Load(ctx context.Context, p *producer.Producer, rd *Reader, o LoadOptions, st *Stats) (readErr, enqueueErr error) {
	batches := make(chan []*Entry, o.Parallel)
	go func() {
		defer close(batches)
		var cur []*Entry
		for {
			e, rej, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				readErr = err
				break
			}
			st.Lines.Add(1)
			if rej != nil {
				st.Rejected.Add(1)
				o.Reject(rej.Line, rej.Reason, rej.Raw)
				continue
			}
			if cur = append(cur, e); len(cur) == o.Batch {
				select {
				case batches <- cur:
				case <-ctx.Done():
					return
				}
				cur = nil
			}
		}
		if len(cur) > 0 {
			select {
			case batches <- cur:
			case <-ctx.Done():
			}
		}
	}()
	var wg sync.WaitGroup
	var first atomic.Value
	for range o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				payloads := make([]tasks.InstallWidgetPayload, len(b))
				for i, e := range b {
					payloads[i] = e.Payload
				}
				for i, r := range InstallRetrying(ctx, p, payloads, o.Enqueue, o.RedisWait, o.Retrying) {
					e := b[i]
					switch {
					case r.Outcome == producer.Invalid:
						st.Rejected.Add(1)
						o.Reject(e.Line, r.Err.Error(), e.Raw)
					case r.Outcome == "":
						st.Failed.Add(1)
						first.CompareAndSwap(nil, r.Err)
						o.Reject(e.Line, "not enqueued: "+r.Err.Error(), e.Raw)
					case r.Outcome == producer.AlreadyQueued:
						st.Already.Add(1)
					default:
						st.Queued.Add(1)
						if r.Err != nil {
							st.Unmarked.Add(1) // queued: not a lost line
						}
					}
				}
			}
		}()
	}
	wg.Wait() // the reader has ended too: batches is closed
	enqueueErr, _ = first.Load().(error)
	return readErr, enqueueErr
}

// InstallRetrying is InstallMany, with the payloads Redis failed to take
// (a restart, a fail-over) tried again with exponential backoff for up to
// wait, telling retrying each time. A task that did go in before its
// error comes back already_queued: task IDs make the retry safe.
func InstallRetrying(ctx context.Context, p *producer.Producer, payloads []tasks.InstallWidgetPayload, bo producer.BatchOptions, wait time.Duration, retrying func(int, error)) []producer.Result {
	res := p.InstallMany(ctx, payloads, bo)
	if wait <= 0 {
		return res
	}
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(wait))
	for ctx.Err() == nil {
		var idx []int
		for i, r := range res {
			if r.Outcome == "" && r.Err != nil {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return res
		}
		d := b.NextBackOff()
		if d == backoff.Stop {
			return res
		}
		if retrying != nil {
			retrying(len(idx), res[idx[0]].Err)
		}
		select {
		case <-ctx.Done():
			return res
		case <-time.After(d):
		}
		again := make([]tasks.InstallWidgetPayload, len(idx))
		for j, i := range idx {
			again[j] = payloads[i]
		}
		for j, r := range p.InstallMany(ctx, again, bo) {
			res[idx[j]] = r
		}
	}
	return res
}
