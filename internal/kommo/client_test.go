package kommo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serve mounts handlers on an httptest server, go-github style, and returns
// a client for it.
func serve(t *testing.T, opts ...Option) (*http.ServeMux, *Client) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL+"/k/acme", append([]Option{WithAuth(StaticToken("tok"))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return mux, c
}

func testMethod(t *testing.T, r *http.Request, want string) {
	t.Helper()
	if r.Method != want {
		t.Errorf("method %s, want %s", r.Method, want)
	}
}

func hal(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/hal+json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func TestNewClientChecksTheBaseURL(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "acme.kommo.com", "ftp://acme.kommo.com", "https://", "https://u:p@acme.kommo.com", "https://acme.kommo.com/?x=1", "https://acme.kommo.com/#f"} {
		if _, err := NewClient(bad); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		}
	}
	c, err := NewClient(" https://acme.kommo.com/ ")
	if err != nil || c.BaseURL() != "https://acme.kommo.com" {
		t.Fatalf("NewClient: %v %v", c, err)
	}
}

func TestGetWidgetSendsTokenAndUserAgent(t *testing.T) {
	t.Parallel()
	mux, c := serve(t, WithUserAgent("widgetq-test/1"))
	mux.HandleFunc("/k/acme/api/v4/widgets/amo_asterisk", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "GET")
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("User-Agent") != "widgetq-test/1" {
			t.Errorf("headers %v", r.Header)
		}
		w.Header().Set("X-Request-Id", "req-1")
		hal(w, 200, `{"id":101,"code":"amo_asterisk","version":"1.0.3","rating":"2,8","settings":[],"is_active_in_account":false,
			"settings_template":[{"key":"login","name":"Login","type":"text","is_required":true}],"_links":{"self":{"href":"x"}},"new_field":1}`)
	})
	w, resp, err := c.GetWidget(context.Background(), "amo_asterisk")
	if err != nil {
		t.Fatal(err)
	}
	if w.ID != 101 || w.Rating.Value != 2.8 || len(w.SettingsTemplate) != 1 || resp.RequestID != "req-1" {
		t.Fatalf("widget %+v resp %+v", w, resp)
	}
}

func TestMalformedWidgetCodesSendNothing(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	mux, c := serve(t)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	ctx := context.Background()
	for _, code := range []string{"", "../account", "a/b", "a?b", "..", strings.Repeat("a", 101), "ü"} {
		_, _, err1 := c.GetWidget(ctx, code)
		_, _, err2 := c.InstallWidget(ctx, code, nil)
		_, err3 := c.UninstallWidget(ctx, code)
		for _, err := range []error{err1, err2, err3} {
			if ClassOf(err) != ClassInvalid {
				t.Errorf("code %q: %v, want an invalid error", code, err)
			}
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("%d requests sent for malformed codes", hits.Load())
	}
}

func TestListWidgetsFollowsNextLinks(t *testing.T) {
	t.Parallel()
	mux, c := serve(t)
	var srvURL string
	mux.HandleFunc("/k/acme/api/v4/widgets", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "GET")
		if r.URL.Query().Get("limit") != "2" {
			t.Errorf("limit %q, want 2", r.URL.Query().Get("limit"))
		}
		srvURL = "http://" + r.Host
		switch p := r.URL.Query().Get("page"); p {
		case "1":
			hal(w, 200, fmt.Sprintf(`{"_page":1,"_links":{"self":{"href":"%[1]s/k/acme/api/v4/widgets?page=1&limit=2"},"next":{"href":"%[1]s/k/acme/api/v4/widgets?page=2&limit=2"}},"_embedded":{"widgets":[{"id":1,"code":"a"},{"id":2,"code":"b"}]}}`, srvURL))
		case "2":
			hal(w, 200, `{"_page":2,"_links":{"self":{"href":"x"}},"_embedded":{"widgets":[{"id":3,"code":"c"}]}}`)
		default:
			t.Errorf("page %q asked", p)
		}
	})
	ws, err := c.ListWidgets(context.Background(), ListOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 3 || ws[2].Code != "c" {
		t.Fatalf("listed %+v", ws)
	}
	if _, err := c.ListWidgets(context.Background(), ListOptions{Limit: 251}); ClassOf(err) != ClassInvalid {
		t.Fatalf("limit 251: %v", err)
	}
}

