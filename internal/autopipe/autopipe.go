// Package autopipe batches concurrent Lua script calls into pipelines.
//
// asynq's Client enqueues a task with one EVALSHA and one round trip, and
// offers no batch API. Wrapped around the go-redis client handed to
// asynq.NewClientFromRedisClient, a Client collects the EVALSHAs that
// concurrent callers make and sends them together: with a hundred enqueues
// in flight, a hundred tasks cost one round trip instead of a hundred,
// while each caller still gets its own reply. Nothing of asynq's internals
// is copied: if asynq ever stops using EVALSHA, calls simply pass through
// unbatched.
package autopipe

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client is a redis.UniversalClient whose EvalSha calls are pipelined.
type Client struct {
	redis.UniversalClient
	reqs     chan *request
	maxBatch int
	direct   func(keys []string) bool
	timeout  time.Duration
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.RWMutex // held for reading while a call is queued
	closed   bool
}

type request struct {
	sha  string
	keys []string
	args []any
	cmd  *redis.Cmd
	done chan struct{}
}

// Options tune a Client.
type Options struct {
	// Loops is how many pipelines may be in flight at once (default 4).
	// With one, the calls that arrive while a pipeline is out all go in
	// the next: fewer round trips, each call waiting at most one more.
	Loops int
	// MaxBatch is the most calls in one pipeline (default 256).
	MaxBatch int
	// Direct, when set, picks the calls sent at once on their own: a
	// caller whose calls come one after another while others wait on it
	// (asynq's dequeue) must not wait for a pipeline in flight.
	Direct func(keys []string) bool
}

// New wraps c. loops pipelines may be in flight at once (default 4), each
// of at most maxBatch calls (default 256).
func New(c redis.UniversalClient, loops, maxBatch int) *Client {
	return NewWith(c, Options{Loops: loops, MaxBatch: maxBatch})
}

// NewWith wraps c with the options.
func NewWith(c redis.UniversalClient, o Options) *Client {
	if o.Loops <= 0 {
		o.Loops = 4
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	a := &Client{UniversalClient: c, reqs: make(chan *request, o.MaxBatch*o.Loops), maxBatch: o.MaxBatch, direct: o.Direct,
		timeout: 30 * time.Second, stop: make(chan struct{})}
	for range o.Loops {
		a.wg.Add(1)
		go a.loop()
	}
	return a
}

// EvalSha queues the call for the next pipeline and waits for its reply
// (or, for a call Direct picks, sends it at once).
func (a *Client) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	if a.direct != nil && a.direct(keys) {
		return a.UniversalClient.EvalSha(ctx, sha, keys, args...)
	}
	r := &request{sha: sha, keys: keys, args: args, done: make(chan struct{})}
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return a.UniversalClient.EvalSha(ctx, sha, keys, args...)
	}
	select {
	case a.reqs <- r:
		a.mu.RUnlock()
	case <-ctx.Done():
		a.mu.RUnlock()
		return errCmd(ctx, ctx.Err())
	}
	select {
	case <-r.done:
		return r.cmd
	case <-ctx.Done():
		// The call may still run; as with a lost reply, the caller cannot
		// know.
		return errCmd(ctx, ctx.Err())
	}
}

func errCmd(ctx context.Context, err error) *redis.Cmd {
	c := redis.NewCmd(ctx)
	c.SetErr(err)
	return c
}

func (a *Client) loop() {
	defer a.wg.Done()
	batch := make([]*request, 0, a.maxBatch)
	for {
		var first *request
		select {
		case first = <-a.reqs:
		case <-a.stop:
			// Send what is still queued, then stop.
			for {
				select {
				case r := <-a.reqs:
					a.exec([]*request{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < a.maxBatch {
			select {
			case r := <-a.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		a.exec(batch)
	}
}

func (a *Client) exec(batch []*request) {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	pipe := a.UniversalClient.Pipeline()
	for _, r := range batch {
		r.cmd = pipe.EvalSha(ctx, r.sha, r.keys, r.args...)
	}
	// Each command carries its own reply or error; Exec's error is the
	// first of them.
	_, _ = pipe.Exec(ctx)
	for _, r := range batch {
		close(r.done)
	}
}

// Close stops batching; later calls go straight through. It does not
// close the wrapped client.
func (a *Client) Close() error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.stop)
	}
	a.mu.Unlock()
	// The loops send what was queued before they stop.
	a.wg.Wait()
	return nil
}
