// Package admin serves a worker's operational endpoints: /healthz (the
// process is alive), /readyz (Redis answers and the worker is serving),
// and /metrics (Prometheus). Bound to anything but loopback, every route
// but /healthz requires a bearer token, compared in constant time.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/widgetq/widgetq/internal/bearer"
	"github.com/widgetq/widgetq/internal/metrics"
)

// Config is what the admin server serves.
type Config struct {
	// Tokens, when any is set, are accepted as "Authorization: Bearer
	// <token>" on every route but /healthz: any one of them (rotation).
	Tokens []string
	// Metrics is exposed at /metrics.
	Metrics *metrics.Metrics
	// Ready reports whether the worker can do its job (nil: ready).
	Ready func(context.Context) error
	// Detail, when set, adds lines to /readyz's answer whatever it is
	// (e.g. that all Kommo traffic is paused).
	Detail func(context.Context) string
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
func CheckAddr(addr string, tokens []string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	if !IsLoopback(addr) && len(tokens) == 0 {
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
				cfg.detail(ctx, w)
				return
			}
		}
		fmt.Fprintln(w, "ready")
		cfg.detail(r.Context(), w)
	})))
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.auth(promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{})))
	}
	for p, h := range cfg.Extra {
		mux.Handle(p, cfg.auth(h))
	}
	return mux
}

func (cfg Config) detail(ctx context.Context, w io.Writer) {
	if cfg.Detail == nil {
		return
	}
	if d := cfg.Detail(ctx); d != "" {
		fmt.Fprintln(w, d)
	}
}

func (cfg Config) auth(h http.Handler) http.Handler {
	if len(cfg.Tokens) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearer.Match(r.Header.Get("Authorization"), cfg.Tokens) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="widgetq"`)
			http.Error(w, "a bearer token is required (WIDGETQ_ADMIN_TOKEN)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// DefaultAddr is where a worker serves its admin routes unless told
// otherwise.
const DefaultAddr = "127.0.0.1:9090"

// Fallbacks is how many ports after the default address's a worker may
// take when the default is taken and no address was set explicitly: with
// the default, 9091 to 9099.
const Fallbacks = 9

// Candidates returns the addresses to try, in order: addr alone when it
// was set explicitly (a taken address then refuses to start); else addr,
// then the next Fallbacks ports on its host, so several workers with the
// default settings can share one host.
func Candidates(addr string, explicit bool) []string {
	host, p, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(p)
	if explicit || err != nil || perr != nil || port == 0 {
		return []string{addr}
	}
	out := []string{addr}
	for i := 1; i <= Fallbacks && port+i <= 65535; i++ {
		out = append(out, net.JoinHostPort(host, strconv.Itoa(port+i)))
	}
	return out
}

// Listen listens on the first of addrs that is not taken. Any error but
// "address already in use" stops at once.
func Listen(addrs []string) (net.Listener, error) {
	if len(addrs) == 0 {
		return nil, errors.New("admin server: no address")
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("admin server: %w", err)
		}
		if len(addrs) == 1 {
			return nil, fmt.Errorf("admin server: %s is taken (another worker?): give this one another -admin-addr, or -admin-addr \"\" for none", a)
		}
	}
	return nil, fmt.Errorf("admin server: %s and the next %d ports are taken: give this worker -admin-addr, or -admin-addr \"\" for none", addrs[0], len(addrs)-1)
}

// Serve serves h on l until ctx ends. It returns the address it serves,
// and a channel closed once the server has shut down.
func Serve(ctx context.Context, l net.Listener, h http.Handler) (string, <-chan struct{}) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	done := make(chan struct{})
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}()
	return strings.TrimSpace(l.Addr().String()), done
}
