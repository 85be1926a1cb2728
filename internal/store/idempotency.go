package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// IdempotencyTTL is how long an Idempotency-Key's first answer is kept.
const IdempotencyTTL = 24 * time.Hour

// Answer is an HTTP answer kept for an Idempotency-Key.
type Answer struct {
	Status      int
	ContentType string
	Body        []byte
}

// Idempotency states of a key.
const (
	IdemNew      = "new"      // first use: the caller runs the request, then IdemFinish
	IdemPending  = "pending"  // the first request with the key is still running
	IdemReplay   = "replay"   // the same request was answered: Answer is its answer
	IdemConflict = "conflict" // the key was used with another request
)

// idemBeginScript claims a key for a request fingerprint, or reports what
// the key holds. KEYS: the key. ARGV: fingerprint, TTL (ms).
var idemBeginScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'pending')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
local h = redis.call('HMGET', KEYS[1], 'fp', 'state', 'status', 'ctype', 'body')
if h[1] ~= ARGV[1] then return {'conflict'} end
if h[2] ~= 'done' then return {'pending'} end
return {'replay', h[3], h[4], h[5]}`)

func (s *base) idemKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.key("idem", hex.EncodeToString(sum[:16]))
}

// IdemBegin claims an Idempotency-Key for a request whose fingerprint
// (method, path, query and body, hashed by the caller) is fp.
func (s *ResultStore) IdemBegin(ctx context.Context, key, fp string) (string, *Answer, error) {
	res, err := idemBeginScript.Run(ctx, s.rdb, []string{s.idemKey(key)}, fp, IdempotencyTTL.Milliseconds()).StringSlice()
	if err != nil {
		return "", nil, redisErr("idempotency key", err)
	}
	if res[0] != IdemReplay {
		return res[0], nil, nil
	}
	st, _ := strconv.Atoi(res[1])
	return IdemReplay, &Answer{Status: st, ContentType: res[2], Body: []byte(res[3])}, nil
}

// IdemFinish keeps the answer given to the key's first request; IdemAbort
// lets the key be used again (the request failed before any effect).
func (s *ResultStore) IdemFinish(ctx context.Context, key string, a Answer) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		k := s.idemKey(key)
		p.HSet(ctx, k, "state", "done", "status", a.Status, "ctype", a.ContentType, "body", a.Body)
		p.PExpire(ctx, k, IdempotencyTTL)
		return nil
	})
	return redisErr("idempotency key", err)
}

// IdemAbort forgets a key whose request could not be answered.
func (s *ResultStore) IdemAbort(ctx context.Context, key string) error {
	return redisErr("idempotency key", s.rdb.Del(ctx, s.idemKey(key)).Err())
}
