package webhook_test

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/webhook"
)

// TestRelayQueuesEachEventOnce: events the result scripts wrote reach the
// webhooks queue as one task each, however many relays run or repeat, and
// leave the outbox only once queued; events with nowhere to go are
// dropped, counted.
func TestRelayQueuesEachEventOnce(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	st := store.New(r.Client, redistest.Unique(t))
	ctx := context.Background()
	bm := store.BatchMarks{ID: "b_00000000000000c3", Events: true, Seal: true}
	if err := st.MarkQueuedBatch(ctx, []store.Queued{{Op: "install", AccountID: 1, Code: "w", EnqueueID: "e1"}}, bm); err != nil {
		t.Fatal(err)
	}
	// The install's event, then (the batch done) batch.completed.
	if err := st.Record(ctx, &store.Result{AccountID: 1, WidgetCode: "w", EnqueueID: "e1", BatchID: bm.ID, Operation: "install",
		Status: store.StatusInstalled, Event: []byte(`{"id":"evt_e1_installed","type":"install.succeeded"}`)}); err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(r.Client)
	var counted []string
	queue := "wh-" + redistest.Unique(t)
	cfg := webhook.Config{Queue: queue, URL: "https://hooks.example/in", Secrets: []string{"s"}, Count: func(o string) { counted = append(counted, o) }}
	a := &webhook.Relay{Outbox: st, Client: client, Config: cfg}
	b := &webhook.Relay{Outbox: st, Client: client, Config: cfg}
	// Two relays peek the same entries before either acks.
	es, _ := st.OutboxPeek(ctx, 10)
	if len(es) != 2 {
		t.Fatalf("outbox %d entries", len(es))
	}
	if n, err := a.Once(ctx, 10); n != 2 || err != nil {
		t.Fatalf("relay a: %d %v", n, err)
	}
	// A relay that died before its ack: its entries are still there for
	// the next one, which queues nothing twice.
	if err := st.OutboxAck(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Once(ctx, 10); n != 0 || err != nil {
		t.Fatalf("relay b after a: %d %v", n, err)
	}
	pending, err := asynq.NewInspectorFromRedisClient(r.Client).ListPendingTasks(queue)
	ids := map[string]bool{}
	for _, p := range pending {
		ids[p.ID] = true
	}
	if err != nil || len(pending) != 2 || !ids["webhook:evt_e1_installed"] || !ids["webhook:evt_"+bm.ID+"_done1"] {
		t.Fatalf("webhooks queue: %v (%v)", ids, err)
	}
	// No URL anywhere: the event is dropped, counted, not kept forever.
	if err := st.Record(ctx, &store.Result{AccountID: 2, WidgetCode: "w", EnqueueID: "e2", Operation: "install", Status: store.StatusFailed,
		Event: []byte(`{"id":"evt_e2_failed","type":"install.failed"}`)}); err != nil {
		t.Fatal(err)
	}
	c := &webhook.Relay{Outbox: st, Client: client, Config: webhook.Config{Queue: queue, Secrets: []string{"s"}, Count: func(o string) { counted = append(counted, o) }}}
	if n, _ := c.Once(ctx, 10); n != 1 || len(counted) != 1 || counted[0] != "dropped" {
		t.Fatalf("no URL: %d, %v", n, counted)
	}
	if n, _ := st.OutboxLen(ctx); n != 0 {
		t.Fatalf("%d left in the outbox", n)
	}
}
