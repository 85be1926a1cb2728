// Command kommo-sandbox serves the fake Kommo of internal/kommo/sandbox on
// a local address, for demos, benchmarks and trials by hand.
//
//	kommo-sandbox -addr 127.0.0.1:8090 -accounts 3 -accounts-out accounts.jsonl
//
// It creates the accounts, writes one JSON line of credentials per account
// (account_id, subdomain, base_url, access_token, refresh_token, expires_at
// — the format of `enqueue accounts import`), and serves until interrupted.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/widgetq/widgetq/internal/kommo/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "kommo-sandbox:", err)
		os.Exit(2)
	}
}

const usage = `Usage: kommo-sandbox [flags]

Serves a fake Kommo API v4 (widgets, account, OAuth) that behaves like the
real one as described in shared/kommo-api.md: rate limits judged on arrival,
429s with an HTML or empty body, nginx HTML 403 blocks after repeated
violations, single-use refresh tokens, and injected faults.

Each account is served under {addr}/k/{subdomain}; its credentials are
written as JSON lines to -accounts-out (or stdout). Counters are at
GET /_sandbox/counters; faults are set with PUT /_sandbox/faults
({"account":"","faults":{"error_rate":0.2}}) and cleared with DELETE.

Kommo's calls into an integration are simulated on request:
POST /_sandbox/connect {"client":"id","account":"sub","state":"…"} issues a
code and calls the client's redirect URI (or "url") as Kommo's install
redirect does; POST /_sandbox/revoke {"client","account","url"} revokes the
client's tokens of the account and calls the revoke hook "url" signed;
POST /_sandbox/rename {"account":"sub","to":"new"} changes a subdomain
(tokens name this server as api_domain, which answers
/oauth2/account/current/subdomain).

Flags:
`

type options struct {
	addr, accountsOut, subdomainPrefix      string
	accounts, firstID, rate, globalRate     int
	blockAfter, blockIPAfter, fillerWidgets int
	tokenLifetime, retryAfter               time.Duration
	blockWindow, blockFor                   time.Duration
	latency, latencyJitter, hangFor         time.Duration
	rateLimitBody                           string
	clientID, clientSecret, redirectURI     string
	clients                                 string
	errorRate, resetRate, hangRate, trunc   float64
	errorHTML, delete200                    bool
	seed                                    uint64
}

