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
	// checked remembers settings found valid against tmpl, with what an
	// install needs of them: a batch installs the same settings into
	// thousands of accounts, and checking them was most of the handler's
	// own JSON work. Cleared when full.
	mu      sync.Mutex
	checked map[string]*checkedSettings
}

// checkedSettings is what an install needs of settings that passed the
// template: the secrets to scrub from errors and the digest kept with the
// result. Shared: never modified.
type checkedSettings struct {
	secrets []string
	digest  map[string]string
}

// maxChecked bounds an entry's remembered settings.
const maxChecked = 256

// check validates settings against the template, once per distinct
// settings for as long as the template is cached.
func (e *templateEntry) check(settings []byte) (*checkedSettings, error) {
	e.mu.Lock()
	cs := e.checked[string(settings)]
	e.mu.Unlock()
	if cs != nil {
		return cs, nil
	}
	if err := kommo.ValidateSettings(e.tmpl, settings); err != nil {
		return nil, err
	}
	cs = &checkedSettings{secrets: kommo.SecretValues(e.tmpl, settings), digest: kommo.SettingsDigest(e.tmpl, settings)}
	e.mu.Lock()
	if e.checked == nil || len(e.checked) >= maxChecked {
		e.checked = map[string]*checkedSettings{}
	}
	e.checked[string(settings)] = cs
	e.mu.Unlock()
	return cs, nil
}

func (c *templateCache) get(ctx context.Context, code string, client *kommo.Client) (*templateEntry, error) {
	for {
		c.mu.Lock()
		e := c.m[code]
		if c.fresh(e) {
			c.mu.Unlock()
			return e, nil
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
		return ne, nil
	}
}

// cached reports whether code's template is cached and fresh: an install
// of it goes straight to its request.
func (c *templateCache) cached(code string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fresh(c.m[code])
}

// fresh reports whether e holds a template fetched within the TTL.
func (c *templateCache) fresh(e *templateEntry) bool {
	return e != nil && e.ok && time.Since(e.fetched) < c.ttl
}
