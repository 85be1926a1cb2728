package ratelimit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/retry"
)

func newLimiter(t *testing.T, r *redistest.Redis, prefix string, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	cfg.Prefix = prefix
	l, err := ratelimit.New(r.Client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// near reports whether got is within tol of want.
func near(got, want, tol time.Duration) bool { return got >= want-tol && got <= want+tol }

// reserveAt reserves and checks that the wait points at slot (a moment in
// time), whatever time the call itself took on a busy machine.
func reserveAt(t *testing.T, l *ratelimit.Limiter, account int64, slot time.Time) time.Duration {
	t.Helper()
	before := time.Now()
	wait, err := l.Reserve(context.Background(), account, time.Hour)
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	const tol = 10 * time.Millisecond
	if lo, hi := slot.Sub(after)-tol, slot.Sub(before)+tol; wait < max(lo, -tol) || wait > max(hi, tol) {
		t.Fatalf("account %d waits %v, want the slot %v away (between %v and %v)", account, wait, slot.Sub(before), lo, hi)
	}
	return wait
}

func TestReservationsArePacedWithAMargin(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	l := newLimiter(t, r, redistest.Unique(t), ratelimit.Config{PerAccount: 7, Margin: 0.05})
	interval := 150 * time.Millisecond // a seventh of a second, and 5%
	t0 := time.Now()
	if _, err := l.Reserve(context.Background(), 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 8; i++ {
		// Slot i of the account is i intervals after the first.
		reserveAt(t, l, 1, t0.Add(time.Duration(i)*interval))
	}
	// Another account has its own budget.
	reserveAt(t, l, 2, time.Now())
}

func TestSlotsBeyondMaxWaitAreDeferredNotReserved(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	l := newLimiter(t, r, redistest.Unique(t), ratelimit.Config{PerAccount: 2})
	ctx := context.Background()
	for range 2 {
		if _, err := l.Reserve(ctx, 1, 600*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	wait, err := l.Reserve(ctx, 1, 600*time.Millisecond)
	var de *retry.DeferError
	if !errors.As(err, &de) || !near(de.Delay, 1050*time.Millisecond, 60*time.Millisecond) || wait != de.Delay {
		t.Fatalf("third reservation: wait %v err %v, want a deferral of about 1.05s", wait, err)
	}
	// Nothing was reserved: the next caller with more patience gets the
	// same slot, not one after it.
	if wait2, err := l.Reserve(ctx, 1, time.Hour); err != nil || !near(wait2, wait, 60*time.Millisecond) {
		t.Fatalf("after a deferral: %v %v, want about %v", wait2, err, wait)
	}
	if retry.IsFailure(de) {
		t.Fatal("a deferral counts as a failure")
	}
}

func TestGlobalBudgetIsShared(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	l := newLimiter(t, r, redistest.Unique(t), ratelimit.Config{PerAccount: 7, Global: 10, Margin: -1})
	t0 := time.Now()
	if _, err := l.Reserve(context.Background(), 100, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Six accounts, one request each: 10/s over all of them.
	for i := 1; i < 6; i++ {
		reserveAt(t, l, int64(100+i), t0.Add(time.Duration(i)*100*time.Millisecond))
	}
}

func TestPenalizePausesAndSlowsTheAccount(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	a := newLimiter(t, r, prefix, ratelimit.Config{PerAccount: 10, Margin: -1})
	b := newLimiter(t, r, prefix, ratelimit.Config{PerAccount: 10, Margin: -1}) // another process
	ctx := context.Background()
	pausedAt := time.Now()
	if err := a.Penalize(ctx, 1, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if p, _ := b.PausedFor(ctx, 1); p > 2*time.Second || p < 2*time.Second-time.Since(pausedAt)-10*time.Millisecond {
		t.Fatalf("paused for %v in the other process", p)
	}
	// The first slot is when the pause ends; the next one an interval of
	// 200 ms (twice 100 ms) later.
	end := pausedAt.Add(2 * time.Second)
	var w1 time.Duration
	func() {
		before := time.Now()
		var err error
		w1, err = b.Reserve(ctx, 1, time.Hour)
		if err != nil || w1 > end.Sub(before)+10*time.Millisecond || w1 < end.Sub(time.Now())-time.Since(pausedAt) {
			t.Fatalf("first slot after a pause: %v %v", w1, err)
		}
	}()
	slot1 := time.Now().Add(w1)
	reserveAt(t, b, 1, slot1.Add(200*time.Millisecond))
	if f, _ := b.SlowFactor(ctx, 1); f != 2 {
		t.Fatalf("slow factor %v", f)
	}
	for range 5 {
		_ = a.Penalize(ctx, 1, 0)
	}
	if f, _ := b.SlowFactor(ctx, 1); f != 8 {
		t.Fatalf("slow factor after many 429s %v, want the cap 8", f)
	}
	// A short pause never shortens a longer one.
	_ = a.Penalize(ctx, 1, time.Millisecond)
	if p, _ := b.PausedFor(ctx, 1); p < time.Second {
		t.Fatalf("pause shortened to %v", p)
	}
	if _, err := b.Reserve(ctx, 2, time.Hour); err != nil {
		t.Fatal(err)
	}
	if p, _ := b.PausedFor(ctx, 2); p != 0 {
		t.Fatalf("account 2 paused by account 1's 429: %v", p)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []ratelimit.Config{{PerAccount: -1}, {Global: -5}, {Margin: 1.5}, {SlowFactor: 0.5}} {
		if _, err := ratelimit.New(nil, c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestTwoProcessesNeverTripKommosLimit sends requests through two limiter
// instances (two worker processes) at a sandbox that enforces 7/s on
// arrival: not one 429.
func TestTwoProcessesNeverTripKommosLimit(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	sb := sandbox.New(sandbox.Config{BlockAfter: -1})
	if err := sb.AddAccount(sandbox.AccountSpec{ID: 7, Subdomain: "seven"}); err != nil {
		t.Fatal(err)
	}
	tok, _ := sb.IssueTokens("seven", 0)
	srv := httptest.NewServer(sb)
	t.Cleanup(func() { sb.Close(); srv.Close() })
	limiters := []*ratelimit.Limiter{newLimiter(t, r, prefix, ratelimit.Config{}), newLimiter(t, r, prefix, ratelimit.Config{})}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				if err := limiters[g%2].Wait(context.Background(), 7, time.Minute); err != nil {
					t.Error(err)
					return
				}
				req, _ := http.NewRequest("GET", sandbox.BaseURL(srv.URL, "seven")+"/api/v4/account", nil)
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	c := sb.Counters()
	if c.Total.Requests != 24 || c.Total.RateLimited != 0 {
		t.Fatalf("%d requests, %d answered 429; want 24 and none", c.Total.Requests, c.Total.RateLimited)
	}
}
