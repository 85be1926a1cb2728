package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/fleettest"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/tasks"
)

// TestRedisClusterWithShardedQueues runs a batch through a 3-node Redis
// Cluster of the test's own, the queue split into 6 shards by account so
// the shards' keys land on different nodes, with two worker processes and
// the per-account limit shared across shards.
func TestRedisClusterWithShardedQueues(t *testing.T) {
	t.Parallel()
	const n, shards = 200, 6
	cl := fleettest.StartCluster(t, 3)
	f := fleettest.New(t, sandbox.Config{Latency: 10 * time.Millisecond}, cl.URL, cl.Client)
	f.Env = append(f.Env, "WIDGETQ_SHARDS=6")
	f.Prod.Shard(f.Queue, shards)
	f.AddAccounts(t, 1, n)
	for range 2 {
		f.StartWorker(t, workerBin)
	}
	for id := int64(1); id <= n; id++ {
		f.Install(t, id, sandbox.WidgetAsterisk, seed)
	}
	counts := f.WaitAllFinal(t, n, 3*time.Minute)
	if counts[store.StatusInstalled] != n {
		t.Fatalf("by status %v", counts)
	}
	f.InstalledOnceEach(t, 1, n, sandbox.WidgetAsterisk)
	if c := f.SB.Counters().Total; c.RateLimited != 0 {
		t.Fatalf("%d 429s", c.RateLimited)
	}
	// Every shard did work, and the shards live on more than one node.
	insp := asynq.NewInspectorFromRedisClient(cl.Client)
	nodes := map[string]bool{}
	for _, q := range tasks.ShardQueues(f.Queue, shards) {
		qi, err := insp.GetQueueInfo(q)
		if err != nil || qi.Completed == 0 {
			t.Fatalf("shard %s: %+v %v", q, qi, err)
		}
		nodes[cl.NodeOf(t, "asynq:{"+q+"}:completed")] = true
	}
	if len(nodes) < 2 {
		t.Fatalf("all shards on %v: the cluster spread nothing", nodes)
	}
	// Results record their shard.
	r, err := f.St.Result(context.Background(), 7, sandbox.WidgetAsterisk)
	if err != nil || r.Queue != tasks.ShardQueue(f.Queue, 7, shards) {
		t.Fatalf("account 7's result: %+v %v", r, err)
	}
	t.Logf("%d installs over %d shards on %d nodes", n, shards, len(nodes))
}

// TestRedisSentinel runs a batch through a Sentinel-managed Redis: the
// workers and the producer find the master by asking a sentinel.
func TestRedisSentinel(t *testing.T) {
	t.Parallel()
	const n = 50
	master := fleettest.NewServer(t, fleettest.FreePort(t))
	master.Start(t)
	sport := fleettest.FreePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor widgetq 127.0.0.1 %d 1\nsentinel down-after-milliseconds widgetq 5000\n", sport, dir, master.Port)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := fleettest.Run(t, "redis-server", nil, conf, "--sentinel")
	url := fmt.Sprintf("redis-sentinel://127.0.0.1:%d?master=widgetq", sport)
	conn, err := redisconn.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := conn.Client()
	t.Cleanup(func() { rdb.Close() })
	waitfor.Until(t, 30*time.Second, func() (bool, string) {
		return rdb.Ping(context.Background()).Err() == nil, "no master through the sentinel:\n" + s.Out.String()
	})
	f := fleettest.New(t, sandbox.Config{}, url, rdb)
	f.AddAccounts(t, 1, n)
	w := f.StartWorker(t, workerBin)
	if !strings.Contains(w.Out.String(), "redis-sentinel://127.0.0.1:") {
		t.Fatalf("the worker does not say it uses the sentinel:\n%s", w.Out.String())
	}
	for id := int64(1); id <= n; id++ {
		f.Install(t, id, sandbox.WidgetAsterisk, seed)
	}
	if counts := f.WaitAllFinal(t, n, time.Minute); counts[store.StatusInstalled] != n {
		t.Fatalf("by status %v", counts)
	}
	// Everything went to the master the sentinel named.
	direct := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer direct.Close()
	if k, _ := direct.Exists(context.Background(), "asynq:{"+f.Queue+"}:completed").Result(); k != 1 {
		t.Fatal("the tasks are not on the master")
	}
}
