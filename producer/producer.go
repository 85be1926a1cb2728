// Package producer enqueues widgetq's tasks and records them as queued:
// what a marketplace backend calls when an account connects.
package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/autopipe"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

// Outcome is what became of one enqueue.
type Outcome string

const (
	// Queued: the task is in the queue and its result reads queued.
	Queued Outcome = "queued"
	// AlreadyQueued: the same task (same account, widget and operation) is
	// pending, running, retrying, archived, or completed within its
	// retention; nothing was added.
	AlreadyQueued Outcome = "already_queued"
	// Invalid: the payload, or the account (with RequireAccounts), was
	// refused; Result.Err says why. Nothing was added.
	Invalid Outcome = "invalid"
)

// Result is the outcome of one enqueue of a batch.
type Result struct {
	Outcome Outcome
	// TaskID is the task's ID when queued or already queued.
	TaskID string
	// Err is the reason when Invalid, or the failure when the enqueue
	// could not be made (Outcome then empty).
	Err error
	// BatchID is the batch a queued task joined.
	BatchID string
}

// ErrNoCredentials is the reason of an Invalid outcome for an account
// with no stored credentials (with RequireAccounts).
var ErrNoCredentials = errors.New("no credentials stored for the account")

// BatchOptions tune InstallMany.
type BatchOptions struct {
	// RequireAccounts refuses payloads whose account has no credentials.
	RequireAccounts bool
	// DryRun checks everything and enqueues nothing: the outcomes say
	// what would happen (Queued for what would be enqueued).
	DryRun bool
	// Options are added to every task.
	Options []asynq.Option
	// BatchID is the batch the queued tasks join (tasks.NewBatchID);
	// empty: a batch of their own, made by this call.
	BatchID string
	// KeepOpen leaves the batch open for more calls with the same BatchID
	// (a bulk run's chunks); SealBatch closes it. Otherwise the call seals
	// it: the batch is done once its tasks all have a final result.
	KeepOpen bool
	// CallbackURL receives the batch's webhook events instead of the
	// default URL (checked by the caller against WIDGETQ_WEBHOOK_HOSTS).
	CallbackURL string
}

// InstallMany enqueues many installs, each with its own outcome, in the
// order given. Account checks and queued marks take one round trip per
// batch; each enqueue is one.
func (p *Producer) InstallMany(ctx context.Context, payloads []tasks.InstallWidgetPayload, bo BatchOptions) []Result {
	items := make([]item, len(payloads))
	opts := append(append([]asynq.Option(nil), p.opts...), bo.Options...)
	if bo.BatchID == "" && !bo.DryRun {
		bo.BatchID = tasks.NewBatchID()
	}
	for i := range payloads {
		pl := &payloads[i]
		pl.BatchID = bo.BatchID
		if pl.EnqueueID == "" {
			pl.EnqueueID = tasks.NewEnqueueID()
		}
		items[i] = item{account: pl.AccountID, code: pl.WidgetCode, integ: pl.Integration, enqueueID: pl.EnqueueID}
		items[i].task, items[i].err = tasks.NewInstallWidgetTask(p.sealed(*pl), p.forAccount(opts, pl.AccountID)...)
	}
	return p.many(ctx, "install", items, bo)
}

// UninstallMany enqueues many uninstalls, as InstallMany does installs.
func (p *Producer) UninstallMany(ctx context.Context, payloads []tasks.UninstallWidgetPayload, bo BatchOptions) []Result {
	items := make([]item, len(payloads))
	opts := append(append([]asynq.Option(nil), p.opts...), bo.Options...)
	if bo.BatchID == "" && !bo.DryRun {
		bo.BatchID = tasks.NewBatchID()
	}
	for i := range payloads {
		pl := &payloads[i]
		pl.BatchID = bo.BatchID
		if pl.EnqueueID == "" {
			pl.EnqueueID = tasks.NewEnqueueID()
		}
		items[i] = item{account: pl.AccountID, code: pl.WidgetCode, integ: pl.Integration, enqueueID: pl.EnqueueID}
		items[i].task, items[i].err = tasks.NewUninstallWidgetTask(*pl, p.forAccount(opts, pl.AccountID)...)
	}
	return p.many(ctx, "uninstall", items, bo)
}

