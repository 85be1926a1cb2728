// Package sandbox is a fake Kommo that behaves like shared/kommo-api.md,
// row by row: accounts with admin and non-admin users, a widget catalog with
// settings templates, install state, OAuth with expiring access tokens and
// single-use refresh tokens, per-account and global rate limits whose
// repeated violation blocks the account with nginx's HTML 403, and injected
// faults (latency, 5xx, resets, hung requests, truncated bodies).
//
// It shares no types with the client in package kommo: it writes Kommo's
// JSON, odd shapes included, from its own maps, so a decoding bug in the
// client cannot hide behind a matching bug here.
//
// Each account lives under its own base URL, BaseURL(server, subdomain) =
// {server}/k/{subdomain}; a request whose Host starts with an account's
// subdomain (acme.localhost:8090) reaches it at /api/v4/… too. Counters are
// readable from Go (Counters) and at GET /_sandbox/counters.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config tunes a sandbox. The zero value is a Kommo with its documented
// limits and the default catalog.
type Config struct {
	// ClientID, ClientSecret and RedirectURI are the integration the
	// sandbox knows when Clients is empty (defaults: DefaultClientID,
	// DefaultClientSecret; an empty RedirectURI is not checked).
	ClientID, ClientSecret, RedirectURI string
	// Clients are the integrations the sandbox knows; the first is the one
	// IssueTokens issues to. Tokens are per (client, account): a refresh
	// token refreshes only with its own client's credentials, and the rate
	// limit is per (client, account) under AccountRatePerSecond.
	Clients []Client
	// AccountRatePerSecond caps one account over all clients (default 50;
	// negative: none).
	AccountRatePerSecond int
	// TokenLifetime is an access token's life (default 24h, Kommo's).
	TokenLifetime time.Duration
	// RatePerSecond is each account's limit, judged on arrival over any one
	// second (default 7; negative: none).
	RatePerSecond int
	// GlobalRatePerSecond caps all accounts together (0: none).
	GlobalRatePerSecond int
	// RateLimitBody is a 429's body: "html" (default, nginx's page),
	// "empty", "json" (problem+json), or "json-retry-after": Kommo's JSON
	// with the wait as "retry_after" seconds in the body and no header
	// (Kommo's HTTP-codes page; RetryAfter, default 1s).
	RateLimitBody string
	// RetryAfter, when positive, is sent on 429s as whole seconds.
	RetryAfter time.Duration
	// BlockAfter is how many 429s within BlockWindow an account may take;
	// one more blocks it for BlockFor (defaults 10, 1 min, 1 h; negative
	// BlockAfter: never block).
	BlockAfter  int
	BlockWindow time.Duration
	BlockFor    time.Duration
	// BlockIPAfter, when positive, is the IP-block mode: once this many
	// accounts are blocked at the same time, the caller's IP is blocked
	// for BlockFor — nginx's HTML 403 for every request of every account,
	// the token endpoint too (Kommo's limitations page).
	BlockIPAfter int
	// Latency and LatencyJitter delay every API answer by Latency ±
	// LatencyJitter (uniform).
	Latency, LatencyJitter time.Duration
	// DeleteAnswer200 answers DELETE with 200 {} instead of 204.
	DeleteAnswer200 bool
	// Widgets is the catalog (default DefaultCatalog()).
	Widgets []Widget
	// Seed seeds fault injection and jitter (0: a fixed default), so a run
	// can be repeated.
	Seed uint64
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults for the sandbox's OAuth client.
const (
	DefaultClientID     = "widgetq-sandbox"
	DefaultClientSecret = "sandbox-client-secret"
)

// Client is one integration's OAuth client.
type Client struct {
	ID, Secret string
	// RedirectURI, when set, must come with every token request.
	RedirectURI string
}

func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.ClientSecret == "" {
		c.ClientSecret = DefaultClientSecret
	}
	if len(c.Clients) == 0 {
		c.Clients = []Client{{ID: c.ClientID, Secret: c.ClientSecret, RedirectURI: c.RedirectURI}}
	}
	c.ClientID = c.Clients[0].ID
	if c.AccountRatePerSecond == 0 {
		c.AccountRatePerSecond = 50
	}
	if c.TokenLifetime <= 0 {
		c.TokenLifetime = 24 * time.Hour
	}
	if c.RatePerSecond == 0 {
		c.RatePerSecond = 7
	}
	if c.RateLimitBody == "" {
		c.RateLimitBody = "html"
	}
	if c.BlockAfter == 0 {
		c.BlockAfter = 10
	}
	if c.BlockWindow <= 0 {
		c.BlockWindow = time.Minute
	}
	if c.BlockFor <= 0 {
		c.BlockFor = time.Hour
	}
	if c.Widgets == nil {
		c.Widgets = DefaultCatalog()
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// User is an account's user; only administrators may install widgets.
type User struct {
	ID    int  `json:"id"`
	Admin bool `json:"admin"`
}

// AccountSpec describes an account to create.
type AccountSpec struct {
	ID        int
	Subdomain string
	Name      string
	// Users default to one administrator (ID*10+1) and one plain user
	// (ID*10+2).
	Users []User
	// Unpaid accounts answer 402 to every API call.
	Unpaid bool
	// AllowedIPs, when set, is the account's API whitelist: calls from
	// other addresses get a problem+json 403.
	AllowedIPs []string
}

type account struct {
	AccountSpec
	installed map[string]json.RawMessage // widget code → settings

	arrivals     ring            // admitted requests of the first client, for the rate limit
	byClient     map[string]ring // other clients' admitted requests
	total        ring            // admitted requests of all clients
	violations   []time.Time     // recent 429s
	blockedUntil time.Time
	inflight     int
	stats        *AccountCounters
	faults       *faultState
}

type accessToken struct {
	acct   *account
	client string
	userID int
	expiry time.Time
}

type grant struct {
	acct   *account
	client string
	userID int
	used   bool
	expiry time.Time // codes only
}

// Server is the sandbox: an http.Handler. Create it with New; it is safe
// for concurrent use.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	closed  chan struct{}
	closeMu sync.Once

	mu       sync.Mutex
	rng      *mrand.Rand
	accounts map[string]*account // by subdomain
	byID     map[int]*account
	widgets  map[string]*Widget
	order    []*Widget
	access   map[string]*accessToken
	refresh  map[string]*grant
	codes    map[string]*grant
	global   ring
	ipBlock  time.Time   // until when every request gets the block page
	faults   *faultState // for every account without its own
	counters countersState
	seq      uint64
	// apiDomain is the host:port tokens name as api_domain.
	apiDomain string
}

// New returns a sandbox with no accounts.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:      cfg,
		closed:   make(chan struct{}),
		rng:      mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		accounts: map[string]*account{},
		byID:     map[int]*account{},
		widgets:  map[string]*Widget{},
		access:   map[string]*accessToken{},
		refresh:  map[string]*grant{},
		codes:    map[string]*grant{},
		counters: newCountersState(),
	}
	if cfg.GlobalRatePerSecond > 0 {
		s.global = newRing(cfg.GlobalRatePerSecond)
	}
	for i := range cfg.Widgets {
		w := cfg.Widgets[i]
		s.widgets[w.Code] = &w
		s.order = append(s.order, &w)
	}
	s.routes()
	return s
}

