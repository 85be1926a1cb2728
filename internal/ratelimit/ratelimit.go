// Package ratelimit paces requests to Kommo per account and across all
// accounts, for every worker process at once, through Redis.
//
// It is a GCRA with a burst of one and reservations: a caller reserves the
// next free slot of the account (and of the global budget) in one script
// and sleeps until it, so waiting callers neither poll Redis nor stampede
// when a slot frees; a slot further away than the caller may wait is not
// reserved, and the caller defers its task instead. Kommo judges its limit
// on arrival, after network jitter, so each interval carries a margin (4%).
//
// A 429 from Kommo pauses the account for every process and multiplies its
// interval for a while (repeated 429s get an account blocked).
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/keyspace"
	"github.com/widgetq/widgetq/internal/retry"
)

// Config sets the limits. Rates are requests per second.
type Config struct {
	// PerAccount is Kommo's limit per account (default 7).
	PerAccount float64
	// PerAccountTotal caps one account over all integrations together
	// (default 50, or PerAccount when that is higher): PerAccount is each
	// integration's budget in an account.
	PerAccountTotal float64
	// Global caps all accounts together (0: no cap).
	Global float64
	// Margin lengthens every interval by this share, so arrival jitter
	// never packs more than the limit into one second: a margin of 0.04
	// tolerates 40 ms of jitter per second at any rate, and paces at 0.96
	// of the limit (default 0.04; a negative value means none).
	Margin float64
	// SlowFactor multiplies an account's interval after a 429 (default 2;
	// each further 429 doubles it again, up to 8×), for SlowFor (default 1m).
	SlowFactor float64
	SlowFor    time.Duration
	// Prefix is the key prefix, as the store's (default "widgetq").
	Prefix string
	// OnMissedSlot, when set, is called each time a request was too late
	// for its slot (over MaxLate) and reserved another (for a metric).
	OnMissedSlot func()
	// Now, when set, is the clock the limiter judges by instead of the
	// Redis server's (TIME), which every process shares. For tests: with
	// it, every reservation is a pure function of the calls made.
	Now func() time.Time
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.PerAccount == 0 {
		c.PerAccount = 7
	}
	if c.PerAccountTotal == 0 {
		c.PerAccountTotal = max(50, c.PerAccount)
	}
	if c.Margin == 0 {
		c.Margin = 0.04
	}
	if c.Margin < 0 {
		c.Margin = 0
	}
	if c.SlowFactor == 0 {
		c.SlowFactor = 2
	}
	if c.SlowFor <= 0 {
		c.SlowFor = time.Minute
	}
	if c.Prefix == "" {
		c.Prefix = keyspace.DefaultPrefix
	}
	return c
}

// Validate names the first setting out of range.
func (c Config) Validate() error {
	switch {
	case c.PerAccount <= 0 || math.IsInf(c.PerAccount, 0) || math.IsNaN(c.PerAccount):
		return fmt.Errorf("rate per account must be a positive number, got %v", c.PerAccount)
	case c.PerAccountTotal <= 0 || math.IsInf(c.PerAccountTotal, 0) || math.IsNaN(c.PerAccountTotal):
		return fmt.Errorf("rate per account over all integrations must be a positive number, got %v", c.PerAccountTotal)
	case c.Global < 0 || math.IsInf(c.Global, 0) || math.IsNaN(c.Global):
		return fmt.Errorf("global rate must be 0 (none) or positive, got %v", c.Global)
	case c.Margin > 1 || math.IsNaN(c.Margin):
		return fmt.Errorf("rate margin must be a share below 1, got %v", c.Margin)
	case c.SlowFactor < 1:
		return fmt.Errorf("slow factor must be at least 1, got %v", c.SlowFactor)
	}
	return nil
}

// Interval returns the pacing interval of a rate with the margin.
func (c Config) interval(rate float64) time.Duration {
	return time.Duration(float64(time.Second) / rate * (1 + c.Margin))
}

