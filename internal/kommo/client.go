package kommo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/memo"
)

// DefaultTimeout bounds one HTTP exchange with Kommo when the caller sets
// no timeout of its own.
const DefaultTimeout = 30 * time.Second

// DefaultUserAgent is sent when no other is set.
const DefaultUserAgent = "widgetq (+https://github.com/widgetq/widgetq)"

// maxBody bounds a successful answer's body.
const maxBody = 16 << 20

// Client calls the Kommo API of one account. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	baseStr   string // base.String(), made once
	http      *http.Client
	timeout   time.Duration
	userAgent string
	auth      Authenticator
	now       func() time.Time
	secrets   []string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (transport, proxy, TLS). The client's
// own Timeout, if set, still applies.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithTimeout bounds each HTTP exchange, body included (default
// DefaultTimeout). Zero or less means no bound but the context's.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithAuth sets how the client gets its access token (see StaticToken and
// RefreshingAuth). Without it requests carry no Authorization header.
func WithAuth(a Authenticator) Option { return func(c *Client) { c.auth = a } }

// WithSecrets names strings that must never appear in an error this client
// returns (tokens it was not told about through its Authenticator, secret
// settings): any answer that echoes them is scrubbed.
func WithSecrets(s ...string) Option {
	return func(c *Client) { c.secrets = append(c.secrets, s...) }
}

// withClock sets the clock used to read Retry-After dates (tests).
func withClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// NewClient returns a client for the account whose API base is baseURL
// (e.g. https://example.kommo.com). The base may carry a path prefix, as the
// sandbox's do.
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	u, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{base: u, baseStr: u.String(), http: http.DefaultClient, timeout: DefaultTimeout, userAgent: DefaultUserAgent, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// parseBaseURL checks an account's API base: an absolute http(s) URL with a
// host and no query, fragment or credentials. A base that passed is
// remembered (the worker makes a client per task, for a few thousand
// accounts, and parsed each base twice): clients share the *url.URL,
// which nothing modifies.
func parseBaseURL(s string) (*url.URL, error) {
	if u, ok := baseURLs.Load(s); ok {
		return u, nil
	}
	if err := kommohost.Syntax(s); err != nil {
		return nil, fmt.Errorf("kommo: base URL: %w", err)
	}
	u, _ := url.Parse(strings.TrimSpace(s))
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	baseURLs.Store(s, u)
	return u, nil
}

// baseURLs remembers the bases parseBaseURL passed.
var baseURLs memo.Map[string, *url.URL]

// BaseURL returns the account's API base the client was made for.
func (c *Client) BaseURL() string { return c.baseStr }

// Response is the HTTP answer to a successful call.
type Response struct {
	StatusCode int
	// RequestID is the x-request-id header.
	RequestID string
	Header    http.Header
}

// call is one API request: the op name for errors, the method, the path
// under the base (with query), and the JSON body if any.
type call struct {
	op     string
	method string
	path   string
	body   []byte
	// secrets are this call's own (e.g. an install's pass settings).
	secrets []string
}

// do sends a call, refreshing the token once after a 401 when the
// Authenticator can, and decodes a 2xx JSON answer into v (if v is not nil
// and the answer has a body).
func (c *Client) do(ctx context.Context, cl call, v any) (*Response, error) {
	red := newRedactor(append(append([]string(nil), c.secrets...), cl.secrets...)...)
	var token string
	if c.auth != nil {
		t, err := c.auth.AccessToken(ctx)
		if err != nil {
			return nil, wrapAuthErr(cl.op, err, red)
		}
		token = t
	}
	red.add(token)
	resp, err := c.send(ctx, cl, token, v, red)
	var ke *Error
	if c.auth == nil || !errors.As(err, &ke) || ke.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// One 401: the token may have expired early or been rotated by
	// another process. Refresh once and try again; a second 401 stands.
	t, rerr := c.auth.Refresh(ctx, token)
	if errors.Is(rerr, ErrNoRefresh) {
		return resp, err
	}
	if rerr != nil {
		return nil, wrapAuthErr(cl.op, rerr, red)
	}
	red.add(t)
	return c.send(ctx, cl, t, v, red)
}

// bodyBufs are the buffers answers are read into (one per request in
// flight, instead of a growing slice per answer).
var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (c *Client) send(ctx context.Context, cl call, token string, v any, red *redactor) (*Response, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	u := c.baseStr + cl.path
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u, body)
	if err != nil {
		return nil, &Error{Op: cl.op, Class: ClassInvalid, Method: cl.method, Err: fmt.Errorf("build request: %s", red.clean(err.Error()))}
	}
	req.Header.Set("Accept", "application/hal+json, application/json, application/problem+json")
	req.Header.Set("User-Agent", c.userAgent)
	if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, networkError(cl.op, req, err, red)
	}
	defer resp.Body.Close()
	r := &Response{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"), Header: resp.Header}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// An error body cut off in transit is still the answer's status.
		return r, errorFromResponse(cl.op, resp, red, c.now(), false)
	}
	buf := bodyBufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			bodyBufs.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxBody+1)); err != nil {
		return r, networkError(cl.op, req, err, red)
	}
	// Decoding copies what it keeps: data is not used after send returns.
	data := buf.Bytes()
	if len(data) > maxBody {
		return r, &Error{Op: cl.op, Class: ClassServer, Method: req.Method, Path: red.clean(req.URL.Path), StatusCode: resp.StatusCode,
			RequestID: r.RequestID, Detail: fmt.Sprintf("answer larger than %d bytes", maxBody)}
	}
	if v == nil || resp.StatusCode == http.StatusNoContent || len(bytes.TrimSpace(data)) == 0 {
		return r, nil
	}
	if fd, ok := v.(fastDecoder); ok && fd.decodeFast(data) {
		return r, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		// A 2xx whose body does not decode: most often cut off on the way
		// (net/http does not always report a short body), so retryable.
		e := &Error{Op: cl.op, Class: ClassNetwork, Method: req.Method, Path: red.clean(req.URL.Path), StatusCode: resp.StatusCode,
			RequestID: r.RequestID, Err: fmt.Errorf("decode answer: %s", red.clean(err.Error()))}
		e.Body = snippet(red.clean(string(data)), maxSnippet)
		return r, e
	}
	return r, nil
}

// wrapAuthErr makes sure an Authenticator's failure reaches the caller as a
// *Error with the call's op, keeping its class.
func wrapAuthErr(op string, err error, red *redactor) error {
	var ke *Error
	if errors.As(err, &ke) {
		cp := *ke
		if cp.Op == "" {
			cp.Op = op
		} else {
			cp.Op = op + ": " + cp.Op
		}
		return &cp
	}
	if errors.Is(err, ErrNoRefresh) {
		return &Error{Op: op, Class: ClassUnauthorized, Detail: "no usable access token and no refresh token", Err: err}
	}
	// The token store failed (e.g. Redis unreachable): a passing fault.
	return &Error{Op: op, Class: ClassNetwork, Err: &scrubbedError{msg: "access token: " + red.clean(err.Error()), err: err}}
}
