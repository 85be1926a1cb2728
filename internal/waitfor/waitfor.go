// Package waitfor is the one way widgetq's tests wait: a condition polled
// until it holds or a deadline passes — a bound on how long something may
// take to happen, never a bare sleep and never a measured duration.
package waitfor

import (
	"testing"
	"time"
)

// Poll is how often a condition is checked.
const Poll = 20 * time.Millisecond

// Until polls cond until it reports done. Past within, the test fails
// with what cond last reported as the state it saw.
func Until(t testing.TB, within time.Duration, cond func() (done bool, state string)) {
	t.Helper()
	if !Within(within, cond) {
		_, state := cond()
		t.Fatalf("not within %v: %s", within, state)
	}
}

// Within polls cond until it reports done, for at most d, and says
// whether it did (for helpers that report the failure their own way).
func Within(d time.Duration, cond func() (done bool, state string)) bool {
	deadline := time.Now().Add(d)
	for {
		if done, _ := cond(); done {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(Poll)
	}
}