// Limiter is safe for concurrent use.
type Limiter struct {
	rdb redis.UniversalClient
	cfg Config
	pre string
	// globalTAT is the global budget's TAT key, named once.
	globalTAT string
	// local is the process's clock, by which it sleeps until its slots;
	// beforeSend, when set, runs when a request is about to leave (tests
	// stall the process there).
	local      func() time.Time
	beforeSend func()
}

// New returns a limiter on rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Limiter, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pre := keyspace.New(cfg.Prefix).Key("rl", "")
	return &Limiter{rdb: rdb, cfg: cfg, pre: pre, globalTAT: pre + "tat:global", local: time.Now}, nil
}

// Config returns the limiter's settings.
func (l *Limiter) Config() Config { return l.cfg }

// Budget is whose rate budget a request spends: an integration's in an
// account (Kommo's 7 req/s), and with it the account's over all
// integrations and the global one.
type Budget struct {
	Account int64
	// Integration is the OAuth integration's name ("" or "default": the
	// default integration).
	Integration string
}

// Of is the default integration's budget in account.
func Of(account int64) Budget { return Budget{Account: account} }

func (b Budget) String() string {
	if b.Integration == "" || b.Integration == "default" {
		return fmt.Sprintf("account %d", b.Account)
	}
	return fmt.Sprintf("account %d (integration %s)", b.Account, b.Integration)
}

// keys are the budget's: its TAT, pause-until and slow factor, then the
// global TAT and the account's TAT over all integrations. The default
// integration's keep the names they had before integrations existed.
func (l *Limiter) keys(b Budget) []string {
	a := strconv.FormatInt(b.Account, 10)
	own := a
	if b.Integration != "" && b.Integration != "default" {
		own = a + ":" + b.Integration
	}
	return []string{l.pre + "tat:" + own, l.pre + "pause:" + own, l.pre + "slow:" + own, l.globalTAT, l.pre + "total:" + a}
}

// now is the clock argument of the scripts: 0 asks them to read the
// Redis server's clock.
func (l *Limiter) now() int64 {
	if l.cfg.Now == nil {
		return 0
	}
	return l.cfg.Now().UnixMicro()
}

// scriptNow is the scripts' clock (microseconds): ARGV[i] when positive,
// else the Redis server's.
const scriptNow = `
local now = tonumber(ARGV[%d])
if now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end`

// ReserveLua defines the Lua function reserve(K, A): it reserves the next
// slot of a budget, of its account over all integrations and of the
// global budget at once, on the Redis server's clock (microseconds), and
// returns {reserved (0/1), wait}. K and A are the tables of keys and
// arguments a Reservation carries. Another script that must reserve in
// the same step as its own work (the worker's first read of a task)
// includes it; reserveScript is it alone.
// K: budget TAT, budget pause-until, budget slow factor, global TAT,
// account TAT.
// A: budget interval, global interval (0: none), max wait, now (0: TIME),
// account interval.
const ReserveLua = `
local function reserve(K, A)
  local now = tonumber(A[4])
  if now <= 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  -- One read of every key: a call from Lua costs more than its command.
  local v = redis.call('MGET', K[1], K[2], K[3], K[4], K[5])
  local ia = tonumber(A[1]) * tonumber(v[3] or '1')
  local ig = tonumber(A[2])
  local start = now
  local tat = tonumber(v[1] or '0')
  if tat > start then start = tat end
  local pause = tonumber(v[2] or '0')
  if pause > start then start = pause end
  if ig > 0 then
    local g = tonumber(v[4] or '0')
    if g > start then start = g end
  end
  local it = tonumber(A[5])
  local t = tonumber(v[5] or '0')
  if t > start then start = t end
  local wait = start - now
  if wait > tonumber(A[3]) then return {0, wait} end
  redis.call('SET', K[1], string.format('%.0f', start + ia), 'PX', math.floor((start + ia - now) / 1000) + 1000)
  redis.call('SET', K[5], string.format('%.0f', start + it), 'PX', math.floor((start + it - now) / 1000) + 1000)
  if ig > 0 then
    redis.call('SET', K[4], string.format('%.0f', start + ig), 'PX', math.floor((start + ig - now) / 1000) + 1000)
  end
  return {1, wait}
end
`

