package kommo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status        int
		json          bool
		hint, code    string
		tokenEndpoint bool
		want          Class
		retryable     bool
	}{
		{400, true, "", "", false, ClassInvalid, false},
		{401, true, "", "", false, ClassUnauthorized, false},
		{401, true, "Token has been revoked", "", true, ClassTokenRevoked, false},
		{401, true, "Token has been revoked", "", false, ClassUnauthorized, false}, // only the token endpoint judges grants
		{400, true, "Authorization code has been revoked", "", true, ClassTokenRevoked, false},
		{400, true, "", "invalid_grant", true, ClassTokenRevoked, false},
		{401, true, "Check client_id and client_secret", "", true, ClassUnauthorized, false},
		{402, true, "", "", false, ClassPaymentRequired, false},
		{402, false, "", "", false, ClassPaymentRequired, false},
		{403, true, "", "", false, ClassForbidden, false},
		{403, false, "", "", false, ClassBlocked, false},
		{403, false, "", "", true, ClassBlocked, false},
		{404, true, "", "", false, ClassNotFound, false},
		{404, false, "", "", false, ClassNotFound, false},
		{405, true, "", "", false, ClassInvalid, false},
		{408, false, "", "", false, ClassNetwork, true},
		{409, true, "", "", false, ClassInvalid, false},
		{429, false, "", "", false, ClassRateLimited, true},
		{429, true, "", "", true, ClassRateLimited, true},
		{500, false, "", "", false, ClassServer, true},
		{502, false, "", "", false, ClassServer, true},
		{503, true, "", "", false, ClassServer, true},
		{504, false, "", "", false, ClassServer, true},
		{599, false, "", "", false, ClassServer, true},
		{302, false, "", "", false, ClassRedirected, false},
		{301, true, "", "", true, ClassRedirected, false},
	}
	for _, c := range cases {
		got := classify(c.status, c.json, c.hint, c.code, c.tokenEndpoint)
		if got != c.want || got.Retryable() != c.retryable {
			t.Errorf("classify(%d, json=%v, hint=%q, code=%q, token=%v) = %s (retryable %v), want %s (%v)",
				c.status, c.json, c.hint, c.code, c.tokenEndpoint, got, got.Retryable(), c.want, c.retryable)
		}
	}
	// Every class is reachable and named in Classes.
	seen := map[Class]bool{}
	for _, c := range cases {
		seen[c.want] = true
	}
	for _, c := range Classes {
		if !seen[c] {
			t.Errorf("class %s has no case in the table", c)
		}
	}
}

var nginx403 = "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

