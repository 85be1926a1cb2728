package webhook

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommohost"
)

func TestSignAndVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"evt_1","type":"install.succeeded"}`)
	at := time.Unix(1764820000, 0)
	h := Sign([]string{"new-secret"}, at, body)
	if !strings.HasPrefix(h, "t=1764820000,v1=") || strings.Count(h, "v1=") != 1 {
		t.Fatalf("header %q", h)
	}
	if err := Verify(h, body, "new-secret", 5*time.Minute, at.Add(time.Minute)); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for name, c := range map[string]struct {
		header string
		body   []byte
		secret string
		now    time.Time
		want   error
	}{
		"another secret":  {h, body, "old-secret", at, ErrMismatch},
		"body changed":    {h, []byte(`{"id":"evt_2"}`), "new-secret", at, ErrMismatch},
		"a replay":        {h, body, "new-secret", at.Add(6 * time.Minute), ErrStale},
		"from the future": {h, body, "new-secret", at.Add(-6 * time.Minute), ErrStale},
		"no header":       {"", body, "new-secret", at, ErrNoSignature},
		"no v1":           {"t=1764820000", body, "new-secret", at, ErrNoSignature},
	} {
		if err := Verify(c.header, c.body, c.secret, 5*time.Minute, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// While the secret rotates, both verify.
	both := Sign([]string{"new-secret", "old-secret"}, at, body)
	if strings.Count(both, "v1=") != 2 || Verify(both, body, "old-secret", time.Minute, at) != nil || Verify(both, body, "new-secret", time.Minute, at) != nil {
		t.Fatalf("rotation header %q", both)
	}
}

func TestDelayDoublesFromOneSecondToADay(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]time.Duration{0: time.Second, 1: 2 * time.Second, 10: 1024 * time.Second, 16: 65536 * time.Second, 17: 24 * time.Hour, 21: 24 * time.Hour} {
		if got := Delay(n); got != want {
			t.Errorf("Delay(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestTaskEventHoldsNoSecretAndAStableID(t *testing.T) {
	t.Parallel()
	d := TaskData{AccountID: 7, WidgetCode: "w", Integration: "default", Status: "failed", Class: "invalid", Detail: "phones: required", BatchID: "b_0123456789abcdef"}
	a := TaskEvent("install", "e1", false, d, time.Unix(1, 0))
	b := TaskEvent("install", "e1", false, d, time.Unix(99, 0))
	var ea, eb Event
	_ = json.Unmarshal(a, &ea)
	_ = json.Unmarshal(b, &eb)
	if ea.ID != eb.ID || ea.Type != InstallFailed || !strings.HasPrefix(ea.ID, "evt_") {
		t.Fatalf("events %s / %s", a, b)
	}
	if ok := TaskEvent("uninstall", "e2", true, TaskData{Status: "uninstalled"}, time.Now()); !strings.Contains(string(ok), `"type":"uninstall.succeeded"`) {
		t.Fatalf("uninstall event %s", ok)
	}
}

// receiver answers each request with the next status and keeps what it got.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	got      []*http.Request
	bodies   [][]byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, req)
	r.bodies = append(r.bodies, b)
	st := http.StatusOK
	if len(r.statuses) > 0 {
		st, r.statuses = r.statuses[0], r.statuses[1:]
	}
	w.WriteHeader(st)
}

func TestDeliverSignsAndDecidesByStatus(t *testing.T) {
	t.Parallel()
	rec := &receiver{statuses: []int{500, 204, 410}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	var outcomes []string
	d := NewDeliverer(Config{URL: srv.URL + "/hooks?token=RECEIVER-TOKEN", Secrets: []string{"s3cret"}, Count: func(o string) { outcomes = append(outcomes, o) }})
	event := `{"id":"evt_9","type":"batch.completed","created_at":"2026-12-04T07:00:00Z","data":{}}`
	task := asynq.NewTask(TypeDeliver, mustJSON(payload{Event: event, URL: srv.URL + "/hooks?token=RECEIVER-TOKEN"}))
	ctx := context.Background()
	if err := d.Handle(ctx, task); err == nil || errors.Is(err, asynq.SkipRetry) || strings.Contains(err.Error(), "RECEIVER-TOKEN") {
		t.Fatalf("500: %v, want a retry that does not show the URL's token", err)
	}
	if err := d.Handle(ctx, task); err != nil {
		t.Fatalf("204: %v", err)
	}
	if err := d.Handle(ctx, task); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("410: %v, want no more tries", err)
	}
	if strings.Join(outcomes, ",") != "retrying,delivered,gone" {
		t.Fatalf("outcomes %v", outcomes)
	}
	// The body is the event byte for byte, and its signature verifies.
	if string(rec.bodies[1]) != event || Verify(rec.got[1].Header.Get(Header), rec.bodies[1], "s3cret", time.Minute, time.Now()) != nil ||
		rec.got[1].Header.Get("Content-Type") != "application/json" {
		t.Fatalf("delivery %q %v", rec.bodies[1], rec.got[1].Header)
	}
}

func TestCallbackURLsMustBeListed(t *testing.T) {
	t.Parallel()
	hosts, err := kommohost.ParseFor("WIDGETQ_WEBHOOK_HOSTS", ".vendor.example,127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Secrets: []string{"s"}, Hosts: hosts}
	if err := c.CheckCallback("https://hooks.vendor.example/in"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://attacker.example/in", "http://hooks.vendor.example/in", "https://169.254.169.254/latest"} {
		if err := c.CheckCallback(u); err == nil || !strings.Contains(err.Error(), "callback_url") {
			t.Errorf("%s: %v", u, err)
		}
	}
	if err := (Config{Secrets: []string{"s"}}).CheckCallback("https://hooks.vendor.example/in"); err == nil {
		t.Fatal("a callback URL accepted with no WIDGETQ_WEBHOOK_HOSTS")
	}
	// A delivery task pointing off the list (written before the list
	// changed) is refused without a request.
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	d := NewDeliverer(Config{Secrets: []string{"s"}, Hosts: hosts})
	err = d.Handle(context.Background(), asynq.NewTask(TypeDeliver, mustJSON(payload{Event: `{"id":"e"}`, URL: "https://attacker.example/x"})))
	if !errors.Is(err, asynq.SkipRetry) || len(rec.got) != 0 {
		t.Fatalf("off-list delivery: %v", err)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// FuzzVerify: whatever a signature header says, Verify neither panics nor
// accepts a body the secret did not sign.
func FuzzVerify(f *testing.F) {
	body := []byte(`{"id":"evt_1"}`)
	f.Add(Sign([]string{"s"}, time.Unix(1764820000, 0), body), string(body))
	f.Add("t=1764820000,v1=zz,v1=", "{}")
	f.Add(",,=,t=,v1", "")
	f.Fuzz(func(t *testing.T, header, b string) {
		if err := Verify(header, []byte(b), "s", time.Hour, time.Unix(1764820000, 0)); err != nil {
			return
		}
		// It verified: the header must hold the real MAC of b at its t.
		var ts string
		for _, p := range strings.Split(header, ",") {
			if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); k == "t" {
				ts = v
			}
		}
		if !strings.Contains(strings.ToLower(header), hex.EncodeToString(mac("s", ts, []byte(b)))) {
			t.Fatalf("verified %q for %q without its MAC", header, b)
		}
	})
}
