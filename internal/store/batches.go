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

// DefaultBatchTTL is how long a batch is kept after its last change.
const DefaultBatchTTL = 30 * 24 * time.Hour

// Batch is a group of tasks enqueued together (a bulk run, an HTTP array,
// producer.InstallMany) and where its members' results stand. It is done
// when it is sealed (no more tasks join) and every member has a final
// result; a replayed member reopens it.
type Batch struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Total     int64     `json:"total"`
	// Counts are the members by result status; "superseded" counts those
	// a later enqueueing took over.
	Counts map[string]int64 `json:"counts"`
	Done   bool             `json:"done"`
	DoneAt time.Time        `json:"done_at,omitzero"`
	// Sealed says no more tasks will join.
	Sealed      bool   `json:"sealed"`
	CallbackURL string `json:"callback_url,omitempty"`
}

func (s *base) batchKey(id string) string { return s.key("batch", id) }
func (s *base) batchesKey() string        { return s.key("batches") }
func (s *base) outboxKey() string         { return s.key("outbox") }

func (s *base) batchTTL() time.Duration {
	if s.BatchTTL > 0 {
		return s.BatchTTL
	}
	return DefaultBatchTTL
}

// Batch reads a batch; ErrNotFound when there is none (never made, or
// expired).
func (s *ResultStore) Batch(ctx context.Context, id string) (*Batch, error) {
	m, err := s.rdb.HGetAll(ctx, s.batchKey(id)).Result()
	if err != nil {
		return nil, redisErr("read batch "+id, err)
	}
	if m["created_at"] == "" {
		return nil, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	b := &Batch{ID: id, Counts: map[string]int64{}, Done: m["done"] == "1", Sealed: m["sealed"] == "1", CallbackURL: m["callback_url"]}
	b.CreatedAt, _ = time.Parse(time.RFC3339Nano, m["created_at"])
	b.DoneAt, _ = time.Parse(time.RFC3339Nano, m["done_at"])
	b.Total, _ = strconv.ParseInt(m["total"], 10, 64)
	for f, v := range m {
		if st, ok := strings.CutPrefix(f, "s:"); ok {
			if n, _ := strconv.ParseInt(v, 10, 64); n != 0 {
				b.Counts[st] = n
			}
		}
	}
	return b, nil
}

// Batches returns up to limit batches, newest first, created before
// before (zero: now). Expired ones are dropped from the index on the way.
func (s *ResultStore) Batches(ctx context.Context, before time.Time, limit int) ([]Batch, error) {
	if limit <= 0 {
		limit = 50
	}
	max := "+inf"
	if !before.IsZero() {
		max = "(" + strconv.FormatInt(before.UnixMilli(), 10)
	}
	ids, err := s.rdb.ZRevRangeByScore(ctx, s.batchesKey(), &redis.ZRangeBy{Min: "-inf", Max: max, Count: int64(limit)}).Result()
	if err != nil {
		return nil, redisErr("list batches", err)
	}
	out := make([]Batch, 0, len(ids))
	for _, id := range ids {
		b, err := s.Batch(ctx, id)
		if errors.Is(err, ErrNotFound) {
			_ = s.rdb.ZRem(ctx, s.batchesKey(), id).Err()
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, *b)
	}
	return out, nil
}

// SealBatch says no more tasks will join a batch: it is done once every
// member has a final result (at once, if they all have).
func (s *ResultStore) SealBatch(ctx context.Context, bm BatchMarks) error {
	bm.Seal = true
	return s.MarkQueuedBatch(ctx, nil, bm)
}

// OutboxEntry is a webhook event waiting to be handed to the delivery
// queue, as the result scripts wrote it.
type OutboxEntry struct {
	// Event is the event's JSON: the body delivered, byte for byte.
	Event string `json:"event"`
	// URL is the batch's callback URL ("": the default one).
	URL string `json:"url"`
	// At is when it was written.
	At  time.Time `json:"at"`
	Raw string    `json:"-"`
}

// EventID reads the event's ID.
func (e OutboxEntry) EventID() string {
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(e.Event), &v)
	return v.ID
}

// OutboxPeek returns up to n of the oldest outbox entries without taking
// them: the caller hands them to the delivery queue, then OutboxAck. A
// process that dies in between leaves them for the next peek (the
// delivery task's ID is the event's, so none is queued twice).
func (s *ResultStore) OutboxPeek(ctx context.Context, n int) ([]OutboxEntry, error) {
	raws, err := s.rdb.LRange(ctx, s.outboxKey(), int64(-n), -1).Result()
	if err != nil {
		return nil, redisErr("read outbox", err)
	}
	out := make([]OutboxEntry, 0, len(raws))
	for i := len(raws) - 1; i >= 0; i-- { // oldest first
		var e OutboxEntry
		if json.Unmarshal([]byte(raws[i]), &e) != nil {
			e = OutboxEntry{}
		}
		e.Raw = raws[i]
		out = append(out, e)
	}
	return out, nil
}

// OutboxAck removes entries OutboxPeek returned.
func (s *ResultStore) OutboxAck(ctx context.Context, es []OutboxEntry) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range es {
			p.LRem(ctx, s.outboxKey(), -1, e.Raw)
		}
		return nil
	})
	return redisErr("ack outbox", err)
}

// OutboxLen returns how many events wait in the outbox.
func (s *ResultStore) OutboxLen(ctx context.Context) (int64, error) {
	n, err := s.rdb.LLen(ctx, s.outboxKey()).Result()
	return n, redisErr("outbox length", err)
}

// OutboxOldest returns when the oldest event in the outbox was written
// (zero: none waits).
func (s *ResultStore) OutboxOldest(ctx context.Context) (time.Time, error) {
	raw, err := s.rdb.LIndex(ctx, s.outboxKey(), -1).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, redisErr("outbox", err)
	}
	var e OutboxEntry
	_ = json.Unmarshal([]byte(raw), &e)
	return e.At, nil
}
