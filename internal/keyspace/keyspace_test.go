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
