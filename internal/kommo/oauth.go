package kommo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Token is an OAuth 2.0 token pair. Printing it (fmt's %v, %+v, %#v, %s,
// or slog) never shows the tokens; only its JSON form carries them, for
// storage.
type Token struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expires_at,omitzero"`
}

// Expired reports whether the access token is expired at now, or will be
// within leeway. A token without an expiry (long-lived) never expires here.
func (t *Token) Expired(now time.Time, leeway time.Duration) bool {
	return t == nil || t.AccessToken == "" || (!t.Expiry.IsZero() && !now.Add(leeway).Before(t.Expiry))
}

func (t Token) String() string {
	return fmt.Sprintf("kommo.Token{access:%s refresh:%s expiry:%s}", mask(t.AccessToken), mask(t.RefreshToken), t.Expiry.Format(time.RFC3339))
}

// GoString keeps %#v as secret-free as %v.
func (t Token) GoString() string { return t.String() }

// LogValue keeps slog from showing the tokens.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("access", mask(t.AccessToken)), slog.String("refresh", mask(t.RefreshToken)), slog.Time("expiry", t.Expiry))
}

func mask(s string) string {
	if s == "" {
		return "none"
	}
	return Redacted
}

// OAuthConfig is an integration's OAuth 2.0 client: its ID, secret and
// redirect URI as set in Kommo. The token endpoint is per account:
// {base}/oauth2/access_token.
type OAuthConfig struct {
	ClientID     string
	ClientSecret string
	RedirectURL  string
	// HTTPClient is used for token requests; http.DefaultClient when nil.
	HTTPClient *http.Client
	// Timeout bounds one token request (default DefaultTimeout).
	Timeout time.Duration
	now     func() time.Time
}

func (o *OAuthConfig) config(baseURL string) (*oauth2.Config, error) {
	u, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	return &oauth2.Config{
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		RedirectURL:  o.RedirectURL,
		Endpoint: oauth2.Endpoint{
			TokenURL: u.String() + "/oauth2/access_token",
			// Kommo reads client_id and client_secret from the body. Set
			// explicitly: auto-detection retries a refused request in the
			// other style with the same single-use refresh token.
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}, nil
}

// Exchange trades an authorization code (from Kommo's redirect) for a
// token pair.
func (o *OAuthConfig) Exchange(ctx context.Context, baseURL, code string) (*Token, error) {
	return o.token(ctx, "exchange code", baseURL, code, nil)
}

// Refresh trades a refresh token for a new pair. Kommo's refresh tokens are
// single use: from the moment this is sent the old one is dead, so the
// caller must store the new pair before anything else (RefreshingAuth does).
// The request is not cancelled with ctx once sent — an answer thrown away
// would lose the account — but it is bounded by the timeout. A refused
// refresh token gives a *Error of ClassTokenRevoked.
func (o *OAuthConfig) Refresh(ctx context.Context, baseURL, refreshToken string) (*Token, error) {
	if refreshToken == "" {
		return nil, &Error{Op: "refresh token", Class: ClassTokenRevoked, Detail: "no refresh token stored"}
	}
	// Kommo's documented refresh call carries redirect_uri, which
	// x/oauth2's refresher leaves out; Exchange with the grant overridden
	// sends it (and an empty code, which the grant ignores).
	return o.token(context.WithoutCancel(ctx), "refresh token", baseURL, "", []oauth2.AuthCodeOption{
		oauth2.SetAuthURLParam("grant_type", "refresh_token"),
		oauth2.SetAuthURLParam("refresh_token", refreshToken),
	}, refreshToken)
}

func (o *OAuthConfig) token(ctx context.Context, op, baseURL, code string, opts []oauth2.AuthCodeOption, secrets ...string) (*Token, error) {
	red := newRedactor(append(secrets, code, o.ClientSecret)...)
	conf, err := o.config(baseURL)
	if err != nil {
		return nil, &Error{Op: op, Class: ClassInvalid, Err: err}
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if o.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, o.HTTPClient)
	}
	tok, err := conf.Exchange(ctx, code, opts...)
	if err != nil {
		return nil, o.tokenError(op, err, red)
	}
	red.add(tok.AccessToken, tok.RefreshToken)
	return &Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry}, nil
}

func (o *OAuthConfig) tokenError(op string, err error, red *redactor) error {
	now := time.Now
	if o.now != nil {
		now = o.now
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		e := errorFromBody(op, re.Response.Request, re.Response.StatusCode, re.Response.Header, re.Body, red, now(), true)
		if e.Code == "" {
			e.Code = red.clean(re.ErrorCode)
		}
		if e.Class != ClassTokenRevoked && re.ErrorCode == "invalid_grant" {
			e.Class = ClassTokenRevoked
		}
		return e
	}
	msg := err.Error()
	if strings.Contains(msg, "server response missing access_token") {
		return &Error{Op: op, Class: ClassServer, Detail: "token endpoint answered without an access token"}
	}
	// Transport failures come wrapped in *url.Error, URL and all.
	return networkError(op, nil, err, red)
}

// ErrNoRefresh is returned by an Authenticator that cannot refresh (a
// long-lived token): the 401 that prompted the refresh stands.
var ErrNoRefresh = errors.New("kommo: the token cannot be refreshed")

