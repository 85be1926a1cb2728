package worker

import (
	"errors"
	"time"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/store"
)

// facts are what the verdict on an attempt depends on, besides its error.
type facts struct {
	// canDefer: asynq will retry rather than archive (see attempt.canDefer);
	// final: a retryable failure now would exhaust the attempts.
	canDefer, final bool
	// sentChange: an install or uninstall request may have gone out.
	// prevInFlight: an earlier run's in-flight mark was already there.
	sentChange, prevInFlight bool
	// shuttingDown: the worker is stopping (the task's context was
	// canceled; a task timeout is not a shutdown).
	shuttingDown bool
	// success is the status a run without error records.
	success store.Status
	// defaultPause is how long a 429 without Retry-After pauses the account.
	defaultPause time.Duration
}

// outcome is what happens to a task after an attempt.
type outcome int

const (
	// deferred: back to the queue after delay, no attempt spent, nothing
	// recorded.
	deferred outcome = iota
	// interrupted: the worker is stopping; asynq puts the task back.
	interrupted
	// succeeded: the status is recorded; the task is done.
	succeeded
	// retrying: recorded; asynq retries after its backoff (or after delay,
	// without spending an attempt, when delay is set).
	retrying
	// failed: recorded; asynq must not retry (archived).
	failed
)

// verdict is decide's answer: what to record and what asynq does next.
// apply (Handler.finish) carries it out.
type verdict struct {
	outcome outcome
	status  store.Status // recorded, unless deferred or interrupted
	class   string       // the error's class ("" on success)
	// clearInFlight: a deferral that sent nothing takes back its mark.
	clearInFlight bool
	// delay: the task comes back after it without spending an attempt.
	delay time.Duration
	// pause: pause the account for every worker this long (a 429).
	pause time.Duration
	// block: mark the account blocked (Kommo's HTML 403), and count it
	// towards an IP block.
	block bool
}

// decide is the one place that turns an attempt's end into a verdict. It
// is a pure function of the facts and the error.
func decide(f facts, err error) verdict {
	var de *retry.DeferError
	if errors.As(err, &de) && f.canDefer {
		// The rate budget is spent (or all traffic is paused): not an
		// attempt. The mark this run set is taken back unless a change may
		// have been sent, or an earlier run's mark was already there.
		return verdict{outcome: deferred, delay: max(de.Delay, 0), clearInFlight: !f.sentChange && !f.prevInFlight}
	}
	if err != nil && f.shuttingDown {
		// asynq puts the task back without counting an attempt, whatever
		// the handler returns. Recording a verdict now would clear the
		// in-flight mark, and the next run — not a retry — would install
		// again without asking Kommo first.
		return verdict{outcome: interrupted}
	}
	if err == nil {
		return verdict{outcome: succeeded, status: f.success}
	}
	class := classOf(err)
	var ke *kommo.Error
	errors.As(err, &ke)
	switch {
	case ke != nil && ke.Class == kommo.ClassRateLimited && f.canDefer:
		// Kommo says slow down: pause the account for every process and
		// come back after the pause, without spending an attempt.
		pause := ke.RetryAfter
		if pause <= 0 {
			pause = f.defaultPause
		}
		return verdict{outcome: retrying, status: store.StatusRetrying, class: class, pause: pause, delay: pause}
	case ke != nil && ke.Class == kommo.ClassBlocked:
		return verdict{outcome: failed, status: store.StatusFailed, class: class, block: true}
	case retryable(err) && !f.final:
		return verdict{outcome: retrying, status: store.StatusRetrying, class: class}
	}
	return verdict{outcome: failed, status: store.StatusFailed, class: class}
}