func TestErrorFromBody(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	type want struct {
		class                      Class
		title, detail, hint, reqID string
		validation                 string // path=code;…
		retryAfter                 time.Duration
		bodyHas                    string
	}
	cases := []struct {
		name          string
		status        int
		header        map[string]string
		body          string
		tokenEndpoint bool
		want          want
	}{
		{
			name:   "400 validation-errors",
			status: 400,
			header: map[string]string{"Content-Type": "application/problem+json", "X-Request-Id": "abc123"},
			body: `{"validation-errors":[{"request_id":"0","errors":[{"code":"NotSupportedChoice","path":"phones.1","detail":"The value you selected is not a valid choice."},{"code":"NotBlank","path":"login","detail":"This value should not be blank."}]}],` +
				`"title":"Bad Request","type":"https://httpstatus.es/400","status":400,"detail":"Request validation failed"}`,
			want: want{class: ClassInvalid, title: "Bad Request", detail: "Request validation failed", reqID: "abc123", validation: "phones.1=NotSupportedChoice;login=NotBlank"},
		},
		{
			name:   "401 problem+json",
			status: 401,
			header: map[string]string{"Content-Type": "application/problem+json", "X-Request-Id": "r-401"},
			body:   `{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"Access denied"}`,
			want:   want{class: ClassUnauthorized, title: "Unauthorized", detail: "Access denied", reqID: "r-401"},
		},
		{
			name:          "401 revoked refresh token",
			status:        401,
			header:        map[string]string{"Content-Type": "application/json"},
			body:          `{"hint":"Token has been revoked","title":"Ошибка","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":401,"detail":"Некорректный refresh token"}`,
			tokenEndpoint: true,
			want:          want{class: ClassTokenRevoked, title: "Ошибка", detail: "Некорректный refresh token", hint: "Token has been revoked"},
		},
		{
			name:          "400 invalid_grant, RFC 6749 shape",
			status:        400,
			header:        map[string]string{"Content-Type": "application/json"},
			body:          `{"error":"invalid_grant","error_description":"The refresh token is invalid."}`,
			tokenEndpoint: true,
			want:          want{class: ClassTokenRevoked, detail: "The refresh token is invalid."},
		},
		{
			name:   "402 plain JSON",
			status: 402,
			header: map[string]string{"Content-Type": "application/json"},
			body:   `{"response":{"error":"Account is not paid"}}`,
			want:   want{class: ClassPaymentRequired, bodyHas: "not paid"},
		},
		{
			name:   "403 problem+json: not an administrator",
			status: 403,
			header: map[string]string{"Content-Type": "application/problem+json"},
			body:   `{"title":"Forbidden","type":"https://httpstatus.es/403","status":403,"detail":"Only administrators"}`,
			want:   want{class: ClassForbidden, title: "Forbidden", detail: "Only administrators"},
		},
		{
			name:   "403 nginx HTML: blocked",
			status: 403,
			header: map[string]string{"Content-Type": "text/html"},
			body:   nginx403,
			want:   want{class: ClassBlocked, title: "403 Forbidden", bodyHas: "nginx"},
		},
		{
			name:   "403 HTML without a content type",
			status: 403,
			body:   "  " + nginx403,
			want:   want{class: ClassBlocked, title: "403 Forbidden"},
		},
		{
			name:   "403 empty",
			status: 403,
			want:   want{class: ClassBlocked},
		},
		{
			name:   "404 problem+json",
			status: 404,
			header: map[string]string{"Content-Type": "application/problem+json"},
			body:   `{"title":"Not Found","type":"https://httpstatus.es/404","status":404,"detail":"Widget not found"}`,
			want:   want{class: ClassNotFound, title: "Not Found", detail: "Widget not found"},
		},
		{
			name:   "429 HTML, Retry-After seconds",
			status: 429,
			header: map[string]string{"Content-Type": "text/html", "Retry-After": "3"},
			body:   "<html><head><title>429 Too Many Requests</title></head><body><center><h1>429 Too Many Requests</h1></center><hr><center>nginx</center></body></html>",
			want:   want{class: ClassRateLimited, title: "429 Too Many Requests", retryAfter: 3 * time.Second},
		},
		{
			name:   "429 empty, Retry-After date",
			status: 429,
			header: map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)},
			want:   want{class: ClassRateLimited, retryAfter: 90 * time.Second},
		},
		{
			name:   "429 Retry-After in the past or garbage",
			status: 429,
			header: map[string]string{"Retry-After": "soon"},
			want:   want{class: ClassRateLimited},
		},
		{
			name:   "429 JSON with retry_after (Kommo's HTTP-codes page)",
			status: 429,
			header: map[string]string{"Content-Type": "application/json"},
			body:   `{"title":"Too Many Requests","type":"https://httpstatus.es/429","status":429,"detail":"Too many requests","retry_after":300}`,
			want:   want{class: ClassRateLimited, title: "Too Many Requests", detail: "Too many requests", retryAfter: 300 * time.Second},
		},
		{
			name:   "429 with both: the header wins",
			status: 429,
			header: map[string]string{"Content-Type": "application/json", "Retry-After": "7"},
			body:   `{"title":"Too Many Requests","retry_after":"300"}`,
			want:   want{class: ClassRateLimited, title: "Too Many Requests", retryAfter: 7 * time.Second},
		},
		{
			name:   "429 retry_after unreadable",
			status: 429,
			header: map[string]string{"Content-Type": "application/json"},
			body:   `{"title":"Too Many Requests","retry_after":-4}`,
			want:   want{class: ClassRateLimited, title: "Too Many Requests"},
		},
		{
			name:   "402 JSON with Kommo's detail",
			status: 402,
			header: map[string]string{"Content-Type": "application/json"},
			body:   `{"title":"Payment Required","status":402,"detail":"Account tariff does not allow API access"}`,
			want:   want{class: ClassPaymentRequired, title: "Payment Required", detail: "Account tariff does not allow API access"},
		},
		{
			name:   "302 to another host: not followed",
			status: 302,
			header: map[string]string{"Location": "https://attacker.example/steal?token=x"},
			want:   want{class: ClassRedirected, detail: "Kommo redirected to host attacker.example; widgetq follows no redirects (has the account's address changed?)"},
		},
		{
			name:   "500 proxy HTML",
			status: 500,
			header: map[string]string{"Content-Type": "text/html; charset=utf-8"},
			body:   "<html><body><h1>500 Internal Server Error</h1></body></html>",
			want:   want{class: ClassServer, title: "500 Internal Server Error"},
		},
		{
			name:   "502 plain text",
			status: 502,
			header: map[string]string{"Content-Type": "text/plain"},
			body:   "upstream connect error",
			want:   want{class: ClassServer, bodyHas: "upstream connect error"},
		},
		{
			name:   "503 problem+json cut off",
			status: 503,
			header: map[string]string{"Content-Type": "application/problem+json"},
			body:   `{"title":"Service Unavailable","type":"https://httpst`,
			want:   want{class: ClassServer, bodyHas: "Service Unavailable"},
		},
		{
			name:   "504 empty",
			status: 504,
			want:   want{class: ClassServer},
		},
		{
			name:   "validation-errors without grouping",
			status: 400,
			header: map[string]string{"Content-Type": "application/problem+json"},
			body:   `{"title":"Bad Request","validation-errors":[{"code":"InvalidType","path":"login","detail":"x"}]}`,
			want:   want{class: ClassInvalid, title: "Bad Request", validation: "login=InvalidType"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range c.header {
				h.Set(k, v)
			}
			req, _ := http.NewRequest("POST", "https://x.kommo.com/api/v4/widgets/w", nil)
			e := errorFromBody("install widget w", req, c.status, h, []byte(c.body), newRedactor(), now, c.tokenEndpoint)
			var vs []string
			for _, v := range e.ValidationErrors {
				vs = append(vs, v.Path+"="+v.Code)
			}
			got := want{class: e.Class, title: e.Title, detail: e.Detail, hint: e.Hint, reqID: e.RequestID,
				validation: strings.Join(vs, ";"), retryAfter: e.RetryAfter, bodyHas: c.want.bodyHas}
			if got != c.want {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
			if !strings.Contains(e.Body, c.want.bodyHas) {
				t.Fatalf("body snippet %q lacks %q", e.Body, c.want.bodyHas)
			}
			if e.StatusCode != c.status || e.Method != "POST" || e.Path != "/api/v4/widgets/w" {
				t.Fatalf("status/method/path: %d %s %s", e.StatusCode, e.Method, e.Path)
			}
			msg := e.Error()
			if !strings.Contains(msg, fmt.Sprint(c.status)) || !strings.Contains(msg, string(c.want.class)) || (c.want.reqID != "" && !strings.Contains(msg, c.want.reqID)) {
				t.Fatalf("message %q lacks the status, class or request ID", msg)
			}
			var ke *Error
			if !errors.As(fmt.Errorf("wrapped: %w", e), &ke) || ClassOf(fmt.Errorf("x: %w", e)) != c.want.class {
				t.Fatal("class lost through wrapping")
			}
		})
	}
}

