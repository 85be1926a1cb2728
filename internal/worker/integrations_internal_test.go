package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/fakeclock"
	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/store"
)

func TestResolveIntegration(t *testing.T) {
	t.Parallel()
	owners := map[string]string{"w_a": "vendor-a", "w_b": "vendor-b"}
	for _, c := range []struct {
		explicit, code, want string
	}{
		{"", "w_a", "vendor-a"},               // the widget's owner
		{"", "w_b", "vendor-b"},               //
		{"", "w_free", "default"},             // no owner: the default
		{"vendor-b", "w_a", "vendor-b"},       // the payload's wins
		{"default", "w_a", "default"},         // even naming the default
		{"vendor-c", "w_free", "vendor-c"},    // an unknown one is kept, to be refused
		{"", "", store.DefaultIntegration},    //
		{"", "W_A", store.DefaultIntegration}, // codes are exact
	} {
		if got := resolveIntegration(c.explicit, c.code, owners); got != c.want {
			t.Errorf("resolve(%q, %q) = %q, want %q", c.explicit, c.code, got, c.want)
		}
	}
}

// fakeRegistry counts reads and fails on demand.
type fakeRegistry struct {
	list  []store.Integration
	reads int
	fail  error
}

func (f *fakeRegistry) Integrations(context.Context) ([]store.Integration, error) {
	f.reads++
	return f.list, f.fail
}

func (f *fakeRegistry) Integration(_ context.Context, name string) (*store.Integration, error) {
	for _, i := range f.list {
		if i.Name == name {
			return &i, nil
		}
	}
	return nil, store.ErrNotFound
}

func TestIntegrationsAreCachedAndTheDefaultComesFromTheEnvironment(t *testing.T) {
	t.Parallel()
	clk := fakeclock.New()
	reg := &fakeRegistry{list: []store.Integration{{Name: "vendor-a", ClientID: "id-a", ClientSecret: "s-a", RedirectURI: "https://v.example/a", Widgets: []string{"w_a"}}}}
	r := &integrations{reg: reg, fallback: &kommo.OAuthConfig{ClientID: "env-id", ClientSecret: "env-s"}, ttl: 10 * time.Second, now: clk.Now}
	ctx := context.Background()
	name, oa, err := r.resolve(ctx, "", "w_a")
	if err != nil || name != "vendor-a" || oa.ClientID != "id-a" || oa.ClientSecret != "s-a" || oa.RedirectURL != "https://v.example/a" {
		t.Fatalf("w_a: %s %+v %v", name, oa, err)
	}
	if name, oa, err = r.resolve(ctx, "", "w_other"); err != nil || name != "default" || oa.ClientID != "env-id" {
		t.Fatalf("w_other: %s %+v %v", name, oa, err)
	}
	var p *permanent
	if _, _, err = r.resolve(ctx, "vendor-z", "w_a"); !errors.As(err, &p) || p.class != ClassIntegrationUnknown {
		t.Fatalf("unknown integration: %v", err)
	}
	if reg.reads != 1 {
		t.Fatalf("registry read %d times within its TTL, want once", reg.reads)
	}
	// A registry entry named default replaces the environment's client,
	// once the cache runs out.
	reg.list = append(reg.list, store.Integration{Name: "default", ClientID: "reg-id", ClientSecret: "reg-s"})
	if _, oa, _ = r.resolve(ctx, "", "w_other"); oa.ClientID != "env-id" {
		t.Fatalf("re-read before the TTL: %+v", oa)
	}
	clk.Add(11 * time.Second)
	if _, oa, _ = r.resolve(ctx, "", "w_other"); oa.ClientID != "reg-id" || reg.reads != 2 {
		t.Fatalf("after the TTL: %+v, %d reads", oa, reg.reads)
	}
	// A failed read keeps the last good registry.
	clk.Add(11 * time.Second)
	reg.fail = errors.New("redis down")
	if name, _, err = r.resolve(ctx, "", "w_a"); err != nil || name != "vendor-a" {
		t.Fatalf("stale registry on a failed read: %s %v", name, err)
	}
	// With none to fall back on, it is an internal (retried) error.
	r2 := &integrations{reg: reg, ttl: time.Second, now: clk.Now}
	var ie *internalErr
	if _, _, err = r2.resolve(ctx, "", "w_a"); !errors.As(err, &ie) {
		t.Fatalf("first read failing: %v, want internal", err)
	}
	// No client configured and nothing registered: the default runs with
	// tokens as stored (nil client), not refused.
	r3 := &integrations{reg: &fakeRegistry{}, ttl: time.Second, now: clk.Now}
	if name, oa, err = r3.resolve(ctx, "", "w"); err != nil || name != "default" || oa != nil {
		t.Fatalf("bare default: %s %+v %v", name, oa, err)
	}
}