// Close ends every hung or delayed request at once. The handler keeps
// answering afterwards.
func (s *Server) Close() { s.closeMu.Do(func() { close(s.closed) }) }

// BaseURL returns an account's API base on a sandbox served at serverURL.
func BaseURL(serverURL, subdomain string) string {
	return strings.TrimRight(serverURL, "/") + "/k/" + subdomain
}

// AddAccount creates an account. Subdomains and IDs must be unique.
func (s *Server) AddAccount(spec AccountSpec) error {
	if spec.ID <= 0 {
		return fmt.Errorf("sandbox: account ID must be positive, got %d", spec.ID)
	}
	if spec.Subdomain == "" || strings.ContainsAny(spec.Subdomain, "/.?#") {
		return fmt.Errorf("sandbox: account %d: bad subdomain %q", spec.ID, spec.Subdomain)
	}
	if spec.Name == "" {
		spec.Name = "Sandbox " + spec.Subdomain
	}
	if len(spec.Users) == 0 {
		spec.Users = []User{{ID: spec.ID*10 + 1, Admin: true}, {ID: spec.ID*10 + 2}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[spec.Subdomain]; ok {
		return fmt.Errorf("sandbox: subdomain %q exists", spec.Subdomain)
	}
	if _, ok := s.byID[spec.ID]; ok {
		return fmt.Errorf("sandbox: account %d exists", spec.ID)
	}
	a := &account{AccountSpec: spec, installed: map[string]json.RawMessage{}, stats: &AccountCounters{Subdomain: spec.Subdomain}, byClient: map[string]ring{}}
	if s.cfg.RatePerSecond > 0 {
		a.arrivals = newRing(s.cfg.RatePerSecond)
	}
	if s.cfg.AccountRatePerSecond > 0 && len(s.cfg.Clients) > 1 {
		a.total = newRing(s.cfg.AccountRatePerSecond)
	}
	s.accounts[spec.Subdomain] = a
	s.byID[spec.ID] = a
	s.counters.accounts[spec.ID] = a.stats
	return nil
}

// Tokens is a token pair the sandbox issued.
type Tokens struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// IssueTokens gives a user of an account a fresh token pair of the first
// client, as a finished authorization would. userID 0 means the account's
// first administrator.
func (s *Server) IssueTokens(subdomain string, userID int) (Tokens, error) {
	return s.IssueTokensFor(s.cfg.Clients[0].ID, subdomain, userID)
}

// IssueTokensFor is IssueTokens for the client with ID clientID.
func (s *Server) IssueTokensFor(clientID, subdomain string, userID int) (Tokens, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clientByID(clientID) == nil {
		return Tokens{}, fmt.Errorf("sandbox: no client %q", clientID)
	}
	a, uid, err := s.userLocked(subdomain, userID)
	if err != nil {
		return Tokens{}, err
	}
	return s.issueLocked(a, clientID, uid), nil
}

// Clients returns the integrations the sandbox knows.
func (s *Server) Clients() []Client { return slices.Clone(s.cfg.Clients) }

// clientByID finds a client; the list is set at New and never changes, so
// no lock is needed.
func (s *Server) clientByID(id string) *Client {
	for i := range s.cfg.Clients {
		if s.cfg.Clients[i].ID == id {
			return &s.cfg.Clients[i]
		}
	}
	return nil
}

// IssueLongLived gives a user a long-lived token (no refresh token) that
// expires after ttl.
func (s *Server) IssueLongLived(subdomain string, userID int, ttl time.Duration) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, uid, err := s.userLocked(subdomain, userID)
	if err != nil {
		return "", err
	}
	tok := "ll_" + randomHex(24)
	s.access[tok] = &accessToken{acct: a, client: s.cfg.Clients[0].ID, userID: uid, expiry: s.cfg.Now().Add(ttl)}
	return tok, nil
}

// IssueCode gives an authorization code of the first client (valid 20
// minutes, single use) for a user, as Kommo's redirect would.
func (s *Server) IssueCode(subdomain string, userID int) (string, error) {
	return s.IssueCodeFor(s.cfg.Clients[0].ID, subdomain, userID)
}

// IssueCodeFor is IssueCode for the client with ID clientID.
func (s *Server) IssueCodeFor(clientID, subdomain string, userID int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clientByID(clientID) == nil {
		return "", fmt.Errorf("sandbox: no client %q", clientID)
	}
	a, uid, err := s.userLocked(subdomain, userID)
	if err != nil {
		return "", err
	}
	code := "def" + randomHex(32)
	s.codes[code] = &grant{acct: a, client: clientID, userID: uid, expiry: s.cfg.Now().Add(20 * time.Minute)}
	return code, nil
}

// ExpireAccessTokens makes every access token of an account expire now,
// as if a day had passed.
func (s *Server) ExpireAccessTokens(subdomain string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for _, t := range s.access {
		if t.acct.Subdomain == subdomain {
			t.expiry = now.Add(-time.Second)
		}
	}
}

// RevokeTokens revokes every token of an account, as a user uninstalling
// the integration would.
func (s *Server) RevokeTokens(subdomain string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.access {
		if t.acct.Subdomain == subdomain {
			delete(s.access, k)
		}
	}
	for _, g := range s.refresh {
		if g.acct.Subdomain == subdomain {
			g.used = true
		}
	}
}

// Block blocks an account as repeated violations would; Unblock lifts it,
// as Kommo support does.
func (s *Server) Block(subdomain string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.accounts[subdomain]; a != nil {
		a.blockedUntil = s.cfg.Now().Add(d)
		a.stats.Blocks++
		s.counters.total.Blocks++
		s.ipBlockLocked(s.cfg.Now())
	}
}

// Unblock lifts an account's block and forgets its violations.
func (s *Server) Unblock(subdomain string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.accounts[subdomain]; a != nil {
		a.blockedUntil = time.Time{}
		a.violations = nil
	}
}

// Installed returns the settings a widget was installed with in an
// account, and whether it is installed.
func (s *Server) Installed(subdomain, code string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[subdomain]
	if a == nil {
		return nil, false
	}
	v, ok := a.installed[code]
	return v, ok
}

func (s *Server) userLocked(subdomain string, userID int) (*account, int, error) {
	a := s.accounts[subdomain]
	if a == nil {
		return nil, 0, fmt.Errorf("sandbox: no account %q", subdomain)
	}
	for _, u := range a.Users {
		if (userID == 0 && u.Admin) || u.ID == userID {
			return a, u.ID, nil
		}
	}
	return nil, 0, fmt.Errorf("sandbox: account %q has no user %d", subdomain, userID)
}

// SetAPIDomain sets the host (host:port) that access tokens issued from now
// on name as their api_domain claim: where the sandbox answers
// /oauth2/account/current/subdomain (its own address).
func (s *Server) SetAPIDomain(hostport string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiDomain = hostport
}

// accessTokenLocked makes an access token shaped like Kommo's: three
// dot-separated parts whose middle one is base64url JSON claims (account,
// client, api_domain). It starts with "at_", so a test can search any text
// for a leaked one.
func (s *Server) accessTokenLocked(a *account, client string) string {
	claims := map[string]any{"account_id": a.ID, "client_uuid": client, "jti": randomHex(8)}
	if s.apiDomain != "" {
		claims["api_domain"] = s.apiDomain
	}
	b, _ := json.Marshal(claims)
	return "at_" + randomHex(24) + "." + base64.RawURLEncoding.EncodeToString(b) + ".sbx"
}

func (s *Server) issueLocked(a *account, client string, userID int) Tokens {
	t := Tokens{AccessToken: s.accessTokenLocked(a, client), RefreshToken: "rt_" + randomHex(24), ExpiresAt: s.cfg.Now().Add(s.cfg.TokenLifetime).Truncate(time.Second)}
	s.access[t.AccessToken] = &accessToken{acct: a, client: client, userID: userID, expiry: t.ExpiresAt}
	s.refresh[t.RefreshToken] = &grant{acct: a, client: client, userID: userID}
	return t
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/k/") && !strings.HasPrefix(r.URL.Path, "/_sandbox/") {
		// Host-based routing: acme.localhost → account acme.
		if sub, _, ok := strings.Cut(r.Host, "."); ok {
			s.mu.Lock()
			_, known := s.accounts[sub]
			s.mu.Unlock()
			if known {
				r2 := r.Clone(r.Context())
				r2.URL.Path = "/k/" + sub + r.URL.Path
				r2.URL.RawPath = ""
				r = r2
			}
		}
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /k/{sub}/api/v4/widgets", s.api(s.listWidgets))
	s.mux.HandleFunc("GET /k/{sub}/api/v4/widgets/{code}", s.api(s.getWidget))
	s.mux.HandleFunc("POST /k/{sub}/api/v4/widgets/{code}", s.api(s.installWidget))
	s.mux.HandleFunc("DELETE /k/{sub}/api/v4/widgets/{code}", s.api(s.uninstallWidget))
	s.mux.HandleFunc("GET /k/{sub}/api/v4/account", s.api(s.getAccount))
	s.mux.HandleFunc("POST /k/{sub}/oauth2/access_token", s.api(s.token))
	s.mux.HandleFunc("GET /oauth2/account/current/subdomain", s.currentSubdomain)
	s.mux.HandleFunc("POST /_sandbox/connect", s.postConnect)
	s.mux.HandleFunc("POST /_sandbox/revoke", s.postRevoke)
	s.mux.HandleFunc("POST /_sandbox/rename", s.postRename)
	s.mux.HandleFunc("GET /_sandbox/counters", s.getCounters)
	s.mux.HandleFunc("POST /_sandbox/counters/reset", s.resetCounters)
	s.mux.HandleFunc("PUT /_sandbox/faults", s.putFaults)
	s.mux.HandleFunc("DELETE /_sandbox/faults", s.deleteFaults)
	s.mux.HandleFunc("POST /_sandbox/unblock/{sub}", s.postUnblock)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeHTML(w, http.StatusNotFound, nginxPage(404, "Not Found"))
	})
}

