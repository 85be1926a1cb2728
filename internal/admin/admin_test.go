package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/widgetq/widgetq/internal/bearer"
	"github.com/widgetq/widgetq/internal/metrics"
)

func TestCheckAddr(t *testing.T) {
	for _, c := range []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:9090", "", true}, {"localhost:9090", "", true}, {"[::1]:9090", "", true},
		{"0.0.0.0:9090", "", false}, {":9090", "", false}, {"10.0.0.5:9090", "", false},
		{"0.0.0.0:9090", "t", true}, {"nonsense", "t", false},
	} {
		if err := CheckAddr(c.addr, bearer.Parse(c.token)); (err == nil) != c.ok {
			t.Errorf("CheckAddr(%q, %q) = %v", c.addr, c.token, err)
		}
	}
}

func TestRoutesAndAuth(t *testing.T) {
	ready := errors.New("redis down")
	h := Handler(Config{Tokens: []string{"old-one", "s3cret"}, Metrics: metrics.New(), Ready: func(context.Context) error { return ready }})
	do := func(path, auth string) int {
		req := httptest.NewRequest("GET", path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", 200},
		{"/metrics", "", 401}, {"/metrics", "Bearer nope", 401}, {"/metrics", "s3cret", 401}, {"/metrics", "Bearer s3cret", 200},
		{"/readyz", "Bearer s3cret", http.StatusServiceUnavailable},
		{"/metrics", "Bearer old-one", 200}, {"/metrics", "Bearer old-one,s3cret", 401},
		{"/nothing", "Bearer s3cret", 404},
	} {
		if got := do(c.path, c.auth); got != c.want {
			t.Errorf("%s %q: %d, want %d", c.path, c.auth, got, c.want)
		}
	}
	ready = nil
	if got := do("/readyz", "Bearer s3cret"); got != 200 {
		t.Errorf("readyz when ready: %d", got)
	}
	// Detail lines follow the verdict.
	h = Handler(Config{Ready: func(context.Context) error { return nil }, Detail: func(context.Context) string { return "kommo: all traffic paused" }})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 || rec.Body.String() != "ready\nkommo: all traffic paused\n" {
		t.Errorf("readyz with detail: %d %q", rec.Code, rec.Body.String())
	}
}

func TestCandidates(t *testing.T) {
	for _, c := range []struct {
		addr     string
		explicit bool
		want     []string
	}{
		{DefaultAddr, false, []string{"127.0.0.1:9090", "127.0.0.1:9091", "127.0.0.1:9092", "127.0.0.1:9093", "127.0.0.1:9094",
			"127.0.0.1:9095", "127.0.0.1:9096", "127.0.0.1:9097", "127.0.0.1:9098", "127.0.0.1:9099"}},
		{DefaultAddr, true, []string{"127.0.0.1:9090"}},
		{"127.0.0.1:0", false, []string{"127.0.0.1:0"}},
		{"[::1]:65534", false, []string{"[::1]:65534", "[::1]:65535"}},
		{"nonsense", false, []string{"nonsense"}},
	} {
		if got := Candidates(c.addr, c.explicit); !slices.Equal(got, c.want) {
			t.Errorf("Candidates(%q, %v) = %v, want %v", c.addr, c.explicit, got, c.want)
		}
	}
}

func TestListenTakesTheNextFreeAddress(t *testing.T) {
	taken := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	a, b := taken(), taken()
	free := taken()
	freeAddr := free.Addr().String()
	free.Close()
	l, err := Listen([]string{a.Addr().String(), b.Addr().String(), freeAddr})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Addr().String(); got != freeAddr {
		t.Errorf("listens on %s, want %s", got, freeAddr)
	}
	l.Close()
	// One address, taken: refused, naming it.
	if _, err := Listen([]string{a.Addr().String()}); err == nil || !strings.Contains(err.Error(), a.Addr().String()+" is taken") {
		t.Errorf("a taken explicit address: %v", err)
	}
	// All taken: refused, naming the first and how many were tried.
	if _, err := Listen([]string{a.Addr().String(), b.Addr().String()}); err == nil || !strings.Contains(err.Error(), a.Addr().String()+" and the next 1 ports are taken") {
		t.Errorf("all taken: %v", err)
	}
	// Anything but "in use" is not worked around.
	if _, err := Listen([]string{"192.0.2.1:1", freeAddr}); err == nil {
		t.Error("an address that cannot be bound was skipped over")
	}
}