var reserveScript = redis.NewScript(ReserveLua + `return reserve(KEYS, ARGV)`)

// Reservation is one reservation's keys and arguments, for ReserveLua in
// another script; Reserved reads its answer.
type Reservation struct {
	Budget Budget
	Keys   []string
	Args   []any
}

// Reservation returns the keys and arguments that reserve the budget's
// next slot if it is at most maxWait away.
func (l *Limiter) Reservation(b Budget, maxWait time.Duration) Reservation {
	ig := int64(0)
	if l.cfg.Global > 0 {
		ig = l.cfg.interval(l.cfg.Global).Microseconds()
	}
	return Reservation{Budget: b, Keys: l.keys(b), Args: []any{
		l.cfg.interval(l.cfg.PerAccount).Microseconds(), ig, maxWait.Microseconds(), l.now(), l.cfg.interval(l.cfg.PerAccountTotal).Microseconds()}}
}

// Reserved reads reserve's answer: how long until the reserved slot, or,
// when it was further than the reservation's maxWait and not reserved, a
// *retry.DeferError with the time until it.
func (r Reservation) Reserved(res []int64) (time.Duration, error) {
	if len(res) != 2 {
		return 0, fmt.Errorf("rate limiter: reservation answered %v", res)
	}
	wait := time.Duration(res[1]) * time.Microsecond
	if res[0] == 0 {
		return wait, &retry.DeferError{Delay: wait, Reason: fmt.Sprintf("rate budget of %s spent", r.Budget)}
	}
	return wait, nil
}

// Reserve reserves the budget's next request slot if it is at most
// maxWait away, and returns how long until it. A slot further away is not
// reserved: the result is a *retry.DeferError with the time until it.
func (l *Limiter) Reserve(ctx context.Context, b Budget, maxWait time.Duration) (time.Duration, error) {
	r := l.Reservation(b, maxWait)
	res, err := reserveScript.Run(ctx, l.rdb, r.Keys, r.Args...).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("rate limiter: %w", err)
	}
	return r.Reserved(res)
}

// Wait reserves a slot at most maxWait away and sleeps until it. After a
// sleep it checks that no 429 paused the account meanwhile; if one did, it
// waits out the pause too when it fits in maxWait, else defers. A request
// that would leave more than MaxLate after its slot reserves another.
func (l *Limiter) Wait(ctx context.Context, b Budget, maxWait time.Duration) error {
	deadline := l.local().Add(maxWait)
	at, err := l.reserveAt(ctx, b, deadline)
	if err != nil {
		return err
	}
	return l.waitSlot(ctx, b, at, deadline)
}

// Redeem is Wait for a slot reserved already (by ReserveLua in another
// script): it sleeps until the slot, at (on the process's clock), and then
// goes on as Wait does, within maxWait from now.
func (l *Limiter) Redeem(ctx context.Context, b Budget, at time.Time, maxWait time.Duration) error {
	return l.waitSlot(ctx, b, at, l.local().Add(maxWait))
}

// MaxLate is how long after its slot a request may still leave. The
// limiter's margin lets a request arrive about 40 ms a second behind its
// slot before it could be counted in the same second of Kommo's as the
// requests after it: a request that is later than this — its process
// starved of CPU, or its check for a 429 slow to come back — reserves a
// new slot, and the one it missed goes unused, so what is left of the
// margin is for the network.
const MaxLate = 20 * time.Millisecond

// reserveAt reserves a slot before the deadline and returns when it is
// on the process's clock (counted from the answer: never early).
func (l *Limiter) reserveAt(ctx context.Context, b Budget, deadline time.Time) (time.Time, error) {
	wait, err := l.Reserve(ctx, b, deadline.Sub(l.local()))
	return l.local().Add(wait), err
}

