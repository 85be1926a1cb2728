package kommo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// Class says what kind of failure an error is, and so what a caller should do
// about it. The values are stable strings: they are stored in results and
// shown to operators.
type Class string

// The classes of failure. Retryable: ClassRateLimited, ClassServer,
// ClassNetwork. Everything else is permanent for the request as sent.
const (
	// ClassRateLimited is a 429: too many requests. Retry later, slower;
	// repeated 429s get an account blocked.
	ClassRateLimited Class = "rate_limited"
	// ClassServer is a 5xx (or an unexpected status): Kommo's side failed.
	ClassServer Class = "server"
	// ClassNetwork is a failure to reach Kommo or to read its whole answer:
	// refused or reset connections, timeouts, truncated bodies.
	ClassNetwork Class = "network"
	// ClassUnauthorized is a 401: the access token is missing, expired or
	// revoked, and refreshing it did not help (or could not be tried).
	ClassUnauthorized Class = "unauthorized"
	// ClassTokenRevoked is the token endpoint refusing the refresh token: it
	// was already used (they are single use) or revoked. The account has to
	// be authorized again.
	ClassTokenRevoked Class = "token_revoked"
	// ClassForbidden is a problem+json 403: the user is not an administrator,
	// or the caller's IP is not on the account's API whitelist.
	ClassForbidden Class = "forbidden"
	// ClassBlocked is a 403 that is not problem+json (nginx's HTML page):
	// the account or IP is blocked after repeated limit violations, until
	// Kommo support lifts it. Stop sending to the account.
	ClassBlocked Class = "blocked"
	// ClassPaymentRequired is a 402: the account is not paid for.
	ClassPaymentRequired Class = "payment_required"
	// ClassNotFound is a 404: unknown or unavailable widget or entity.
	ClassNotFound Class = "not_found"
	// ClassInvalid is a 400 (or another 4xx without a class of its own): the
	// request was refused as sent; sending it again will not help.
	ClassInvalid Class = "invalid"
	// ClassRedirected is a 3xx: the client follows no redirects (they would
	// carry the token to a host nobody checked). Kommo does not document
	// one; an account whose subdomain changed may see it.
	ClassRedirected Class = "redirected"
)

// Classes lists every class, for tables and documentation.
var Classes = []Class{
	ClassRateLimited, ClassServer, ClassNetwork, ClassUnauthorized, ClassTokenRevoked,
	ClassForbidden, ClassBlocked, ClassPaymentRequired, ClassNotFound, ClassInvalid, ClassRedirected,
}

// Retryable reports whether a request that failed with this class may
// succeed if sent again later, unchanged.
func (c Class) Retryable() bool {
	switch c {
	case ClassRateLimited, ClassServer, ClassNetwork:
		return true
	}
	return false
}

// ValidationError is one entry of a 400's validation-errors list.
type ValidationError struct {
	Code   string `json:"code"`
	Path   string `json:"path"`
	Detail string `json:"detail"`
}

// Error is every failure of a Kommo call: a non-2xx answer or a transport
// failure. Its fields hold no secret: the body snippet and every text taken
// from the body are scrubbed of the request's tokens and secret settings.
type Error struct {
	// Class says what kind of failure this is; see Class.
	Class Class
	// Op names the call, e.g. "install widget amo_asterisk".
	Op string
	// Method and Path are the request's, without query or host.
	Method, Path string
	// StatusCode is the HTTP status; 0 for transport failures.
	StatusCode int
	// Title, Type, Detail and Hint are problem+json's fields, when sent.
	Title, Type, Detail, Hint string
	// Code is an OAuth error code (e.g. "invalid_grant") when sent.
	Code string
	// ValidationErrors are a 400's field errors, flattened.
	ValidationErrors []ValidationError
	// RequestID is the x-request-id header: quote it to Kommo support.
	RequestID string
	// RetryAfter is the Retry-After header as a duration from when the
	// answer arrived; 0 when absent.
	RetryAfter time.Duration
	// ContentType is the answer's media type, e.g. "text/html".
	ContentType string
	// Body is a bounded, scrubbed snippet of the answer's body.
	Body string
	// Err is the transport error underneath, for network failures.
	Err error
	// retryAfterBody is a JSON body's "retry_after" in seconds.
	retryAfterBody int64
}

// Error describes the failure in one line: the call, the status, the class
// and what Kommo said.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("kommo: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	} else {
		b.WriteString("request failed")
	}
	fmt.Fprintf(&b, " (%s)", e.Class)
	switch {
	case e.Title != "" && e.Detail != "":
		fmt.Fprintf(&b, ": %s: %s", e.Title, e.Detail)
	case e.Detail != "":
		fmt.Fprintf(&b, ": %s", e.Detail)
	case e.Title != "":
		fmt.Fprintf(&b, ": %s", e.Title)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, " (hint: %s)", e.Hint)
	}
	for i, v := range e.ValidationErrors {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.ValidationErrors)-i)
			break
		}
		fmt.Fprintf(&b, "; %s: %s", v.Path, firstNonEmpty(v.Detail, v.Code))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " [request %s]", e.RequestID)
	}
	return b.String()
}

