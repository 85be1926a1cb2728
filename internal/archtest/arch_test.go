package archtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// deps lists the packages pkg links, as go list sees them.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

// TestWhatLinksWhat: the production worker links no fake Kommo; the
// public producer and tasks packages, which a marketplace backend
// imports, drag in neither the Kommo client nor x/oauth2; tasks imports
// nothing of widgetq's but its payload reader, which imports nothing of
// widgetq's either (the standard library only).
func TestWhatLinksWhat(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pkg       string
		forbidden []string
		allowed   []string
	}{
		{"github.com/widgetq/widgetq/cmd/worker", []string{"github.com/widgetq/widgetq/internal/kommo/sandbox", "github.com/widgetq/widgetq/internal/fleettest"}, nil},
		{"github.com/widgetq/widgetq/cmd/enqueue", []string{"github.com/widgetq/widgetq/internal/kommo/sandbox"}, nil},
		{"github.com/widgetq/widgetq/producer", []string{"github.com/widgetq/widgetq/internal/kommo", "golang.org/x/oauth2"}, nil},
		{"github.com/widgetq/widgetq/tasks", []string{"github.com/widgetq/widgetq/internal/"}, []string{"github.com/widgetq/widgetq/internal/payloadjson"}},
		{"github.com/widgetq/widgetq/internal/payloadjson", []string{"github.com/widgetq/widgetq/"}, nil},
		{"github.com/widgetq/widgetq/internal/kommohost", []string{"github.com/widgetq/widgetq/internal/"}, nil},
	} {
		for _, d := range deps(t, c.pkg) {
			if d == c.pkg || slices.Contains(c.allowed, d) {
				continue
			}
			for _, f := range c.forbidden {
				if d == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) {
					t.Errorf("%s links %s", c.pkg, d)
				}
			}
		}
	}
}
