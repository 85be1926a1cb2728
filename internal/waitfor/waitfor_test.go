package waitfor

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of stopping.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
}

func TestUntil(t *testing.T) {
	t.Parallel()
	n := 0
	Until(t, time.Minute, func() (bool, string) { n++; return n == 3, fmt.Sprint(n) })
	if n != 3 {
		t.Fatalf("polled %d times, want until the third", n)
	}
	r := &recorder{}
	Until(r, 50*time.Millisecond, func() (bool, string) { return false, "still 2 pending" })
	if !strings.Contains(r.msg, "not within 50ms: still 2 pending") {
		t.Fatalf("failure %q", r.msg)
	}
}