// Unwrap returns the transport error underneath, if any.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether sending the same request later may succeed.
func (e *Error) Retryable() bool { return e.Class.Retryable() }

// ClassOf returns the class of any error a Kommo call returned: the Class of
// a *Error in its chain, else the class of a transport failure (network),
// else "" for nil.
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	var ke *Error
	if errors.As(err, &ke) {
		return ke.Class
	}
	return ClassNetwork
}

// IsRetryable reports whether err, returned by a Kommo call, may go away if
// the call is made again later.
func IsRetryable(err error) bool { return err != nil && ClassOf(err).Retryable() }

// classify is the one place that maps an answer to a class. tokenEndpoint
// is true for /oauth2/access_token, where a 400 or 401 means the grant (the
// refresh token or code) is dead rather than the access token.
func classify(status int, problemJSON bool, hint, code string, tokenEndpoint bool) Class {
	switch {
	case status == http.StatusTooManyRequests:
		return ClassRateLimited
	case status == http.StatusForbidden && !problemJSON:
		// nginx's HTML page (or an empty body): a block after repeated
		// limit violations. Permanent until Kommo support lifts it.
		return ClassBlocked
	case status == http.StatusForbidden:
		return ClassForbidden
	case tokenEndpoint && (status == http.StatusUnauthorized || status == http.StatusBadRequest) &&
		(strings.Contains(strings.ToLower(hint), "revoked") || code == "invalid_grant"):
		return ClassTokenRevoked
	case status == http.StatusUnauthorized:
		return ClassUnauthorized
	case status == http.StatusPaymentRequired:
		return ClassPaymentRequired
	case status == http.StatusNotFound:
		return ClassNotFound
	case status == http.StatusRequestTimeout:
		return ClassNetwork
	case status >= 500:
		return ClassServer
	case status >= 400:
		return ClassInvalid
	case status >= 300:
		return ClassRedirected
	}
	// 1xx that reached us: nothing Kommo documents; treat it as a passing
	// server-side oddity rather than a verdict on the request.
	return ClassServer
}

// maxErrorBody bounds how much of an error body is read; maxSnippet bounds
// how much of it is kept in an Error.
const (
	maxErrorBody = 1 << 20
	maxSnippet   = 512
)

