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
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
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
	suffixes []string     // ".kommo.com": any subdomain of kommo.com
	exact    []string     // "sandbox.example", "localhost", "127.0.0.1"
	ips      []netip.Addr // the exact entries that are IP literals
	loopback bool         // "localhost" is listed: its addresses may be dialed
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
// itself), anything else an exact host name or IP address. Ports are not
// part of an entry: any port is allowed. An empty string is the Default.
func Parse(s string) (*List, error) {
	if strings.TrimSpace(s) == "" {
		s = Default
	}
	l := &List{}
	var names []string
	for _, e := range strings.Split(s, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		names = append(names, e)
		if strings.HasPrefix(e, ".") {
			d := strings.TrimPrefix(e, ".")
			if !isDomain(d) || !strings.Contains(d, ".") {
				return nil, fmt.Errorf("%s: entry %q: want a domain suffix with at least two labels, such as .kommo.com", EnvVar, e)
			}
			l.suffixes = append(l.suffixes, e)
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(e, "[]")); err == nil {
			l.ips = append(l.ips, ip.Unmap())
			l.exact = append(l.exact, ip.Unmap().String())
			continue
		}
		if !isDomain(e) {
			return nil, fmt.Errorf("%s: entry %q: want a host name, an IP address, or a .domain suffix (no scheme, port or path)", EnvVar, e)
		}
		if e == "localhost" {
			l.loopback = true
		}
		l.exact = append(l.exact, e)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no host listed", EnvVar)
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

// match reports whether host h is listed, and whether as an exact entry.
func (l *List) match(h string) (listed, exact bool) {
	for _, e := range l.exact {
		if h == e {
			return true, true
		}
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return false, false // an IP literal matches exact entries only
	}
	for _, s := range l.suffixes {
		if strings.HasSuffix(h, s) && len(h) > len(s) {
			return true, false
		}
	}
	return false, false
}

// isLoopback reports whether h names this machine.
func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
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

// Check checks an account's API base URL: https (http only for a loopback
// host listed exactly), no user or password, no query or fragment, a host
// on the list, and no path but the account's root (a listed loopback host,
// such as the sandbox, may carry a path prefix).
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
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return &Error{Rule: "must not carry a query or fragment"}
	}
	h := host(u.Hostname())
	listed, exact := l.match(h)
	if !listed {
		return &Error{Host: h, Rule: fmt.Sprintf("is not an allowed Kommo host (%s=%s)", EnvVar, l.raw)}
	}
	local := exact && isLoopback(h)
	if u.Scheme == "http" && !local {
		return &Error{Host: h, Rule: "needs https (http only for a loopback host listed in " + EnvVar + ")"}
	}
	if p := u.EscapedPath(); p != "" && p != "/" && !local {
		return &Error{Host: h, Rule: fmt.Sprintf("must be the account's root, without a path (got %.40q)", p)}
	}
	return nil
}

// Allowed reports whether Check passes.
func (l *List) Allowed(raw string) bool { return l.Check(raw) == nil }

// AllowsIP reports whether an address a name resolved to may be dialed:
// any public address; a loopback, private, link-local, shared (CGNAT),
// multicast or unspecified one only when it is listed itself (or, for
// loopback, when localhost is).
func (l *List) AllowsIP(ip netip.Addr) bool {
	l = l.orDefault()
	ip = ip.Unmap()
	for _, a := range l.ips {
		if a == ip {
			return true
		}
	}
	if ip.IsLoopback() {
		return l.loopback
	}
	return !special(ip)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// special reports whether ip is not a public unicast address.
func special(ip netip.Addr) bool {
	return ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsLoopback() || cgnat.Contains(ip) || !ip.IsValid()
}

// ErrAddressRefused is what the dialer returns for an address AllowsIP
// refuses.
var ErrAddressRefused = errors.New("address refused")

// Control is a net.Dialer Control function: it refuses to connect to an
// address the list does not allow, whatever name led there.
func (l *List) Control(_, address string, _ syscall.RawConn) error {
	h, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("kommo dial %s: %w", address, ErrAddressRefused)
	}
	ip, err := netip.ParseAddr(h)
	if err != nil || !l.AllowsIP(ip) {
		return fmt.Errorf("kommo dial %s: %w: private, loopback or link-local, and not listed in %s", address, ErrAddressRefused, EnvVar)
	}
	return nil
}
