package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

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
		if err := CheckAddr(c.addr, c.token); (err == nil) != c.ok {
			t.Errorf("CheckAddr(%q, %q) = %v", c.addr, c.token, err)
		}
	}
}

func TestRoutesAndAuth(t *testing.T) {
	ready := errors.New("redis down")
	h := Handler(Config{Token: "s3cret", Metrics: metrics.New(), Ready: func(context.Context) error { return ready }})
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
}
