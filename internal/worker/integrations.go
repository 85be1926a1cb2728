package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/store"
)

// ClassIntegrationUnknown: the task names an integration that is not in
// the registry (and is not the default one); nothing is sent.
const ClassIntegrationUnknown = "integration_unknown"

// Registry is what the worker reads of the integrations registry.
type Registry interface {
	Integrations(ctx context.Context) ([]store.Integration, error)
	Integration(ctx context.Context, name string) (*store.Integration, error)
}

// resolveIntegration is the integration a task runs as: the payload's
// when it names one, else the registered owner of its widget, else the
// default.
func resolveIntegration(explicit, code string, owners map[string]string) string {
	if explicit != "" {
		return explicit
	}
	if o := owners[code]; o != "" {
		return o
	}
	return store.DefaultIntegration
}

// integrations caches the registry: every task resolves its integration
// and that integration's client without a round trip; the registry is
// read again after ttl (an integration added, or a secret rotated, is
// seen within ttl). KOMMO_CLIENT_ID is the default integration unless the
// registry has one named default.
type integrations struct {
	reg      Registry
	fallback *kommo.OAuthConfig
	ttl      time.Duration
	now      func() time.Time

	mu     sync.Mutex
	loaded time.Time
	byName map[string]*kommo.OAuthConfig
	owners map[string]string
}

// snapshot returns the cached registry, reading it again when stale. A
// failed read keeps the last good one; with none, it is an error.
func (r *integrations) snapshot(ctx context.Context) (map[string]*kommo.OAuthConfig, map[string]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byName != nil && r.now().Sub(r.loaded) < r.ttl {
		return r.byName, r.owners, nil
	}
	byName, owners, err := r.load(ctx)
	if err != nil {
		if r.byName != nil {
			return r.byName, r.owners, nil
		}
		return nil, nil, err
	}
	r.byName, r.owners, r.loaded = byName, owners, r.now()
	return byName, owners, nil
}

func (r *integrations) load(ctx context.Context) (map[string]*kommo.OAuthConfig, map[string]string, error) {
	byName := map[string]*kommo.OAuthConfig{}
	owners := map[string]string{}
	if r.fallback != nil && r.fallback.ClientID != "" {
		byName[store.DefaultIntegration] = r.fallback
	}
	if r.reg == nil {
		return byName, owners, nil
	}
	list, err := r.reg.Integrations(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, l := range list {
		i, err := r.reg.Integration(ctx, l.Name)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, nil, err
		}
		byName[i.Name] = &kommo.OAuthConfig{ClientID: i.ClientID, ClientSecret: i.ClientSecret, RedirectURL: i.RedirectURI}
		for _, w := range i.Widgets {
			owners[w] = i.Name
		}
	}
	return byName, owners, nil
}

// resolve returns the task's integration and its OAuth client (nil: the
// default integration without a client — tokens used as stored).
func (r *integrations) resolve(ctx context.Context, explicit, code string) (string, *kommo.OAuthConfig, error) {
	byName, owners, err := r.snapshot(ctx)
	if err != nil {
		return "", nil, &internalErr{fmt.Errorf("read the integrations registry: %w", err)}
	}
	name := resolveIntegration(explicit, code, owners)
	oauth, ok := byName[name]
	if !ok && name != store.DefaultIntegration {
		return name, nil, &permanent{ClassIntegrationUnknown, fmt.Sprintf("integration %q is not registered (`enqueue integrations list`); nothing was sent", name)}
	}
	return name, oauth, nil
}