func TestRebase(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ base, sub, domain, want string }{
		{"https://acme.kommo.com", "acme2", "kommo.com", "https://acme2.kommo.com"},
		{"https://acme.kommo.com", "Acme2", "amocrm.ru", "https://acme2.amocrm.ru"},           // moved platforms too
		{"https://acme.kommo.com:8443", "b", "kommo.com", "https://b.kommo.com:8443"},         // port kept
		{"http://127.0.0.1:8090/k/a1", "a1new", "kommo.com", "http://127.0.0.1:8090/k/a1new"}, // a path-based sandbox
		{"https://acme.kommo.com", "evil.example/", "kommo.com", ""},
		{"https://acme.kommo.com", "", "kommo.com", ""},
		{"https://acme.kommo.com", "b", "kommo.com/x", ""},
		{"https://acme.kommo.com", "-b", "kommo.com", ""},
		{"::", "b", "kommo.com", ""},
	} {
		got, err := rebase(c.base, c.sub, c.domain)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("rebase(%q, %q, %q) = %q, %v; want %q", c.base, c.sub, c.domain, got, err, c.want)
		}
	}
}

func TestMayHaveMoved(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&kommo.Error{Class: kommo.ClassUnauthorized, StatusCode: 401}, true},
		{&kommo.Error{Class: kommo.ClassTokenRevoked, StatusCode: 401}, true},
		{&kommo.Error{Class: kommo.ClassRedirected, StatusCode: 301}, true},
		{&kommo.Error{Class: kommo.ClassNotFound, StatusCode: 404, ContentType: "text/html"}, true},                 // no such account host
		{&kommo.Error{Class: kommo.ClassNotFound, StatusCode: 404, ContentType: "application/problem+json"}, false}, // no such widget
		{&kommo.Error{Class: kommo.ClassServer, StatusCode: 503}, false},
		{&permanent{ClassAccountUnknown, "x"}, false},
		{errors.New("dial tcp: refused"), false},
	} {
		if got := mayHaveMoved(c.err); got != c.want {
			t.Errorf("mayHaveMoved(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestDriftOf(t *testing.T) {
	t.Parallel()
	inst := map[string]string{"login": "aa", "phones": "bb"}
	for _, c := range []struct {
		active  bool
		current map[string]string
		class   string
		keys    string
	}{
		{true, map[string]string{"login": "aa", "phones": "bb"}, "", ""},
		{true, map[string]string{"login": "zz", "phones": "bb"}, ClassDriftSettings, "login"},
		{true, map[string]string{"phones": "cc"}, ClassDriftSettings, "login,phones"}, // a key gone counts as changed
		{false, map[string]string{"login": "aa", "phones": "bb"}, ClassDriftUninstalled, ""},
	} {
		class, keys := driftOf(c.active, inst, c.current)
		if class != c.class || strings.Join(keys, ",") != c.keys {
			t.Errorf("driftOf(%v, %v) = %q %v, want %q %q", c.active, c.current, class, keys, c.class, c.keys)
		}
	}
	if class, _ := driftOf(true, nil, map[string]string{"x": "y"}); class != "" {
		t.Errorf("no recorded digest: %q, want no drift", class)
	}
}
