package kommo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	sb    *sandbox.Server
	srv   *httptest.Server
	clk   *fakeClock
	admin sandbox.Tokens
	user  sandbox.Tokens
}

func newEnv(t *testing.T, cfg sandbox.Config) *env {
	t.Helper()
	e := &env{clk: &fakeClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}}
	if cfg.Now == nil {
		cfg.Now = e.clk.Now
	}
	if cfg.RedirectURI == "" {
		cfg.RedirectURI = "https://widgetq.example/oauth"
	}
	e.sb = sandbox.New(cfg)
	for _, a := range []sandbox.AccountSpec{{ID: 1001, Subdomain: "alpha"}, {ID: 1002, Subdomain: "unpaid", Unpaid: true}} {
		if err := e.sb.AddAccount(a); err != nil {
			t.Fatal(err)
		}
	}
	e.srv = httptest.NewServer(e.sb)
	t.Cleanup(func() { e.sb.Close(); e.srv.Close() })
	e.admin, _ = e.sb.IssueTokens("alpha", 0)
	e.user, _ = e.sb.IssueTokens("alpha", 10012)
	return e
}

func (e *env) base(sub string) string { return sandbox.BaseURL(e.srv.URL, sub) }

func (e *env) client(t *testing.T, sub, token string, opts ...kommo.Option) *kommo.Client {
	t.Helper()
	c, err := kommo.NewClient(e.base(sub), append([]kommo.Option{kommo.WithAuth(kommo.StaticToken(token)), kommo.WithHTTPClient(e.srv.Client())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) oauth() *kommo.OAuthConfig {
	return &kommo.OAuthConfig{ClientID: sandbox.DefaultClientID, ClientSecret: sandbox.DefaultClientSecret,
		RedirectURL: "https://widgetq.example/oauth", HTTPClient: e.srv.Client()}
}

var seedSettings = json.RawMessage(`{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`)

func TestClientAgainstSandbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Config{RatePerSecond: -1, Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(300, 500)...)})
	ctx := context.Background()
	c := e.client(t, "alpha", e.admin.AccessToken)

	acct, _, err := c.GetAccount(ctx)
	if err != nil || acct.ID != 1001 || acct.Subdomain != "alpha" || acct.CurrentUserID != 10011 {
		t.Fatalf("account %+v %v", acct, err)
	}
	all, err := c.ListWidgets(ctx, kommo.ListOptions{})
	if err != nil || len(all) != 303 {
		t.Fatalf("listed %d widgets (%v), want 303 over two pages", len(all), err)
	}
	small, err := c.ListWidgets(ctx, kommo.ListOptions{Limit: 7})
	if err != nil || len(small) != 303 {
		t.Fatalf("listed %d widgets in pages of 7 (%v)", len(small), err)
	}
	w, _, err := c.GetWidget(ctx, sandbox.WidgetAsterisk)
	if err != nil || w.Rating != (kommo.Rating{Value: 2.8, Valid: true}) || w.Version != "1.0.3" || bool(w.IsActiveInAccount) || w.PipelineID != nil || len(w.Settings) != 0 {
		t.Fatalf("asterisk %+v %v", w, err)
	}
	if err := kommo.ValidateSettings(w.SettingsTemplate, seedSettings); err != nil {
		t.Fatalf("the seed's settings fail the sandbox's template: %v", err)
	}
	lp, _, err := c.GetWidget(ctx, sandbox.WidgetTelephonyLP)
	if err != nil || lp.Version != "7" || lp.Rating.Value != 4.5 || lp.ClientUUID == nil {
		t.Fatalf("telephony %+v %v", lp, err)
	}
	installed, resp, err := c.InstallWidget(ctx, sandbox.WidgetAsterisk, seedSettings, "eXaMp1E")
	if err != nil || !bool(installed.IsActiveInAccount) || installed.Code != sandbox.WidgetAsterisk || installed.ID == 0 || installed.Version == "" || resp.RequestID == "" {
		t.Fatalf("install %+v %v", installed, err)
	}
	w, _, _ = c.GetWidget(ctx, sandbox.WidgetAsterisk)
	if !bool(w.IsActiveInAccount) || string(w.Settings["login"]) != `"example"` {
		t.Fatalf("after install: %+v", w)
	}
	if resp, err := c.UninstallWidget(ctx, sandbox.WidgetAsterisk); err != nil || resp.StatusCode != 204 {
		t.Fatalf("uninstall %v %v", resp, err)
	}
	if _, ok := e.sb.Installed("alpha", sandbox.WidgetAsterisk); ok {
		t.Fatal("still installed")
	}
}

func TestErrorClassesAgainstSandbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name    string
		cfg     sandbox.Config
		prepare func(e *env)
		call    func(e *env, c *kommo.Client) error
		want    kommo.Class
		check   func(t *testing.T, ke *kommo.Error)
	}{
		{name: "400 invalid settings", want: kommo.ClassInvalid,
			call: func(e *env, c *kommo.Client) error {
				_, _, err := c.InstallWidget(ctx, sandbox.WidgetAsterisk, json.RawMessage(`{"login":"x","password":"hunter22"}`), "hunter22")
				return err
			},
			check: func(t *testing.T, ke *kommo.Error) {
				if len(ke.ValidationErrors) != 1 || ke.ValidationErrors[0].Path != "phones" || ke.ValidationErrors[0].Code != "NotBlank" {
					t.Fatalf("validation errors %+v", ke.ValidationErrors)
				}
			}},
		{name: "401 unknown token", want: kommo.ClassUnauthorized,
			call: func(e *env, c *kommo.Client) error {
				_, _, err := e.client(t, "alpha", "at_nope").GetAccount(ctx)
				return err
			},
			check: func(t *testing.T, ke *kommo.Error) {
				if ke.Title != "Unauthorized" || ke.RequestID == "" {
					t.Fatalf("401: %+v", ke)
				}
			}},
		{name: "402 unpaid", want: kommo.ClassPaymentRequired,
			call: func(e *env, c *kommo.Client) error {
				tok, _ := e.sb.IssueTokens("unpaid", 0)
				_, _, err := e.client(t, "unpaid", tok.AccessToken).GetAccount(ctx)
				return err
			}},
		{name: "403 not an administrator", want: kommo.ClassForbidden,
			call: func(e *env, c *kommo.Client) error {
				_, _, err := e.client(t, "alpha", e.user.AccessToken).InstallWidget(ctx, sandbox.WidgetAsterisk, seedSettings)
				return err
			}},
		{name: "403 HTML block", want: kommo.ClassBlocked,
			prepare: func(e *env) { e.sb.Block("alpha", time.Hour) },
			call: func(e *env, c *kommo.Client) error {
				_, _, err := c.GetAccount(ctx)
				return err
			},
			check: func(t *testing.T, ke *kommo.Error) {
				if ke.Title != "403 Forbidden" || ke.ContentType != "text/html" {
					t.Fatalf("block: %+v", ke)
				}
			}},
		{name: "404 unknown widget", want: kommo.ClassNotFound,
			call: func(e *env, c *kommo.Client) error { _, _, err := c.GetWidget(ctx, "no_such"); return err }},
		{name: "404 unavailable widget", want: kommo.ClassNotFound,
			call: func(e *env, c *kommo.Client) error {
				_, _, err := c.InstallWidget(ctx, sandbox.WidgetUnavailable, nil)
				return err
			}},
		{name: "429 HTML with Retry-After", want: kommo.ClassRateLimited,
			cfg: sandbox.Config{RatePerSecond: 1, RetryAfter: 3 * time.Second},
			call: func(e *env, c *kommo.Client) error {
				if _, _, err := c.GetAccount(ctx); err != nil {
					return fmt.Errorf("first request: %w", err)
				}
				_, _, err := c.GetAccount(ctx)
				return err
			},
			check: func(t *testing.T, ke *kommo.Error) {
				if ke.RetryAfter != 3*time.Second || ke.Title != "429 Too Many Requests" {
					t.Fatalf("429: %+v", ke)
				}
			}},
		{name: "429 empty", want: kommo.ClassRateLimited,
			cfg: sandbox.Config{RatePerSecond: 1, RateLimitBody: "empty"},
			call: func(e *env, c *kommo.Client) error {
				_, _, _ = c.GetAccount(ctx)
				_, _, err := c.GetAccount(ctx)
				return err
			}},
		{name: "503 HTML", want: kommo.ClassServer,
			prepare: func(e *env) {
				_ = e.sb.SetFaults("", sandbox.Faults{ErrorRate: 1, ErrorHTML: true, ErrorStatuses: []int{503}})
			},
			call: func(e *env, c *kommo.Client) error { _, _, err := c.GetAccount(ctx); return err }},
		{name: "reset", want: kommo.ClassNetwork,
			prepare: func(e *env) { _ = e.sb.SetFaults("", sandbox.Faults{ResetRate: 1}) },
			call:    func(e *env, c *kommo.Client) error { _, _, err := c.GetAccount(ctx); return err }},
		{name: "hang bounded by the client timeout", want: kommo.ClassNetwork,
			prepare: func(e *env) { _ = e.sb.SetFaults("", sandbox.Faults{HangRate: 1}) },
			call: func(e *env, c *kommo.Client) error {
				_, _, err := e.client(t, "alpha", e.admin.AccessToken, kommo.WithTimeout(100*time.Millisecond)).GetAccount(ctx)
				return err
			}},
		{name: "truncated body", want: kommo.ClassNetwork,
			prepare: func(e *env) { _ = e.sb.SetFaults("", sandbox.Faults{TruncateRate: 1}) },
			call: func(e *env, c *kommo.Client) error {
				_, _, err := c.InstallWidget(ctx, sandbox.WidgetAsterisk, seedSettings, "eXaMp1E")
				return err
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			if cfg.RatePerSecond == 0 {
				cfg.RatePerSecond = -1
			}
			e := newEnv(t, cfg)
			if tc.prepare != nil {
				tc.prepare(e)
			}
			err := tc.call(e, e.client(t, "alpha", e.admin.AccessToken))
			var ke *kommo.Error
			if !errors.As(err, &ke) {
				t.Fatalf("err %v is not a *kommo.Error", err)
			}
			if ke.Class != tc.want || ke.Retryable() != tc.want.Retryable() {
				t.Fatalf("class %s, want %s: %v", ke.Class, tc.want, err)
			}
			for _, secret := range []string{e.admin.AccessToken, e.user.AccessToken, "eXaMp1E", "hunter22"} {
				if strings.Contains(fmt.Sprintf("%v %+v", err, *ke), secret) {
					t.Fatalf("secret %q in %v", secret, err)
				}
			}
			if tc.check != nil {
				tc.check(t, ke)
			}
		})
	}
}