// exchange is one API request on its way through the sandbox.
type exchange struct {
	w        http.ResponseWriter
	r        *http.Request
	acct     *account
	route    string
	status   int
	truncate bool
	token    *accessToken
	client   string // whose budget it spent ("": unknown)
}

type handler func(x *exchange)

// api wraps an account's endpoint with what every Kommo answer goes
// through: request ID, latency, block, rate limits, faults and counters.
func (s *Server) api(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		route := strings.TrimPrefix(r.Pattern, r.Method+" /k/{sub}")
		route = r.Method + " " + route
		x := &exchange{w: w, r: r, route: route}
		s.mu.Lock()
		s.seq++
		reqID := fmt.Sprintf("sbx%08x%04x", s.seq, s.rng.Uint32()&0xffff)
		a := s.accounts[r.PathValue("sub")]
		if a == nil {
			s.mu.Unlock()
			w.Header().Set("X-Request-Id", reqID)
			writeHTML(w, http.StatusNotFound, nginxPage(404, "Not Found"))
			return
		}
		x.acct = a
		a.inflight++
		if a.inflight > a.stats.MaxConcurrent {
			a.stats.MaxConcurrent = a.inflight
		}
		delay := s.latencyLocked(a)
		// Kommo judges a request on arrival; the latency is the time it
		// then takes to answer, whatever the answer.
		v := s.judgeLocked(x)
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			a.inflight--
			s.countLocked(x)
			s.mu.Unlock()
		}()
		w.Header().Set("X-Request-Id", reqID)

		if delay > 0 && !s.wait(r.Context(), delay) {
			// The client left or the sandbox closed: send nothing.
			x.status = statusGone
			panic(http.ErrAbortHandler)
		}
		if s.act(x, v) {
			h(x)
		}
	}
}