func TestListWidgetsEmptyAndHostileLinks(t *testing.T) {
	t.Parallel()
	mux, c := serve(t)
	var calls atomic.Int32
	mode := atomic.Value{}
	mode.Store("empty")
	mux.HandleFunc("/k/acme/api/v4/widgets", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch mode.Load() {
		case "empty":
			w.WriteHeader(http.StatusNoContent)
		case "offhost":
			hal(w, 200, `{"_links":{"next":{"href":"https://evil.example/k/acme/api/v4/widgets?page=2"}},"_embedded":{"widgets":[{"id":1,"code":"a"}]}}`)
		case "loop":
			hal(w, 200, `{"_links":{"next":{"href":"/k/acme/api/v4/widgets?page=1&limit=250"}},"_embedded":{"widgets":[{"id":1,"code":"a"}]}}`)
		case "outside":
			hal(w, 200, `{"_links":{"next":{"href":"/k/other/api/v4/widgets?page=2"}},"_embedded":{"widgets":[{"id":1,"code":"a"}]}}`)
		}
	})
	ws, err := c.ListWidgets(context.Background(), ListOptions{})
	if err != nil || len(ws) != 0 {
		t.Fatalf("204 list: %v %v", ws, err)
	}
	for _, m := range []string{"offhost", "loop", "outside"} {
		mode.Store(m)
		calls.Store(0)
		ws, err := c.ListWidgets(context.Background(), ListOptions{})
		if err == nil || len(ws) != 1 || calls.Load() != 1 {
			t.Fatalf("%s: %d widgets, %d calls, err %v; want the first page, one call and an error", m, len(ws), calls.Load(), err)
		}
	}
}

func TestInstallWidgetSendsSettingsAndScrubsEchoes(t *testing.T) {
	t.Parallel()
	mux, c := serve(t)
	mux.HandleFunc("/k/acme/api/v4/widgets/amo_asterisk", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "POST")
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type %q", ct)
		}
		body, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil || m["password"] != "eXaMp1E" {
			t.Errorf("body %s", body)
		}
		// A careless server echoing what it got, token included.
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"title":"Bad Request","detail":"bad body %s with %s","validation-errors":[{"request_id":"0","errors":[{"code":"X","path":"password","detail":"eXaMp1E is weak"}]}]}`,
			strings.ReplaceAll(string(body), `"`, `\"`), r.Header.Get("Authorization"))
	})
	settings := json.RawMessage(`{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"}}`)
	_, _, err := c.InstallWidget(context.Background(), "amo_asterisk", settings, "eXaMp1E")
	var ke *Error
	if !errors.As(err, &ke) || ke.Class != ClassInvalid || len(ke.ValidationErrors) != 1 {
		t.Fatalf("err %v", err)
	}
	all := fmt.Sprintf("%v %+v", err, *ke)
	if strings.Contains(all, "eXaMp1E") || strings.Contains(all, "Bearer tok") {
		t.Fatalf("secret in the error: %s", all)
	}
	if !strings.Contains(ke.Detail, `\"login\":\"example\"`) && !strings.Contains(ke.Detail, `"login":"example"`) {
		t.Fatalf("scrubbing removed more than secrets: %s", ke.Detail)
	}
	for _, bad := range []string{`[1]`, `"x"`, `{"a":`} {
		if _, _, err := c.InstallWidget(context.Background(), "amo_asterisk", json.RawMessage(bad)); ClassOf(err) != ClassInvalid {
			t.Fatalf("settings %s: %v", bad, err)
		}
	}
}

func TestUninstallAccepts204And200(t *testing.T) {
	t.Parallel()
	mux, c := serve(t)
	var n atomic.Int32
	mux.HandleFunc("/k/acme/api/v4/widgets/w", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "DELETE")
		if n.Add(1) == 1 {
			w.WriteHeader(204)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	})
	for i := range 2 {
		if resp, err := c.UninstallWidget(context.Background(), "w"); err != nil || resp.StatusCode != []int{204, 200}[i] {
			t.Fatalf("uninstall %d: %v %v", i, resp, err)
		}
	}
}

