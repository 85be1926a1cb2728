package tasks

import (
	"regexp"
	"testing"
)

// The patterns the name checks were written from.
var (
	widgetCodePattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)
	integrationPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)
	batchIDPattern     = regexp.MustCompile(`^b_[0-9a-f]{16}$`)
)

// FuzzNamesMatchTheirPatterns holds each byte-by-byte name check to its
// regular expression.
func FuzzNamesMatchTheirPatterns(f *testing.F) {
	for _, s := range []string{"amo_asterisk", "a", "", ".", "-a", "A.b-c_d", "vendor-a", "Vendor", "b_00000000000000a1",
		"b_00000000000000A1", "b_00000000000000a", "a\n", "é", "0123456789012345678901234567890123456789", "01234567890123456789012345678901234567890"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidWidgetCode(s), widgetCodePattern.MatchString(s) && s != "." && s != ".."; got != want {
			t.Fatalf("ValidWidgetCode(%q) = %v, pattern %v", s, got, want)
		}
		if got, want := ValidIntegration(s), integrationPattern.MatchString(s); got != want {
			t.Fatalf("ValidIntegration(%q) = %v, pattern %v", s, got, want)
		}
		if got, want := ValidBatchID(s), batchIDPattern.MatchString(s); got != want {
			t.Fatalf("ValidBatchID(%q) = %v, pattern %v", s, got, want)
		}
	})
}

func TestNameLengths(t *testing.T) {
	long := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		return string(b)
	}
	for _, c := range []struct {
		s           string
		code, integ bool
	}{
		{long(40), true, true},
		{long(41), true, false},
		{long(100), true, false},
		{long(101), false, false},
	} {
		if ValidWidgetCode(c.s) != c.code || ValidIntegration(c.s) != c.integ {
			t.Errorf("%d bytes: code %v integration %v, want %v %v", len(c.s), ValidWidgetCode(c.s), ValidIntegration(c.s), c.code, c.integ)
		}
	}
}
