// Package kommohost decides where widgetq may send an account's tokens and
// the integration's client secret: to Kommo's hosts only. Account base URLs
// come from people widgetq does not control (accounts files, the HTTP API,
// a marketplace backend's users), so each one is checked against an
// allow-list where accounts come in and again before every request, and
// the dialer refuses private and link-local addresses that a listed name
// resolves to (DNS rebinding) unless such an address is listed itself.
//
// It imports nothing of widgetq's, so producers and stores can use it
// without the Kommo client.
package kommohost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// EnvVar is the variable every widgetq process reads the list from.
const EnvVar = "WIDGETQ_KOMMO_HOSTS"

// Default is Kommo's and amoCRM's API hosts: {subdomain}.kommo.com,
// {subdomain}.amocrm.ru and the older {subdomain}.amocrm.com.
const Default = ".kommo.com,.amocrm.ru,.amocrm.com"

// List is an allow-list of hosts. The zero value allows nothing; a nil
// *List is the Default.
type List struct {
	raw      string
	env      string       // the variable it was read from, for messages
	urls     bool         // any path and query allowed (receivers' URLs, not account roots)
	suffixes []string     // ".kommo.com": any subdomain of kommo.com
	exact    []string     // "sandbox.example", "localhost", "127.0.0.1"
	ips      []netip.Addr // the exact entries that are IP literals
	// local are the hosts listed as local: loopback ones (localhost,
	// 127.0.0.1, ::1) and those listed with "http://" (a sandbox on a
	// private network). They may be reached over http, with a path, at
	// private addresses.
	local []string
}

var defaultList = mustParse(Default)

func mustParse(s string) *List {
	l, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return l
}

// Parse reads a comma-separated list: an entry starting with a dot is a
// domain suffix (".kommo.com" allows acme.kommo.com, not kommo.com
// itself), anything else an exact host name or IP address. An exact entry
// written "http://host" is a local service (a sandbox in a container
// network): plain http, a path prefix and private addresses are allowed
// for it, as for loopback entries. Ports are not part of an entry: any
// port is allowed. An empty string is the Default.
func Parse(s string) (*List, error) {
	if strings.TrimSpace(s) == "" {
		s = Default
	}
	return parse(EnvVar, s)
}

// ParseFor reads a list of other hosts than Kommo's — webhook receivers'
// (WIDGETQ_WEBHOOK_HOSTS) — by the same rules; env names the variable in
// errors. An empty s is an error: there is no default.
func ParseFor(env, s string) (*List, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%s: no host listed", env)
	}
	l, err := parse(env, s)
	if l != nil {
		l.urls = true // a receiver's URL has its own path and query
	}
	return l, err
}

func parse(env, s string) (*List, error) {
	l := &List{env: env}
	var names []string
	for _, e := range strings.Split(s, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		names = append(names, e)
		if h, ok := strings.CutPrefix(e, "http://"); ok {
			if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err != nil && !isDomain(h) {
				return nil, fmt.Errorf("%s: entry %q: want http:// and a host name or IP address, nothing after it", env, e)
			}
			h = host(strings.Trim(h, "[]"))
			l.exact = append(l.exact, h)
			l.local = append(l.local, h)
			continue
		}
		if strings.HasPrefix(e, ".") {
			d := strings.TrimPrefix(e, ".")
			if !isDomain(d) || !strings.Contains(d, ".") {
				return nil, fmt.Errorf("%s: entry %q: want a domain suffix with at least two labels, such as .kommo.com", env, e)
			}
			l.suffixes = append(l.suffixes, e)
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(e, "[]")); err == nil {
			ip = ip.Unmap()
			l.ips = append(l.ips, ip)
			l.exact = append(l.exact, ip.String())
			if ip.IsLoopback() {
				l.local = append(l.local, ip.String())
			}
			continue
		}
		if !isDomain(e) {
			return nil, fmt.Errorf("%s: entry %q: want a host name, an IP address, a .domain suffix or http://host (no port or path)", env, e)
		}
		if e == "localhost" {
			l.local = append(l.local, e)
		}
		l.exact = append(l.exact, e)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no host listed", env)
	}
	l.raw = strings.Join(names, ",")
	return l, nil
}

// isDomain reports whether s is a plausible DNS name: labels of letters,
// digits and hyphens.
func isDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (l *List) orDefault() *List {
	if l == nil {
		return defaultList
	}
	return l
}

func (l *List) envName() string {
	if l.env == "" {
		return EnvVar
	}
	return l.env
}

func (l *List) kind() string {
	if l.envName() == EnvVar {
		return "Kommo"
	}
	return "webhook"
}

// String is the list as WIDGETQ_KOMMO_HOSTS would give it.
func (l *List) String() string { return l.orDefault().raw }

// host normalizes a URL's host name: lower case, no trailing dot, an IP
// in its canonical form.
func host(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().String()
	}
	return h
}

// match reports whether host h is listed.
func (l *List) match(h string) bool {
	for _, e := range l.exact {
		if h == e {
			return true
		}
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return false // an IP literal matches exact entries only
	}
	for _, s := range l.suffixes {
		if strings.HasSuffix(h, s) && len(h) > len(s) {
			return true
		}
	}
	return false
}

// isLocal reports whether h is listed as a local service.
func (l *List) isLocal(h string) bool {
	for _, e := range l.local {
		if h == e {
			return true
		}
	}
	return false
}

