package bearer

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string][]string{
		"":              nil,
		"one":           {"one"},
		" old , new ,,": {"old", "new"},
		",":             nil,
		"a,b,c":         {"a", "b", "c"},
	} {
		if got := Parse(in); !slices.Equal(got, want) {
			t.Errorf("Parse(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatchAcceptsAnyListedToken(t *testing.T) {
	tokens := Parse("old-token,new-token")
	for _, c := range []struct {
		header string
		ok     bool
	}{
		{"Bearer old-token", true},
		{"Bearer new-token", true},
		{"Bearer old-token,new-token", false},
		{"Bearer other", false},
		{"old-token", false},
		{"bearer old-token", false},
		{"Bearer ", false},
		{"", false},
	} {
		if got := Match(c.header, tokens); got != c.ok {
			t.Errorf("Match(%q) = %v, want %v", c.header, got, c.ok)
		}
	}
	if Match("Bearer ", nil) || Match("", nil) {
		t.Error("an empty list accepted something")
	}
}