// problem is the union of the JSON error shapes Kommo and its OAuth server
// send. Every field is optional.
type problem struct {
	Title            string          `json:"title"`
	Type             string          `json:"type"`
	Status           json.RawMessage `json:"status"`
	Detail           string          `json:"detail"`
	Hint             string          `json:"hint"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
	Message          string          `json:"message"`
	ValidationErrors json.RawMessage `json:"validation-errors"`
	// RetryAfter is a 429's wait in seconds (Kommo's HTTP-codes page);
	// a number or a numeric string.
	RetryAfter json.RawMessage `json:"retry_after"`
}

// validationGroup is one element of validation-errors: Kommo groups the
// errors of a batch by request_id.
type validationGroup struct {
	RequestID json.RawMessage   `json:"request_id"`
	Errors    []ValidationError `json:"errors"`
}

var (
	htmlTitle = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)
	htmlH1    = regexp.MustCompile(`(?is)<h1[^>]*>(.*?)</h1>`)
	htmlTag   = regexp.MustCompile(`(?s)<[^>]*>`)
	spaces    = regexp.MustCompile(`\s+`)
)

// decodeErrorBody fills e's body-derived fields from a raw error body,
// whatever it is: problem+json, plain JSON, HTML, text, empty or cut off.
// It reports whether the body was a JSON object.
func decodeErrorBody(e *Error, contentType string, body []byte, r *redactor) (isJSON bool) {
	mt, _, _ := mime.ParseMediaType(contentType)
	e.ContentType = mt
	trimmed := strings.TrimSpace(string(body))
	if strings.HasPrefix(trimmed, "{") {
		var p problem
		if json.Unmarshal([]byte(trimmed), &p) == nil {
			isJSON = true
			e.Title = r.clean(p.Title)
			e.Type = r.clean(p.Type)
			e.Detail = r.clean(firstNonEmpty(p.Detail, p.ErrorDescription, p.Message))
			e.Hint = r.clean(p.Hint)
			e.Code = r.clean(p.Error)
			e.ValidationErrors = decodeValidationErrors(p.ValidationErrors, r)
			e.retryAfterBody = seconds(p.RetryAfter)
		}
	}
	if !isJSON && (mt == "text/html" || strings.HasPrefix(trimmed, "<")) {
		if m := htmlTitle.FindStringSubmatch(trimmed); m != nil {
			e.Title = r.clean(htmlText(m[1]))
		} else if m := htmlH1.FindStringSubmatch(trimmed); m != nil {
			e.Title = r.clean(htmlText(m[1]))
		}
	}
	e.Body = snippet(r.clean(trimmed), maxSnippet)
	return isJSON
}

func decodeValidationErrors(raw json.RawMessage, r *redactor) []ValidationError {
	if len(raw) == 0 {
		return nil
	}
	var out []ValidationError
	var groups []validationGroup
	if json.Unmarshal(raw, &groups) == nil {
		for _, g := range groups {
			out = append(out, g.Errors...)
		}
	}
	if len(out) == 0 {
		// Some answers send the errors without the grouping.
		var flat []ValidationError
		if json.Unmarshal(raw, &flat) != nil {
			return nil
		}
		out = flat
	}
	for i := range out {
		out[i].Code = r.clean(out[i].Code)
		out[i].Path = r.clean(out[i].Path)
		out[i].Detail = r.clean(out[i].Detail)
	}
	return out
}

func htmlText(s string) string {
	s = htmlTag.ReplaceAllString(s, " ")
	return strings.TrimSpace(spaces.ReplaceAllString(s, " "))
}

// snippet cuts s to at most n bytes without splitting a UTF-8 sequence and
// replaces invalid bytes, so the result is safe to log and store.
func snippet(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// seconds reads a JSON number or numeric string of seconds; 0 when absent,
// unreadable or not positive.
func seconds(raw json.RawMessage) int64 {
	v := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) || f > 86400 {
		if err == nil && f > 86400 {
			return 86400
		}
		return 0
	}
	return int64(math.Ceil(f))
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
// It returns 0 when absent or unreadable, and never a negative duration.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		const maxSecs = int64(24 * time.Hour / time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, 24*time.Hour)
		}
	}
	return 0
}

// errorFromResponse builds the *Error for a non-2xx answer. It reads at
// most maxErrorBody bytes of the body; a body cut off in transit still gives
// an error of the answer's status.
func errorFromResponse(op string, resp *http.Response, r *redactor, now time.Time, tokenEndpoint bool) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return errorFromBody(op, resp.Request, resp.StatusCode, resp.Header, body, r, now, tokenEndpoint)
}

func errorFromBody(op string, req *http.Request, status int, h http.Header, body []byte, r *redactor, now time.Time, tokenEndpoint bool) *Error {
	e := &Error{
		Op:         op,
		StatusCode: status,
		RequestID:  r.clean(h.Get("X-Request-Id")),
		RetryAfter: parseRetryAfter(h.Get("Retry-After"), now),
	}
	if req != nil {
		e.Method, e.Path = req.Method, r.clean(req.URL.Path)
	}
	isJSON := decodeErrorBody(e, h.Get("Content-Type"), body, r)
	e.Class = classify(status, isJSON, e.Hint, e.Code, tokenEndpoint)
	if e.RetryAfter == 0 && e.retryAfterBody > 0 {
		// Kommo's JSON 429 says "retry_after": seconds, like the header.
		e.RetryAfter = min(time.Duration(e.retryAfterBody)*time.Second, 24*time.Hour)
	}
	if e.Class == ClassRedirected && e.Detail == "" {
		where := "elsewhere"
		if u, err := url.Parse(h.Get("Location")); err == nil && u.Hostname() != "" {
			where = "to host " + r.clean(u.Hostname())
		}
		e.Detail = fmt.Sprintf("Kommo redirected %s; widgetq follows no redirects (has the account's address changed?)", where)
	}
	return e
}

// networkError wraps a transport failure (or a body that could not be read
// whole) as a *Error of class network, scrubbed of secrets.
func networkError(op string, req *http.Request, err error, r *redactor) *Error {
	e := &Error{Op: op, Class: ClassNetwork, Err: &scrubbedError{msg: r.clean(describeNetErr(err)), err: err}}
	if req != nil {
		e.Method, e.Path = req.Method, r.clean(req.URL.Path)
	}
	return e
}

// describeNetErr names the transport failure without the URL (which a
// *url.Error repeats, query and all).
func describeNetErr(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "timeout: " + innermost(err).Error()
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return "connection closed before the whole answer arrived"
	}
	return innermost(err).Error()
}

func innermost(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// scrubbedError keeps the original error for errors.Is/As while its text is
// the scrubbed description.
type scrubbedError struct {
	msg string
	err error
}

func (s *scrubbedError) Error() string { return s.msg }
func (s *scrubbedError) Unwrap() error { return s.err }

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