// memStore is a TokenStore that records what happened, in order, with a
// shared log so two "processes" can be compared.
type memStore struct {
	mu    sync.Mutex
	tok   kommo.Token
	log   *eventLog
	saves int
}

func (s *memStore) LoadToken(context.Context) (*kommo.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tok
	return &t, nil
}

func (s *memStore) SaveToken(_ context.Context, t *kommo.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tok = *t
	s.saves++
	s.log.add("save " + t.AccessToken)
	return nil
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) { l.mu.Lock(); defer l.mu.Unlock(); l.events = append(l.events, e) }
func (l *eventLog) index(e string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.events {
		if x == e {
			return i
		}
	}
	return -1
}

// recordingTransport logs the bearer token of every API request.
type recordingTransport struct{ log *eventLog }

func (r recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		r.log.add("send " + tok)
	}
	return http.DefaultTransport.RoundTrip(req)
}

// muLocker is a Locker for processes that share memory; Redis's comes later.
type muLocker struct{ mu sync.Mutex }

func (l *muLocker) Lock(context.Context) (func(), error) { l.mu.Lock(); return l.mu.Unlock, nil }

func TestOAuthExchangeAndRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Config{RatePerSecond: -1})
	ctx := context.Background()
	code, _ := e.sb.IssueCode("alpha", 0)
	tok, err := e.oauth().Exchange(ctx, e.base("alpha"), code)
	if err != nil || tok.AccessToken == "" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("exchange: %v %v", tok, err)
	}
	if _, err := e.oauth().Exchange(ctx, e.base("alpha"), code); kommo.ClassOf(err) != kommo.ClassTokenRevoked {
		t.Fatalf("code reuse: %v", err)
	}
	fresh, err := e.oauth().Refresh(ctx, e.base("alpha"), tok.RefreshToken)
	if err != nil || fresh.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v %v", fresh, err)
	}
	_, err = e.oauth().Refresh(ctx, e.base("alpha"), tok.RefreshToken)
	var ke *kommo.Error
	if !errors.As(err, &ke) || ke.Class != kommo.ClassTokenRevoked || ke.Hint != "Token has been revoked" || ke.Retryable() {
		t.Fatalf("reused refresh token: %v", err)
	}
	if strings.Contains(err.Error(), tok.RefreshToken) || strings.Contains(err.Error(), sandbox.DefaultClientSecret) {
		t.Fatalf("secret in %v", err)
	}
	// One token request per refresh, even refused: no auth-style probing
	// that would resend the single-use token.
	c := e.sb.Counters()
	if n := c.Requests["POST /oauth2/access_token"]; n["200"] != 2 || n["401"] != 1 || n["400"] != 1 {
		t.Fatalf("token endpoint saw %v", n)
	}
	// A wrong client secret is not a revoked token.
	bad := e.oauth()
	bad.ClientSecret = "wrong"
	if _, err := bad.Refresh(ctx, e.base("alpha"), fresh.RefreshToken); kommo.ClassOf(err) != kommo.ClassUnauthorized {
		t.Fatalf("bad client: %v", err)
	}
	// A wrong redirect URI is refused as invalid, and the token survives.
	badURI := e.oauth()
	badURI.RedirectURL = "https://elsewhere.example/"
	if _, err := badURI.Refresh(ctx, e.base("alpha"), fresh.RefreshToken); kommo.ClassOf(err) != kommo.ClassInvalid {
		t.Fatalf("bad redirect: %v", err)
	}
	if _, err := e.oauth().Refresh(ctx, e.base("alpha"), fresh.RefreshToken); err != nil {
		t.Fatalf("refresh after refused attempts: %v", err)
	}
	// The token endpoint's blocks are blocks.
	e.sb.Block("alpha", time.Hour)
	if _, err := e.oauth().Refresh(ctx, e.base("alpha"), "rt_x"); kommo.ClassOf(err) != kommo.ClassBlocked {
		t.Fatalf("blocked token endpoint: %v", err)
	}
}

