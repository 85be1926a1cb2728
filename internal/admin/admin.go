// Package admin serves a worker's operational endpoints: /healthz (the
// process is alive), /readyz (Redis answers and the worker is serving),
// and /metrics (Prometheus). Bound to anything but loopback, every route
// but /healthz requires a bearer token, compared in constant time.
package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/widgetq/widgetq/internal/metrics"
)

// Config is what the admin server serves.
type Config struct {
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every route but /healthz.
	Token string
	// Metrics is exposed at /metrics.
	Metrics *metrics.Metrics
	// Ready reports whether the worker can do its job (nil: ready).
	Ready func(context.Context) error
	// Extra routes, behind the same token (e.g. a console).
	Extra map[string]http.Handler
}

// IsLoopback reports whether a listen address binds loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckAddr refuses an address that would expose the admin routes without
// a token.
func CheckAddr(addr, token string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	if !IsLoopback(addr) && token == "" {
		return errors.New("binds beyond loopback: set WIDGETQ_ADMIN_TOKEN (every route but /healthz then needs it as a bearer token)")
	}
	return nil
}

// Handler returns the admin routes.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /readyz", cfg.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := cfg.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, "not ready:", err)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})))
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.auth(promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{})))
	}
	for p, h := range cfg.Extra {
		mux.Handle(p, cfg.auth(h))
	}
	return mux
}

func (cfg Config) auth(h http.Handler) http.Handler {
	if cfg.Token == "" {
		return h
	}
	want := []byte("Bearer " + cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="widgetq"`)
			http.Error(w, "a bearer token is required (WIDGETQ_ADMIN_TOKEN)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Serve listens on addr and serves h until ctx ends. It returns the
// address it listens on (addr with port 0 gets a free one), or why it
// cannot.
func Serve(ctx context.Context, addr string, h http.Handler) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("admin server: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() { _ = srv.Serve(l) }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return strings.TrimSpace(l.Addr().String()), nil
}
