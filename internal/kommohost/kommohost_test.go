package kommohost

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	def, _ := Parse("")
	local, err := Parse("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	sandbox, err := Parse(".kommo.com,http://sandbox")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		list *List
		url  string
		rule string // "" = allowed; else a part of the refusal
	}{
		{def, "https://acme.kommo.com", ""},
		{def, "https://acme.kommo.com/", ""},
		{def, "https://ACME.Kommo.COM.", ""},
		{def, "https://acme.amocrm.ru", ""},
		{def, "https://acme.amocrm.com:443", ""},
		{nil, "https://acme.kommo.com", ""},
		{def, "https://kommo.com", "not an allowed Kommo host"},
		{def, "https://kommo.com.attacker.example", "not an allowed Kommo host"},
		{def, "https://attackerkommo.com", "not an allowed Kommo host"},
		{def, "https://attacker.example", "not an allowed Kommo host"},
		{def, "http://169.254.169.254/latest", "not an allowed Kommo host"},
		{def, "https://10.0.0.1", "not an allowed Kommo host"},
		{def, "https://[::1]", "not an allowed Kommo host"},
		{def, "http://acme.kommo.com", "needs https"},
		{def, "https://user:pw@acme.kommo.com", "user name or password"},
		{def, "https://acme.kommo.com/api/v4", "without a path"},
		{def, "https://acme.kommo.com/?x=1", "query or fragment"},
		{def, "https://acme.kommo.com#f", "query or fragment"},
		{def, "ftp://acme.kommo.com", "scheme must be https"},
		{def, "acme.kommo.com", "scheme must be https"},
		{def, "https://", "no host"},
		{def, "https://acme.kommo.com%", "not a URL"},
		{local, "http://127.0.0.1:8090/k/a1", ""},
		{local, "https://127.0.0.1:8090", ""},
		{local, "http://127.0.0.2:8090", "not an allowed Kommo host"},
		{local, "http://localhost:8090", "not an allowed Kommo host"},
		{local, "https://acme.kommo.com", "not an allowed Kommo host"},
		{sandbox, "http://sandbox:8090/k/acct10001", ""},
		{sandbox, "http://other:8090", "not an allowed Kommo host"},
		{sandbox, "http://acme.kommo.com", "needs https"},
	} {
		err := c.list.Check(c.url)
		switch {
		case c.rule == "" && err != nil:
			t.Errorf("%q refused: %v", c.url, err)
		case c.rule != "" && (err == nil || !strings.Contains(err.Error(), c.rule)):
			t.Errorf("%q: %v, want a refusal saying %q", c.url, err, c.rule)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: the refusal quotes the password: %v", c.url, err)
		}
	}
	// http and a path only for a loopback host listed exactly.
	sb, _ := Parse("sandbox.example,localhost")
	if err := sb.Check("http://sandbox.example/k/a1"); err == nil || !strings.Contains(err.Error(), "needs https") {
		t.Errorf("http to a listed non-loopback host: %v", err)
	}
	if err := sb.Check("https://sandbox.example/k/a1"); err == nil || !strings.Contains(err.Error(), "without a path") {
		t.Errorf("a path on a listed non-loopback host: %v", err)
	}
	if err := sb.Check("http://localhost:9/k/a1"); err != nil {
		t.Errorf("listed localhost: %v", err)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in, want, err string
	}{
		{"", Default, ""},
		{" .Kommo.com , 127.0.0.1,, ::1 ", ".kommo.com,127.0.0.1,::1", ""},
		{"localhost", "localhost", ""},
		{"HTTP://Sandbox", "http://sandbox", ""},
		{"http://sandbox:8090", "", "nothing after it"},
		{"https://acme.kommo.com", "", "no port or path"},
		{".com", "", "at least two labels"},
		{"acme.kommo.com:443", "", "no port or path"},
		{"a b", "", `entry "a b"`},
		{",", "", "no host listed"},
	} {
		l, err := Parse(c.in)
		switch {
		case c.err == "" && (err != nil || l.String() != c.want):
			t.Errorf("Parse(%q) = %v, %v; want %q", c.in, l, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), EnvVar)):
			t.Errorf("Parse(%q): %v, want an error naming %s and saying %q", c.in, err, EnvVar, c.err)
		}
	}
}

func TestAllowsIP(t *testing.T) {
	t.Parallel()
	def, _ := Parse("")
	local, _ := Parse("127.0.0.1,10.1.2.3")
	byName, _ := Parse("localhost,http://sandbox")
	for _, c := range []struct {
		list     *List
		host, ip string
		ok       bool
	}{
		{def, "acme.kommo.com", "93.184.216.34", true},
		{def, "acme.kommo.com", "2606:2800:220:1:248:1893:25c8:1946", true},
		{def, "acme.kommo.com", "127.0.0.1", false},
		{def, "acme.kommo.com", "10.0.0.1", false},
		{def, "acme.kommo.com", "172.16.5.4", false},
		{def, "acme.kommo.com", "192.168.1.1", false},
		{def, "acme.kommo.com", "169.254.169.254", false},
		{def, "acme.kommo.com", "100.64.0.1", false},
		{def, "acme.kommo.com", "0.0.0.0", false},
		{def, "acme.kommo.com", "::1", false},
		{def, "acme.kommo.com", "fe80::1", false},
		{def, "acme.kommo.com", "fd00::1", false},
		{def, "acme.kommo.com", "::ffff:169.254.169.254", false},
		{local, "127.0.0.1", "127.0.0.1", true},
		{local, "10.1.2.3", "10.1.2.3", true},
		{local, "acme.kommo.com", "10.1.2.3", true}, // listed itself
		{local, "10.1.2.4", "10.1.2.4", false},
		{local, "127.0.0.2", "127.0.0.2", false},
		{byName, "localhost", "127.0.0.1", true},
		{byName, "localhost", "::1", true},
		{byName, "sandbox", "172.18.0.5", true},
		{byName, "SANDBOX.", "172.18.0.5", true},
		{byName, "sandbox", "0.0.0.0", false},
		{byName, "other", "172.18.0.5", false},
	} {
		if got := c.list.AllowsIP(c.host, netip.MustParseAddr(c.ip)); got != c.ok {
			t.Errorf("%s at %s with %s: %v, want %v", c.host, c.ip, c.list, got, c.ok)
		}
	}
}

