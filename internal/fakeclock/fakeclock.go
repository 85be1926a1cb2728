// Package fakeclock is a clock for tests that moves only when told, so
// pacing, limits and expiries are tested on the decisions made rather than
// on how long the machine took.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock at a fixed moment.
func New() *Clock { return &Clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)} }

// Now is the clock's time; pass it where a func() time.Time is taken.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}