func TestTruncatedSuccessIsANetworkError(t *testing.T) {
	t.Parallel()
	mux, c := serve(t)
	mux.HandleFunc("/k/acme/api/v4/account", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		hal(w, 200, `{"id":1,"name":"ac`)
	})
	mux.HandleFunc("/k/acme/api/v4/widgets/w", func(w http.ResponseWriter, r *http.Request) {
		hal(w, 200, `{"id":1,"code":"w","rating":`) // short but "complete" per its framing
	})
	_, _, err := c.GetAccount(context.Background())
	if ClassOf(err) != ClassNetwork || !IsRetryable(err) {
		t.Fatalf("short body: %v", err)
	}
	_, _, err = c.GetWidget(context.Background(), "w")
	if ClassOf(err) != ClassNetwork {
		t.Fatalf("undecodable 200: %v", err)
	}
}

func TestTimeoutIsANetworkError(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	mux, c := serve(t, WithTimeout(50*time.Millisecond))
	mux.HandleFunc("/k/acme/api/v4/account", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	_, _, err := c.GetAccount(context.Background())
	var ke *Error
	if !errors.As(err, &ke) || ke.Class != ClassNetwork || !strings.Contains(err.Error(), "timeout") || ke.Path != "/k/acme/api/v4/account" {
		t.Fatalf("hung request: %v", err)
	}
}

func TestConnectionRefusedIsANetworkError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	c, _ := NewClient(addr)
	_, _, err := c.GetAccount(context.Background())
	if ClassOf(err) != ClassNetwork || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("closed port: %v", err)
	}
}

// flipAuth counts refreshes and hands out a new token on each.
type flipAuth struct {
	tokens    []string
	refreshes atomic.Int32
}

func (f *flipAuth) AccessToken(context.Context) (string, error) { return f.tokens[0], nil }
func (f *flipAuth) Refresh(_ context.Context, rejected string) (string, error) {
	n := f.refreshes.Add(1)
	return f.tokens[n], nil
}

func TestA401RefreshesOnceAndRetries(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	good := "new"
	sent := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
	reset := func(g string) { mu.Lock(); defer mu.Unlock(); seen, good = nil, g }
	mux, c := serve(t)
	mux.HandleFunc("/k/acme/api/v4/widgets/w", func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		seen = append(seen, tok)
		good := good
		mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		if tok != good {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"title":"Unauthorized","status":401}`)
			return
		}
		if string(body) != `{"login":"x"}` {
			// The retry must carry the body again.
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"title":"Bad Request","status":400,"detail":"body `+strconv.Quote(string(body))+`"}`)
			return
		}
		hal(w, 200, `{"id":1,"code":"w","is_active_in_account":true,"settings":`+string(body)+`}`)
	})
	auth := &flipAuth{tokens: []string{"old", "new", "newer"}}
	c2, _ := NewClient(c.BaseURL(), WithAuth(auth))
	w, _, err := c2.InstallWidget(context.Background(), "w", json.RawMessage(`{"login":"x"}`))
	if err != nil || !bool(w.IsActiveInAccount) || w.ID != 1 || w.Code != "w" {
		t.Fatalf("install after refresh: %+v %v (the body must be sent again)", w, err)
	}
	if strings.Join(sent(), ",") != "old,new" || auth.refreshes.Load() != 1 {
		t.Fatalf("tokens sent %v, refreshes %d", sent(), auth.refreshes.Load())
	}
	// A second 401 stands: no loop.
	reset("never")
	auth2 := &flipAuth{tokens: []string{"old", "new", "newer"}}
	c3, _ := NewClient(c.BaseURL(), WithAuth(auth2))
	_, _, err = c3.GetWidget(context.Background(), "w")
	if ClassOf(err) != ClassUnauthorized || auth2.refreshes.Load() != 1 || len(sent()) != 2 {
		t.Fatalf("second 401: %v, %d refreshes, %d requests", err, auth2.refreshes.Load(), len(sent()))
	}
	// A long-lived token cannot refresh: its 401 is final after one request.
	reset("never")
	_, _, err = c.GetWidget(context.Background(), "w")
	if ClassOf(err) != ClassUnauthorized || len(sent()) != 1 {
		t.Fatalf("static token 401: %v after %d requests", err, len(sent()))
	}
}

func TestRetryAfterDateUsesTheClientClock(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mux, c := serve(t, withClock(func() time.Time { return now }))
	mux.HandleFunc("/k/acme/api/v4/account", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", now.Add(42*time.Second).Format(http.TimeFormat))
		w.WriteHeader(429)
	})
	_, _, err := c.GetAccount(context.Background())
	var ke *Error
	if !errors.As(err, &ke) || ke.RetryAfter != 42*time.Second || ke.Class != ClassRateLimited {
		t.Fatalf("%v", err)
	}
}