// resolver answers from a map, as DNS would (or as a rebinding attack).
type resolver map[string][]netip.Addr

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestDialerConnectsOnlyWhereTheListAllows(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	loop := netip.MustParseAddr("127.0.0.1")
	r := resolver{"acme.kommo.com": {loop}, "sandbox": {loop}, "both.kommo.com": {netip.MustParseAddr("10.9.9.9"), loop}}
	def, _ := Parse("")
	withSandbox, _ := Parse(".kommo.com,http://sandbox")
	for _, c := range []struct {
		list *List
		host string
		ok   bool
	}{
		{def, "acme.kommo.com", false}, // a Kommo name rebound to loopback
		{def, "both.kommo.com", false},
		{def, "127.0.0.1", false},
		{withSandbox, "sandbox", true},
		{withSandbox, "acme.kommo.com", false},
	} {
		dial := c.list.DialContext(&net.Dialer{Timeout: 5 * time.Second}, r)
		conn, err := dial(context.Background(), "tcp", net.JoinHostPort(c.host, port))
		if conn != nil {
			conn.Close()
		}
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrAddressRefused)) {
			t.Errorf("dial %s with %s: %v, want ok %v", c.host, c.list, err, c.ok)
		}
	}
	// A name that does not resolve is the resolver's error, not a refusal.
	if _, err := def.DialContext(&net.Dialer{}, r)(context.Background(), "tcp", "nowhere.kommo.com:443"); err == nil || errors.Is(err, ErrAddressRefused) {
		t.Errorf("unresolvable: %v", err)
	}
}

// FuzzCheck: whatever the URL, Check never panics, never quotes a
// password, and what it allows is an https (or listed loopback) URL on a
// listed host.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"https://acme.kommo.com", "http://169.254.169.254/latest", "https://u:secretpw@acme.kommo.com",
		"https://kommo.com.attacker.example", "http://127.0.0.1:1/k/a", "https://[::ffff:127.0.0.1]/", "https://acme.kommo.com./", "https://xn--80ak6aa92e.kommo.com"} {
		f.Add(s)
	}
	def, _ := Parse("")
	local, _ := Parse("127.0.0.1")
	f.Fuzz(func(t *testing.T, raw string) {
		for _, l := range []*List{def, local} {
			err := l.Check(raw)
			// The password is "secretpw" when the URL carries it only in its
			// user info; a host or path that spells it may be quoted.
			u, perr := url.Parse(strings.TrimSpace(raw))
			onlyInUser := perr != nil || (u.User != nil && !strings.Contains(u.Scheme+u.Opaque+u.Host+u.Path+u.RawPath+u.RawQuery+u.Fragment, "secretpw"))
			if err != nil && onlyInUser && strings.Contains(raw, "secretpw") && strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("%q: refusal quotes the password: %v", raw, err)
			}
			if err == nil && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(raw)), "https://") && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(raw)), "http://127.0.0.1") {
				t.Fatalf("%q allowed by %s", raw, l)
			}
		}
	})
}

func TestBaseOf(t *testing.T) {
	t.Parallel()
	l, err := Parse(".kommo.com,127.0.0.1,http://sandbox")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, want string }{
		{"acme.kommo.com", "https://acme.kommo.com"},
		{"ACME.kommo.com", "https://ACME.kommo.com"},
		{"127.0.0.1:8090/k/a1", "http://127.0.0.1:8090/k/a1"}, // a local sandbox, with its path prefix
		{"sandbox:8090", "http://sandbox:8090"},
		{"api-b.kommo.com/", "https://api-b.kommo.com"},
		{"acme.kommo.com/evil", ""}, // a path only on a local host
		{"kommo.com", ""},
		{"acme.kommo.com.attacker.example", ""},
		{"https://acme.kommo.com", ""}, // a host, not a URL
		{"user@acme.kommo.com", ""},
		{"acme.kommo.com?x=1", ""},
		{"", ""},
		{"10.0.0.1", ""},
	} {
		got, err := l.BaseOf(c.in)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("BaseOf(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// FuzzBaseOf: whatever a redirect's referer or a token's api_domain says,
// a base URL comes out only for a listed host, and it passes Check.
func FuzzBaseOf(f *testing.F) {
	for _, s := range []string{"acme.kommo.com", "127.0.0.1:8090/k/a1", "acme.kommo.com.attacker.example", "u@acme.kommo.com", "acme.kommo.com:443/x", "[::1]:80", "api-b.kommo.com/"} {
		f.Add(s)
	}
	def, _ := Parse("")
	local, _ := Parse("127.0.0.1")
	f.Fuzz(func(t *testing.T, in string) {
		for _, l := range []*List{def, local} {
			base, err := l.BaseOf(in)
			if err != nil {
				continue
			}
			if cerr := l.Check(base); cerr != nil {
				t.Fatalf("BaseOf(%q) = %q, which Check refuses: %v", in, base, cerr)
			}
			if !strings.HasPrefix(base, "https://") && !strings.HasPrefix(base, "http://127.0.0.1") {
				t.Fatalf("BaseOf(%q) = %q by %s", in, base, l)
			}
		}
	})
}
