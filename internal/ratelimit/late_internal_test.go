package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/fakeclock"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/retry"
)

func TestTooLate(t *testing.T) {
	for _, c := range []struct {
		late time.Duration
		want bool
	}{
		{-time.Second, false},
		{0, false},
		{MaxLate, false},
		{MaxLate + time.Microsecond, true},
		{time.Second, true},
	} {
		if got := tooLate(c.late); got != c.want {
			t.Errorf("tooLate(%v) = %v, want %v", c.late, got, c.want)
		}
	}
}

// stalledLimiter is a limiter, and the count of slots it reported
// missed, whose scripts' clock and process clock are
// frozen fakes; every time a request is about to leave, the process
// clock moves on by the next of stalls (as if the process had been
// starved that long).
func stalledLimiter(t *testing.T, stalls ...time.Duration) (l *Limiter, missed *int) {
	t.Helper()
	missed = new(int)
	var err error
	r := redistest.New(t)
	l, err = New(r.Client, Config{PerAccount: 100, PerAccountTotal: 100, Prefix: redistest.Unique(t), Now: fakeclock.New().Now,
		OnMissedSlot: func() { *missed++ }})
	if err != nil {
		t.Fatal(err)
	}
	local := fakeclock.New()
	l.local = local.Now
	l.beforeSend = func() {
		if len(stalls) > 0 {
			local.Add(stalls[0])
			stalls = stalls[1:]
		}
	}
	return l, missed
}

// reservations is how many slots of b were reserved: the next one's wait
// over one interval (the scripts' clock is frozen).
func reservations(t *testing.T, l *Limiter, b Budget) int {
	t.Helper()
	wait, err := l.Reserve(context.Background(), b, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	iv := l.cfg.interval(l.cfg.PerAccount)
	return int((wait + iv/2) / iv)
}

// A request about to leave more than MaxLate after its slot does not use
// it: it reserves the next, and leaves in that. Within MaxLate it leaves.
func TestARequestTooLateForItsSlotTakesAnother(t *testing.T) {
	ctx := context.Background()
	b := Of(1)
	for _, c := range []struct {
		name   string
		stalls []time.Duration
		want   int
	}{
		{"on time", nil, 1},
		{"late within MaxLate", []time.Duration{MaxLate}, 1},
		{"too late once", []time.Duration{MaxLate + time.Millisecond}, 2},
		{"too late twice", []time.Duration{time.Second, time.Second}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, missed := stalledLimiter(t, c.stalls...)
			if err := l.Wait(ctx, b, time.Minute); err != nil {
				t.Fatal(err)
			}
			if got := reservations(t, l, b); got != c.want || *missed != c.want-1 {
				t.Fatalf("%d slots reserved, %d counted missed; want %d and %d", got, *missed, c.want, c.want-1)
			}
		})
	}
}

// A process that misses three slots in a row defers its task rather than
// send behind them.
func TestAProcessThatKeepsMissingItsSlotsDefers(t *testing.T) {
	l, missed := stalledLimiter(t, time.Second, time.Second, time.Second)
	err := l.Wait(context.Background(), Of(1), time.Minute)
	var de *retry.DeferError
	if !errors.As(err, &de) {
		t.Fatalf("Wait: %v, want a DeferError", err)
	}
	if got := reservations(t, l, Of(1)); got != 3 || *missed != 3 {
		t.Fatalf("%d slots reserved, %d counted missed; want 3 and 3", got, *missed)
	}
}
