// Package producer enqueues widgetq's tasks and records them as queued:
// what a marketplace backend calls when an account connects.
package producer

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

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
)

// Producer enqueues tasks. It is safe for concurrent use.
type Producer struct {
	client *asynq.Client
	st     *store.Store
	opts   []asynq.Option
}

// New returns a producer on a Redis, with widgetq's key prefix ("" for the
// default) and options added to every task (after tasks' defaults).
func New(rdb redis.UniversalClient, prefix string, opts ...asynq.Option) *Producer {
	return &Producer{client: asynq.NewClientFromRedisClient(rdb), st: store.New(rdb, prefix), opts: opts}
}

// Close releases nothing the caller owns: the Redis client stays open.
func (p *Producer) Close() error { return nil }

// Install enqueues an install; the result then reads queued.
func (p *Producer) Install(ctx context.Context, payload tasks.InstallWidgetPayload, opts ...asynq.Option) (Outcome, error) {
	if payload.EnqueueID == "" {
		payload.EnqueueID = tasks.NewEnqueueID()
	}
	t, err := tasks.NewInstallWidgetTask(payload, append(append([]asynq.Option(nil), p.opts...), opts...)...)
	if err != nil {
		return "", err
	}
	return p.enqueue(ctx, t, "install", payload.AccountID, payload.WidgetCode, payload.EnqueueID)
}

// Uninstall enqueues an uninstall; the result then reads queued.
func (p *Producer) Uninstall(ctx context.Context, payload tasks.UninstallWidgetPayload, opts ...asynq.Option) (Outcome, error) {
	if payload.EnqueueID == "" {
		payload.EnqueueID = tasks.NewEnqueueID()
	}
	t, err := tasks.NewUninstallWidgetTask(payload, append(append([]asynq.Option(nil), p.opts...), opts...)...)
	if err != nil {
		return "", err
	}
	return p.enqueue(ctx, t, "uninstall", payload.AccountID, payload.WidgetCode, payload.EnqueueID)
}

func (p *Producer) enqueue(ctx context.Context, t *asynq.Task, op string, account int64, code, enqueueID string) (Outcome, error) {
	info, err := p.client.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return AlreadyQueued, nil
	}
	if err != nil {
		return "", fmt.Errorf("enqueue %s of widget %s for account %d: %w", op, code, account, err)
	}
	// After the enqueue: a worker may already have recorded this very
	// enqueueing, and MarkQueued then leaves its result alone.
	if _, err := p.st.MarkQueued(ctx, op, account, code, info.ID, enqueueID); err != nil {
		return Queued, fmt.Errorf("task %s queued, but its result could not be marked queued: %w", info.ID, err)
	}
	return Queued, nil
}