// item is one task of a batch, built or refused.
type item struct {
	account         int64
	code, enqueueID string
	integ           string
	task            *asynq.Task
	err             error
}

func (p *Producer) many(ctx context.Context, op string, items []item, bo BatchOptions) []Result {
	out := make([]Result, len(items))
	var ids []int64
	for i, it := range items {
		if it.err != nil {
			out[i] = Result{Outcome: Invalid, Err: it.err}
			items[i].task = nil
			continue
		}
		ids = append(ids, it.account)
	}
	if bo.RequireAccounts && len(ids) > 0 {
		exist, err := p.st.AccountsExist(ctx, ids)
		if err != nil {
			for i := range out {
				if items[i].task != nil {
					out[i] = Result{Err: err}
					items[i].task = nil
				}
			}
			return out
		}
		for i, it := range items {
			if it.task != nil && !exist[it.account] {
				out[i] = Result{Outcome: Invalid, Err: fmt.Errorf("account %d: %w", it.account, ErrNoCredentials)}
				items[i].task = nil
			}
		}
	}
	// The enqueues run concurrently, so that they share round trips. A
	// batch once started is finished even if the caller gives up: an enqueue
	// cut off mid-flight may have happened without its caller knowing, and
	// its result would then never be marked queued.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	infos := make([]*asynq.TaskInfo, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		if it.task == nil {
			continue
		}
		id := tasks.InstallTaskID(it.account, it.code)
		if op == "uninstall" {
			id = tasks.UninstallTaskID(it.account, it.code)
		}
		if bo.DryRun {
			out[i] = Result{Outcome: Queued, TaskID: id}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := p.client.EnqueueContext(ectx, it.task)
			switch {
			case errors.Is(err, asynq.ErrTaskIDConflict):
				out[i] = Result{Outcome: AlreadyQueued, TaskID: id}
			case err != nil:
				out[i] = Result{Err: fmt.Errorf("enqueue %s of widget %s for account %d: %w", op, it.code, it.account, err)}
			default:
				out[i] = Result{Outcome: Queued, TaskID: info.ID}
				infos[i] = info
			}
		}()
	}
	wg.Wait()
	var marks []store.Queued
	var owners map[string]string
	for i, info := range infos {
		if info != nil {
			it := items[i]
			if it.integ == "" && owners == nil {
				// The marks name the integration a worker will resolve: the
				// widget's registered owner (one read per batch).
				if owners, _ = p.st.Owners(ctx); owners == nil {
					owners = map[string]string{}
				}
			}
			integ := it.integ
			if integ == "" {
				integ = owners[it.code]
			}
			marks = append(marks, store.Queued{Op: op, Queue: info.Queue, AccountID: it.account, Code: it.code, TaskID: info.ID, EnqueueID: it.enqueueID, Integration: integ})
		}
	}
	// What is queued gets marked even if the caller gives up now: an
	// interrupted bulk must not leave queued tasks without a result.
	markCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	bm := store.BatchMarks{ID: bo.BatchID, Seal: !bo.KeepOpen, CallbackURL: bo.CallbackURL, Events: p.events}
	if len(marks) == 0 && !bo.KeepOpen {
		bm.ID = "" // nothing joined a batch of its own: there is none
	}
	if bm.ID != "" {
		for i := range out {
			if out[i].Outcome == Queued && infos[i] != nil {
				out[i].BatchID = bm.ID
			}
		}
	}
	if err := p.st.MarkQueuedBatch(markCtx, marks, bm); err != nil {
		// The tasks are queued: a worker records their results anyway.
		for i := range out {
			if out[i].Outcome == Queued && out[i].Err == nil && !bo.DryRun {
				out[i].Err = fmt.Errorf("queued, but not marked queued: %w", err)
			}
		}
	}
	return out
}

