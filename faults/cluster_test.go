package faults

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/fleettest"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/store"
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