// waitSlot sleeps until a reserved slot, at; after a sleep, a 429 that
// paused the budget meanwhile is waited out (with a new reservation) when
// it ends before the deadline, else the task defers. A request about to
// leave more than MaxLate after its slot takes a new one. Three
// reservations at most: a process that keeps missing its slots defers.
func (l *Limiter) waitSlot(ctx context.Context, b Budget, at time.Time, deadline time.Time) error {
	for i := 1; ; i++ {
		if wait := at.Sub(l.local()); wait > 0 {
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			paused, err := l.PausedFor(ctx, b)
			if err != nil {
				return err
			}
			if paused > 0 {
				if paused > deadline.Sub(l.local()) {
					return &retry.DeferError{Delay: paused, Reason: fmt.Sprintf("%s paused after a 429", b)}
				}
				if i == 3 {
					return &retry.DeferError{Delay: l.cfg.interval(l.cfg.PerAccount), Reason: fmt.Sprintf("%s kept being paused", b)}
				}
				if at, err = l.reserveAt(ctx, b, deadline); err != nil {
					return err
				}
				continue
			}
		}
		if l.beforeSend != nil {
			l.beforeSend()
		}
		if late := l.local().Sub(at); !tooLate(late) {
			return nil
		}
		if l.cfg.OnMissedSlot != nil {
			l.cfg.OnMissedSlot()
		}
		if i == 3 {
			return &retry.DeferError{Delay: l.cfg.interval(l.cfg.PerAccount), Reason: fmt.Sprintf("%s: requests kept leaving over %s after their slots", b, MaxLate)}
		}
		var err error
		if at, err = l.reserveAt(ctx, b, deadline); err != nil {
			return err
		}
	}
}

// tooLate reports whether a request late by this much after its slot must
// not leave in it.
func tooLate(late time.Duration) bool { return late > MaxLate }

// pauseScript pauses an account until now+pause (never shortening a
// longer pause) and multiplies its interval for slowFor.
// KEYS: pause-until, slow factor.
// ARGV: pause (µs), factor, slowFor (ms), max factor, now (0: TIME).
var pauseScript = redis.NewScript(fmt.Sprintf(scriptNow, 5) + `
local untilp = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untilp > cur then
  redis.call('SET', KEYS[1], string.format('%.0f', untilp), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
end
local f = tonumber(redis.call('GET', KEYS[2]) or '1') * tonumber(ARGV[2])
if f > tonumber(ARGV[4]) then f = tonumber(ARGV[4]) end
redis.call('SET', KEYS[2], tostring(f), 'PX', ARGV[3])
return 1`)

// Penalize records a 429 for the budget: no process spends it for pause,
// and its interval is multiplied by SlowFactor (compounding, up to 8×) for
// SlowFor.
func (l *Limiter) Penalize(ctx context.Context, b Budget, pause time.Duration) error {
	k := l.keys(b)
	err := pauseScript.Run(ctx, l.rdb, k[1:3], max(pause, 0).Microseconds(), l.cfg.SlowFactor, l.cfg.SlowFor.Milliseconds(), 8, l.now()).Err()
	if err != nil {
		return fmt.Errorf("rate limiter: pause %s: %w", b, err)
	}
	return nil
}

// PausedFor returns how long the budget stays paused (0: not paused).
func (l *Limiter) PausedFor(ctx context.Context, b Budget) (time.Duration, error) {
	k := l.keys(b)
	var until int64
	var now time.Time
	cmds, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, k[1])
		p.Time(ctx)
		return nil
	})
	if err != nil && err != redis.Nil {
		return 0, fmt.Errorf("rate limiter: %w", err)
	}
	until, _ = cmds[0].(*redis.StringCmd).Int64()
	now = cmds[1].(*redis.TimeCmd).Val()
	if l.cfg.Now != nil {
		now = l.cfg.Now()
	}
	if until == 0 {
		return 0, nil
	}
	return max(0, time.Duration(until-now.UnixMicro())*time.Microsecond), nil
}

// SlowFactor returns the budget's current interval multiplier (1: none).
func (l *Limiter) SlowFactor(ctx context.Context, b Budget) (float64, error) {
	v, err := l.rdb.Get(ctx, l.keys(b)[2]).Float64()
	if err == redis.Nil {
		return 1, nil
	}
	return v, err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
