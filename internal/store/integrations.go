package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/tasks"
)

// DefaultIntegration is the integration KOMMO_CLIENT_ID and its friends
// configure.
const DefaultIntegration = "default"

// Integration is one Kommo OAuth integration: its client, and the widgets
// it owns (Kommo returns a widget's settings only to its owner). Printing
// it never shows the secret.
type Integration struct {
	Name         string   `json:"name"`
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"-"`
	RedirectURI  string   `json:"redirect_uri"`
	Widgets      []string `json:"widgets,omitempty"`
	// State, when set, must come back as the install redirect's state
	// parameter (GET /oauth/callback); never listed.
	State string `json:"-"`
	// HasState says a State is set (for listings).
	HasState bool `json:"has_state"`
	// InstallOnConnect is the settings, by widget code, of the installs
	// enqueued when an account connects through the install redirect
	// (none: nothing is installed). Sealed at rest: settings hold
	// passwords. Listings carry only its widget codes.
	InstallOnConnect map[string]json.RawMessage `json:"-"`
	// InstallsOnConnect lists InstallOnConnect's widget codes.
	InstallsOnConnect []string `json:"install_on_connect,omitempty"`
}

func (i Integration) String() string {
	return fmt.Sprintf("store.Integration{Name:%s ClientID:%s ClientSecret:%s RedirectURI:%s Widgets:%v State:%s InstallOnConnect:%v}",
		i.Name, i.ClientID, mask(i.ClientSecret), i.RedirectURI, i.Widgets, mask(i.State), slices.Sorted(maps.Keys(i.InstallOnConnect)))
}

// GoString keeps %#v as secret-free as %v.
func (i Integration) GoString() string { return i.String() }

var widgetCodeRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)

// Validate names the first field that is not acceptable, never the secret.
func (i Integration) Validate() error {
	switch {
	case !tasks.ValidIntegration(i.Name):
		return fmt.Errorf("name: %.50q must be 1-40 lower-case letters, digits, '-' or '_'", i.Name)
	case strings.TrimSpace(i.ClientID) == "" || len(i.ClientID) > 200:
		return errors.New("client_id: required (at most 200 characters)")
	case i.ClientSecret == "":
		return errors.New("client_secret: required (KOMMO_CLIENT_SECRET, or --client-secret - to read it from stdin)")
	}
	if u, err := url.Parse(i.RedirectURI); err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("redirect_uri: want the https URL registered with the integration (http only on a loopback host), got %.80q", i.RedirectURI)
	}
	if len(i.State) > 200 {
		return errors.New("state: at most 200 characters")
	}
	for code, settings := range i.InstallOnConnect {
		if !slices.Contains(i.Widgets, code) {
			return fmt.Errorf("install_on_connect: %.40q is not one of the integration's widgets (%s)", code, strings.Join(i.Widgets, ","))
		}
		p := tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: code, Settings: settings}
		if err := p.Validate(); err != nil {
			return fmt.Errorf("install_on_connect: %s: %v", code, err)
		}
	}
	seen := map[string]bool{}
	for _, w := range i.Widgets {
		if !widgetCodeRE.MatchString(w) || w == "." || w == ".." {
			return fmt.Errorf("widgets: %.40q is not a widget code", w)
		}
		if seen[w] {
			return fmt.Errorf("widgets: %q is listed twice", w)
		}
		seen[w] = true
	}
	return nil
}

func (s *base) integrationKey(name string) string { return s.key("integ", name) }
func (s *base) integrationsKey() string           { return s.key("integs") }
func (s *base) widgetOwnerKey() string            { return s.key("integ-widgets") }

// putIntegrationScript stores an integration and claims its widgets,
// refusing a widget another integration owns.
// KEYS: the integration, the set of names, the widget → owner hash.
// ARGV: name, client_id, sealed secret, redirect_uri, widgets (comma-joined),
// state, sealed install-on-connect settings (JSON).
var putIntegrationScript = redis.NewScript(`
local widgets = {}
for w in string.gmatch(ARGV[5], '[^,]+') do
  local owner = redis.call('HGET', KEYS[3], w)
  if owner and owner ~= ARGV[1] then return redis.error_reply('OWNED ' .. w .. ' ' .. owner) end
  table.insert(widgets, w)
end
local old = redis.call('HGET', KEYS[1], 'widgets')
if old then
  for w in string.gmatch(old, '[^,]+') do
    if redis.call('HGET', KEYS[3], w) == ARGV[1] then redis.call('HDEL', KEYS[3], w) end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'client_id', ARGV[2], 'client_secret', ARGV[3], 'redirect_uri', ARGV[4], 'widgets', ARGV[5], 'state', ARGV[6], 'install', ARGV[7])
