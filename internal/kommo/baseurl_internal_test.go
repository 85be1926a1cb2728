package kommo

import (
	"fmt"
	"testing"

	"github.com/widgetq/widgetq/internal/memo"
)

// TestBaseURLsAreRemembered: a base that passed is parsed once and shared,
// a refused one is refused every time, and the memory stays bounded. Not
// parallel: the memory is the package's.
func TestBaseURLsAreRemembered(t *testing.T) {
	a, err := NewClient("https://acme.kommo.com/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewClient("https://acme.kommo.com/")
	if err != nil || a.base != b.base || b.BaseURL() != "https://acme.kommo.com" {
		t.Fatalf("second client: %v, base %p/%p %q", err, a.base, b.base, b.BaseURL())
	}
	for range 2 {
		if _, err := NewClient("https://u:pw@acme.kommo.com"); err == nil {
			t.Fatal("a base URL with credentials was accepted")
		}
	}
	for i := range memo.Max + 10 {
		if _, err := parseBaseURL(fmt.Sprintf("https://a%d.kommo.com", i)); err != nil {
			t.Fatal(err)
		}
	}
	if size := baseURLs.Len(); size > memo.Max {
		t.Fatalf("%d bases remembered, bound %d", size, memo.Max)
	}
}
