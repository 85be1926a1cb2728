package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestSealOpenRoundTripAndHidesThePlaintext(t *testing.T) {
	k, err := New(testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "at_VERY_SECRET_token"
	s := k.Seal(secret)
	if !IsSealed(s) || strings.Contains(s, secret) || strings.Contains(s, "SECRET") {
		t.Fatalf("sealed %q", s)
	}
	if s2 := k.Seal(secret); s2 == s {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	got, err := k.Open(s)
	if err != nil || got != secret {
		t.Fatalf("open: %q %v", got, err)
	}
	if k.Seal("") != "" {
		t.Fatal("empty must stay empty")
	}
	// Plaintext from before the key opens as itself.
	if got, err := k.Open("legacy"); err != nil || got != "legacy" {
		t.Fatalf("plaintext: %q %v", got, err)
	}
}

func TestOpenRefusesWithoutTheRightKeyAndNamesNoSecret(t *testing.T) {
	a, _ := New(testKey(1))
	b, _ := New(testKey(2))
	s := a.Seal("pw-123456")
	if _, err := b.Open(s); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("other key: %v", err)
	}
	var none *Keys
	if _, err := none.Open(s); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	if none.Seal("x") != "x" || none.Enabled() {
		t.Fatal("nil Keys must pass plaintext through")
	}
	// One flipped character anywhere in the body is refused.
	body := []byte(s)
	body[len(body)-3] ^= 1
	if _, err := a.Open(string(body)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("altered: %v", err)
	}
	for _, bad := range []string{"wqs1.", "wqs1.nodot", Prefix + a.KeyID() + ".", Prefix + a.KeyID() + ".!!!", Prefix + a.KeyID() + ".AAAA"} {
		if _, err := a.Open(bad); err == nil {
			t.Errorf("%q opened", bad)
		}
	}
}

func TestRotationOpensThePreviousKeyAndResealKeepsLength(t *testing.T) {
	old, _ := New(testKey(1))
	s := old.Seal("rt_refresh")
	rot, err := New(testKey(2), testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rot.Open(s); err != nil || got != "rt_refresh" {
		t.Fatalf("previous key: %q %v", got, err)
	}
	if !rot.NeedsReseal(s) || !rot.NeedsReseal("plain") || rot.NeedsReseal(rot.Seal("x")) || rot.NeedsReseal("") {
		t.Fatal("NeedsReseal")
	}
	r, changed, err := rot.Reseal(s)
	if err != nil || !changed || KeyIDOf(r) != rot.KeyID() || len(r) != len(s) {
		t.Fatalf("reseal: %q %v %v", r, changed, err)
	}
	// In place inside a larger record: only the old values change.
	cur := rot.Seal("already")
	rec := []byte(`{"a":"` + s + `","b":"` + cur + `","c":"x"}` + "\x32\x05tail")
	out, n, err := rot.ResealAll(rec)
	if err != nil || n != 1 || len(out) != len(rec) || !bytes.Contains(out, []byte(cur)) || bytes.Contains(out, []byte(s)) {
		t.Fatalf("ResealAll: n=%d err=%v\n%s", n, err, out)
	}
	// The new key alone opens the result.
	only, _ := New(testKey(2))
	v := strings.Split(string(out), `"`)[3]
	if got, err := only.Open(v); err != nil || got != "rt_refresh" {
		t.Fatalf("after reseal: %q %v", got, err)
	}
}

func TestParseKeyAndFromEnvNameTheSetting(t *testing.T) {
	std := base64.StdEncoding.EncodeToString(testKey(7))
	for _, s := range []string{std, base64.RawURLEncoding.EncodeToString(testKey(7)), " " + std + "\n"} {
		if b, err := ParseKey(s); err != nil || !bytes.Equal(b, testKey(7)) {
			t.Errorf("ParseKey(%q): %v", s, err)
		}
	}
	if _, err := ParseKey(base64.StdEncoding.EncodeToString([]byte("short"))); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Errorf("short key: %v", err)
	}
	k, err := FromEnv("", "")
	if err != nil || k != nil {
		t.Fatalf("no key: %v %v", k, err)
	}
	for _, c := range []struct{ cur, prev, want string }{
		{"not-a-key!", "", "WIDGETQ_SECRET_KEY:"},
		{std, "zzz!", "WIDGETQ_SECRET_KEY_PREVIOUS:"},
		{"", std, "without WIDGETQ_SECRET_KEY"},
	} {
		_, err := FromEnv(c.cur, c.prev)
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.cur != "" && strings.Contains(err.Error(), c.cur)) {
			t.Errorf("FromEnv(%q, %q): %v", c.cur, c.prev, err)
		}
	}
}

// FuzzOpen: whatever Redis hands back, Open neither panics nor returns a
// value it did not seal.
func FuzzOpen(f *testing.F) {
	k, _ := New(testKey(3))
	f.Add(k.Seal("secret"))
	f.Add("wqs1.00000000.AAAA")
	f.Add("plain")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := k.Open(s)
		if err != nil {
			if strings.Contains(err.Error(), s) && s != "" {
				t.Fatalf("error repeats the input: %v", err)
			}
			return
		}
		if !IsSealed(s) && got != s {
			t.Fatalf("plaintext changed: %q -> %q", s, got)
		}
		if out, _, err := k.ResealAll([]byte(s)); err == nil && len(out) != len(s) {
			t.Fatalf("ResealAll changed the length")
		}
	})
}
