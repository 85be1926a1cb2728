// Package config reads widgetq's settings from flags and the environment
// the same way in every command: a flag set on the command line wins over
// its variable, which wins over the default, and every error names where
// the bad value came from (-flag or VARIABLE), never a secret value. The
// settings every process shares — key prefix, Kommo host allow-list,
// secret keys, shards — are parsed and checked here once.
package config

import (
	"errors"
	"flag"
	"fmt"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/webhook"
)

// Setting is one flag and the variable that may set it instead.
type Setting struct {
	Name, Env, Default, Help string
}

// Loader reads settings bound to a flag set, collecting every error.
type Loader struct {
	getenv   func(string) string
	settings map[string]Setting
	vals     map[string]*string
	set      map[string]bool
	errs     []error
}

// Bind defines a string flag for each setting on fs, its help naming the
// variable. Call Parsed after fs.Parse.
func Bind(fs *flag.FlagSet, getenv func(string) string, settings []Setting) *Loader {
	l := &Loader{getenv: getenv, settings: map[string]Setting{}, vals: map[string]*string{}, set: map[string]bool{}}
	for _, s := range settings {
		l.settings[s.Name] = s
		help := s.Help
		if s.Env != "" {
			help = fmt.Sprintf("%s [%s]", s.Help, s.Env)
		}
		l.vals[s.Name] = fs.String(s.Name, s.Default, help)
	}
	return l
}

// Parsed records which flags the command line set.
func (l *Loader) Parsed(fs *flag.FlagSet) *Loader {
	fs.Visit(func(f *flag.Flag) { l.set[f.Name] = true })
	return l
}

// Get returns a setting's value and where it came from: "-name" (the
// command line or the default) or the variable's name.
func (l *Loader) Get(name string) (value, source string) {
	s, ok := l.settings[name]
	if !ok {
		panic("config: unknown setting " + name)
	}
	if !l.set[name] && s.Env != "" {
		if v := l.getenv(s.Env); v != "" {
			return v, s.Env
		}
	}
	return *l.vals[name], "-" + name
}

// Explicit reports whether the operator set the setting (flag or
// variable) rather than leaving the default.
func (l *Loader) Explicit(name string) bool {
	return l.set[name] || (l.settings[name].Env != "" && l.getenv(l.settings[name].Env) != "")
}

// Source names where a setting's value comes from.
func (l *Loader) Source(name string) string {
	_, src := l.Get(name)
	return src
}

// Fail records an error about a setting, naming its source.
func (l *Loader) Fail(name, format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s: %s", l.Source(name), fmt.Sprintf(format, args...)))
}

// Failf records an error about no single setting.
func (l *Loader) Failf(format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf(format, args...))
}

// String returns the value as is.
func (l *Loader) String(name string) string { v, _ := l.Get(name); return v }

// Int returns an integer of at least lo.
func (l *Loader) Int(name string, lo int) int {
	v, _ := l.Get(name)
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo {
		l.Fail(name, "want an integer ≥ %d, got %q", lo, v)
	}
	return n
}

// Float returns a number in [0, 1e6], above 0 when positive.
func (l *Loader) Float(name string, positive bool) float64 {
	v, _ := l.Get(name)
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || (positive && f == 0) || f > 1e6 {
		want := "a number ≥ 0"
		if positive {
			want = "a number > 0"
		}
		l.Fail(name, "want %s, got %q", want, v)
	}
	return f
}

// Duration returns a positive duration.
func (l *Loader) Duration(name string) time.Duration {
	v, _ := l.Get(name)
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		l.Fail(name, "want a positive duration like 30s, got %q", v)
	}
	return d
}

// Bool returns true or false.
func (l *Loader) Bool(name string) bool {
	v, _ := l.Get(name)
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		l.Fail(name, "want true or false, got %q", v)
	}
	return b
}

// Err is every error recorded, joined; nil when there was none.
func (l *Loader) Err() error { return errors.Join(l.errs...) }

// Prefix checks a key prefix; empty means the default.
func Prefix(v string) (string, error) {
	if v == "" {
		return store.DefaultPrefix, nil
	}
	if strings.ContainsAny(v, "{}: ") {
		return "", fmt.Errorf("%q must be non-empty without braces, colons or spaces", v)
	}
	return v, nil
}

// Hosts reads the Kommo host allow-list (empty: the default).
func Hosts(v string) (*kommohost.List, error) {
	l, err := kommohost.Parse(v)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), kommohost.EnvVar+": "))
	}
	return l, nil
}

// Keys reads WIDGETQ_SECRET_KEY and WIDGETQ_SECRET_KEY_PREVIOUS; the
// error never holds a key.
func Keys(getenv func(string) string) (*seal.Keys, error) {
	return seal.FromEnv(getenv("WIDGETQ_SECRET_KEY"), getenv("WIDGETQ_SECRET_KEY_PREVIOUS"))
}

// Shards reads a shard count: 1 or more (empty: 1).
func Shards(v string) (int, error) {
	if strings.TrimSpace(v) == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("want a positive integer, got %q", v)
	}
	return n, nil
}

// Webhook reads the webhook settings every process shares:
// WIDGETQ_WEBHOOK_URL, WIDGETQ_WEBHOOK_HOSTS (where a batch's callback URL
// may point), WIDGETQ_WEBHOOK_SECRET and WIDGETQ_WEBHOOK_SECRET_PREVIOUS
// (environment only), WIDGETQ_WEBHOOK_QUEUE (default webhooks). A URL or hosts without a secret is an error: events
// are always signed. Errors never hold a secret.
func Webhook(url, hosts string, getenv func(string) string) (webhook.Config, error) {
	c := webhook.Config{URL: strings.TrimSpace(url), Queue: strings.TrimSpace(getenv("WIDGETQ_WEBHOOK_QUEUE"))}
	secret, prev := getenv("WIDGETQ_WEBHOOK_SECRET"), getenv("WIDGETQ_WEBHOOK_SECRET_PREVIOUS")
	if secret != "" {
		c.Secrets = []string{secret}
		if prev != "" {
			c.Secrets = append(c.Secrets, prev)
		}
	} else if prev != "" {
		return c, errors.New("WIDGETQ_WEBHOOK_SECRET_PREVIOUS is set without WIDGETQ_WEBHOOK_SECRET")
	}
	if c.URL != "" {
		u, err := neturl.Parse(c.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return c, fmt.Errorf("webhook-url: want an http(s) URL without credentials, got %.80q", webhook.RedactURL(c.URL))
		}
	}
	if v := strings.TrimSpace(getenv("WIDGETQ_WEBHOOK_RELAY_INTERVAL")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("WIDGETQ_WEBHOOK_RELAY_INTERVAL: want a positive duration like 250ms, got %.30q", v)
		}
		c.RelayEvery = d
	}
	if strings.TrimSpace(hosts) != "" {
		l, err := kommohost.ParseFor("WIDGETQ_WEBHOOK_HOSTS", hosts)
		if err != nil {
			return c, fmt.Errorf("webhook-hosts: %v", strings.TrimPrefix(err.Error(), "WIDGETQ_WEBHOOK_HOSTS: "))
		}
		c.Hosts = l
	}
	if (c.URL != "" || c.Hosts != nil) && !c.Enabled() {
		return c, errors.New("WIDGETQ_WEBHOOK_SECRET is required with a webhook URL or hosts: every delivery is signed")
	}
	return c, nil
}