// SealBatch says no more tasks will join a batch made open (KeepOpen):
// it is done once every task in it has a final result.
func (p *Producer) SealBatch(ctx context.Context, id, callbackURL string) error {
	return p.st.SealBatch(ctx, store.BatchMarks{ID: id, CallbackURL: callbackURL, Events: p.events})
}

// EmitEvents makes the batches this producer creates write their
// batch.completed webhook event (set it where WIDGETQ_WEBHOOK_SECRET is
// set, as workers do for install events). Call it before the producer is
// shared.
func (p *Producer) EmitEvents(on bool) { p.events = on }

// Producer enqueues tasks. It is safe for concurrent use.
type Producer struct {
	events bool
	client *asynq.Client
	pipe   *autopipe.Client
	st     *store.Store
	opts   []asynq.Option
	keys   *seal.Keys
	// shardBase and shards split tasks over queues by account (Shard).
	shardBase string
	shards    int
}

// Shard makes the producer put each account's tasks in one of n queues
// named after base (tasks.ShardQueue): on a Redis Cluster they spread
// over the nodes. Workers must serve the same shards (worker -shards n).
// Call it before the producer is shared.
func (p *Producer) Shard(base string, n int) {
	p.shardBase, p.shards = base, n
}

// forAccount adds the account's shard queue to opts (last, so it wins).
func (p *Producer) forAccount(opts []asynq.Option, account int64) []asynq.Option {
	if p.shards <= 1 {
		return opts
	}
	return append(append([]asynq.Option(nil), opts...), asynq.Queue(tasks.ShardQueue(p.shardBase, account, p.shards)))
}

// SealSettings makes the producer seal every install's settings with key
// (the 32 bytes WIDGETQ_SECRET_KEY encodes in base64) before they reach
// Redis, so that `pass` values and `users_lp` passwords never rest there
// in plaintext; workers need the same key. nil turns sealing off. Call it
// before the producer is shared.
func (p *Producer) SealSettings(key []byte) error {
	if key == nil {
		p.keys = nil
		return nil
	}
	k, err := seal.New(key)
	if err != nil {
		return err
	}
	p.keys = k
	return nil
}

// sealed returns the payload with its settings sealed when the producer
// has a key. Invalid payloads come back as they are, for the constructor
// to report.
func (p *Producer) sealed(pl tasks.InstallWidgetPayload) tasks.InstallWidgetPayload {
	if !p.keys.Enabled() || pl.SealedSettings != "" || pl.Validate() != nil {
		return pl
	}
	s := bytes.TrimSpace(pl.Settings)
	if len(s) == 0 || bytes.Equal(s, []byte("null")) {
		s = []byte("{}")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, s); err != nil {
		return pl
	}
	pl.SealedSettings, pl.Settings = p.keys.Seal(buf.String()), nil
	return pl
}

// New returns a producer on a Redis, with widgetq's key prefix ("" for the
// default) and options added to every task (after tasks' defaults).
func New(rdb redis.UniversalClient, prefix string, opts ...asynq.Option) *Producer {
	// Concurrent enqueues share round trips (see internal/autopipe).
	pipe := autopipe.New(rdb, 4, 256)
	return &Producer{client: asynq.NewClientFromRedisClient(pipe), pipe: pipe, st: store.New(rdb, prefix), opts: opts}
}

// Close stops the producer's batching goroutines. The Redis client, the
// caller's, stays open.
func (p *Producer) Close() error { return p.pipe.Close() }

