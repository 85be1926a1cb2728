package worker_test

import (
	"context"
	"errors"
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
	a, _ := e.st.GetAccount(context.Background(), 1)
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
