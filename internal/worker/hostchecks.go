package worker

import (
	"sync"
	"sync/atomic"

	"github.com/widgetq/widgetq/internal/kommohost"
)

// hostChecks remembers the allow-list's verdict on each account base URL
// the handler has seen: every task checks its account's URL, and parsing
// it each time was a measurable part of the handler's own work. The list
// is fixed for the handler's life, so a verdict never goes stale; the
// memory is bounded (cleared when full).
type hostChecks struct {
	list *kommohost.List
	m    sync.Map // base URL → error (nil: allowed)
	n    atomic.Int64
}

// maxHostChecks bounds the remembered verdicts.
const maxHostChecks = 1 << 14

func (c *hostChecks) check(baseURL string) error {
	if v, ok := c.m.Load(baseURL); ok {
		err, _ := v.(error)
		return err
	}
	err := c.list.Check(baseURL)
	if c.n.Add(1) > maxHostChecks {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(baseURL, err)
	return err
}
