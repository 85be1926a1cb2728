package ratelimit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/fakeclock"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/retry"
)

// newLimiter returns a limiter judging by clk, on the test's key prefix.
func newLimiter(t *testing.T, r *redistest.Redis, prefix string, clk *fakeclock.Clock, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	cfg.Prefix, cfg.Now = prefix, clk.Now
	l, err := ratelimit.New(r.Client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// micro is how far apart two durations may be from float rounding of an
// interval to whole microseconds (per interval summed).
const micro = 8 * time.Microsecond

// exactly reports whether got is want up to microsecond rounding.
func exactly(got, want time.Duration) bool { return got >= want-micro && got <= want+micro }

// reserve reserves and checks the wait the limiter computed.
func reserve(t *testing.T, l *ratelimit.Limiter, b ratelimit.Budget, want time.Duration) {
	t.Helper()
	wait, err := l.Reserve(context.Background(), b, time.Hour)
	if err != nil || !exactly(wait, want) {
		t.Fatalf("%s: wait %v (%v), want %v", b, wait, err, want)
	}
}

func TestReservationsArePacedWithAMargin(t *testing.T) {
	t.Parallel()
	clk := fakeclock.New()
	l := newLimiter(t, redistest.New(t), redistest.Unique(t), clk, ratelimit.Config{PerAccount: 7, Margin: 0.05})
	interval := 150 * time.Millisecond // a seventh of a second, and 5%
	// Slot i of the account is i intervals after the first, however long
	// the calls take.
	for i := range 8 {
		reserve(t, l, ratelimit.Of(1), time.Duration(i)*interval)
	}
	// Time passes: the next slot (the 9th) is that much nearer.
	clk.Add(100 * time.Millisecond)
	reserve(t, l, ratelimit.Of(1), 8*interval-100*time.Millisecond)
	// Another account has its own budget.
	reserve(t, l, ratelimit.Of(2), 0)
	// An account idle for longer than an interval starts afresh: no burst
	// is saved up.
	clk.Add(time.Hour)
	reserve(t, l, ratelimit.Of(1), 0)
	reserve(t, l, ratelimit.Of(1), interval)
}

func TestDefaultMarginPacesBelowTheLimit(t *testing.T) {
	t.Parallel()
	clk := fakeclock.New()
	l := newLimiter(t, redistest.New(t), redistest.Unique(t), clk, ratelimit.Config{})
	// 7/s with 4%: 148.571 ms apart, so 7 slots span 891 ms and the 8th
	// lands 1.04 s after the first, outside any one-second window.
	for i := range 8 {
		reserve(t, l, ratelimit.Of(1), time.Duration(float64(i)*1.04e9/7))
	}
}

func TestSlotsBeyondMaxWaitAreDeferredNotReserved(t *testing.T) {
	t.Parallel()
	clk := fakeclock.New()
	l := newLimiter(t, redistest.New(t), redistest.Unique(t), clk, ratelimit.Config{PerAccount: 2})
	ctx := context.Background()
	for range 2 {
		if _, err := l.Reserve(ctx, ratelimit.Of(1), 600*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	// 2/s with 4%: slots 520 ms apart; the third is 1.04 s away.
	wait, err := l.Reserve(ctx, ratelimit.Of(1), 600*time.Millisecond)
	var de *retry.DeferError
	if !errors.As(err, &de) || !exactly(de.Delay, 1040*time.Millisecond) || wait != de.Delay {
		t.Fatalf("third reservation: wait %v err %v, want a deferral of 1.04s", wait, err)
	}
	// Nothing was reserved: the next caller with more patience gets the
	// same slot, not one after it.
	reserve(t, l, ratelimit.Of(1), wait)
	if retry.IsFailure(de) {
		t.Fatal("a deferral counts as a failure")
	}
}

func TestGlobalBudgetIsShared(t *testing.T) {
	t.Parallel()
	clk := fakeclock.New()
	l := newLimiter(t, redistest.New(t), redistest.Unique(t), clk, ratelimit.Config{PerAccount: 7, Global: 10, Margin: -1})
	// Six accounts, one request each: 10/s over all of them.
	for i := range 6 {
		reserve(t, l, ratelimit.Of(int64(100+i)), time.Duration(i)*100*time.Millisecond)
	}
	// An account's own budget still holds: its second slot is a seventh
	// of a second after its first, even though the global one is nearer.
	clk.Add(time.Second)
	reserve(t, l, ratelimit.Of(200), 0)
	reserve(t, l, ratelimit.Of(200), time.Second/7)
}

func TestEachIntegrationHasItsBudgetUnderTheAccountsTotal(t *testing.T) {
	t.Parallel()
	clk := fakeclock.New()
	l := newLimiter(t, redistest.New(t), redistest.Unique(t), clk, ratelimit.Config{PerAccount: 7, PerAccountTotal: 10, Margin: -1})
	a := ratelimit.Budget{Account: 1, Integration: "a"}
	b := ratelimit.Budget{Account: 1, Integration: "b"}
	// Two integrations in one account: each is paced at 7/s on its own...
	reserve(t, l, a, 0)
	reserve(t, l, a, time.Second/7)
	// ...but the account's total (10/s) holds over both: b's first slot is
	// a tenth of a second after a's last one.
	reserve(t, l, b, time.Second/7+time.Second/10)
	// The default integration keeps the keys it had: "" and "default" are
	// the same budget.
	clk.Add(time.Hour)
	reserve(t, l, ratelimit.Of(1), 0)
	reserve(t, l, ratelimit.Budget{Account: 1, Integration: "default"}, time.Second/7)
	// A pause after a 429 is the integration's, not the account's.
	ctx := context.Background()
	if err := l.Penalize(ctx, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if p, _ := l.PausedFor(ctx, b); p != 0 {
		t.Fatalf("integration b paused %v by a's 429", p)
	}
	if p, _ := l.PausedFor(ctx, a); !exactly(p, time.Minute) {
		t.Fatalf("integration a paused %v, want 1m", p)
	}
}

func TestPenalizePausesAndSlowsTheAccount(t *testing.T) {
	t.Parallel()
	clk := fakeclock.New()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	a := newLimiter(t, r, prefix, clk, ratelimit.Config{PerAccount: 10, Margin: -1})
	b := newLimiter(t, r, prefix, clk, ratelimit.Config{PerAccount: 10, Margin: -1}) // another process
	ctx := context.Background()
	if err := a.Penalize(ctx, ratelimit.Of(1), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if p, err := b.PausedFor(ctx, ratelimit.Of(1)); err != nil || !exactly(p, 2*time.Second) {
		t.Fatalf("paused for %v (%v) in the other process, want 2s", p, err)
	}
	clk.Add(500 * time.Millisecond)
	if p, _ := b.PausedFor(ctx, ratelimit.Of(1)); !exactly(p, 1500*time.Millisecond) {
		t.Fatalf("500 ms later: paused for %v, want 1.5s", p)
	}
	// The first slot is when the pause ends; the next one an interval of
	// 200 ms (twice 100 ms) later.
	reserve(t, b, ratelimit.Of(1), 1500*time.Millisecond)
	reserve(t, b, ratelimit.Of(1), 1700*time.Millisecond)
	if f, _ := b.SlowFactor(ctx, ratelimit.Of(1)); f != 2 {
		t.Fatalf("slow factor %v", f)
	}
	for range 5 {
		_ = a.Penalize(ctx, ratelimit.Of(1), 0)
	}
	if f, _ := b.SlowFactor(ctx, ratelimit.Of(1)); f != 8 {
		t.Fatalf("slow factor after many 429s %v, want the cap 8", f)
	}
	// A short pause never shortens a longer one.
	_ = a.Penalize(ctx, ratelimit.Of(1), time.Millisecond)
	if p, _ := b.PausedFor(ctx, ratelimit.Of(1)); !exactly(p, 1500*time.Millisecond) {
		t.Fatalf("pause changed to %v by a shorter one", p)
	}
	// Once the pause is over, nothing is paused.
	clk.Add(2 * time.Second)
	if p, _ := b.PausedFor(ctx, ratelimit.Of(1)); p != 0 {
		t.Fatalf("paused for %v after the pause ended", p)
	}
	reserve(t, b, ratelimit.Of(2), 0)
	if p, _ := b.PausedFor(ctx, ratelimit.Of(2)); p != 0 {
		t.Fatalf("account 2 paused by account 1's 429: %v", p)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []ratelimit.Config{{PerAccount: -1}, {PerAccountTotal: -1}, {Global: -5}, {Margin: 1.5}, {SlowFactor: 0.5}} {
		if _, err := ratelimit.New(nil, c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestTwoProcessesNeverTripKommosLimit reserves slots through two limiter
// instances (two worker processes) from six goroutines at once, then sends
// a request at each slot to a sandbox that enforces Kommo's 7/s on
// arrival, its clock set to the slot: not one 429. The same run at 8/s
// is refused, so the sandbox is judging.
func TestTwoProcessesNeverTripKommosLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		rate     float64
		want429s bool
	}{{7, false}, {8, true}} {
		r := redistest.New(t)
		prefix := redistest.Unique(t)
		clk := fakeclock.New()
		limiters := []*ratelimit.Limiter{
			newLimiter(t, r, prefix, clk, ratelimit.Config{PerAccount: c.rate}),
			newLimiter(t, r, prefix, clk, ratelimit.Config{PerAccount: c.rate}),
		}
		var mu sync.Mutex
		var slots []time.Time
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 4 {
					wait, err := limiters[g%2].Reserve(context.Background(), ratelimit.Of(7), time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					slots = append(slots, clk.Now().Add(wait))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		slices.SortFunc(slots, time.Time.Compare)
		for i := 1; i < len(slots); i++ {
			if gap := slots[i].Sub(slots[i-1]); gap < time.Duration(float64(time.Second)/c.rate) {
				t.Fatalf("%v/s: slots %d and %d are %v apart", c.rate, i-1, i, gap)
			}
		}

		arrival := fakeclock.New()
		sb := sandbox.New(sandbox.Config{BlockAfter: -1, Now: arrival.Now})
		if err := sb.AddAccount(sandbox.AccountSpec{ID: 7, Subdomain: "seven"}); err != nil {
			t.Fatal(err)
		}
		tok, _ := sb.IssueTokens("seven", 0)
		srv := httptest.NewServer(sb)
		t.Cleanup(func() { sb.Close(); srv.Close() })
		for _, at := range slots {
			arrival.Set(at)
			req, _ := http.NewRequest("GET", sandbox.BaseURL(srv.URL, "seven")+"/api/v4/account", nil)
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		n := sb.Counters()
		if n.Total.Requests != 24 || (n.Total.RateLimited > 0) != c.want429s {
			t.Fatalf("%v/s: %d requests, %d answered 429; want 24, 429s %v", c.rate, n.Total.Requests, n.Total.RateLimited, c.want429s)
		}
	}
}