// Error is a base URL the list refuses, and the rule it breaks. It never
// holds the URL's credentials.
type Error struct {
	Host string
	Rule string
}

func (e *Error) Error() string {
	if e.Host == "" {
		return e.Rule
	}
	return fmt.Sprintf("host %q %s", e.Host, e.Rule)
}

// Check checks an account's API base URL: https (http only for a host
// listed as local: loopback, or an http:// entry), no user or password, no
// query or fragment, a host on the list, and no path but the account's
// root (a local host, such as the sandbox, may carry a path prefix).
func (l *List) Check(raw string) error {
	l = l.orDefault()
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil:
		return &Error{Rule: "is not a URL"}
	case u.User != nil:
		return &Error{Rule: "must not carry a user name or password"}
	case u.Scheme != "https" && u.Scheme != "http":
		return &Error{Rule: fmt.Sprintf("scheme must be https, got %.20q", u.Scheme)}
	case u.Host == "" || u.Hostname() == "":
		return &Error{Rule: "has no host"}
	case (u.RawQuery != "" || u.ForceQuery) && !l.urls, u.Fragment != "":
		return &Error{Rule: "must not carry a query or fragment"}
	}
	h := host(u.Hostname())
	if !l.match(h) {
		return &Error{Host: h, Rule: fmt.Sprintf("is not an allowed %s host (%s=%s)", l.kind(), l.envName(), l.raw)}
	}
	local := l.isLocal(h)
	if u.Scheme == "http" && !local {
		return &Error{Host: h, Rule: "needs https (http only for a loopback host, or one listed as http://host, in " + l.envName() + ")"}
	}
	if p := u.EscapedPath(); p != "" && p != "/" && !local && !l.urls {
		return &Error{Host: h, Rule: fmt.Sprintf("must be the account's root, without a path (got %.40q)", p)}
	}
	return nil
}

// Syntax checks what every account base URL must be, whatever the list:
// an absolute http(s) URL with a host and no user, password, query or
// fragment. The Kommo client and the store use it; Check adds the list.
func Syntax(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("scheme must be https or http, got %q", u.Scheme)
	case u.Host == "":
		return errors.New("no host")
	case u.User != nil:
		return errors.New("must not carry credentials")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("must not carry a query or fragment")
	}
	return nil
}

// Allowed reports whether Check passes.
func (l *List) Allowed(raw string) bool { return l.Check(raw) == nil }

// AllowsIP reports whether an address that host resolved to may be
// dialed: any public address; a loopback, private, link-local, shared
// (CGNAT), multicast or unspecified one only when it is listed itself or
// host is listed as local (loopback, or an http:// entry).
func (l *List) AllowsIP(h string, ip netip.Addr) bool {
	l = l.orDefault()
	ip = ip.Unmap()
	if !ip.IsValid() {
		return false
	}
	for _, a := range l.ips {
		if a == ip {
			return true
		}
	}
	if l.isLocal(host(h)) {
		return !ip.IsUnspecified() && !ip.IsMulticast()
	}
	return !special(ip)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// special reports whether ip is not a public unicast address.
func special(ip netip.Addr) bool {
	return ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsLoopback() || cgnat.Contains(ip)
}

// ErrAddressRefused is what the dialer returns when every address of a
// host is one AllowsIP refuses.
var ErrAddressRefused = errors.New("address refused")

// Resolver looks host names up (net.DefaultResolver does).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DialContext returns a dial function for an http.Transport that resolves
// the host itself and connects only to addresses AllowsIP allows for it,
// so a listed name cannot be rebound to 169.254.169.254 or 10.0.0.1. r nil
// is net.DefaultResolver.
func (l *List) DialContext(d *net.Dialer, r Resolver) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(h); err == nil {
			ips = []netip.Addr{ip}
		} else if ips, err = r.LookupNetIP(ctx, "ip", h); err != nil {
			return nil, err
		}
		var lastErr error
		for _, ip := range ips {
			if !l.AllowsIP(h, ip) {
				continue
			}
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			lastErr = err
		}
		if lastErr != nil {
			return nil, lastErr
		}
		return nil, fmt.Errorf("kommo dial %s: %w: it resolves only to private, loopback or link-local addresses, and is not listed as local in %s", h, ErrAddressRefused, EnvVar)
	}
}

// BaseOf turns a host as Kommo names one — the install redirect's referer
// ("acme.kommo.com"), a token's api_domain — into an API base URL the list
// allows: https, or http for a host listed as local (whose referer may
// also carry the path prefix a sandbox serves accounts under). Anything
// else (a scheme, credentials, a query, a host off the list) is refused.
func (l *List) BaseOf(hostport string) (string, error) {
	l = l.orDefault()
	hp := strings.TrimSpace(hostport)
	if hp == "" || len(hp) > 300 || strings.ContainsAny(hp, "@?#\\ \t\r\n") || strings.Contains(hp, "://") {
		return "", &Error{Rule: fmt.Sprintf("%.80q is not a host name", hostport)}
	}
	h, _, _ := strings.Cut(hp, "/")
	name := h
	if hh, _, err := net.SplitHostPort(h); err == nil {
		name = hh
	}
	scheme := "https://"
	if l.isLocal(host(strings.Trim(name, "[]"))) {
		scheme = "http://"
	}
	base := strings.TrimRight(scheme+hp, "/")
	if err := l.Check(base); err != nil {
		return "", err
	}
	return base, nil
}
