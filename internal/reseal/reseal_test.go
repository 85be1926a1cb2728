package reseal_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/reseal"
	"github.com/widgetq/widgetq/internal/seal"
)

// TestAsynqKeepsThePayloadVerbatimWhereResealLooks pins the layout the
// re-seal rewrites against the asynq version in go.mod: the task's hash
// is where TaskKey says, its msg field holds the payload bytes verbatim,
// and a same-length rewrite inside them is read back by asynq as the new
// payload. An asynq upgrade that changes this fails here.
func TestAsynqKeepsThePayloadVerbatimWhereResealLooks(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	q := "q-" + redistest.Unique(t)
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	t.Cleanup(func() { _ = insp.DeleteQueue(q, true) })
	c := asynq.NewClientFromRedisClient(r.Client)
	payload := []byte(`{"account_id":1,"sealed_settings":"OLD-VALUE-0123456789"}`)
	// Pending, scheduled and retrying tasks all keep their message there.
	for _, opts := range [][]asynq.Option{{asynq.TaskID("pending")}, {asynq.TaskID("scheduled"), asynq.ProcessIn(time.Hour)}} {
		if _, err := c.Enqueue(asynq.NewTask("widget:install", payload), append(opts, asynq.Queue(q))...); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, id := range []string{"pending", "scheduled"} {
		msg, err := r.Client.HGet(ctx, reseal.TaskKey(q, id), "msg").Bytes()
		if err != nil {
			t.Fatalf("%s: no msg at %s: %v", id, reseal.TaskKey(q, id), err)
		}
		if !bytes.Contains(msg, payload) {
			t.Fatalf("%s: the payload is not verbatim in msg %q", id, msg)
		}
		rewritten := bytes.Replace(msg, []byte("OLD-VALUE-0123456789"), []byte("NEW-VALUE-9876543210"), 1)
		if err := r.Client.HSet(ctx, reseal.TaskKey(q, id), "msg", rewritten).Err(); err != nil {
			t.Fatal(err)
		}
		ti, err := insp.GetTaskInfo(q, id)
		if err != nil || !strings.Contains(string(ti.Payload), "NEW-VALUE-9876543210") {
			t.Fatalf("%s: asynq does not read the rewritten message: %v %q", id, err, ti.Payload)
		}
	}
}

// TestTasksReseals moves a resting task's sealed settings to the new key.
func TestTasksReseals(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	q := "q-" + redistest.Unique(t)
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	t.Cleanup(func() { _ = insp.DeleteQueue(q, true) })
	oldKey, newKey := bytes.Repeat([]byte{1}, seal.KeySize), bytes.Repeat([]byte{2}, seal.KeySize)
	old, _ := seal.New(oldKey)
	sealed := old.Seal(`{"password":"pw"}`)
	c := asynq.NewClientFromRedisClient(r.Client)
	if _, err := c.Enqueue(asynq.NewTask("widget:install", []byte(`{"sealed_settings":"`+sealed+`"}`)), asynq.Queue(q), asynq.TaskID("t1")); err != nil {
		t.Fatal(err)
	}
	both, err := seal.New(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	changed, total, _, stuck, err := reseal.Tasks(context.Background(), r.Client, both, q)
	if err != nil || len(stuck) != 0 || changed != 1 || total != 1 {
		t.Fatalf("changed %d of %d, stuck %v: %v", changed, total, stuck, err)
	}
	ti, err := insp.GetTaskInfo(q, "t1")
	if err != nil || strings.Contains(string(ti.Payload), sealed) || both.NeedsReseal(strings.Split(strings.Split(string(ti.Payload), `"sealed_settings":"`)[1], `"`)[0]) {
		t.Fatalf("not re-sealed: %v %s", err, ti.Payload)
	}
}

// A queue deleted after it was listed is gone, and re-sealing skips it
// instead of failing on it (enqueue status does the same).
func TestAQueueDeletedMeanwhileIsGone(t *testing.T) {
	r := redistest.New(t)
	q := "q-" + redistest.Unique(t)
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	c := asynq.NewClientFromRedisClient(r.Client)
	if _, err := c.Enqueue(asynq.NewTask("t", nil), asynq.Queue(q)); err != nil {
		t.Fatal(err)
	}
	if reseal.QueueGone(insp, q) {
		t.Fatalf("queue %s gone while it holds a task", q)
	}
	if err := insp.DeleteQueue(q, true); err != nil {
		t.Fatal(err)
	}
	if !reseal.QueueGone(insp, q) {
		t.Fatalf("queue %s not gone after DeleteQueue", q)
	}
	// Named explicitly (as listed a moment before): skipped, no error.
	if _, _, _, _, err := reseal.Tasks(context.Background(), r.Client, nil, q); err != nil {
		t.Fatalf("re-seal of a deleted queue: %v", err)
	}
}
