package keyspace

import "testing"

func TestKeys(t *testing.T) {
	for _, c := range []struct{ prefix, want string }{{"", "{widgetq}:acct:7"}, {"tenant-a", "{tenant-a}:acct:7"}} {
		if got := New(c.prefix).Key("acct", "7"); got != c.want {
			t.Errorf("New(%q).Key = %q, want %q", c.prefix, got, c.want)
		}
	}
	if p := New("x").Pattern(); p != "{x}:*" {
		t.Errorf("pattern %q", p)
	}
	if k := New("x").Key("rl", "tat", "global"); k != "{x}:rl:tat:global" {
		t.Errorf("limiter key %q", k)
	}
}

func TestKeyID(t *testing.T) {
	s := New("p")
	for _, c := range []struct {
		kind  string
		n     int64
		parts []string
		want  string
	}{
		{"res", 7, []string{"w"}, "{p}:res:7:w"},
		{"acct", 1234567890123, nil, "{p}:acct:1234567890123"},
		{"acct", -5, []string{"a", "b"}, "{p}:acct:-5:a:b"},
	} {
		if got := s.KeyID(c.kind, c.n, c.parts...); got != c.want {
			t.Errorf("KeyID(%q, %d, %q) = %q, want %q", c.kind, c.n, c.parts, got, c.want)
		}
	}
	if got := s.Key(); got != "{p}:" {
		t.Errorf("Key() = %q", got)
	}
}
