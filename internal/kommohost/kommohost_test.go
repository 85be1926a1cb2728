package kommohost

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	def, _ := Parse("")
	local, err := Parse("127.0.0.1")
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
		{".com", "", "at least two labels"},
		{"https://acme.kommo.com", "", "no scheme, port or path"},
		{"acme.kommo.com:443", "", "no scheme, port or path"},
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

func TestDialerRefusesPrivateAddressesNotListed(t *testing.T) {
	t.Parallel()
	def, _ := Parse("")
	local, _ := Parse("127.0.0.1,10.1.2.3")
	byName, _ := Parse("localhost")
	for _, c := range []struct {
		list *List
		ip   string
		ok   bool
	}{
		{def, "93.184.216.34", true},
		{def, "2606:2800:220:1:248:1893:25c8:1946", true},
		{def, "127.0.0.1", false},
		{def, "10.0.0.1", false},
		{def, "172.16.5.4", false},
		{def, "192.168.1.1", false},
		{def, "169.254.169.254", false},
		{def, "100.64.0.1", false},
		{def, "0.0.0.0", false},
		{def, "::1", false},
		{def, "fe80::1", false},
		{def, "fd00::1", false},
		{def, "::ffff:169.254.169.254", false},
		{local, "127.0.0.1", true},
		{local, "10.1.2.3", true},
		{local, "10.1.2.4", false},
		{local, "127.0.0.2", false},
		{byName, "127.0.0.1", true},
		{byName, "::1", true},
		{byName, "10.0.0.1", false},
	} {
		if got := c.list.AllowsIP(netip.MustParseAddr(c.ip)); got != c.ok {
			t.Errorf("%s with %s: %v, want %v", c.ip, c.list, got, c.ok)
		}
		err := c.list.Control("tcp", netip.AddrPortFrom(netip.MustParseAddr(c.ip), 443).String(), nil)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrAddressRefused)) {
			t.Errorf("Control %s with %s: %v", c.ip, c.list, err)
		}
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
			if err != nil && strings.Contains(raw, "secretpw") && strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("%q: refusal quotes the password: %v", raw, err)
			}
			if err == nil && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(raw)), "https://") && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(raw)), "http://127.0.0.1") {
				t.Fatalf("%q allowed by %s", raw, l)
			}
		}
	})
}