// verdict is what the sandbox decided about a request on its arrival.
type verdict struct {
	blocked, limited bool
	fault            fault
}

// statusGone marks an exchange whose client left or whose connection the
// sandbox cut: nothing was answered.
const statusGone = 0

// judgeLocked applies the block, the limits and the faults to a request as it
// arrives, and counts what it decided.
func (s *Server) judgeLocked(x *exchange) verdict {
	a := x.acct
	now := s.cfg.Now()
	if a.stats.FirstAt.IsZero() {
		a.stats.FirstAt = now
	}
	a.stats.LastAt = now
	if s.counters.firstAt.IsZero() {
		s.counters.firstAt = now
	}
	s.counters.lastAt = now
	if now.Before(s.ipBlock) || now.Before(a.blockedUntil) {
		a.stats.BlockedAnswers++
		s.counters.total.BlockedAnswers++
		return verdict{blocked: true}
	}
	// The client's budget in the account, then the account's over all
	// clients, then the global one; a refusal gives back what was taken.
	client := s.clientOfLocked(x.r)
	x.client = client
	own := &a.arrivals
	if client != "" && client != s.cfg.Clients[0].ID && a.arrivals.size() > 0 {
		r, ok := a.byClient[client]
		if !ok {
			r = newRing(s.cfg.RatePerSecond)
		}
		defer func() { a.byClient[client] = r }()
		own = &r
	}
	limited := false
	if own.size() > 0 && !own.admit(now) {
		limited = true
	}
	if !limited && a.total.size() > 0 && !a.total.admit(now) {
		limited = true
		own.unadmit()
	}
	if !limited && s.global.size() > 0 && !s.global.admit(now) {
		limited = true
		// The account's slot was taken; give it back.
		own.unadmit()
		a.total.unadmit()
	}
	if limited {
		a.stats.RateLimited++
		s.counters.total.RateLimited++
		s.violationLocked(a, now)
		return verdict{limited: true}
	}
	return verdict{fault: s.pickFaultLocked(a, x.route)}
}