// Install enqueues an install; the result then reads queued.
func (p *Producer) Install(ctx context.Context, payload tasks.InstallWidgetPayload, opts ...asynq.Option) (Outcome, error) {
	if payload.EnqueueID == "" {
		payload.EnqueueID = tasks.NewEnqueueID()
	}
	t, err := tasks.NewInstallWidgetTask(p.sealed(payload), p.forAccount(append(append([]asynq.Option(nil), p.opts...), opts...), payload.AccountID)...)
	if err != nil {
		return "", err
	}
	return p.enqueue(ctx, t, "install", payload.AccountID, payload.WidgetCode, payload.Integration, payload.EnqueueID)
}

// Uninstall enqueues an uninstall; the result then reads queued.
func (p *Producer) Uninstall(ctx context.Context, payload tasks.UninstallWidgetPayload, opts ...asynq.Option) (Outcome, error) {
	if payload.EnqueueID == "" {
		payload.EnqueueID = tasks.NewEnqueueID()
	}
	t, err := tasks.NewUninstallWidgetTask(payload, p.forAccount(append(append([]asynq.Option(nil), p.opts...), opts...), payload.AccountID)...)
	if err != nil {
		return "", err
	}
	return p.enqueue(ctx, t, "uninstall", payload.AccountID, payload.WidgetCode, payload.Integration, payload.EnqueueID)
}

func (p *Producer) enqueue(ctx context.Context, t *asynq.Task, op string, account int64, code, integ, enqueueID string) (Outcome, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	// Once sent, the enqueue and its mark finish even if ctx ends: a
	// cut-off enqueue may have happened, and its result must read queued.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	info, err := p.client.EnqueueContext(ectx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return AlreadyQueued, nil
	}
	if err != nil {
		return "", fmt.Errorf("enqueue %s of widget %s for account %d: %w", op, code, account, err)
	}
	// After the enqueue: a worker may already have recorded this very
	// enqueueing, and MarkQueued then leaves its result alone.
	markCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := p.st.MarkQueued(markCtx, store.Queued{Op: op, Queue: info.Queue, AccountID: account, Code: code, TaskID: info.ID, EnqueueID: enqueueID, Integration: integ}); err != nil {
		return Queued, fmt.Errorf("task %s queued, but its result could not be marked queued: %w", info.ID, err)
	}
	return Queued, nil
}

// Connect enqueues the exchange of an authorization code from Kommo's
// install redirect (see tasks.TypeConnectAccount): a worker trades it for
// the account's tokens, stores them for the integration, and enqueues the
// integration's install-on-connect widgets. The code is sealed when the
// producer has a key. A code already queued is AlreadyQueued.
func (p *Producer) Connect(ctx context.Context, integration, baseURL, code string, receivedAt time.Time) (Outcome, error) {
	pl := tasks.ConnectAccountPayload{Integration: integration, BaseURL: baseURL, Code: code, ReceivedAt: receivedAt.UTC()}
	if p.keys.Enabled() {
		pl.SealedCode, pl.Code = p.keys.Seal(code), ""
	}
	t, err := tasks.NewConnectAccountTask(pl, code, p.forAccount(append([]asynq.Option(nil), p.opts...), 0)...)
	if err != nil {
		return Invalid, err
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err = p.client.EnqueueContext(ectx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return AlreadyQueued, nil
	}
	if err != nil {
		return "", fmt.Errorf("enqueue the connection of integration %s: %w", integration, err)
	}
	return Queued, nil
}

// Verify queues the check of a recorded install (tasks.TypeVerifyWidget):
// a worker asks Kommo, within the account's limits, whether it still
// stands. A check already queued for the account and widget is
// AlreadyQueued.
func (p *Producer) Verify(ctx context.Context, v tasks.VerifyWidgetPayload) (Outcome, error) {
	t, err := tasks.NewVerifyWidgetTask(v, p.forAccount(append([]asynq.Option(nil), p.opts...), v.AccountID)...)
	if err != nil {
		return Invalid, err
	}
	_, err = p.client.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return AlreadyQueued, nil
	}
	if err != nil {
		return "", fmt.Errorf("enqueue the check of widget %s in account %d: %w", v.WidgetCode, v.AccountID, err)
	}
	return Queued, nil
}
