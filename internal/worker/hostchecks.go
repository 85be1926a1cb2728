package worker

import (
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/memo"
)

// hostChecks remembers the allow-list's verdict on each account base URL
// the handler has seen: every task checks its account's URL, and parsing
// it each time was a measurable part of the handler's own work. The list
// is fixed for the handler's life, so a verdict never goes stale.
type hostChecks struct {
	list     *kommohost.List
	verdicts memo.Map[string, error] // base URL → error (nil: allowed)
}

func (c *hostChecks) check(baseURL string) error {
	if err, ok := c.verdicts.Load(baseURL); ok {
		return err
	}
	err := c.list.Check(baseURL)
	c.verdicts.Store(baseURL, err)
	return err
}