func TestErrorBodySnippetIsBoundedAndValidUTF8(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("ж", 2000) + "\xff\xfe"
	e := errorFromBody("op", nil, 500, http.Header{}, []byte(body), newRedactor(), time.Now(), false)
	if len(e.Body) > maxSnippet+len("…") || !utf8.ValidString(e.Body) {
		t.Fatalf("snippet of %d bytes, valid UTF-8 %v", len(e.Body), utf8.ValidString(e.Body))
	}
	// A huge body is read through a limit.
	resp := &http.Response{StatusCode: 502, Header: http.Header{}, Body: io.NopCloser(io.MultiReader(strings.NewReader("<html>"), infinite{}))}
	done := make(chan *Error, 1)
	go func() { done <- errorFromResponse("op", resp, newRedactor(), time.Now(), false) }()
	select {
	case e := <-done:
		if e.Class != ClassServer || len(e.Body) > maxSnippet+len("…") {
			t.Fatalf("huge body: class %s, snippet %d bytes", e.Class, len(e.Body))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reading an endless error body did not stop")
	}
}

type infinite struct{}

func (infinite) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestErrorsNeverCarrySecrets(t *testing.T) {
	t.Parallel()
	const access, pass, lp = "at_5ecretAccess", "p@ss\"w0rd\\x", "LpSecret42"
	body := `{"title":"Bad Request","detail":"password p@ss\"w0rd\\x is too weak; token at_5ecretAccess","hint":"user LpSecret42",` +
		`"validation-errors":[{"request_id":"0","errors":[{"code":"X","path":"password","detail":"got p@ss\"w0rd\\x"}]}],"access_token":"at_other","password":"unlisted-secret"}`
	h := http.Header{"Content-Type": {"application/problem+json"}, "X-Request-Id": {"at_5ecretAccess"}}
	req, _ := http.NewRequest("POST", "https://x.kommo.com/api/v4/widgets/w", nil)
	e := errorFromBody("install", req, 400, h, []byte(body), newRedactor(access, pass, lp), time.Now(), false)
	text := fmt.Sprintf("%s %+v %#v", e.Error(), e, e)
	for _, s := range []string{access, pass, `p@ss\"w0rd\\x`, lp, "at_other", "unlisted-secret"} {
		if strings.Contains(text, s) {
			t.Fatalf("secret %q leaked into %s", s, text)
		}
	}
	if !strings.Contains(e.Detail, Redacted) {
		t.Fatalf("detail %q shows no redaction", e.Detail)
	}
}

// TestRedactorHidesASecretAsJSONWouldCarryIt: a secret with a quote or a
// backslash is hidden in raw text and in JSON text, where it is escaped.
func TestRedactorHidesASecretAsJSONWouldCarryIt(t *testing.T) {
	t.Parallel()
	const pass = `p@ss"w0rd\x`
	red := newRedactor(pass)
	for _, text := range []string{"raw " + pass + " end", `{"note":"p@ss\"w0rd\\x"}`} {
		got := red.clean(text)
		if strings.Contains(got, "w0rd") || !strings.Contains(got, Redacted) {
			t.Errorf("clean(%s) = %s", text, got)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-5", 0}, {"7", 7 * time.Second}, {" 12 ", 12 * time.Second},
		{"99999999999", 24 * time.Hour}, {"1.5", 0}, {"later", 0},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
		{now.Add(30 * time.Second).Format(time.RFC850), 30 * time.Second},
	} {
		if got := parseRetryAfter(c.in, now); got != c.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestNetworkErrorsAreClassified(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection refused"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "connection reset"},
		{context.DeadlineExceeded, "timeout"},
		{io.ErrUnexpectedEOF, "closed before the whole answer"},
		{context.Canceled, "canceled"},
	} {
		e := networkError("op", nil, c.err, newRedactor())
		if e.Class != ClassNetwork || !e.Retryable() || !strings.Contains(e.Error(), c.want) || !errors.Is(e, c.err) {
			t.Errorf("%v: class %s, message %q, want network and %q and errors.Is", c.err, e.Class, e.Error(), c.want)
		}
	}
	if ClassOf(errors.New("anything else")) != ClassNetwork || ClassOf(nil) != "" || IsRetryable(nil) {
		t.Error("ClassOf fallbacks wrong")
	}
}