redis.call('SADD', KEYS[2], ARGV[1])
for _, w in ipairs(widgets) do redis.call('HSET', KEYS[3], w, ARGV[1]) end
return 1`)

// IntegrationStore keeps the integrations registry: each integration's
// client (its secret sealed with the store's keys) and the widgets it owns.
type IntegrationStore struct{ *base }

// PutIntegration stores an integration, replacing one of the same name. A
// widget another integration owns is refused, naming both.
func (s *IntegrationStore) PutIntegration(ctx context.Context, i Integration) error {
	if err := i.Validate(); err != nil {
		return err
	}
	install := ""
	if len(i.InstallOnConnect) > 0 {
		b, _ := json.Marshal(i.InstallOnConnect)
		install = s.keys.Seal(string(b))
	}
	err := putIntegrationScript.Run(ctx, s.rdb, []string{s.integrationKey(i.Name), s.integrationsKey(), s.widgetOwnerKey()},
		i.Name, i.ClientID, s.keys.Seal(i.ClientSecret), i.RedirectURI, strings.Join(i.Widgets, ","), i.State, install).Err()
	if err != nil && strings.HasPrefix(err.Error(), "OWNED ") {
		f := strings.Fields(err.Error())
		return fmt.Errorf("widgets: %s belongs to integration %s already (remove it there first)", f[1], f[2])
	}
	return redisErr("put integration "+i.Name, err)
}

// Integration returns one integration, its secret opened, or ErrNotFound.
func (s *IntegrationStore) Integration(ctx context.Context, name string) (*Integration, error) {
	m, err := s.rdb.HGetAll(ctx, s.integrationKey(name)).Result()
	if err != nil {
		return nil, redisErr("read integration "+name, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("integration %q: %w", name, ErrNotFound)
	}
	secret, err := s.keys.Open(m["client_secret"])
	if err != nil {
		return nil, fmt.Errorf("integration %s: client_secret: %w", name, err)
	}
	i := &Integration{Name: name, ClientID: m["client_id"], ClientSecret: secret, RedirectURI: m["redirect_uri"], State: m["state"], HasState: m["state"] != ""}
	if w := m["widgets"]; w != "" {
		i.Widgets = strings.Split(w, ",")
	}
	if m["install"] != "" {
		plain, err := s.keys.Open(m["install"])
		if err != nil {
			return nil, fmt.Errorf("integration %s: install_on_connect: %w", name, err)
		}
		if err := json.Unmarshal([]byte(plain), &i.InstallOnConnect); err != nil {
			return nil, fmt.Errorf("store: integration %s: install_on_connect: %w", name, err)
		}
		i.InstallsOnConnect = slices.Sorted(maps.Keys(i.InstallOnConnect))
	}
	return i, nil
}

// IntegrationByClientID returns the integration whose OAuth client ID is
// id, its secret opened, or ErrNotFound.
func (s *IntegrationStore) IntegrationByClientID(ctx context.Context, id string) (*Integration, error) {
	list, err := s.Integrations(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range list {
		if l.ClientID == id {
			return s.Integration(ctx, l.Name)
		}
	}
	return nil, fmt.Errorf("integration with client_id %.60q: %w", id, ErrNotFound)
}

// Integrations lists every integration by name, secrets left out.
func (s *IntegrationStore) Integrations(ctx context.Context) ([]Integration, error) {
	names, err := s.rdb.SMembers(ctx, s.integrationsKey()).Result()
	if err != nil {
		return nil, redisErr("list integrations", err)
	}
	sort.Strings(names)
	out := make([]Integration, 0, len(names))
	for _, n := range names {
		m, err := s.rdb.HMGet(ctx, s.integrationKey(n), "client_id", "redirect_uri", "widgets", "state", "install").Result()
		if err != nil {
			return nil, redisErr("read integration "+n, err)
		}
		i := Integration{Name: n}
		i.ClientID, _ = m[0].(string)
		i.RedirectURI, _ = m[1].(string)
		if w, _ := m[2].(string); w != "" {
			i.Widgets = strings.Split(w, ",")
		}
		st, _ := m[3].(string)
		i.HasState = st != ""
		if inst, _ := m[4].(string); inst != "" {
			// The widget codes only: the settings stay sealed.
			if plain, err := s.keys.Open(inst); err == nil {
				var set map[string]json.RawMessage
				if json.Unmarshal([]byte(plain), &set) == nil {
					i.InstallsOnConnect = slices.Sorted(maps.Keys(set))
				}
			}
		}
		out = append(out, i)
	}
	return out, nil
}

// OwnerOf returns the integration that owns a widget code ("" for none).
func (s *IntegrationStore) OwnerOf(ctx context.Context, code string) (string, error) {
	n, err := s.rdb.HGet(ctx, s.widgetOwnerKey(), code).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return n, redisErr("owner of widget "+code, err)
}

// Owners returns every widget code with a registered owner, and the
// owner's name.
func (s *IntegrationStore) Owners(ctx context.Context) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, s.widgetOwnerKey()).Result()
	return m, redisErr("widget owners", err)
}

// DeleteIntegration removes an integration and its claim on its widgets.
func (s *IntegrationStore) DeleteIntegration(ctx context.Context, name string) error {
	w, err := s.rdb.HGet(ctx, s.integrationKey(name), "widgets").Result()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("integration %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return redisErr("read integration "+name, err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, code := range strings.Split(w, ",") {
			if code != "" {
				p.HDel(ctx, s.widgetOwnerKey(), code)
			}
		}
		p.Del(ctx, s.integrationKey(name))
		p.SRem(ctx, s.integrationsKey(), name)
		return nil
	})
	return redisErr("remove integration "+name, err)
}

func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
