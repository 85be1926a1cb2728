package retry_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/retry"
)

func TestBackoffGrowsWithJitterUpToTheCap(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Base: time.Second, Cap: 30 * time.Second, Multiplier: 2, Jitter: 0.5}
	for n, mid := range []time.Duration{1, 2, 4, 8, 16} {
		mid *= time.Second
		lo, hi := mid/2, mid*3/2
		seen := map[time.Duration]bool{}
		for range 50 {
			d := p.Backoff(n)
			if d < lo || d > hi {
				t.Fatalf("retry %d: %v outside [%v, %v]", n, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("retry %d: only %d distinct delays in 50: no jitter", n, len(seen))
		}
	}
	for range 50 {
		if d := p.Backoff(20); d > 30*time.Second || d < 15*time.Second {
			t.Fatalf("capped backoff %v", d)
		}
	}
	if d := (retry.Policy{Base: time.Second, Cap: time.Minute, Jitter: 0}).WithDefaults(); d.Jitter != 0 {
		t.Fatal("a jitter of 0 was replaced")
	}
}

func TestDelayPrefersTheErrorsOwn(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Base: time.Second, Cap: time.Minute, Jitter: 0}
	if d := p.Delay(3, fmt.Errorf("x: %w", &retry.DeferError{Delay: 1500 * time.Millisecond})); d != 1500*time.Millisecond {
		t.Fatalf("deferral: %v", d)
	}
	if d := p.Delay(3, fmt.Errorf("x: %w", &kommo.Error{Class: kommo.ClassRateLimited, RetryAfter: 7 * time.Second})); d != 7*time.Second {
		t.Fatalf("Retry-After: %v", d)
	}
	if d := p.Delay(3, &kommo.Error{Class: kommo.ClassRateLimited, RetryAfter: 9 * time.Hour}); d != time.Hour {
		t.Fatalf("Retry-After capped: %v", d)
	}
	if d := p.Delay(3, &kommo.Error{Class: kommo.ClassServer}); d != 8*time.Second {
		t.Fatalf("backoff: %v", d)
	}
}

func TestOnlyDeferralsSpareTheBudget(t *testing.T) {
	t.Parallel()
	if retry.IsFailure(fmt.Errorf("w: %w", &retry.DeferError{})) {
		t.Fatal("deferral is a failure")
	}
	if !retry.IsFailure(errors.New("boom")) || !retry.IsFailure(&kommo.Error{Class: kommo.ClassServer}) {
		t.Fatal("a real failure spared the budget")
	}
}

func TestPolicyValidation(t *testing.T) {
	t.Parallel()
	if (retry.Policy{Base: time.Second, Cap: time.Minute}).Validate() != nil {
		t.Fatal("good policy refused")
	}
	if (retry.Policy{Base: time.Minute, Cap: time.Second}).Validate() == nil || (retry.Policy{}).Validate() == nil {
		t.Fatal("bad policy accepted")
	}
}