// refreshEnv is a sandbox whose administrator's token lasts an hour, a
// store holding that pair, and an OAuth config whose requests are logged.
func refreshEnv(t *testing.T) (*env, *eventLog, *memStore, *kommo.OAuthConfig) {
	t.Helper()
	e := newEnv(t, sandbox.Config{RatePerSecond: -1, TokenLifetime: time.Hour})
	log := &eventLog{}
	store := &memStore{tok: kommo.Token{AccessToken: e.admin.AccessToken, RefreshToken: e.admin.RefreshToken, Expiry: e.admin.ExpiresAt}, log: log}
	oauth := e.oauth()
	oauth.HTTPClient = &http.Client{Transport: recordingTransport{log}}
	return e, log, store, oauth
}

func TestRefreshingAuthStoresTheNewPairBeforeUsingIt(t *testing.T) {
	t.Parallel()
	e, log, store, oauth := refreshEnv(t)
	auth := &kommo.RefreshingAuth{OAuth: oauth, BaseURL: e.base("alpha"), Store: store, Now: e.clk.Now}
	c, _ := kommo.NewClient(e.base("alpha"), kommo.WithAuth(auth), kommo.WithHTTPClient(&http.Client{Transport: recordingTransport{log}}))
	ctx := context.Background()
	if _, _, err := c.GetAccount(ctx); err != nil {
		t.Fatal(err)
	}
	if store.saves != 0 {
		t.Fatal("refreshed a valid token")
	}
	// Within the leeway of expiry: refreshed before the request.
	e.clk.Add(59*time.Minute + 30*time.Second)
	if _, _, err := c.GetAccount(ctx); err != nil {
		t.Fatal(err)
	}
	newTok := store.tok.AccessToken
	if store.saves != 1 || newTok == e.admin.AccessToken {
		t.Fatalf("saves %d", store.saves)
	}
	if s, u := log.index("save "+newTok), log.index("send "+newTok); s < 0 || u < 0 || s > u {
		t.Fatalf("events %v: the new token was used before it was stored", log.events)
	}
	// The server expiring a token early: one 401, one refresh, success.
	e.sb.ExpireAccessTokens("alpha")
	if _, _, err := c.GetAccount(ctx); err != nil {
		t.Fatalf("after a 401: %v", err)
	}
	if store.saves != 2 {
		t.Fatalf("saves %d after a 401, want 2", store.saves)
	}
	// The refresh token revoked: a permanent token_revoked.
	e.sb.RevokeTokens("alpha")
	_, _, err := c.GetAccount(ctx)
	if kommo.ClassOf(err) != kommo.ClassTokenRevoked {
		t.Fatalf("revoked: %v", err)
	}
}

