package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// KommoPause is the circuit breaker that stops all Kommo traffic, from
// every worker: Kommo's HTML 403 block arrived from several accounts in a
// short window, which means the IP is blocked, not one account — and each
// further request is one more violation. A pause on is left as it is until
// it runs out or is lifted.
type KommoPause struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Accounts are the accounts whose blocks tripped it.
	Accounts []int64 `json:"accounts"`
}

// For is how long the pause lasts from now (0: over).
func (p *KommoPause) For(now time.Time) time.Duration {
	if p == nil {
		return 0
	}
	return max(0, p.Until.Sub(now))
}

func (s *base) kommoPauseKey() string  { return s.key("kommo", "pause") }
func (s *base) kommoBlocksKey() string { return s.key("kommo", "blocks") }

// noteBlockScript records an account's HTML 403 and trips the breaker when
// enough distinct accounts were blocked within the window. A pause already
// on is left alone.
// KEYS: recent blocks (zset account → ms), pause. ARGV: account, now (ms),
// window (ms), threshold, pause (ms), pause JSON (without accounts).
// Returns {accounts in the window, tripped (0/1)} and, when tripped, the
// accounts.
var noteBlockScript = redis.NewScript(`
local now = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local n = redis.call('ZCARD', KEYS[1])
if n < tonumber(ARGV[4]) then return {n, 0} end
if redis.call('PTTL', KEYS[2]) > 0 then return {n, 0} end
local accts = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('SET', KEYS[2], ARGV[6] .. '|' .. table.concat(accts, ','), 'PX', ARGV[5])
return {n, 1, accts}`)

// NoteBlock records that Kommo blocked an account (its HTML 403) and
// returns the pause it started when at least threshold distinct accounts
// were blocked within window with no success in between (nil: no new
// pause). A success recorded for any account forgets the blocks so far:
// accounts blocked long ago, met among healthy ones, are not an IP block;
// under an IP block every request fails and none succeeds.
func (s *MarkStore) NoteBlock(ctx context.Context, account int64, window time.Duration, threshold int, pause time.Duration) (*KommoPause, error) {
	now := s.now().UTC()
	p := KommoPause{Since: now, Until: now.Add(pause)}
	head, _ := json.Marshal(struct {
		Since time.Time `json:"since"`
		Until time.Time `json:"until"`
	}{p.Since, p.Until})
	res, err := noteBlockScript.Run(ctx, s.rdb, []string{s.kommoBlocksKey(), s.kommoPauseKey()},
		id(account), now.UnixMilli(), window.Milliseconds(), threshold, max(pause.Milliseconds(), 1), string(head)).Slice()
	if err != nil {
		return nil, redisErr("note a Kommo block", err)
	}
	if len(res) < 3 {
		return nil, nil
	}
	for _, a := range res[2].([]any) {
		n, _ := strconv.ParseInt(fmt.Sprint(a), 10, 64)
		p.Accounts = append(p.Accounts, n)
	}
	return &p, nil
}

// decodeKommoPause reads the pause key's value: JSON, "|", account IDs.
func decodeKommoPause(v string) *KommoPause {
	head, accts, _ := strings.Cut(v, "|")
	var p KommoPause
	if json.Unmarshal([]byte(head), &p) != nil {
		return nil
	}
	for _, part := range strings.Split(accts, ",") {
		if n, err := strconv.ParseInt(part, 10, 64); err == nil {
			p.Accounts = append(p.Accounts, n)
		}
	}
	return &p
}

// KommoPaused returns the pause on all Kommo traffic, or nil when there
// is none.
func (s *MarkStore) KommoPaused(ctx context.Context) (*KommoPause, error) {
	v, err := s.rdb.Get(ctx, s.kommoPauseKey()).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, redisErr("read the Kommo pause", err)
	}
	return decodeKommoPause(v), nil
}

// LiftKommoPause ends the pause on all Kommo traffic and forgets the
// blocks that counted towards it. It reports whether a pause was on.
func (s *MarkStore) LiftKommoPause(ctx context.Context) (bool, error) {
	var del *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, s.kommoPauseKey())
		p.Del(ctx, s.kommoBlocksKey())
		return nil
	})
	if err != nil {
		return false, redisErr("lift the Kommo pause", err)
	}
	return del.Val() > 0, nil
}

// UnblockAll clears every account's block mark and the pause on all
// Kommo traffic (once Kommo support lifted the block). It returns how many
// account marks it cleared and whether a pause was on.
func (s *MarkStore) UnblockAll(ctx context.Context) (int, bool, error) {
	ids, err := s.rdb.ZRange(ctx, s.key("blocked"), 0, -1).Result()
	if err != nil {
		return 0, false, redisErr("list blocked", err)
	}
	n := 0
	for _, sid := range ids {
		a, _ := strconv.ParseInt(sid, 10, 64)
		had, err := s.Unblock(ctx, a)
		if err != nil {
			return n, false, err
		}
		if had {
			n++
		}
	}
	paused, err := s.LiftKommoPause(ctx)
	return n, paused, err
}