// clientOfLocked is the client a request spends the budget of: its access
// token's, or on the token endpoint the client_id it sends ("" when
// unknown: only the account's total and the global budget apply).
func (s *Server) clientOfLocked(r *http.Request) string {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if t := s.access[tok]; t != nil {
			return t.client
		}
		return ""
	}
	if strings.HasSuffix(r.URL.Path, "/oauth2/access_token") && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		r.Body = http.MaxBytesReader(nil, r.Body, 1<<16)
		if r.ParseForm() == nil {
			return r.PostForm.Get("client_id")
		}
	}
	return ""
}

// act answers a blocked, limited or faulted request; it reports whether
// the endpoint should answer instead.
func (s *Server) act(x *exchange, v verdict) bool {
	switch {
	case v.blocked:
		x.html(http.StatusForbidden, nginxPage(403, "Forbidden"))
		return false
	case v.limited:
		s.tooMany(x)
		return false
	}
	f := v.fault
	switch f.kind {
	case faultError:
		if f.html {
			x.html(f.status, nginxPage(f.status, http.StatusText(f.status)))
		} else {
			x.problem(f.status, http.StatusText(f.status), "Injected fault", nil)
		}
		return false
	case faultReset:
		x.status = statusGone
		resetConn(x.w)
		return false
	case faultHang:
		x.status = statusGone
		if !s.wait(x.r.Context(), f.hangFor) {
			panic(http.ErrAbortHandler)
		}
		// Still there after the bound: answer like a proxy would.
		x.html(http.StatusGatewayTimeout, nginxPage(504, "Gateway Time-out"))
		return false
	case faultTruncate:
		x.truncate = true
	}
	return true
}