// TestRefreshingAuthWithACurrentReadWithoutItsRefreshToken: the worker
// hands RefreshingAuth the pair it read with the task's state, without
// the refresh token. RefreshStored says the store holds one: a token about
// to expire is refreshed before the request, as with the whole pair;
// without it there is nothing to refresh with, and the old token goes out
// for Kommo to judge.
func TestRefreshingAuthWithACurrentReadWithoutItsRefreshToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		refreshStored bool
		wantSaves     int
	}{{true, 1}, {false, 0}} {
		t.Run(fmt.Sprintf("RefreshStored=%v", tc.refreshStored), func(t *testing.T) {
			t.Parallel()
			e, log, store, oauth := refreshEnv(t)
			auth := &kommo.RefreshingAuth{OAuth: oauth, BaseURL: e.base("alpha"), Store: store, Now: e.clk.Now,
				Current: &kommo.Token{AccessToken: e.admin.AccessToken, Expiry: e.admin.ExpiresAt}, RefreshStored: tc.refreshStored}
			c, _ := kommo.NewClient(e.base("alpha"), kommo.WithAuth(auth), kommo.WithHTTPClient(&http.Client{Transport: recordingTransport{log}}))
			e.clk.Add(59*time.Minute + 30*time.Second) // within the leeway, not expired yet
			if _, _, err := c.GetAccount(context.Background()); err != nil {
				t.Fatal(err)
			}
			if store.saves != tc.wantSaves {
				t.Fatalf("%d refreshes stored, want %d", store.saves, tc.wantSaves)
			}
			sentOld := log.index("send "+e.admin.AccessToken) >= 0
			if sentOld == tc.refreshStored {
				t.Fatalf("the old access token sent: %v; events %d", sentOld, len(log.events))
			}
		})
	}
}

func TestConcurrentRefreshesAcrossProcessesSpendTheTokenOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Config{RatePerSecond: -1, TokenLifetime: time.Hour})
	// One store and one lock, as Redis will be; two auths, as two
	// worker processes would have; many requests in each.
	store := &memStore{tok: kommo.Token{AccessToken: e.admin.AccessToken, RefreshToken: e.admin.RefreshToken, Expiry: e.admin.ExpiresAt}, log: &eventLog{}}
	lock := &muLocker{}
	var clients []*kommo.Client
	for range 2 {
		auth := &kommo.RefreshingAuth{OAuth: e.oauth(), BaseURL: e.base("alpha"), Store: store, Lock: lock, Now: e.clk.Now}
		c, _ := kommo.NewClient(e.base("alpha"), kommo.WithAuth(auth), kommo.WithHTTPClient(e.srv.Client()))
		clients = append(clients, c)
	}
	ctx := context.Background()
	for _, c := range clients {
		if _, _, err := c.GetAccount(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.clk.Add(2 * time.Hour) // every token held is now expired
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := clients[i%2].GetAccount(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a := e.sb.Counters().Accounts["1001"]
	if a.Refreshes != 1 || a.RevokedReuses != 0 || store.saves != 1 {
		t.Fatalf("refreshes %d, revoked reuses %d, saves %d; want 1, 0, 1", a.Refreshes, a.RevokedReuses, store.saves)
	}
}

func TestLongLivedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Config{RatePerSecond: -1})
	ll, _ := e.sb.IssueLongLived("alpha", 0, 24*time.Hour)
	c := e.client(t, "alpha", ll)
	if _, _, err := c.GetAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(25 * time.Hour)
	_, _, err := c.GetAccount(context.Background())
	if kommo.ClassOf(err) != kommo.ClassUnauthorized {
		t.Fatalf("expired long-lived token: %v", err)
	}
	// A stored pair without a refresh token behaves the same.
	store := &memStore{tok: kommo.Token{AccessToken: ll}, log: &eventLog{}}
	c2, _ := kommo.NewClient(e.base("alpha"), kommo.WithHTTPClient(e.srv.Client()),
		kommo.WithAuth(&kommo.RefreshingAuth{OAuth: e.oauth(), BaseURL: e.base("alpha"), Store: store, Now: e.clk.Now}))
	if _, _, err := c2.GetAccount(context.Background()); kommo.ClassOf(err) != kommo.ClassUnauthorized || store.saves != 0 {
		t.Fatalf("long-lived through RefreshingAuth: %v, saves %d", err, store.saves)
	}
}