// run serves until ctx is done. ready, when not nil, receives the address
// served once the listener is up (tests).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) error {
	var o options
	fs := flag.NewFlagSet("kommo-sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8090", "address to listen on (`host:port`; port 0 picks a free one)")
	fs.IntVar(&o.accounts, "accounts", 3, "how many accounts to create")
	fs.IntVar(&o.firstID, "first-account-id", 10001, "ID of the first account; the others follow")
	fs.StringVar(&o.subdomainPrefix, "subdomain-prefix", "acct", "accounts' subdomains are this prefix and the account ID")
	fs.StringVar(&o.accountsOut, "accounts-out", "", "write the accounts' credentials as JSON lines to this `file` (default stdout)")
	fs.StringVar(&o.clientID, "client-id", sandbox.DefaultClientID, "the integration's OAuth client_id")
	fs.StringVar(&o.clientSecret, "client-secret", sandbox.DefaultClientSecret, "the integration's OAuth client_secret")
	fs.StringVar(&o.clients, "clients", "", "several integrations: `id1:secret1,id2:secret2` (instead of -client-id/-client-secret); each account gets tokens of each, one -accounts-out line per (account, client) naming the client as \"integration\"")
	fs.StringVar(&o.redirectURI, "redirect-uri", "", "the integration's redirect_uri; token requests must match it (empty: not checked)")
	fs.DurationVar(&o.tokenLifetime, "token-lifetime", 24*time.Hour, "access token lifetime")
	fs.IntVar(&o.rate, "rate", 7, "requests per second allowed per account, judged on arrival over any second (-1: no limit)")
	fs.IntVar(&o.globalRate, "global-rate", 0, "requests per second allowed over all accounts (0: no limit)")
	fs.StringVar(&o.rateLimitBody, "ratelimit-body", "html", "body of a 429: html, empty, json, or json-retry-after (Kommo's JSON with retry_after in the body, no header)")
	fs.DurationVar(&o.retryAfter, "retry-after", 0, "send Retry-After on 429s, rounded up to seconds (0: don't)")
	fs.IntVar(&o.blockAfter, "block-after", 10, "429s within -block-window an account may take before it is blocked (-1: never block)")
	fs.DurationVar(&o.blockWindow, "block-window", time.Minute, "window in which 429s are counted towards a block")
	fs.DurationVar(&o.blockFor, "block-for", time.Hour, "how long a block lasts (HTML 403 on every request)")
	fs.IntVar(&o.blockIPAfter, "block-ip-after", 0, "IP-block mode: once this many accounts are blocked at once, every account's requests get the block page for -block-for (0: off)")
	fs.DurationVar(&o.latency, "latency", 0, "added to every answer")
	fs.DurationVar(&o.latencyJitter, "latency-jitter", 0, "latency varies uniformly by ± this much")
	fs.Float64Var(&o.errorRate, "error-rate", 0, "share of requests answered with 500/502/503/504")
	fs.BoolVar(&o.errorHTML, "error-html", false, "injected 5xx answers are proxy HTML pages instead of problem+json")
	fs.Float64Var(&o.resetRate, "reset-rate", 0, "share of requests whose connection is reset")
	fs.Float64Var(&o.hangRate, "hang-rate", 0, "share of requests held without an answer")
	fs.DurationVar(&o.hangFor, "hang-for", 2*time.Minute, "how long a hung request is held before a 504")
	fs.Float64Var(&o.trunc, "truncate-rate", 0, "share of successful answers cut off halfway")
	fs.BoolVar(&o.delete200, "delete-200", false, "answer DELETE with 200 {} instead of 204")
	fs.IntVar(&o.fillerWidgets, "filler-widgets", 0, "add this many plain widgets to the catalog, to page through")
	fs.Uint64Var(&o.seed, "seed", 1, "seed for faults and jitter, so a run can be repeated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	switch {
	case o.accounts < 0 || o.accounts > 1_000_000:
		return fmt.Errorf("-accounts must be 0..1000000, got %d", o.accounts)
	case o.firstID <= 0:
		return fmt.Errorf("-first-account-id must be positive, got %d", o.firstID)
	case o.rateLimitBody != "html" && o.rateLimitBody != "empty" && o.rateLimitBody != "json" && o.rateLimitBody != "json-retry-after":
		return fmt.Errorf("-ratelimit-body must be html, empty, json or json-retry-after, got %q", o.rateLimitBody)
	}

	clients, err := parseClients(o.clients, o.redirectURI)
	if err != nil {
		return err
	}
	catalog := sandbox.DefaultCatalog()
	catalog = append(catalog, sandbox.FillerWidgets(o.fillerWidgets, 1000)...)
	sb := sandbox.New(sandbox.Config{
		ClientID: o.clientID, ClientSecret: o.clientSecret, RedirectURI: o.redirectURI, Clients: clients,
		TokenLifetime: o.tokenLifetime, RatePerSecond: o.rate, GlobalRatePerSecond: o.globalRate,
		RateLimitBody: o.rateLimitBody, RetryAfter: o.retryAfter,
		BlockAfter: o.blockAfter, BlockWindow: o.blockWindow, BlockFor: o.blockFor, BlockIPAfter: o.blockIPAfter,
		Latency: o.latency, LatencyJitter: o.latencyJitter, DeleteAnswer200: o.delete200,
		Widgets: catalog, Seed: o.seed,
	})
	defer sb.Close()
	if o.errorRate+o.resetRate+o.hangRate+o.trunc > 0 {
		if err := sb.SetFaults("", sandbox.Faults{ErrorRate: o.errorRate, ErrorHTML: o.errorHTML, ResetRate: o.resetRate,
			HangRate: o.hangRate, HangFor: sandbox.Duration(o.hangFor), TruncateRate: o.trunc}); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	defer ln.Close()
	serverURL := "http://" + ln.Addr().String()
	sb.SetAPIDomain(ln.Addr().String()) // tokens name it as api_domain

	out := stdout
	if o.accountsOut != "" {
		f, err := os.OpenFile(o.accountsOut, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("accounts-out: %w", err)
		}
		defer f.Close()
		out = f
	}
	enc := json.NewEncoder(out)
	for i := range o.accounts {
		id := o.firstID + i
		sub := fmt.Sprintf("%s%d", o.subdomainPrefix, id)
		if err := sb.AddAccount(sandbox.AccountSpec{ID: id, Subdomain: sub}); err != nil {
			return err
		}
		for _, c := range sb.Clients() {
			t, err := sb.IssueTokensFor(c.ID, sub, 0)
			if err != nil {
				return err
			}
			line := map[string]any{"account_id": id, "subdomain": sub, "base_url": sandbox.BaseURL(serverURL, sub),
				"access_token": t.AccessToken, "refresh_token": t.RefreshToken, "expires_at": t.ExpiresAt.Format(time.RFC3339)}
			if len(clients) > 0 {
				line["integration"] = c.ID
			}
			if err := enc.Encode(line); err != nil {
				return fmt.Errorf("write accounts: %w", err)
			}
		}
	}
	fmt.Fprintf(stderr, "kommo-sandbox: serving %d accounts at %s (per-account rate %d/s, global %d/s); counters at %s/_sandbox/counters\n",
		o.accounts, serverURL, o.rate, o.globalRate, serverURL)

	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sb.Close() // end hung requests so shutdown does not wait for them
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !strings.Contains(err.Error(), "closed") {
		return err
	}
	return nil
}

// parseClients reads -clients: id:secret pairs, comma-separated, IDs
// unique (none: nil, the single -client-id client).
func parseClients(v, redirectURI string) ([]sandbox.Client, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []sandbox.Client
	seen := map[string]bool{}
	for i, pair := range strings.Split(v, ",") {
		id, secret, ok := strings.Cut(strings.TrimSpace(pair), ":")
		if !ok || id == "" || secret == "" {
			return nil, fmt.Errorf("-clients: entry %d: want id:secret", i+1)
		}
		if seen[id] {
			return nil, fmt.Errorf("-clients: client %q is listed twice", id)
		}
		seen[id] = true
		out = append(out, sandbox.Client{ID: id, Secret: secret, RedirectURI: redirectURI})
	}
	return out, nil
}
