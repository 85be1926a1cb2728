package worker

import (
	"context"
	"sync"
	"time"

	"github.com/widgetq/widgetq/internal/kommo"
)

// templateCache keeps each widget's settings_template for a while, so a
// batch of ten thousand installs of one widget asks Kommo for it about
// once per worker. Concurrent misses for one code wait for the first
// fetch instead of each spending an account's budget; a failed fetch is
// not cached, and its waiters fetch for themselves.
type templateCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*templateEntry
}

type templateEntry struct {
	tmpl    kommo.SettingsTemplate
	fetched time.Time
	loading chan struct{} // closed when a fetch ends; nil when none runs
	ok      bool
}

func (c *templateCache) get(ctx context.Context, code string, client *kommo.Client) (kommo.SettingsTemplate, error) {
	for {
		c.mu.Lock()
		e := c.m[code]
		if e != nil && e.ok && time.Since(e.fetched) < c.ttl {
			c.mu.Unlock()
			return e.tmpl, nil
		}
		if e != nil && e.loading != nil {
			wait := e.loading
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ne := &templateEntry{loading: make(chan struct{})}
		c.m[code] = ne
		c.mu.Unlock()

		w, _, err := client.GetWidget(ctx, code)
		c.mu.Lock()
		if err == nil {
			ne.tmpl, ne.fetched, ne.ok = w.SettingsTemplate, time.Now(), true
		} else {
			delete(c.m, code)
		}
		close(ne.loading)
		ne.loading = nil
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return ne.tmpl, nil
	}
}

// cached reports whether code's template is cached and fresh: an install
// of it goes straight to its request.
func (c *templateCache) cached(code string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[code]
	return e != nil && e.ok && time.Since(e.fetched) < c.ttl
}
