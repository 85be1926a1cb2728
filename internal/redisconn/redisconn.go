// Package redisconn turns REDIS_URL into connections for asynq and for
// widgetq's store, and names the server in errors without its password.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// EmbeddedAddr is where `worker` serves an embedded Redis when REDIS_URL
// is unset, and where `enqueue` then looks for it.
const EmbeddedAddr = "127.0.0.1:6380"

// Conn is a parsed REDIS_URL.
type Conn struct {
	// Opt is for asynq.
	Opt asynq.RedisConnOpt
	// Display names the server(s) without credentials.
	Display string
}

// Parse reads a REDIS_URL: redis://, rediss://, redis-socket://,
// redis-sentinel:// (asynq's forms), or a comma-separated list of
// redis://host:port nodes for a Redis Cluster.
func Parse(raw string) (*Conn, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("REDIS_URL: empty")
	}
	if strings.Contains(raw, ",") && !strings.HasPrefix(raw, "redis-sentinel://") {
		var addrs []string
		var password, username string
		for _, part := range strings.Split(raw, ",") {
			u, err := url.Parse(strings.TrimSpace(part))
			if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
				return nil, fmt.Errorf("REDIS_URL: cluster node %q: want redis://host:port", redact(part))
			}
			addrs = append(addrs, u.Host)
			if u.User != nil {
				username = u.User.Username()
				password, _ = u.User.Password()
			}
		}
		return &Conn{Opt: asynq.RedisClusterClientOpt{Addrs: addrs, Username: username, Password: password}, Display: "cluster " + strings.Join(addrs, ",")}, nil
	}
	opt, err := asynq.ParseRedisURI(raw)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL %s: %s", redact(raw), scrub(strings.TrimPrefix(err.Error(), "asynq: "), raw))
	}
	return &Conn{Opt: opt, Display: redact(raw)}, nil
}

// Embedded returns the connection to an embedded Redis at addr.
func Embedded(addr string) *Conn {
	return &Conn{Opt: asynq.RedisClientOpt{Addr: addr}, Display: "redis://" + addr + " (embedded)"}
}

// Client makes a go-redis client on the same server. It speaks RESP2:
// widgetq uses no push notifications, and go-redis checks for them on
// every command of a RESP3 connection (a tenth of bulk's client CPU).
func (c *Conn) Client() redis.UniversalClient {
	switch o := c.Opt.(type) {
	case asynq.RedisClientOpt:
		return redis.NewClient(&redis.Options{Network: o.Network, Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, Protocol: 2})
	case asynq.RedisFailoverClientOpt:
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs, SentinelUsername: o.SentinelUsername,
			SentinelPassword: o.SentinelPassword, Username: o.Username, Password: o.Password, DB: o.DB, DialTimeout: o.DialTimeout,
			ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, Protocol: 2})
	case asynq.RedisClusterClientOpt:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.Addrs, MaxRedirects: o.MaxRedirects, Username: o.Username, Password: o.Password,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, TLSConfig: o.TLSConfig, Protocol: 2})
	}
	return c.Opt.MakeRedisClient().(redis.UniversalClient)
}

// scrub removes from a parser's message anything of raw that may be a
// password: for every '@', what lies between it and each ':' before it
// (a URL too broken to parse has no reliable userinfo to go by).
func scrub(msg, raw string) string {
	var cands []string
	for i := 0; i < len(raw); i++ {
		if raw[i] != '@' {
			continue
		}
		for j := i - 1; j >= 0; j-- {
			if raw[j] == ':' && i-j > 1 {
				cands = append(cands, raw[j+1:i])
				if u, err := url.PathUnescape(raw[j+1 : i]); err == nil && u != "" {
					cands = append(cands, u)
				}
			}
		}
	}
	sort.Slice(cands, func(a, b int) bool { return len(cands[a]) > len(cands[b]) })
	for _, c := range cands {
		msg = strings.ReplaceAll(msg, c, "xxxxx")
		if q := strconv.Quote(c); len(q) > 2 {
			msg = strings.ReplaceAll(msg, q[1:len(q)-1], "xxxxx")
		}
	}
	return msg
}

// redact hides the password of a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	// A URL without "//" keeps its userinfo in the opaque part.
	return scrub(u.String(), raw)
}

// Ping checks that the server answers, with a clear error naming it.
func (c *Conn) Ping(ctx context.Context, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("Redis at %s does not answer: %v", c.Display, err)
	}
	return nil
}

// WaitUp pings until the server answers or ctx ends, logging each failure
// with the next delay (1s doubling to 30s).
func (c *Conn) WaitUp(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) error {
	delay := time.Second
	for {
		err := c.Ping(ctx, rdb)
		if err == nil {
			return nil
		}
		log.Error(err.Error()+"; retrying", "retry_in", delay.String())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// StartEmbedded serves an in-process Redis (miniredis) on addr, its clock
// kept moving with real time so TTLs (locks, leases, pauses) run out. stop
// closes it.
func StartEmbedded(addr string) (conn *Conn, stop func(), err error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(addr); err != nil {
		return nil, nil, fmt.Errorf("embedded Redis cannot listen on %s: %w", addr, err)
	}
	stopTick := Tick(m, 100*time.Millisecond)
	return Embedded(m.Addr()), func() { stopTick(); m.Close() }, nil
}

// Tick moves a miniredis clock with real time (miniredis only moves TTLs
// when told to). It returns the function that stops it.
func Tick(m *miniredis.Miniredis, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

// quietLogger drops go-redis's own log lines (dial failures and the like):
// widgetq reports connection trouble itself, once, with the address.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// Quiet silences go-redis's internal logger for the process.
func Quiet() { redis.SetLogger(quietLogger{}) }

// slogLogger sends go-redis's internal messages to a slog.Logger.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(ctx context.Context, format string, v ...any) {
	s.l.Log(ctx, slog.LevelWarn, fmt.Sprintf(format, v...), "component", "go-redis")
}

// LogTo sends go-redis's internal messages (failed dials, pool trouble)
// to l for the process, as warnings, so they share the process's format.
func LogTo(l *slog.Logger) { redis.SetLogger(slogLogger{l}) }

// EachKey calls fn with every key of the server (of rdb's database) and
// its values — a hash's fields and values, a list's, set's or sorted
// set's members, a string — for scans that must see everything, such as
// a search for plaintext secrets. It returns how many keys it read.
func EachKey(ctx context.Context, rdb redis.UniversalClient, fn func(key string, vals []string)) (int, error) {
	n := 0
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		n++
		var vals []string
		switch rdb.Type(ctx, k).Val() {
		case "string":
			vals = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				vals = append(vals, f, v)
			}
		case "list":
			vals = rdb.LRange(ctx, k, 0, -1).Val()
		case "set":
			vals = rdb.SMembers(ctx, k).Val()
		case "zset":
			vals = rdb.ZRange(ctx, k, 0, -1).Val()
		}
		fn(k, vals)
	}
	return n, iter.Err()
}
