// Package store keeps widgetq's own state in Redis: account credentials,
// block marks, refresh locks, and one result per (account, widget).
//
// Every key starts with the prefix in braces ("{widgetq}:…"), a Redis
// Cluster hash tag: all of widgetq's keys live in one slot, so the scripts
// that update a result and its indexes together stay atomic on a cluster
// too. The queue's own keys are asynq's.
package store

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/keyspace"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/seal"
)

// DefaultPrefix is the key prefix when none is given.
const DefaultPrefix = keyspace.DefaultPrefix

// Store is widgetq's Redis-backed state. It is safe for concurrent use.
// It is its concerns together, each a type of its own that a consumer can
// take alone: AccountStore (credentials and tokens), ResultStore (one per
// account and widget, with the in-flight marks), MarkStore (block marks,
// refresh locks, the pause of all Kommo traffic), JournalStore (the
// replay journal) and IntegrationStore (the OAuth integrations).
type Store struct {
	*base
	AccountStore
	ResultStore
	MarkStore
	JournalStore
	IntegrationStore
}

// base is what every concern shares: the Redis, the key space, the clock,
// the sealing keys and the host allow-list.
type base struct {
	rdb    redis.UniversalClient
	prefix keyspace.Space
	// recordKeys are the keys every result record touches after its own,
	// named once: the all-index, the status indexes, the recent blocks
	// (the batch's, the outbox and the batches index follow).
	recordKeys []string
	// outbox, batches and kommoPause are constant keys, named once.
	outbox     string
	batches    string
	kommoPause string
	now        func() time.Time
	keys       *seal.Keys
	hosts      *kommohost.List
	// LockTTL bounds how long a dead holder keeps an account's refresh
	// lock (default 60s; a refresh is bounded by its 30s timeout).
	LockTTL time.Duration
	// LockPoll is how often a waiter tries the lock again (default 25ms).
	LockPoll time.Duration
	// BatchTTL is how long a batch is kept after its last change (default
	// DefaultBatchTTL).
	BatchTTL time.Duration
}

// AccountStore keeps the accounts' credentials: base URLs and tokens.
type AccountStore struct{ *base }

// ResultStore keeps one result per (account, widget), their indexes, and
// the in-flight marks.
type ResultStore struct{ *base }

// MarkStore keeps the short-lived marks: accounts blocked by Kommo,
// refresh locks, and the pause of all Kommo traffic.
type MarkStore struct{ *base }

// JournalStore keeps the replay journal: moves of archived tasks in
// progress.
type JournalStore struct{ *base }

// New returns a store on rdb whose keys start with "{prefix}:"; an empty
// prefix means DefaultPrefix.
func New(rdb redis.UniversalClient, prefix string) *Store {
	b := &base{rdb: rdb, prefix: keyspace.New(prefix), now: time.Now, LockTTL: time.Minute, LockPoll: 25 * time.Millisecond}
	b.recordKeys = append(b.recordKeys, b.key("idx", "all"))
	for _, st := range Statuses {
		b.recordKeys = append(b.recordKeys, b.key("idx", "status", string(st)))
	}
	b.recordKeys = append(b.recordKeys, b.kommoBlocksKey())
	b.outbox, b.batches, b.kommoPause = b.outboxKey(), b.batchesKey(), b.kommoPauseKey()
	return &Store{base: b, AccountStore: AccountStore{b}, ResultStore: ResultStore{b}, MarkStore: MarkStore{b}, JournalStore: JournalStore{b}, IntegrationStore: IntegrationStore{b}}
}

// WithKeys makes the store seal the tokens it writes with keys, and open
// those it reads with them (nil: plaintext, as without a key). Call it
// before the store is shared.
func (s *Store) WithKeys(keys *seal.Keys) *Store {
	s.keys = keys
	return s
}

// WithHosts makes the store refuse an account whose base URL is not on the
// Kommo host allow-list (see CheckAccount). Without it, any well-formed
// URL is stored; every widgetq command sets it. Call it before the store
// is shared.
func (s *Store) WithHosts(h *kommohost.List) *Store {
	s.hosts = h
	return s
}

// Hosts returns the allow-list the store checks accounts against (nil:
// none).
func (s *base) Hosts() *kommohost.List { return s.hosts }

// Keys returns the store's sealing keys (nil without).
func (s *base) Keys() *seal.Keys { return s.keys }

// Redis returns the client the store uses.
func (s *base) Redis() redis.UniversalClient { return s.rdb }

func (s *base) key(parts ...string) string {
	return s.prefix.Key(parts...)
}

func id(n int64) string { return strconv.FormatInt(n, 10) }

// blockedKey is account n's block mark.
func (s *base) blockedKey(n int64) string { return s.prefix.KeyID("blocked", n) }

// ErrNotFound is returned for an account or result that does not exist.
var ErrNotFound = errors.New("not found")

// ErrAccountNotFound is returned when an account has no credentials; it
// matches ErrNotFound.
var ErrAccountNotFound = fmt.Errorf("account %w", ErrNotFound)

func redisErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
