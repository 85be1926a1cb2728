package worker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/internal/worker"
)

// TestAHostOffTheListGetsNoRequest: an account stored before the
// allow-list changed (here: the sandbox's 127.0.0.1, with the default
// list of Kommo's hosts) fails host_not_allowed at once, recorded, never
// retried, with not one request sent — not even a token refresh.
func TestAHostOffTheListGetsNoRequest(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	a, _ := e.st.GetAccount(context.Background(), 1, "")
	a.ExpiresAt = time.Now().Add(-time.Hour) // a refresh would be due
	if err := e.st.PutAccount(context.Background(), *a); err != nil {
		t.Fatal(err)
	}
	def, _ := kommohost.Parse("")
	e.startWorker(t, worker.Config{Hosts: def}, ratelimit.Config{}, 1)
	e.install(t, 1, sandbox.WidgetAsterisk, seed)
	r := e.waitFinal(t, []key{{1, sandbox.WidgetAsterisk}}, 20*time.Second)[key{1, sandbox.WidgetAsterisk}]
	if r.Status != store.StatusFailed || r.Attempts != 1 || r.LastError.Class != worker.ClassHostNotAllowed ||
		!strings.Contains(r.LastError.Detail, `host "127.0.0.1" is not an allowed Kommo host`) || !strings.Contains(r.LastError.Detail, "nothing was sent") {
		t.Fatalf("result %+v %+v", r, r.LastError)
	}
	if n := e.sb.Counters().Total.Requests; n != 0 {
		t.Fatalf("%d requests reached a host off the list", n)
	}
}

// TestRedirectsAreNotFollowed: a 3xx from "Kommo" pointing elsewhere is a
// permanent failure of class redirected; the other host sees nothing.
func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	e := setup(t, sandbox.Config{})
	if err := e.st.PutAccount(context.Background(), store.Account{ID: 5, BaseURL: redirector.URL, AccessToken: "at_REDIRECTED"}); err != nil {
		t.Fatal(err)
	}
	e.startWorker(t, worker.Config{}, ratelimit.Config{}, 1)
	e.install(t, 5, sandbox.WidgetAsterisk, seed)
	r := e.waitFinal(t, []key{{5, sandbox.WidgetAsterisk}}, 20*time.Second)[key{5, sandbox.WidgetAsterisk}]
	if r.Status != store.StatusFailed || r.LastError.Class != "redirected" || r.LastError.HTTPStatus != 302 || !strings.Contains(r.LastError.Detail, "redirected to host 127.0.0.1") {
		t.Fatalf("result %+v %+v", r, r.LastError)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect was followed %d times", n)
	}
}

// TestTheDefaultTransportDialsOnlyWhatTheListAllows: the worker's own
// transport refuses a loopback address unless it is listed (a listed
// name that resolves there — DNS rebinding — ends the same way).
func TestTheDefaultTransportDialsOnlyWhatTheListAllows(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(srv.Close)
	def, _ := kommohost.Parse("")
	req, _ := http.NewRequest("GET", srv.URL, nil)
	_, err := worker.Config{Hosts: def}.WithDefaults().Transport.RoundTrip(req)
	if !errors.Is(err, kommohost.ErrAddressRefused) {
		t.Fatalf("dialed 127.0.0.1 with the default list: %v", err)
	}
	resp, err := worker.Config{Hosts: sandboxHosts}.WithDefaults().Transport.RoundTrip(req)
	if err != nil {
		t.Fatalf("with 127.0.0.1 listed: %v", err)
	}
	resp.Body.Close()
}

// TestAnIPBlockPausesAllKommoTraffic: Kommo blocks the IP, so every
// account answers the HTML 403. After three accounts' blocks the workers
// stop sending (the rest are deferred, no attempt spent, no 403 spent on
// them); the pause runs out and they install.
func TestAnIPBlockPausesAllKommoTraffic(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 8)
	e.sb.BlockIP(time.Hour)
	e.startWorker(t, worker.Config{IPBlockAccounts: 3, IPBlockWindow: time.Minute, IPBlockPause: 5 * time.Second}, ratelimit.Config{}, 1)
	var keys []key
	for id := 1; id <= 8; id++ {
		e.install(t, id, sandbox.WidgetAsterisk, seed)
		keys = append(keys, key{int64(id), sandbox.WidgetAsterisk})
	}
	var p *store.KommoPause
	waitfor.Until(t, 30*time.Second, func() (bool, string) {
		p, _ = e.st.KommoPaused(context.Background())
		return p != nil, fmt.Sprintf("no pause; sandbox %+v", e.sb.Counters().Total)
	})
	if len(p.Accounts) != 3 {
		t.Fatalf("paused by %v, want three accounts", p.Accounts)
	}
	e.sb.UnblockIP() // Kommo support lifted it; the workers wait out their pause
	res := e.waitFinal(t, keys, time.Minute)
	var blocked, installed int
	for _, k := range keys {
		switch r := res[k]; {
		case r.Status == store.StatusFailed && r.LastError.Class == "blocked":
			blocked++
		case r.Status == store.StatusInstalled && r.Attempts == 1:
			installed++
		default:
			t.Errorf("account %d: %+v %+v", k.account, r, r.LastError)
		}
	}
	c := e.sb.Counters()
	if blocked != 3 || installed != 5 || c.Total.BlockedAnswers != 3 {
		t.Fatalf("%d blocked, %d installed, %d block pages answered; want 3, 5, 3", blocked, installed, c.Total.BlockedAnswers)
	}
	if !strings.Contains(e.logs.String(), "every worker pauses all Kommo traffic") {
		t.Fatal("the pause was not logged")
	}
}
