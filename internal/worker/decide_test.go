package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/store"
)

// TestDecide holds the verdict table: every class of failure, at the
// first, a middle and the last attempt and when asynq can no longer
// defer, plus deferrals, shutdowns and success.
func TestDecide(t *testing.T) {
	t.Parallel()
	positions := []struct {
		name            string
		canDefer, final bool
	}{
		{"first", true, false},
		{"middle", true, false},
		{"last", true, true},
		{"exhausted", false, true},
	}
	type want struct {
		outcome outcome
		status  store.Status
		pause   time.Duration // also the delay
		block   bool
	}
	retry := want{outcome: retrying, status: store.StatusRetrying}
	fail := want{outcome: failed, status: store.StatusFailed}
	// byPosition gives the verdict at each position: a retryable class
	// retries until the last attempt, a permanent one fails at once.
	byPosition := func(class string) func(canDefer, final bool) want {
		switch class {
		case string(kommo.ClassRateLimited):
			return func(canDefer, final bool) want {
				if canDefer {
					return want{outcome: retrying, status: store.StatusRetrying, pause: 7 * time.Second}
				}
				return fail
			}
		case string(kommo.ClassServer), string(kommo.ClassNetwork), ClassInternal:
			return func(_, final bool) want {
				if final {
					return fail
				}
				return retry
			}
		case string(kommo.ClassBlocked):
			return func(bool, bool) want { return want{outcome: failed, status: store.StatusFailed, block: true} }
		}
		return func(bool, bool) want { return fail }
	}
	errs := map[string]error{}
	for _, c := range kommo.Classes {
		errs[string(c)] = &kommo.Error{Class: c, StatusCode: 400, RetryAfter: 7 * time.Second}
	}
	errs[ClassInternal] = &internalErr{errors.New("redis: connection refused")}
	for _, c := range []string{ClassAccountUnknown, ClassHostNotAllowed, string(kommo.ClassInvalid) + "-settings"} {
		errs[c] = &permanent{class: c, detail: "x"}
	}
	for class, err := range errs {
		for _, p := range positions {
			f := facts{canDefer: p.canDefer, final: p.final, success: store.StatusInstalled, defaultPause: 5 * time.Second}
			got := decide(f, fmt.Errorf("install: %w", err))
			w := byPosition(class)(p.canDefer, p.final)
			if got.outcome != w.outcome || got.status != w.status || got.pause != w.pause || got.delay != w.pause || got.block != w.block || got.class != class {
				t.Errorf("%s at the %s attempt: %+v, want %+v (class %s)", class, p.name, got, w, class)
			}
		}
	}
}

func TestDecideDeferralsShutdownsAndSuccess(t *testing.T) {
	t.Parallel()
	def := &retry.DeferError{Delay: 3 * time.Second, Reason: "rate budget spent"}
	for _, c := range []struct {
		name string
		f    facts
		err  error
		want verdict
	}{
		{"a deferral sends nothing: the mark is taken back", facts{canDefer: true}, def,
			verdict{outcome: deferred, delay: 3 * time.Second, clearInFlight: true}},
		{"a deferral after a change may have gone out keeps the mark", facts{canDefer: true, sentChange: true}, def,
			verdict{outcome: deferred, delay: 3 * time.Second}},
		{"a deferral keeps an earlier run's mark", facts{canDefer: true, prevInFlight: true}, def,
			verdict{outcome: deferred, delay: 3 * time.Second}},
		{"a deferral asynq would archive is a failure", facts{canDefer: false, final: true}, def,
			verdict{outcome: failed, status: store.StatusFailed, class: string(kommo.ClassNetwork)}},
		{"shutting down: nothing recorded", facts{canDefer: true, shuttingDown: true}, fmt.Errorf("post: %w", context.Canceled),
			verdict{outcome: interrupted}},
		{"any failure while shutting down is an interruption: the mark stays", facts{canDefer: true, shuttingDown: true},
			&kommo.Error{Class: kommo.ClassNetwork, Err: errors.New("unexpected EOF")}, verdict{outcome: interrupted}},
		{"a cancellation that is not a shutdown is a network failure", facts{canDefer: true}, context.Canceled,
			verdict{outcome: retrying, status: store.StatusRetrying, class: string(kommo.ClassNetwork)}},
		{"success records the run's status", facts{canDefer: true, success: store.StatusAlreadyInstalled}, nil,
			verdict{outcome: succeeded, status: store.StatusAlreadyInstalled}},
		{"a 429 without Retry-After pauses for the default", facts{canDefer: true, defaultPause: 5 * time.Second}, &kommo.Error{Class: kommo.ClassRateLimited, StatusCode: 429},
			verdict{outcome: retrying, status: store.StatusRetrying, class: string(kommo.ClassRateLimited), pause: 5 * time.Second, delay: 5 * time.Second}},
	} {
		if got := decide(c.f, c.err); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
