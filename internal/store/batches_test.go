package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/store"
)

func queued(account int64, code, eid string) store.Queued {
	return store.Queued{Op: "install", AccountID: account, Code: code, EnqueueID: eid, TaskID: "t", Queue: "q"}
}

func TestBatchCountsFollowResultsUntilDone(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	bm := store.BatchMarks{ID: "b_00000000000000a1", Events: true, CallbackURL: "https://hooks.example/b"}
	// Two chunks (a bulk run), then sealed.
	if err := st.MarkQueuedBatch(ctx, []store.Queued{queued(1, "w", "e1"), queued(2, "w", "e2")}, bm); err != nil {
		t.Fatal(err)
	}
	// A worker records 3 before its mark lands: it joins the batch by its
	// payload, counted once.
	if err := st.Record(ctx, &store.Result{AccountID: 3, WidgetCode: "w", EnqueueID: "e3", BatchID: bm.ID, Operation: "install", Status: store.StatusInstalled}); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkQueuedBatch(ctx, []store.Queued{queued(3, "w", "e3")}, bm); err != nil {
		t.Fatal(err)
	}
	record := func(acct int64, eid string, status store.Status, event string) {
		t.Helper()
		r := &store.Result{AccountID: acct, WidgetCode: "w", EnqueueID: eid, BatchID: bm.ID, Operation: "install", Status: status, Event: []byte(event)}
		if err := st.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	record(1, "e1", store.StatusRetrying, "")
	record(1, "e1", store.StatusInstalled, `{"id":"evt_e1_installed","type":"install.succeeded"}`)
	record(2, "e2", store.StatusFailed, `{"id":"evt_e2_failed","type":"install.failed"}`)
	b, err := st.Batch(ctx, bm.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Every member final, but not sealed: a bulk may still be adding.
	if b.Done || b.Total != 3 || b.Counts["installed"] != 2 || b.Counts["failed"] != 1 || b.Counts["queued"] != 0 || b.Counts["retrying"] != 0 {
		t.Fatalf("before sealing: %+v", b)
	}
	if err := st.SealBatch(ctx, bm); err != nil {
		t.Fatal(err)
	}
	if b, _ = st.Batch(ctx, bm.ID); !b.Done || b.DoneAt.IsZero() {
		t.Fatalf("sealed with every member final: %+v", b)
	}
	// The outbox holds both install events (with the batch's URL) and one
	// batch.completed with the counts, oldest first.
	es, err := st.OutboxPeek(ctx, 10)
	if err != nil || len(es) != 3 {
		t.Fatalf("outbox %+v %v", es, err)
	}
	if es[0].EventID() != "evt_e1_installed" || es[0].URL != bm.CallbackURL || es[1].EventID() != "evt_e2_failed" {
		t.Fatalf("install events %+v", es[:2])
	}
	var done struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Data struct {
			BatchID string           `json:"batch_id"`
			Total   int64            `json:"total"`
			Counts  map[string]int64 `json:"counts"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(es[2].Event), &done); err != nil || done.Type != "batch.completed" || done.Data.BatchID != bm.ID ||
		done.Data.Counts["installed"] != 2 || done.Data.Counts["failed"] != 1 || done.Data.Total != 3 {
		t.Fatalf("completion event %s (%v)", es[2].Event, err)
	}
	if err := st.OutboxAck(ctx, es); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.OutboxLen(ctx); n != 0 {
		t.Fatalf("%d left after ack", n)
	}
	// A replay of the failure reopens the batch; its success completes it
	// again, with a new event.
	if err := st.MarkQueuedBatch(ctx, []store.Queued{queued(2, "w", "e2b")}, store.BatchMarks{ID: bm.ID}); err != nil {
		t.Fatal(err)
	}
	if b, _ = st.Batch(ctx, bm.ID); b.Done || b.Counts["queued"] != 1 || b.Counts["failed"] != 0 || b.Total != 3 {
		t.Fatalf("reopened: %+v", b)
	}
	record(2, "e2b", store.StatusInstalled, "")
	if b, _ = st.Batch(ctx, bm.ID); !b.Done || b.Counts["installed"] != 3 {
		t.Fatalf("completed again: %+v", b)
	}
	if es, _ = st.OutboxPeek(ctx, 10); len(es) != 1 || es[0].EventID() != "evt_"+bm.ID+"_done2" {
		t.Fatalf("second completion: %+v", es)
	}
	// A newer batch takes 1 over: the old one counts it superseded.
	other := store.BatchMarks{ID: "b_00000000000000b2"}
	if err := st.MarkQueuedBatch(ctx, []store.Queued{queued(1, "w", "e1c")}, other); err != nil {
		t.Fatal(err)
	}
	if b, _ = st.Batch(ctx, bm.ID); b.Counts["superseded"] != 1 || b.Counts["installed"] != 2 || !b.Done {
		t.Fatalf("old batch after takeover: %+v", b)
	}
	list, err := st.Batches(ctx, time.Time{}, 10)
	if err != nil || len(list) != 2 {
		t.Fatalf("batches %+v %v", list, err)
	}
	if _, err := st.Batch(ctx, "b_0000000000000000"); err == nil {
		t.Fatal("an unknown batch was found")
	}
}
