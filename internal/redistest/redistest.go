// Package redistest gives tests a Redis: the real server at REDIS_URL when
// it is set (CI), else an in-process miniredis whose clock moves with real
// time. Tests that share the real server stay apart by key prefix and queue
// name (Unique), never by flushing.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/redisconn"
)

// Redis is one test's Redis.
type Redis struct {
	// Client is connected to it.
	Client *redis.Client
	// Addr is host:port, and URL a redis:// URL with the database, for
	// child processes.
	Addr, URL string
	// DB is the database number.
	DB int
	// Mini is the in-process server, nil on a real Redis.
	Mini *miniredis.Miniredis
}

// Opt returns the asynq connection options for this Redis.
func (r *Redis) Opt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: r.Addr, DB: r.DB}
}

// Real reports whether this is a real server.
func (r *Redis) Real() bool { return r.Mini == nil }

// New returns a Redis for t: REDIS_URL's server (with its database
// number), or a fresh miniredis closed with the test.
func New(t testing.TB) *Redis {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("REDIS_URL: %v", err)
		}
		c := redis.NewClient(opt)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("REDIS_URL=%s does not answer: %v", u, err)
		}
		t.Cleanup(func() { c.Close() })
		url := fmt.Sprintf("redis://%s/%d", opt.Addr, opt.DB)
		return &Redis{Client: c, Addr: opt.Addr, URL: url, DB: opt.DB}
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatalf("miniredis: %v", err)
	}
	stop := redisconn.Tick(m, 50*time.Millisecond)
	t.Cleanup(func() { stop(); m.Close() })
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { c.Close() })
	return &Redis{Client: c, Addr: m.Addr(), URL: "redis://" + m.Addr() + "/0", Mini: m}
}

// Unique returns a name no other test uses: for key prefixes ("{name}")
// and asynq queues.
func Unique(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return strings.ToLower(name) + "-" + hex.EncodeToString(b)
}

// ReportServerCPU reports, when b runs on a real Redis, the CPU the Redis
// server spent per operation ("redis-cpu-µs/op", from INFO cpu): what a
// script or pipeline costs on the server, which the client's ns/op does
// not show. Call it after the timed loop, with the INFO taken before it.
func (r *Redis) ReportServerCPU(b *testing.B, before float64) {
	b.Helper()
	if !r.Real() || b.N == 0 {
		return
	}
	b.ReportMetric((r.ServerCPU(b)-before)*1e6/float64(b.N), "redis-cpu-µs/op")
}

// ServerCPU is the Redis server's user+system CPU so far, in seconds (0
// on miniredis).
func (r *Redis) ServerCPU(t testing.TB) float64 {
	t.Helper()
	if !r.Real() {
		return 0
	}
	info, err := r.Client.Info(context.Background(), "cpu").Result()
	if err != nil {
		t.Fatalf("INFO cpu: %v", err)
	}
	var sec float64
	for _, line := range strings.Split(info, "\n") {
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				sec += f
			}
		}
	}
	return sec
}

// Forget deletes, when t ends without failing, what it wrote under a key
// prefix from Unique on a shared server: the prefix's keys ({prefix}…),
// its asynq queues' keys and their shards' (asynq:{queue…) and their
// names in asynq:queues, so that test runs leave nothing behind in a developer's
// Redis. A failed test's keys stay, for a look. Call it before starting
// anything that writes there: cleanups run last-registered first.
func Forget(t testing.TB, c redis.UniversalClient, prefix string, queues ...string) {
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		patterns := []string{"{" + prefix + "}*"}
		for _, q := range queues {
			patterns = append(patterns, "asynq:{"+q+"*") // its shards (q-0, q-1, …) too
		}
		forget := func(ctx context.Context, n redis.UniversalClient) error {
			for _, p := range patterns {
				it := n.Scan(ctx, 0, p, 1000).Iterator()
				pipe := n.Pipeline()
				for it.Next(ctx) {
					pipe.Unlink(ctx, it.Val()) // one key a command: keys of several slots on a cluster node
					if pipe.Len() == 500 {
						if _, err := pipe.Exec(ctx); err != nil {
							return err
						}
					}
				}
				if err := it.Err(); err != nil {
					return err
				}
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
			return nil
		}
		var err error
		if cc, ok := c.(*redis.ClusterClient); ok {
			err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return forget(ctx, n) })
		} else {
			err = forget(ctx, c)
		}
		for _, q := range queues {
			if err != nil {
				break
			}
			var names []string
			it := c.SScan(ctx, "asynq:queues", 0, q+"*", 1000).Iterator()
			for it.Next(ctx) {
				names = append(names, it.Val())
			}
			if err = it.Err(); err == nil && len(names) > 0 {
				err = c.SRem(ctx, "asynq:queues", names).Err()
			}
		}
		if err != nil {
			t.Logf("redistest: keys of %s left behind: %v", prefix, err)
		}
	})
}
