package redisconn_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/waitfor"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in      string
		display string
		check   func(asynq.RedisConnOpt) bool
	}{
		{"redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379/3", func(o asynq.RedisConnOpt) bool { r, ok := o.(asynq.RedisClientOpt); return ok && r.DB == 3 }},
		{"redis://:s3cret@h:1/0", "redis://:xxxxx@h:1/0", func(o asynq.RedisConnOpt) bool {
			r, ok := o.(asynq.RedisClientOpt)
			return ok && r.Password == "s3cret"
		}},
		{"rediss://u:pw@h:6380", "rediss://u:xxxxx@h:6380", func(o asynq.RedisConnOpt) bool { r, ok := o.(asynq.RedisClientOpt); return ok && r.TLSConfig != nil }},
		{"redis-sentinel://h1:26379,h2:26379?master=mymaster", "", func(o asynq.RedisConnOpt) bool {
			r, ok := o.(asynq.RedisFailoverClientOpt)
			return ok && r.MasterName == "mymaster"
		}},
		{"redis://h1:7000,redis://:pw@h2:7001", "cluster h1:7000,h2:7001", func(o asynq.RedisConnOpt) bool {
			r, ok := o.(asynq.RedisClusterClientOpt)
			return ok && len(r.Addrs) == 2 && r.Password == "pw"
		}},
	} {
		conn, err := redisconn.Parse(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if (c.display != "" && conn.Display != c.display) || strings.Contains(conn.Display, "s3cret") || !c.check(conn.Opt) {
			t.Errorf("%s: display %q opt %#v", c.in, conn.Display, conn.Opt)
		}
	}
	for _, bad := range []string{"", "postgres://u:s3cret@h/0", "redis://h1:1,http://h2:2"} {
		if _, err := redisconn.Parse(bad); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestPingNamesTheServer(t *testing.T) {
	t.Parallel()
	conn, _ := redisconn.Parse("redis://127.0.0.1:1/0")
	rdb := conn.Client()
	defer rdb.Close()
	err := conn.Ping(context.Background(), rdb)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("ping of a closed port: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := conn.WaitUp(ctx, rdb, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Fatal("WaitUp returned nil for a dead server")
	}
}

func TestEmbeddedServesAndExpires(t *testing.T) {
	t.Parallel()
	conn, stop, err := redisconn.StartEmbedded("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	rdb := conn.Client()
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 150*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 5*time.Second, func() (bool, string) {
		return rdb.Exists(ctx, "k").Val() == 0, "a TTL never ran out on the embedded Redis"
	})
}
