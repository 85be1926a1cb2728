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
	// Relay a queues both events and dies before its ack: they are still
	// in the outbox.
	a := &webhook.Relay{Outbox: noAck{st}, Client: client, Config: cfg}
	if n, err := a.Once(ctx, 10); n != 2 || err != nil {
		t.Fatalf("relay a: %d %v", n, err)
	}
	if n, _ := st.OutboxLen(ctx); n != 2 {
		t.Fatalf("after an unacked relay the outbox holds %d, want 2", n)
	}
	// The next relay hands them over again — asynq already has them under
	// the events' IDs, so none is queued twice — and acks them.
	b := &webhook.Relay{Outbox: st, Client: client, Config: cfg}
	if n, err := b.Once(ctx, 10); n != 2 || err != nil {
		t.Fatalf("relay b: %d %v", n, err)
	}
	if n, _ := st.OutboxLen(ctx); n != 0 {
		t.Fatalf("after relay b the outbox holds %d", n)
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

// noAck is an outbox whose relay dies between enqueue and ack.
type noAck struct{ *store.Store }

func (noAck) OutboxAck(context.Context, []store.OutboxEntry) error { return nil }