// Authenticator supplies the access token for a Client's requests.
type Authenticator interface {
	// AccessToken returns a token to send, refreshing it first if it is
	// known to be expired.
	AccessToken(ctx context.Context) (string, error)
	// Refresh is called once after Kommo refused rejected with a 401. It
	// returns a newer token, or ErrNoRefresh, or the refresh's error.
	Refresh(ctx context.Context, rejected string) (string, error)
}

// StaticToken is a long-lived token (private integrations): it is never
// refreshed, and a 401 with it is final.
type StaticToken string

// AccessToken returns the token.
func (s StaticToken) AccessToken(context.Context) (string, error) { return string(s), nil }

// Refresh returns ErrNoRefresh.
func (s StaticToken) Refresh(context.Context, string) (string, error) { return "", ErrNoRefresh }

// TokenStore holds one account's token pair durably.
type TokenStore interface {
	// LoadToken reads the stored pair afresh (not from a cache): after
	// taking the refresh lock, another process may have stored a newer one.
	LoadToken(ctx context.Context) (*Token, error)
	// SaveToken stores a new pair durably and returns only once it is safe.
	SaveToken(ctx context.Context, t *Token) error
}

// Locker is the account's refresh lock, shared by every process that may
// refresh it, so that one single-use refresh token is never sent twice.
type Locker interface {
	// Lock waits for the lock (bounded by ctx) and returns its release.
	Lock(ctx context.Context) (unlock func(), err error)
}

// DefaultLeeway is how long before its expiry a token is refreshed.
const DefaultLeeway = time.Minute

// RefreshingAuth is the Authenticator of an OAuth account: it refreshes the
// access token when it is about to expire or after a 401, under Lock, with
// the pair re-read after the lock is taken and the new pair saved to Store
// before it is used. It is safe for concurrent use.
type RefreshingAuth struct {
	OAuth   *OAuthConfig
	BaseURL string
	Store   TokenStore
	// Lock serializes refreshes across processes; within one process they
	// are serialized anyway. Leave nil only when one process owns the
	// account.
	Lock Locker
	// Leeway: refresh this long before expiry (default DefaultLeeway).
	Leeway time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Current, when set, is the pair just read from Store: it saves the
	// first load.
	Current *Token
	// RefreshStored says Store holds a refresh token though Current
	// carries none (read without it: the single-use token stays out of
	// the memory of every request that does not refresh). A Current
	// about to expire is then refreshed, the token read under Lock as
	// always.
	RefreshStored bool

	mu  sync.Mutex
	cur *Token
	// curRefreshStored is RefreshStored while cur is Current's copy.
	curRefreshStored bool
}

func (a *RefreshingAuth) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *RefreshingAuth) leeway() time.Duration {
	if a.Leeway > 0 {
		return a.Leeway
	}
	return DefaultLeeway
}

// AccessToken returns the current access token, refreshing it first when
// it expires within the leeway and a refresh token is known.
func (a *RefreshingAuth) AccessToken(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil && a.Current != nil {
		cp := *a.Current
		a.cur, a.curRefreshStored = &cp, a.RefreshStored
	}
	if a.cur == nil {
		t, err := a.Store.LoadToken(ctx)
		if err != nil {
			return "", fmt.Errorf("load token: %w", err)
		}
		a.cur = t
	}
	if a.cur != nil && a.cur.AccessToken != "" && (!a.cur.Expired(a.now(), a.leeway()) || (a.cur.RefreshToken == "" && !a.curRefreshStored)) {
		// Valid, or expired with no way to refresh: let Kommo judge it.
		return a.cur.AccessToken, nil
	}
	rejected := ""
	if a.cur != nil {
		rejected = a.cur.AccessToken
	}
	return a.refreshLocked(ctx, rejected)
}

// Refresh gets a token newer than rejected: one another process stored
// meanwhile, or a fresh pair from Kommo.
func (a *RefreshingAuth) Refresh(ctx context.Context, rejected string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refreshLocked(ctx, rejected)
}

func (a *RefreshingAuth) refreshLocked(ctx context.Context, rejected string) (string, error) {
	if a.Lock != nil {
		unlock, err := a.Lock.Lock(ctx)
		if err != nil {
			return "", fmt.Errorf("refresh lock: %w", err)
		}
		defer unlock()
	}
	stored, err := a.Store.LoadToken(ctx)
	if err != nil {
		return "", fmt.Errorf("load token: %w", err)
	}
	if stored != nil && stored.AccessToken != "" && stored.AccessToken != rejected && !stored.Expired(a.now(), a.leeway()) {
		// Another process refreshed while we waited for the lock.
		a.cur, a.curRefreshStored = stored, false
		return stored.AccessToken, nil
	}
	if stored == nil || stored.RefreshToken == "" {
		return "", ErrNoRefresh
	}
	fresh, err := a.OAuth.Refresh(ctx, a.BaseURL, stored.RefreshToken)
	if err != nil {
		return "", err
	}
	// The old refresh token is dead now: the new pair must be stored
	// before it is used, even if the caller has given up meanwhile.
	saveCtx := context.WithoutCancel(ctx)
	var saveErr error
	for try := 0; try < 3; try++ {
		if saveErr = a.Store.SaveToken(saveCtx, fresh); saveErr == nil {
			break
		}
		time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
	}
	if saveErr != nil {
		return "", fmt.Errorf("store refreshed token: %w", saveErr)
	}
	a.cur, a.curRefreshStored = fresh, false
	return fresh.AccessToken, nil
}