func (s *Server) violationLocked(a *account, now time.Time) {
	if s.cfg.BlockAfter < 0 {
		return
	}
	cut := now.Add(-s.cfg.BlockWindow)
	keep := a.violations[:0]
	for _, t := range a.violations {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	a.violations = append(keep, now)
	if len(a.violations) > s.cfg.BlockAfter {
		a.blockedUntil = now.Add(s.cfg.BlockFor)
		a.violations = nil
		a.stats.Blocks++
		s.counters.total.Blocks++
		s.ipBlockLocked(now)
	}
}

// ipBlockLocked blocks the IP when enough accounts are blocked at once.
func (s *Server) ipBlockLocked(now time.Time) {
	if s.cfg.BlockIPAfter <= 0 || now.Before(s.ipBlock) {
		return
	}
	n := 0
	for _, a := range s.accounts {
		if now.Before(a.blockedUntil) {
			n++
		}
	}
	if n >= s.cfg.BlockIPAfter {
		s.ipBlock = now.Add(s.cfg.BlockFor)
		s.counters.total.IPBlocks++
	}
}

// BlockIP blocks the caller's IP for d: every request of every account
// gets nginx's HTML 403. UnblockIP lifts it.
func (s *Server) BlockIP(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ipBlock = s.cfg.Now().Add(d)
	s.counters.total.IPBlocks++
}

// UnblockIP lifts an IP block.
func (s *Server) UnblockIP() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ipBlock = time.Time{}
}

