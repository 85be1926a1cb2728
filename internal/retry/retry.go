// Package retry is widgetq's retry policy: which failures are tried again,
// after how long, and which spend an attempt. asynq owns retries over
// seconds and minutes; this package answers its questions (RetryDelay,
// IsFailure) from the error a handler returned.
package retry

import (
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/widgetq/widgetq/internal/kommo"
)

// DeferError asks for the task to run again after Delay without spending
// an attempt: the rate budget is spent, or Kommo said 429. It is not a
// failure of the task.
type DeferError struct {
	Delay  time.Duration
	Reason string
}

func (e *DeferError) Error() string {
	return fmt.Sprintf("deferred for %s: %s", e.Delay.Round(time.Millisecond), e.Reason)
}

// Policy computes retry delays: exponential backoff with jitter between
// Base and Cap, unless the error carries a delay of its own.
type Policy struct {
	// Base is the first retry's delay (default 2s), Cap the longest (default
	// 10 min), Multiplier the growth per retry (default 2), Jitter the
	// randomization factor in [0,1] (default 0.5: ±50%).
	Base, Cap  time.Duration
	Multiplier float64
	Jitter     float64
	// MaxRetryAfter caps a Retry-After from Kommo (default 1h).
	MaxRetryAfter time.Duration
}

// WithDefaults fills the zero fields.
func (p Policy) WithDefaults() Policy {
	if p.Base <= 0 {
		p.Base = 2 * time.Second
	}
	if p.Cap <= 0 {
		p.Cap = 10 * time.Minute
	}
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	if p.Jitter < 0 || p.Jitter > 1 {
		p.Jitter = 0.5
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = time.Hour
	}
	return p
}

// Validate names the first setting out of range.
func (p Policy) Validate() error {
	switch {
	case p.Base <= 0:
		return errors.New("retry base must be positive")
	case p.Cap < p.Base:
		return fmt.Errorf("retry cap %s is below the base %s", p.Cap, p.Base)
	}
	return nil
}

// Backoff returns the delay before retry n+1 (n retries done so far):
// Base·Multiplier^n capped at Cap, randomized by Jitter.
func (p Policy) Backoff(n int) time.Duration {
	p = p.WithDefaults()
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.Base,
		RandomizationFactor: p.Jitter,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.Cap,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	n = max(0, min(n, 64))
	var d time.Duration
	for range n + 1 {
		d = b.NextBackOff()
	}
	return min(d, p.Cap)
}

// Delay returns how long to wait before running a task again after err,
// with n retries done: a deferral's own delay, else Kommo's Retry-After,
// else the backoff.
func (p Policy) Delay(n int, err error) time.Duration {
	p = p.WithDefaults()
	var de *DeferError
	if errors.As(err, &de) {
		return max(de.Delay, 0)
	}
	var ke *kommo.Error
	if errors.As(err, &ke) && ke.RetryAfter > 0 {
		return min(ke.RetryAfter, p.MaxRetryAfter)
	}
	return p.Backoff(n)
}

// IsFailure reports whether err spends one of the task's attempts. A
// deferral does not: the task did nothing wrong.
func IsFailure(err error) bool {
	var de *DeferError
	return !errors.As(err, &de)
}
