package faults

import (
	"bytes"
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