func (s *Server) tooMany(x *exchange) {
	secs := int((s.cfg.RetryAfter + time.Second - 1) / time.Second)
	if s.cfg.RateLimitBody == "json-retry-after" {
		x.problem(http.StatusTooManyRequests, "Too Many Requests", "Too many requests", map[string]any{"retry_after": max(secs, 1)})
		return
	}
	if s.cfg.RetryAfter > 0 {
		x.w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	switch s.cfg.RateLimitBody {
	case "empty":
		x.status = http.StatusTooManyRequests
		x.w.WriteHeader(http.StatusTooManyRequests)
	case "json":
		x.problem(http.StatusTooManyRequests, "Too Many Requests", "Too many requests", nil)
	default:
		x.html(http.StatusTooManyRequests, nginxPage(429, "Too Many Requests"))
	}
}

// wait sleeps for d unless the client leaves or the sandbox closes; it
// reports whether the full delay passed.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closed:
		return false
	}
}

func (s *Server) latencyLocked(a *account) time.Duration {
	d := s.cfg.Latency + jitter(s.rng, s.cfg.LatencyJitter)
	if f := s.faultsFor(a); f != nil {
		d += f.Latency.D() + jitter(s.rng, f.LatencyJitter.D())
	}
	return max(d, 0)
}

func jitter(rng *mrand.Rand, j time.Duration) time.Duration {
	if j <= 0 {
		return 0
	}
	return time.Duration(rng.Int64N(int64(2*j)+1)) - j
}

// bearer returns the request's valid access token, or answers 401.
func (s *Server) bearer(x *exchange) bool {
	h := x.r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		x.problem(http.StatusUnauthorized, "Unauthorized", "Authorization required", nil)
		return false
	}
	s.mu.Lock()
	t := s.access[tok]
	valid := t != nil && t.acct == x.acct && s.cfg.Now().Before(t.expiry)
	s.mu.Unlock()
	if !valid {
		x.problem(http.StatusUnauthorized, "Unauthorized", "Token is expired, revoked or does not belong to this account", nil)
		return false
	}
	if len(x.acct.AllowedIPs) > 0 {
		host, _, _ := net.SplitHostPort(x.r.RemoteAddr)
		if !slices.Contains(x.acct.AllowedIPs, host) {
			x.problem(http.StatusForbidden, "Forbidden", "IP address is not on the account's API whitelist", nil)
			return false
		}
	}
	if x.acct.Unpaid {
		x.problem(http.StatusPaymentRequired, "Payment Required", "Account is not paid", nil)
		return false
	}
	x.token = t
	return true
}

func (s *Server) isAdmin(t *accessToken) bool {
	for _, u := range t.acct.Users {
		if u.ID == t.userID {
			return u.Admin
		}
	}
	return false
}

// problem answers with application/problem+json, Kommo's error shape.
func (x *exchange) problem(status int, title, detail string, extra map[string]any) {
	body := map[string]any{
		"title":  title,
		"type":   "https://httpstatus.es/" + strconv.Itoa(status),
		"status": status,
		"detail": detail,
	}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	x.write(status, "application/problem+json", b)
}

// hal answers with application/hal+json.
func (x *exchange) hal(status int, v any) {
	b, _ := json.Marshal(v)
	x.write(status, "application/hal+json", b)
}

func (x *exchange) html(status int, page string) {
	x.write(status, "text/html", []byte(page))
}

// write sends an answer, cut off halfway when a truncation fault chose
// this exchange and the answer is a success.
func (x *exchange) write(status int, contentType string, body []byte) {
	x.status = status
	h := x.w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if x.truncate && status < 300 && len(body) > 1 {
		x.w.WriteHeader(status)
		_, _ = x.w.Write(body[:len(body)/2])
		if f, ok := x.w.(http.Flusher); ok {
			f.Flush()
		}
		x.status = statusTruncated
		// Abort: net/http closes the connection mid-body.
		panic(http.ErrAbortHandler)
	}
	x.w.WriteHeader(status)
	_, _ = x.w.Write(body)
}

// statusTruncated marks an answer cut off by a fault.
const statusTruncated = -1

func writeHTML(w http.ResponseWriter, status int, page string) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(page))
}

// nginxPage is the page nginx sends for its own errors, as Kommo's edge
// does for blocks and rate limits.
func nginxPage(status int, text string) string {
	return fmt.Sprintf("<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
		status, text, status, text)
}
