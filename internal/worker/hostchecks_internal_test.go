package worker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/memo"
)

// TestHostChecksRememberTheListsVerdict: a remembered verdict is the
// list's own — an allowed URL stays allowed, a refused one refused with
// the same error — and the memory stays bounded.
func TestHostChecksRememberTheListsVerdict(t *testing.T) {
	t.Parallel()
	var list *kommohost.List // nil: the default list
	c := &hostChecks{list: list}
	for range 2 {
		if err := c.check("https://acme.kommo.com"); err != nil {
			t.Fatalf("a Kommo host refused: %v", err)
		}
		err := c.check("https://evil.example.com")
		var he *kommohost.Error
		if !errors.As(err, &he) || err.Error() != list.Check("https://evil.example.com").Error() {
			t.Fatalf("another host: %v, want the list's own refusal", err)
		}
	}
	for i := range memo.Max + 10 {
		_ = c.check(fmt.Sprintf("https://a%d.kommo.com", i))
	}
	if size := c.verdicts.Len(); size > memo.Max {
		t.Fatalf("the map holds %d verdicts, bound %d", size, memo.Max)
	}
}
