// Package demo runs widgetq's whole job in one process, for `make demo`:
// an embedded Redis, a Kommo sandbox with transient faults, accounts of
// which a few must fail, the worker, a live progress line and a summary.
// It is the product running, not a mock: the same store, limiter, handler
// and producer as in production, with secrets sealed.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/tty"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

const demoSettings = `{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`

// Config tunes the demo. Zero fields take defaults.
type Config struct {
	// Accounts is how many sandbox accounts to install into (default 300;
	// two accounts without credentials are added).
	Accounts int
	// Concurrency is how many tasks run at once (default 100).
	Concurrency int
	// RatePerAccount and RateGlobal are the limiter's (defaults 7 and none).
	RatePerAccount, RateGlobal float64
	// SecretKey seals tokens and settings (nil: a key made for this run).
	SecretKey []byte
	// LogPath is where the worker's log lines go (default
	// $TMPDIR/widgetq-demo.log).
	LogPath string
	// Within bounds the run (default 3 min).
	Within time.Duration
}

// Run runs the demo, writing its progress and summary to stdout. It fails
// if any account is installed twice, or a secret rests in Redis in
// plaintext.
func Run(ctx context.Context, c Config, stdout io.Writer) error {
	if c.Accounts <= 0 {
		c.Accounts = 300
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 100
	}
	if c.LogPath == "" {
		c.LogPath = filepath.Join(os.TempDir(), "widgetq-demo.log")
	}
	if c.Within <= 0 {
		c.Within = 3 * time.Minute
	}
	const prefix = store.DefaultPrefix
	conn, stopRedis, err := redisconn.StartEmbedded("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer stopRedis()
	rdb := conn.Client()
	defer rdb.Close()

	// A Kommo with latency, 503s (some as proxy HTML) and resets.
	sb := sandbox.New(sandbox.Config{Latency: 40 * time.Millisecond, LatencyJitter: 30 * time.Millisecond, Seed: 7})
	if err := sb.SetFaults("", sandbox.Faults{ErrorRate: 0.08, ErrorStatuses: []int{500, 502, 503, 504}, ResetRate: 0.03}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	httpSrv := &http.Server{Handler: sb, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = httpSrv.Serve(ln) }()
	defer func() { sb.Close(); _ = httpSrv.Close() }()
	sbURL := "http://" + ln.Addr().String()

	logPath := c.LogPath
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// Secrets sealed as in production: WIDGETQ_SECRET_KEY if given, else a
	// key made for this run.
	demoKey := c.SecretKey
	if demoKey == nil {
		demoKey = make([]byte, seal.KeySize)
		_, _ = rand.Read(demoKey)
	}
	keys, err := seal.New(demoKey)
	if err != nil {
		return err
	}
	st := store.New(rdb, prefix).WithKeys(keys)
	n := c.Accounts
	first := 20001
	type plan struct {
		id       int64
		settings string
		why      string
	}
	var plans []plan
	for i := range n {
		id := first + i
		sub := fmt.Sprintf("demo%d", id)
		if err := sb.AddAccount(sandbox.AccountSpec{ID: id, Subdomain: sub}); err != nil {
			return err
		}
		user := 0
		p := plan{id: int64(id), settings: demoSettings}
		switch {
		case i%100 == 7: // a plain user's token: not an administrator
			user = id*10 + 2
			p.why = "forbidden"
		case i%100 == 13: // settings missing the required phones
			p.settings = `{"login":"example","password":"eXaMp1E"}`
			p.why = "invalid"
		case i%100 == 42: // blocked by Kommo for earlier abuse
			sb.Block(sub, 24*time.Hour)
			p.why = "blocked"
		}
		tok, err := sb.IssueTokens(sub, user)
		if err != nil {
			return err
		}
		if i%100 == 64 { // the integration was uninstalled: tokens revoked
			sb.RevokeTokens(sub)
			tok.ExpiresAt = time.Now().Add(-time.Minute)
			p.why = "token_revoked"
		}
		if i%10 == 3 { // expired access tokens: refreshed on the way
			sb.ExpireAccessTokens(sub)
			tok.ExpiresAt = time.Now().Add(-time.Minute)
		}
		if err := st.PutAccount(ctx, store.Account{ID: int64(id), BaseURL: sandbox.BaseURL(sbURL, sub), AccessToken: tok.AccessToken,
			RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}); err != nil {
			return err
		}
		plans = append(plans, p)
	}
	// Two accounts nobody stored credentials for.
	plans = append(plans, plan{id: 99001, settings: demoSettings}, plan{id: 99002, settings: demoSettings})

	w, err := worker.New(ctx, rdb, conn.Opt, worker.Options{
		Prefix: prefix, Keys: keys, RatePerAccount: c.RatePerAccount, RateGlobal: c.RateGlobal,
		Concurrency: c.Concurrency, ShutdownTimeout: 5 * time.Second, Display: "embedded",
		Handler: worker.Config{
			OAuth:          &kommo.OAuthConfig{ClientID: sandbox.DefaultClientID, ClientSecret: sandbox.DefaultClientSecret},
			Hosts:          sandboxHosts,
			RequestTimeout: 5 * time.Second,
			Policy:         retry.Policy{Base: 300 * time.Millisecond, Cap: 3 * time.Second},
			Logger:         log,
		},
	})
	if err != nil {
		return err
	}
	wctx, stopWorker := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- w.Run(wctx) }()
	defer func() { stopWorker(); <-ran }()

	fmt.Fprintf(stdout, "widgetq demo: %d accounts on a Kommo sandbox (latency 40±30ms, 8%% 5xx, 3%% resets), embedded Redis, %d at once\n",
		len(plans), c.Concurrency)
	fmt.Fprintf(stdout, "worker log: %s\n", logPath)
	start := time.Now()
	prod := producer.New(rdb, prefix)
	if err := prod.SealSettings(demoKey); err != nil {
		return err
	}
	for _, p := range plans {
		if _, err := prod.Install(ctx, tasks.InstallWidgetPayload{AccountID: p.id, WidgetCode: sandbox.WidgetAsterisk, Settings: json.RawMessage(p.settings)}); err != nil {
			return fmt.Errorf("enqueue account %d: %w", p.id, err)
		}
	}

	tty := tty.Is(stdout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastLine := time.Time{}
	deadline := time.After(c.Within)
	var counts map[store.Status]int64
	for {
		counts, err = st.CountByStatus(ctx)
		if err != nil {
			return err
		}
		open := counts[store.StatusQueued] + counts[store.StatusRetrying]
		line := progressLine(counts, int64(len(plans)), time.Since(start))
		if tty {
			fmt.Fprintf(stdout, "\r%s", line)
		} else if time.Since(lastLine) >= 2*time.Second || open == 0 {
			fmt.Fprintln(stdout, line)
			lastLine = time.Now()
		}
		if open == 0 {
			break
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout)
			return ctx.Err()
		case <-deadline:
			fmt.Fprintln(stdout)
			return fmt.Errorf("demo: %d tasks still open after %s", open, c.Within)
		case <-tick.C:
		}
	}
	if tty {
		fmt.Fprintln(stdout)
	}
	if err := demoSummary(ctx, stdout, st, sb, counts, time.Since(start)); err != nil {
		return err
	}
	scanned, found, err := scanForPlaintext(ctx, rdb, regexp.MustCompile(`eXaMp1E|[ar]t_[0-9a-f]{48}`))
	if err != nil {
		return err
	}
	if len(found) > 0 {
		return fmt.Errorf("demo: plaintext secrets in Redis keys %v", found)
	}
	fmt.Fprintf(stdout, "Secrets sealed with AES-256-GCM (key %s%s): %d Redis keys scanned, no token or password in plaintext.\n",
		keys.KeyID(), map[bool]string{true: ", made for this run", false: ", WIDGETQ_SECRET_KEY"}[c.SecretKey == nil], scanned)
	return nil
}

// scanForPlaintext reads every key's values and returns the keys holding
// a match of secret (the demo's password, the sandbox's token shapes).
func scanForPlaintext(ctx context.Context, rdb redis.UniversalClient, secret *regexp.Regexp) (int, []string, error) {
	var found []string
	n, err := redisconn.EachKey(ctx, rdb, func(k string, vals []string) {
		for _, v := range vals {
			if secret.MatchString(v) {
				found = append(found, k)
				return
			}
		}
	})
	return n, found, err
}

func progressLine(counts map[store.Status]int64, total int64, elapsed time.Duration) string {
	done := total - counts[store.StatusQueued] - counts[store.StatusRetrying]
	width := 30
	filled := int(float64(width) * float64(done) / float64(max(total, 1)))
	return fmt.Sprintf("[%s%s] %d/%d done · installed %d · retrying %d · failed %d · %.1fs",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total,
		counts[store.StatusInstalled]+counts[store.StatusAlreadyInstalled], counts[store.StatusRetrying], counts[store.StatusFailed], elapsed.Seconds())
}

func demoSummary(ctx context.Context, w io.Writer, st *store.Store, sb *sandbox.Server, counts map[store.Status]int64, elapsed time.Duration) error {
	fmt.Fprintf(w, "\nResults by status (%.1fs):\n", elapsed.Seconds())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range store.Statuses {
		if counts[s] > 0 {
			fmt.Fprintf(tw, "  %s\t%d\n", s, counts[s])
		}
	}
	tw.Flush()

	page, err := st.Results(ctx, store.Query{Status: store.StatusFailed, Limit: 1000})
	if err != nil {
		return err
	}
	type group struct {
		n       int
		example string
		ids     []string
	}
	groups := map[string]*group{}
	for _, r := range page.Results {
		class := r.LastError.Class
		g := groups[class]
		if g == nil {
			g = &group{example: r.LastError.Detail}
			groups[class] = g
		}
		g.n++
		g.ids = append(g.ids, fmt.Sprint(r.AccountID))
	}
	if len(groups) > 0 {
		fmt.Fprintln(w, "\nWhy the failures failed:")
		classes := make([]string, 0, len(groups))
		for c := range groups {
			classes = append(classes, c)
		}
		sort.Strings(classes)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  class\taccounts\texample")
		for _, c := range classes {
			g := groups[c]
			ids := strings.Join(g.ids, ",")
			if len(ids) > 30 {
				ids = ids[:30] + "…"
			}
			fmt.Fprintf(tw, "  %s\t%d (%s)\t%s\n", c, g.n, ids, truncate(g.example, 90))
		}
		tw.Flush()
	}
	sc := sb.Counters()
	retried := 0
	all, err := st.Results(ctx, store.Query{Limit: 100000})
	if err == nil {
		for _, r := range all.Results {
			if r.Attempts > 1 {
				retried++
			}
		}
	}
	fmt.Fprintf(w, "\nKommo sandbox saw %d requests: %d installs, %d token refreshes, %d injected 5xx, %d resets, %d answered 429, %d blocked answers.\n",
		sc.Total.Requests, sc.Total.Installs, sc.Total.Refreshes, sc.Total.InjectedErrors, sc.Total.Resets, sc.Total.RateLimited, sc.Total.BlockedAnswers)
	fmt.Fprintf(w, "%d accounts needed more than one attempt; none was installed twice.\n", retried)
	for id, a := range sc.Accounts {
		for code, n := range a.Installed {
			if n > 1 {
				return fmt.Errorf("demo: account %s got widget %s installed %d times", id, code, n)
			}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// sandboxHosts is the demo's allow-list: its sandbox listens on loopback.
var sandboxHosts, _ = kommohost.Parse("127.0.0.1")
