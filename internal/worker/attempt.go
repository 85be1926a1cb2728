package worker

import (
	"context"

	"github.com/hibiken/asynq"
)

// Attempt is what asynq tells a handler about a run of a task.
type Attempt struct {
	TaskID, Queue string
	// Retried is how many times the task was retried before (0: the first
	// run); MaxRetry how many retries it has in all.
	Retried, MaxRetry int
}

type attemptKey struct{}

// attemptOf reads the run's facts: from RunAttempt's context, else from
// asynq's.
func attemptOf(ctx context.Context) Attempt {
	if a, ok := ctx.Value(attemptKey{}).(Attempt); ok {
		return a
	}
	var a Attempt
	a.TaskID, _ = asynq.GetTaskID(ctx)
	a.Queue, _ = asynq.GetQueueName(ctx)
	a.Retried, _ = asynq.GetRetryCount(ctx)
	a.MaxRetry, _ = asynq.GetMaxRetry(ctx)
	return a
}

// RunAttempt runs one attempt of t through h in the caller's goroutine, as
// asynq would run it with the facts in a — no server, no queue, no
// waiting for a retry — and returns the handler's error, which is what
// asynq would act on (retry.IsFailure, asynq.SkipRetry, a
// *retry.DeferError). It is the harness for testing one attempt, like
// River's rivertest.Worker.
func (h *Handler) RunAttempt(ctx context.Context, t *asynq.Task, a Attempt) error {
	mux := asynq.NewServeMux()
	h.Register(mux)
	return mux.ProcessTask(context.WithValue(ctx, attemptKey{}, a), t)
}
