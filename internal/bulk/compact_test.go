package bulk

import (
	"bytes"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzParseJSONLineFast holds the compact reader to encoding/json's: a
// line it takes parses strictly to the same payload, and ParseJSONLine
// gives the same verdict either way.
func FuzzParseJSONLineFast(f *testing.F) {
	for _, s := range compactSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if !utf8.Valid(line) {
			return
		}
		fast, ok := parseCompactLine(line)
		if !ok {
			return
		}
		strict, reason := parseJSONLineStrict(line)
		if got := validateReason(&fast); got != reason {
			t.Fatalf("%q: verdict %q, strictly %q", line, got, reason)
		}
		if !bytes.Equal(fast.Settings, strict.Settings) {
			t.Fatalf("%q: settings %q, strictly %q", line, fast.Settings, strict.Settings)
		}
		fast.Settings, strict.Settings = nil, nil
		if !reflect.DeepEqual(fast, strict) {
			t.Fatalf("%q: %+v, strictly %+v", line, fast, strict)
		}
	})
}

func validateReason(p interface{ Validate() error }) string {
	if err := p.Validate(); err != nil {
		return err.Error()
	}
	return ""
}

var compactSeeds = []string{
	`{"account_id":30123456,"widget_code":"amo_asterisk","settings":{"login":"user1","password":"pw-1","phones":{"504141":"1039"}}}`,
	`{"account_id":7,"widget_code":"w","integration":"vendor-a"}`,
	`{"account_id":-3,"widget_code":"w"}`,
	`{"account_id":7,"widget_code":"no spaces"}`,
	`{"account_id":7,"widget_code":"w","settings":{"a":"}"}}`,
	`{"account_id":7}`,
	`{"widget_code":"w"}`,
	`{"account_id":7,"widget_code":"w","enqueue_id":"e"}`,
	`{"account_id":7,"widget_code":"w","settings":null}`,
	`{"account_id":7.0,"widget_code":"w"}`,
	`{"account_id":7,"widget_code":"w"} `,
}

// Lines as programs write them are read without encoding/json; lines that
// lack a field, or hold one a line may not, are left to it (whose error
// names the field).
func TestCompactLines(t *testing.T) {
	for _, c := range []struct {
		line  string
		taken bool
	}{
		{compactSeeds[0], true},
		{compactSeeds[1], true},
		{compactSeeds[2], true}, // taken; Validate rejects it, as strictly
		{`{"account_id":7}`, false},
		{`{"widget_code":"w"}`, false},
		{`{"account_id":7,"widget_code":"w","enqueue_id":"e"}`, false},
		{`{"account_id":7,"widget_code":"w","settings":null}`, false},
	} {
		if _, ok := parseCompactLine([]byte(c.line)); ok != c.taken {
			t.Errorf("%s: taken %v, want %v", c.line, ok, c.taken)
		}
		p, reason := ParseJSONLine([]byte(c.line))
		sp, sreason := parseJSONLineStrict([]byte(c.line))
		if reason != sreason || p.AccountID != sp.AccountID || p.WidgetCode != sp.WidgetCode || !bytes.Equal(p.Settings, sp.Settings) {
			t.Errorf("%s: %+v %q, strictly %+v %q", c.line, p, reason, sp, sreason)
		}
	}
}
