package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/fleettest"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/internal/webhook"
)

// hookReceiver is a backend's webhook endpoint: it fails the first
// `failFirst` requests with 500, then takes everything, keeping each
// delivery as it came.
type hookReceiver struct {
	mu        sync.Mutex
	failFirst int
	requests  int
	delivered map[string][]byte // event ID → body (2xx answered)
	headers   map[string]string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	if h.requests <= h.failFirst {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &ev)
	h.delivered[ev.ID] = body
	h.headers[ev.ID] = r.Header.Get(webhook.Header)
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) snapshot() (map[string][]byte, map[string]string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, hd := map[string][]byte{}, map[string]string{}
	for k, v := range h.delivered {
		d[k], hd[k] = v, h.headers[k]
	}
	return d, hd, h.requests
}

// The bar: a bulk of 20 installs (one of an unknown widget)
// delivers 19 install.succeeded, 1 install.failed and a batch.completed
// with the right counts, every signature verifying, though the receiver
// fails its first request; `enqueue batches show` says done.
func TestABulkBatchIsToldByWebhooks(t *testing.T) {
	t.Parallel()
	const secret = "whsec-TEST-8c1d"
	rec := &hookReceiver{failFirst: 1, delivered: map[string][]byte{}, headers: map[string]string{}}
	hooks := httptest.NewServer(rec)
	defer hooks.Close()
	f := fleettest.New(t, sandbox.Config{Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(1, 500)...)}, "", nil)
	f.AddAccounts(t, 1, 20)
	f.Env = append(f.Env, "WIDGETQ_WEBHOOK_URL="+hooks.URL+"/widgetq", "WIDGETQ_WEBHOOK_SECRET="+secret, "WIDGETQ_WEBHOOK_QUEUE=wh-"+f.Prefix)
	var lines bytes.Buffer
	for id := 1; id <= 20; id++ {
		code := "filler_0001"
		if id == 20 {
			code = "no_such_widget"
		}
		fmt.Fprintf(&lines, `{"account_id":%d,"widget_code":%q,"settings":{"note":"n"}}`+"\n", id, code)
	}
	file := filepath.Join(t.TempDir(), "installs.jsonl")
	if err := os.WriteFile(file, lines.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	w := f.StartWorker(t, workerBin)
	p := fleettest.Run(t, enqueueBin, f.WorkerEnv(), "bulk", file)
	if exited, err := p.Exited(time.Minute); !exited || err != nil {
		t.Fatalf("bulk: %v %v\n%s", exited, err, p.Out.String())
	}
	m := regexp.MustCompile(`batch (b_[0-9a-f]{16})`).FindStringSubmatch(p.Out.String())
	if m == nil {
		t.Fatalf("bulk printed no batch:\n%s", p.Out.String())
	}
	batchID := m[1]
	var got map[string][]byte
	var sigs map[string]string
	waitfor.Until(t, 90*time.Second, func() (bool, string) {
		var n int
		got, sigs, n = rec.snapshot()
		return len(got) == 21, fmt.Sprintf("%d events delivered in %d requests", len(got), n)
	})
	types := map[string]int{}
	var done struct {
		Data struct {
			BatchID string           `json:"batch_id"`
			Total   int              `json:"total"`
			Counts  map[string]int64 `json:"counts"`
		} `json:"data"`
	}
	for id, body := range got {
		if err := webhook.Verify(sigs[id], body, secret, 5*time.Minute, time.Now()); err != nil {
			t.Errorf("event %s: signature: %v", id, err)
		}
		var ev struct {
			Type string `json:"type"`
			Data struct {
				BatchID string `json:"batch_id"`
				Class   string `json:"class"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Fatalf("event %s: %v", id, err)
		}
		types[ev.Type]++
		switch ev.Type {
		case webhook.BatchCompleted:
			_ = json.Unmarshal(body, &done)
		case webhook.InstallFailed:
			if ev.Data.Class != "not_found" {
				t.Errorf("install.failed class %q", ev.Data.Class)
			}
		}
		if ev.Type != webhook.BatchCompleted && ev.Data.BatchID != batchID {
			t.Errorf("event %s names batch %q, want %s", id, ev.Data.BatchID, batchID)
		}
		if strings.Contains(string(body), "at_") || strings.Contains(string(body), "rt_") {
			t.Errorf("event %s holds a token", id)
		}
	}
	if types[webhook.InstallSucceeded] != 19 || types[webhook.InstallFailed] != 1 || types[webhook.BatchCompleted] != 1 {
		t.Fatalf("delivered by type: %v", types)
	}
	if done.Data.BatchID != batchID || done.Data.Total != 20 || done.Data.Counts["installed"] != 19 || done.Data.Counts["failed"] != 1 {
		t.Fatalf("batch.completed data %+v", done.Data)
	}
	show := fleettest.Run(t, enqueueBin, f.WorkerEnv(), "batches", "show", batchID, "--format", "json")
	if exited, err := show.Exited(time.Minute); !exited || err != nil {
		t.Fatalf("batches show: %v\n%s", err, show.Out.String())
	}
	var b store.Batch
	if err := json.Unmarshal(show.Out.Bytes(), &b); err != nil || !b.Done || b.Total != 20 || b.Counts["installed"] != 19 {
		t.Fatalf("batches show: %+v (%v)\n%s", b, err, show.Out.String())
	}
	if strings.Contains(w.Out.String(), secret) {
		t.Fatal("the webhook secret reached the worker's log")
	}
}

// A worker killed (-9) after recording results whose events it had not yet
// handed to the delivery queue: the events were written with the results,
// so the next worker delivers every one — none lost.
func TestKill9BetweenResultAndDeliveryLosesNoEvent(t *testing.T) {
	t.Parallel()
	const secret = "whsec-KILL-51e0"
	rec := &hookReceiver{delivered: map[string][]byte{}, headers: map[string]string{}}
	hooks := httptest.NewServer(rec)
	defer hooks.Close()
	f := fleettest.New(t, sandbox.Config{Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(1, 500)...)}, "", nil)
	f.AddAccounts(t, 1, 10)
	f.Env = append(f.Env, "WIDGETQ_WEBHOOK_URL="+hooks.URL, "WIDGETQ_WEBHOOK_SECRET="+secret, "WIDGETQ_WEBHOOK_QUEUE=wh-"+f.Prefix)
	// This worker relays once at start, then not for an hour: what it
	// records stays in the outbox.
	f.Env = append(f.Env, "WIDGETQ_WEBHOOK_RELAY_INTERVAL=1h")
	victim := f.StartWorker(t, workerBin)
	for id := int64(1); id <= 10; id++ {
		f.Install(t, id, "filler_0001", `{"note":"n"}`)
	}
	f.WaitCount(t, store.StatusInstalled, 10, time.Minute)
	st := store.New(f.Client, f.Prefix)
	if n, err := st.OutboxLen(context.Background()); err != nil || n < 10 {
		t.Fatalf("outbox holds %d events (%v), want the 10 recorded ones", n, err)
	}
	if _, _, n := rec.snapshot(); n != 0 {
		t.Fatalf("%d deliveries before the kill", n)
	}
	if err := victim.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.Exited(time.Minute)
	f.Env = f.Env[:len(f.Env)-1] // the next worker relays as usual
	f.StartWorker(t, workerBin)
	waitfor.Until(t, time.Minute, func() (bool, string) {
		got, _, n := rec.snapshot()
		installs := 0
		for _, body := range got {
			if bytes.Contains(body, []byte(`"install.succeeded"`)) {
				installs++
			}
		}
		return installs == 10, fmt.Sprintf("%d install events delivered in %d requests", installs, n)
	})
	if n, _ := st.OutboxLen(context.Background()); n != 0 {
		t.Fatalf("%d events left in the outbox", n)
	}
}

// A receiver down for a minute: the worker keeps trying, 1 s doubling,
// and delivers once it is back; the installs never waited for it.
func TestAReceiverDownForAMinuteStillGetsItsEvents(t *testing.T) {
	t.Parallel()
	const secret = "whsec-DOWN-2b7a"
	var mu sync.Mutex
	var attempts []time.Time
	var delivered [][]byte
	start := time.Now()
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, time.Now())
		if time.Since(start) < time.Minute {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if webhook.Verify(r.Header.Get(webhook.Header), body, secret, 5*time.Minute, time.Now()) == nil {
			delivered = append(delivered, body)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer hooks.Close()
	f := fleettest.New(t, sandbox.Config{Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(1, 500)...)}, "", nil)
	f.AddAccounts(t, 1, 1)
	f.Env = append(f.Env, "WIDGETQ_WEBHOOK_URL="+hooks.URL, "WIDGETQ_WEBHOOK_SECRET="+secret, "WIDGETQ_WEBHOOK_QUEUE=wh-"+f.Prefix)
	f.StartWorker(t, workerBin)
	f.Install(t, 1, "filler_0001", `{"note":"n"}`)
	// The install is recorded at once, whatever the receiver does.
	f.WaitCount(t, store.StatusInstalled, 1, 30*time.Second)
	waitfor.Until(t, 3*time.Minute, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == 1, fmt.Sprintf("%d attempts, %d delivered", len(attempts), len(delivered))
	})
	mu.Lock()
	defer mu.Unlock()
	// Backoff, not hammering: 1 s doubling is 7 attempts over the minute
	// (the schedule itself is webhook.Delay's, unit-tested); a fixed short
	// delay would be dozens.
	if len(attempts) > 10 {
		t.Fatalf("%d attempts over the minute, want 1 s doubling (about 7)", len(attempts))
	}
}
