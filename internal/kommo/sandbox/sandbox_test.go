package sandbox_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/fakeclock"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/waitfor"
)

type bundle struct {
	sb    *sandbox.Server
	srv   *httptest.Server
	clk   *fakeclock.Clock
	admin sandbox.Tokens // alpha's administrator
	user  sandbox.Tokens // alpha's plain user
}

// setup serves a sandbox with accounts alpha (1001), beta (1002) and
// unpaid (1003) on a fake clock. cfg's zero fields take defaults.
func setup(t *testing.T, cfg sandbox.Config) *bundle {
	t.Helper()
	b := &bundle{clk: fakeclock.New()}
	if cfg.Now == nil {
		cfg.Now = b.clk.Now
	}
	b.sb = sandbox.New(cfg)
	for _, a := range []sandbox.AccountSpec{
		{ID: 1001, Subdomain: "alpha"},
		{ID: 1002, Subdomain: "beta"},
		{ID: 1003, Subdomain: "unpaid", Unpaid: true},
		{ID: 1004, Subdomain: "walled", AllowedIPs: []string{"192.0.2.1"}},
	} {
		if err := b.sb.AddAccount(a); err != nil {
			t.Fatal(err)
		}
	}
	b.srv = httptest.NewServer(b.sb)
	t.Cleanup(func() { b.sb.Close(); b.srv.Close() })
	var err error
	if b.admin, err = b.sb.IssueTokens("alpha", 0); err != nil {
		t.Fatal(err)
	}
	if b.user, err = b.sb.IssueTokens("alpha", 10012); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bundle) base(sub string) string { return sandbox.BaseURL(b.srv.URL, sub) }

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %.200s", err, a.body)
	}
	return m
}

// do sends one request to an account's base with a bearer token.
func (b *bundle) do(t *testing.T, method, sub, path, token string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, ok := body.(string)
		if !ok {
			bb, _ := json.Marshal(body)
			raw = string(bb)
		}
		rd = strings.NewReader(raw)
	}
	req, err := http.NewRequest(method, b.base(sub)+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, data}
}

func wantStatus(t *testing.T, a answer, status int, contentType string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d; body %.300s", a.status, status, a.body)
	}
	if ct := a.header.Get("Content-Type"); contentType != "" && ct != contentType {
		t.Fatalf("content type %q, want %q", ct, contentType)
	}
	if a.header.Get("X-Request-Id") == "" {
		t.Fatalf("no x-request-id on a %d", status)
	}
}

func wantProblem(t *testing.T, a answer, status int) map[string]any {
	t.Helper()
	wantStatus(t, a, status, "application/problem+json")
	m := a.json(t)
	if m["status"] != float64(status) || m["title"] == "" || m["type"] != "https://httpstatus.es/"+strconv.Itoa(status) {
		t.Fatalf("problem+json fields wrong: %v", m)
	}
	return m
}

var asteriskSettings = map[string]any{
	"login": "example", "password": "eXaMp1E", "phones": map[string]string{"504141": "1039"}, "script_path": "https://example.com/",
}

func TestListWidgetsPagesWithHALLinks(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RatePerSecond: -1, Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(5, 500)...)})
	// 8 available widgets (one of the defaults is unavailable), 3 a page.
	var codes []string
	next := "/api/v4/widgets?page=1&limit=3"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("next links never end")
		}
		a := b.do(t, "GET", "alpha", next, b.admin.AccessToken, nil)
		wantStatus(t, a, 200, "application/hal+json")
		m := a.json(t)
		if m["_page"] != float64(pages+1) {
			t.Fatalf("_page = %v, want %d", m["_page"], pages+1)
		}
		for _, w := range m["_embedded"].(map[string]any)["widgets"].([]any) {
			codes = append(codes, w.(map[string]any)["code"].(string))
		}
		links := m["_links"].(map[string]any)
		if links["self"] == nil {
			t.Fatal("no self link")
		}
		next = ""
		if n, ok := links["next"].(map[string]any); ok {
			u, err := url.Parse(n["href"].(string))
			if err != nil {
				t.Fatal(err)
			}
			next = strings.TrimPrefix(u.Path, "/k/alpha") + "?" + u.RawQuery
		}
	}
	if len(codes) != 8 {
		t.Fatalf("listed %d widgets %v, want 8", len(codes), codes)
	}
	for _, c := range codes {
		if c == sandbox.WidgetUnavailable {
			t.Fatal("an unavailable widget was listed")
		}
	}
	// Past the end: 204, no body.
	a := b.do(t, "GET", "alpha", "/api/v4/widgets?page=9&limit=3", b.admin.AccessToken, nil)
	if a.status != 204 || len(a.body) != 0 {
		t.Fatalf("past the last page: %d %q, want 204 and no body", a.status, a.body)
	}
}

func TestListWidgetsRefusesLimitOver250(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wantProblem(t, b.do(t, "GET", "alpha", "/api/v4/widgets?limit=251", b.admin.AccessToken, nil), 400)
	wantStatus(t, b.do(t, "GET", "alpha", "/api/v4/widgets?limit=250", b.admin.AccessToken, nil), 200, "application/hal+json")
}

func TestGetWidgetWritesKommosOddShapes(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	a := b.do(t, "GET", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.user.AccessToken, nil)
	wantStatus(t, a, 200, "application/hal+json")
	m := a.json(t)
	if m["rating"] != "2,8" || m["version"] != "1.0.3" || m["pipeline_id"] != nil || m["client_uuid"] != nil || m["is_active_in_account"] != false {
		t.Fatalf("asterisk model: %v", m)
	}
	if s, ok := m["settings"].([]any); !ok || len(s) != 0 {
		t.Fatalf("settings of a widget not installed = %#v, want [] (PHP's empty array)", m["settings"])
	}
	tmpl := m["settings_template"].([]any)
	want := []string{"login:text:true", "password:pass:true", "phones:users:true", "script_path:text:false"}
	if len(tmpl) != len(want) {
		t.Fatalf("template %v", tmpl)
	}
	for i, e := range tmpl {
		e := e.(map[string]any)
		if got := e["key"].(string) + ":" + e["type"].(string) + ":" + strconv.FormatBool(e["is_required"].(bool)); got != want[i] {
			t.Fatalf("template[%d] = %s, want %s", i, got, want[i])
		}
	}
	m = b.do(t, "GET", "alpha", "/api/v4/widgets/"+sandbox.WidgetTelephonyLP, b.user.AccessToken, nil).json(t)
	if m["version"] != float64(7) || m["rating"] != 4.5 || m["client_uuid"] == nil {
		t.Fatalf("telephony model: version %v rating %v uuid %v", m["version"], m["rating"], m["client_uuid"])
	}
	if m = b.do(t, "GET", "alpha", "/api/v4/widgets/"+sandbox.WidgetCustom, b.user.AccessToken, nil).json(t); m["rating"] != nil {
		t.Fatalf("custom widget rating %v, want null", m["rating"])
	}
}

func TestGetWidgetNotFoundOrUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wantProblem(t, b.do(t, "GET", "alpha", "/api/v4/widgets/no_such_widget", b.admin.AccessToken, nil), 404)
	wantProblem(t, b.do(t, "GET", "alpha", "/api/v4/widgets/"+sandbox.WidgetUnavailable, b.admin.AccessToken, nil), 404)
}

func TestEndpointsNeedAToken(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RatePerSecond: -1})
	beta, err := b.sb.IssueTokens("beta", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v4/widgets"},
		{"GET", "/api/v4/widgets/" + sandbox.WidgetAsterisk},
		{"POST", "/api/v4/widgets/" + sandbox.WidgetAsterisk},
		{"DELETE", "/api/v4/widgets/" + sandbox.WidgetAsterisk},
		{"GET", "/api/v4/account"},
	} {
		for _, tok := range []string{"", "at_unknown", beta.AccessToken} {
			a := b.do(t, c.method, "alpha", c.path, tok, nil)
			m := wantProblem(t, a, 401)
			if m["title"] != "Unauthorized" {
				t.Fatalf("%s %s with %q: title %v", c.method, c.path, tok, m["title"])
			}
		}
	}
}

func TestInstallWidget(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	a := b.do(t, "POST", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.admin.AccessToken, asteriskSettings)
	wantStatus(t, a, 200, "application/hal+json")
	m := a.json(t)
	if m["is_active_in_account"] != true {
		t.Fatalf("is_active_in_account = %v after install", m["is_active_in_account"])
	}
	echoed, _ := json.Marshal(m["settings"])
	want, _ := json.Marshal(asteriskSettings)
	if !bytes.Equal(echoed, want) {
		t.Fatalf("settings echoed %s, want %s", echoed, want)
	}
	if _, ok := b.sb.Installed("alpha", sandbox.WidgetAsterisk); !ok {
		t.Fatal("not installed in the sandbox's state")
	}
	if _, ok := b.sb.Installed("beta", sandbox.WidgetAsterisk); ok {
		t.Fatal("installed in another account")
	}
	m = b.do(t, "GET", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.admin.AccessToken, nil).json(t)
	if m["is_active_in_account"] != true || m["settings"].(map[string]any)["login"] != "example" {
		t.Fatalf("GET after install: %v", m)
	}
	if n := b.sb.Counters().Installs(1001, sandbox.WidgetAsterisk); n != 1 {
		t.Fatalf("installs counter = %d, want 1", n)
	}
}

func TestInstallWidgetValidationErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	a := b.do(t, "POST", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.admin.AccessToken,
		map[string]any{"login": 5, "phones": map[string]string{"x": "1"}})
	m := wantProblem(t, a, 400)
	groups := m["validation-errors"].([]any)
	g := groups[0].(map[string]any)
	if g["request_id"] != "0" {
		t.Fatalf("request_id %v", g["request_id"])
	}
	var paths []string
	for _, e := range g["errors"].([]any) {
		e := e.(map[string]any)
		if e["code"] == "" || e["detail"] == "" {
			t.Fatalf("error entry without code or detail: %v", e)
		}
		paths = append(paths, e["path"].(string))
	}
	if got := strings.Join(paths, ","); got != "login,password,phones.x" {
		t.Fatalf("error paths %s, want login,password,phones.x", got)
	}
	wantProblem(t, b.do(t, "POST", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.admin.AccessToken, `[1,2]`), 400)
	if _, ok := b.sb.Installed("alpha", sandbox.WidgetAsterisk); ok {
		t.Fatal("an invalid install took effect")
	}
}

func TestInstallNeedsAnAdministrator(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wantProblem(t, b.do(t, "POST", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.user.AccessToken, asteriskSettings), 403)
	wantProblem(t, b.do(t, "DELETE", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.user.AccessToken, nil), 403)
	wantProblem(t, b.do(t, "POST", "alpha", "/api/v4/widgets/no_such", b.admin.AccessToken, asteriskSettings), 404)
}

func TestUninstallAnswers204Or200(t *testing.T) {
	t.Parallel()
	for _, d200 := range []bool{false, true} {
		b := setup(t, sandbox.Config{DeleteAnswer200: d200})
		wantStatus(t, b.do(t, "POST", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.admin.AccessToken, asteriskSettings), 200, "")
		a := b.do(t, "DELETE", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.admin.AccessToken, nil)
		switch {
		case !d200 && (a.status != 204 || len(a.body) != 0):
			t.Fatalf("DELETE: %d %q, want 204 and no body", a.status, a.body)
		case d200 && (a.status != 200 || string(a.body) != "{}"):
			t.Fatalf("DELETE with DeleteAnswer200: %d %q, want 200 {}", a.status, a.body)
		}
		if _, ok := b.sb.Installed("alpha", sandbox.WidgetAsterisk); ok {
			t.Fatal("still installed after DELETE")
		}
		wantProblem(t, b.do(t, "DELETE", "alpha", "/api/v4/widgets/no_such", b.admin.AccessToken, nil), 404)
	}
}

func TestGetAccount(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	a := b.do(t, "GET", "alpha", "/api/v4/account", b.user.AccessToken, nil)
	wantStatus(t, a, 200, "application/hal+json")
	m := a.json(t)
	if m["id"] != float64(1001) || m["subdomain"] != "alpha" || m["current_user_id"] != float64(10012) || m["country"] == nil || m["currency"] == nil || m["name"] == nil {
		t.Fatalf("account: %v", m)
	}
}

func TestUnpaidAccountAnswers402(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	tok, err := b.sb.IssueTokens("unpaid", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, b.do(t, "GET", "unpaid", "/api/v4/account", tok.AccessToken, nil), 402)
	wantProblem(t, b.do(t, "POST", "unpaid", "/api/v4/widgets/"+sandbox.WidgetAsterisk, tok.AccessToken, asteriskSettings), 402)
}

func TestAPIWhitelistAnswers403(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	tok, err := b.sb.IssueTokens("walled", 0)
	if err != nil {
		t.Fatal(err)
	}
	m := wantProblem(t, b.do(t, "GET", "walled", "/api/v4/account", tok.AccessToken, nil), 403)
	if !strings.Contains(m["detail"].(string), "whitelist") {
		t.Fatalf("detail %v", m["detail"])
	}
}

func TestRateLimitIsJudgedOnArrival(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	get := func(sub, tok string) int {
		return b.do(t, "GET", sub, "/api/v4/account", tok, nil).status
	}
	for i := range 7 {
		if st := get("alpha", b.admin.AccessToken); st != 200 {
			t.Fatalf("request %d of 7 in one second: %d", i+1, st)
		}
		b.clk.Add(100 * time.Millisecond)
	}
	// The 8th within the second that began with the first: refused.
	a := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil)
	wantStatus(t, a, 429, "text/html")
	if !strings.Contains(string(a.body), "429 Too Many Requests") || a.header.Get("Retry-After") != "" {
		t.Fatalf("429: body %q, Retry-After %q", a.body, a.header.Get("Retry-After"))
	}
	// Another account has its own budget.
	beta, _ := b.sb.IssueTokens("beta", 0)
	if st := get("beta", beta.AccessToken); st != 200 {
		t.Fatalf("beta refused with %d by alpha's limit", st)
	}
	// Exactly one second after the first arrival its slot frees.
	b.clk.Add(300 * time.Millisecond)
	if st := get("alpha", b.admin.AccessToken); st != 200 {
		t.Fatalf("after the window moved: %d", st)
	}
	if st := get("alpha", b.admin.AccessToken); st != 429 {
		t.Fatalf("second request as the window moved by one slot: %d, want 429", st)
	}
	c := b.sb.Counters()
	if a := c.Accounts["1001"]; a.LastAt.Sub(a.FirstAt) != time.Second || c.LastAt.Sub(c.FirstAt) != time.Second {
		t.Fatalf("arrival span %v (total %v), want 1s", a.LastAt.Sub(a.FirstAt), c.LastAt.Sub(c.FirstAt))
	}
	if c.Accounts["1001"].RateLimited != 2 || c.Total.RateLimited != 2 || c.Requests["GET /api/v4/account"]["429"] != 2 {
		t.Fatalf("429 counters: account %d total %d route %v", c.Accounts["1001"].RateLimited, c.Total.RateLimited, c.Requests["GET /api/v4/account"])
	}
}

func TestLimitsAreJudgedOnArrivalNotAfterLatency(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RatePerSecond: 1, Latency: 300 * time.Millisecond})
	first := make(chan int, 1)
	go func() { first <- b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil).status }()
	waitfor.Until(t, 5*time.Second, func() (bool, string) {
		return b.sb.Counters().Accounts["1001"].MaxConcurrent > 0, "the first request never arrived"
	})
	// The first request was judged when it arrived; two seconds later,
	// while it is still being answered, the second one fits.
	b.clk.Add(2 * time.Second)
	if st := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil).status; st != 200 {
		t.Fatalf("second request: %d, want 200", st)
	}
	if st := <-first; st != 200 {
		t.Fatalf("first request: %d", st)
	}
}

func TestRateLimitBodiesAndRetryAfter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		body, contentType string
	}{{"empty", ""}, {"json", "application/problem+json"}, {"html", "text/html"}} {
		b := setup(t, sandbox.Config{RatePerSecond: 1, RateLimitBody: c.body, RetryAfter: 1500 * time.Millisecond})
		b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil)
		a := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil)
		wantStatus(t, a, 429, c.contentType)
		if ra := a.header.Get("Retry-After"); ra != "2" {
			t.Fatalf("%s: Retry-After %q, want 2 (1.5s rounded up)", c.body, ra)
		}
		if c.body == "empty" && len(a.body) != 0 {
			t.Fatalf("empty 429 has a body: %q", a.body)
		}
	}
}

func TestJSON429CarriesRetryAfterInTheBody(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RatePerSecond: 1, RateLimitBody: "json-retry-after", RetryAfter: 300 * time.Second})
	b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil)
	a := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil)
	wantStatus(t, a, 429, "application/problem+json")
	var body struct {
		Title      string `json:"title"`
		RetryAfter int    `json:"retry_after"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil || body.Title != "Too Many Requests" || body.RetryAfter != 300 || a.header.Get("Retry-After") != "" {
		t.Fatalf("429: %s (%v), Retry-After header %q", a.body, err, a.header.Get("Retry-After"))
	}
}

func TestIPBlockMode(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{BlockIPAfter: 2, BlockFor: time.Hour})
	beta, _ := b.sb.IssueTokens("beta", 0)
	b.sb.Block("alpha", time.Hour)
	// One account blocked: the other still answers.
	if st := b.do(t, "GET", "beta", "/api/v4/account", beta.AccessToken, nil).status; st != 200 {
		t.Fatalf("beta with one account blocked: %d", st)
	}
	b.sb.Block("beta", time.Minute)
	b.sb.Unblock("beta") // the IP block stays when an account's is lifted
	for _, req := range []func() answer{
		func() answer { return b.do(t, "GET", "beta", "/api/v4/account", beta.AccessToken, nil) },
		func() answer {
			return b.do(t, "POST", "beta", "/oauth2/access_token", "", map[string]string{
				"client_id": sandbox.DefaultClientID, "client_secret": sandbox.DefaultClientSecret, "grant_type": "refresh_token", "refresh_token": beta.RefreshToken})
		},
	} {
		a := req()
		wantStatus(t, a, 403, "text/html")
		if !strings.Contains(string(a.body), "<center>nginx</center>") {
			t.Fatalf("IP block page %q", a.body)
		}
	}
	if c := b.sb.Counters(); c.Total.IPBlocks != 1 {
		t.Fatalf("IP blocks %d", c.Total.IPBlocks)
	}
	b.sb.UnblockIP()
	if st := b.do(t, "GET", "beta", "/api/v4/account", beta.AccessToken, nil).status; st != 200 {
		t.Fatalf("after UnblockIP: %d", st)
	}
	// It runs out after BlockFor too.
	b.sb.BlockIP(time.Minute)
	b.clk.Add(2 * time.Minute)
	if st := b.do(t, "GET", "beta", "/api/v4/account", beta.AccessToken, nil).status; st != 200 {
		t.Fatalf("after the IP block ran out: %d", st)
	}
}

func TestGlobalRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{GlobalRatePerSecond: 3})
	beta, _ := b.sb.IssueTokens("beta", 0)
	statuses := []int{}
	for i := range 4 {
		sub, tok := "alpha", b.admin.AccessToken
		if i%2 == 1 {
			sub, tok = "beta", beta.AccessToken
		}
		statuses = append(statuses, b.do(t, "GET", sub, "/api/v4/account", tok, nil).status)
	}
	if statuses[3] != 429 || statuses[0] != 200 || statuses[1] != 200 || statuses[2] != 200 {
		t.Fatalf("statuses %v, want 200 200 200 429", statuses)
	}
}

func TestRepeatedViolationsBlockTheAccount(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RatePerSecond: 1, BlockAfter: 3, BlockWindow: time.Minute, BlockFor: time.Hour})
	tokenReq := func() answer {
		return b.do(t, "POST", "alpha", "/oauth2/access_token", "", map[string]string{
			"client_id": sandbox.DefaultClientID, "client_secret": sandbox.DefaultClientSecret, "grant_type": "refresh_token", "refresh_token": b.admin.RefreshToken})
	}
	b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil)
	for i := range 3 {
		if st := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil).status; st != 429 {
			t.Fatalf("violation %d: %d", i+1, st)
		}
	}
	// The fourth violation within the window blocks the account.
	if st := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil).status; st != 429 {
		t.Fatalf("fourth violation: %d", st)
	}
	b.clk.Add(5 * time.Second) // the rate budget is back, the block stays
	a := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil)
	wantStatus(t, a, 403, "text/html")
	if !strings.Contains(string(a.body), "<center>nginx</center>") {
		t.Fatalf("block page %q is not nginx's", a.body)
	}
	// Also on the token endpoint.
	wantStatus(t, tokenReq(), 403, "text/html")
	c := b.sb.Counters()
	if c.Accounts["1001"].Blocks != 1 || c.Accounts["1001"].BlockedAnswers != 2 {
		t.Fatalf("block counters: %+v", c.Accounts["1001"].Totals)
	}
	b.clk.Add(time.Hour)
	if st := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil).status; st != 200 {
		t.Fatalf("after the block ran out: %d", st)
	}
	b.sb.Block("alpha", time.Hour)
	b.clk.Add(2 * time.Second)
	if st := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil).status; st != 403 {
		t.Fatalf("after Block: %d", st)
	}
	b.sb.Unblock("alpha")
	if st := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil).status; st != 200 {
		t.Fatalf("after Unblock: %d", st)
	}
}

func TestViolationsOutsideTheWindowDoNotBlock(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RatePerSecond: 1, BlockAfter: 2, BlockWindow: 10 * time.Second})
	for range 6 {
		b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil)
		if st := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil).status; st != 429 {
			t.Fatalf("want a 429, got %d", st)
		}
		b.clk.Add(6 * time.Second)
	}
	if n := b.sb.Counters().Accounts["1001"].Blocks; n != 0 {
		t.Fatalf("blocked %d times by violations spread wider than the window", n)
	}
}

func tokenRequest(b *bundle, t *testing.T, form url.Values) answer {
	t.Helper()
	resp, err := b.srv.Client().PostForm(b.base("alpha")+"/oauth2/access_token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, data}
}

func TestRefreshTokensAreSingleUse(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	form := url.Values{"client_id": {sandbox.DefaultClientID}, "client_secret": {sandbox.DefaultClientSecret},
		"grant_type": {"refresh_token"}, "refresh_token": {b.admin.RefreshToken}, "redirect_uri": {"https://example.com/cb"}}
	a := tokenRequest(b, t, form)
	wantStatus(t, a, 200, "application/json")
	m := a.json(t)
	if m["token_type"] != "Bearer" || m["expires_in"] != float64(86400) || m["access_token"] == "" || m["refresh_token"] == "" || m["server_time"] == nil {
		t.Fatalf("token answer: %v", m)
	}
	if m["refresh_token"] == b.admin.RefreshToken {
		t.Fatal("refresh token not rotated")
	}
	// The new access token works.
	wantStatus(t, b.do(t, "GET", "alpha", "/api/v4/account", m["access_token"].(string), nil), 200, "")
	// The old refresh token is dead.
	a = tokenRequest(b, t, form)
	p := wantProblem(t, a, 401)
	if p["hint"] != "Token has been revoked" {
		t.Fatalf("reuse: hint %v", p["hint"])
	}
	c := b.sb.Counters().Accounts["1001"]
	if c.Refreshes != 1 || c.RevokedReuses != 1 {
		t.Fatalf("refreshes %d revoked reuses %d, want 1 and 1", c.Refreshes, c.RevokedReuses)
	}
	// JSON bodies work as well as forms.
	a = b.do(t, "POST", "alpha", "/oauth2/access_token", "", map[string]string{"client_id": sandbox.DefaultClientID,
		"client_secret": sandbox.DefaultClientSecret, "grant_type": "refresh_token", "refresh_token": m["refresh_token"].(string)})
	wantStatus(t, a, 200, "application/json")
}

func TestTokenEndpointChecksTheClient(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RedirectURI: "https://example.com/cb"})
	base := url.Values{"client_id": {sandbox.DefaultClientID}, "client_secret": {sandbox.DefaultClientSecret},
		"grant_type": {"refresh_token"}, "refresh_token": {b.admin.RefreshToken}, "redirect_uri": {"https://example.com/cb"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range base {
			f[kk] = vv
		}
		f.Set(k, v)
		return f
	}
	if p := wantProblem(t, tokenRequest(b, t, with("client_secret", "wrong")), 401); p["hint"] == "Token has been revoked" {
		t.Fatal("a bad client secret reads as a revoked token")
	}
	wantProblem(t, tokenRequest(b, t, with("redirect_uri", "https://evil.example/")), 400)
	wantProblem(t, tokenRequest(b, t, with("grant_type", "password")), 400)
	// None of those spent the refresh token.
	wantStatus(t, tokenRequest(b, t, base), 200, "application/json")
}

func TestAuthorizationCodes(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	code, err := b.sb.IssueCode("alpha", 0)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"client_id": {sandbox.DefaultClientID}, "client_secret": {sandbox.DefaultClientSecret}, "grant_type": {"authorization_code"}, "code": {code}}
	wantStatus(t, tokenRequest(b, t, form), 200, "application/json")
	wantProblem(t, tokenRequest(b, t, form), 400) // used
	late, _ := b.sb.IssueCode("alpha", 0)
	b.clk.Add(21 * time.Minute)
	form.Set("code", late)
	wantProblem(t, tokenRequest(b, t, form), 400) // expired
}

func TestAccessTokensExpire(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{TokenLifetime: time.Hour})
	ll, err := b.sb.IssueLongLived("alpha", 0, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil), 200, "")
	b.clk.Add(time.Hour)
	wantProblem(t, b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil), 401)
	wantStatus(t, b.do(t, "GET", "alpha", "/api/v4/account", ll, nil), 200, "")
	b.clk.Add(48 * time.Hour)
	wantProblem(t, b.do(t, "GET", "alpha", "/api/v4/account", ll, nil), 401)
}

func TestInjectedServerErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RatePerSecond: -1})
	if err := b.sb.SetFaults("alpha", sandbox.Faults{ErrorRate: 1, ErrorStatuses: []int{503}, Limit: 2}); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil), 503)
	// beta has no faults of its own and there are no global ones.
	beta, _ := b.sb.IssueTokens("beta", 0)
	wantStatus(t, b.do(t, "GET", "beta", "/api/v4/account", beta.AccessToken, nil), 200, "")
	if err := b.sb.SetFaults("alpha", sandbox.Faults{ErrorRate: 1, ErrorHTML: true, ErrorStatuses: []int{502}, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	a := b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil)
	wantStatus(t, a, 502, "text/html")
	// Limit reached: healthy again.
	wantStatus(t, b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil), 200, "")
	// Global faults reach every account; ClearFaults ends them.
	if err := b.sb.SetFaults("", sandbox.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	if st := b.do(t, "GET", "beta", "/api/v4/account", beta.AccessToken, nil).status; st < 500 {
		t.Fatalf("global fault: %d", st)
	}
	b.sb.ClearFaults()
	wantStatus(t, b.do(t, "GET", "beta", "/api/v4/account", beta.AccessToken, nil), 200, "")
	if n := b.sb.Counters().Total.InjectedErrors; n != 3 {
		t.Fatalf("injected errors counted %d, want 3", n)
	}
	// Faults can be limited to routes.
	if err := b.sb.SetFaults("", sandbox.Faults{ErrorRate: 1, Routes: []string{"POST /api/v4/widgets/{code}"}}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.do(t, "GET", "beta", "/api/v4/account", beta.AccessToken, nil), 200, "")
	if st := b.do(t, "POST", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.admin.AccessToken, asteriskSettings).status; st < 500 {
		t.Fatalf("route fault: %d", st)
	}
	b.sb.ClearFaults()
	if err := b.sb.SetFaults("", sandbox.Faults{ErrorRate: 0.7, ResetRate: 0.7}); err == nil {
		t.Fatal("rates adding up past 1 accepted")
	}
}

func TestInjectedResetsHangsAndTruncations(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RatePerSecond: -1})
	send := func(timeout time.Duration) (*http.Response, []byte, error) {
		req, _ := http.NewRequest("GET", b.base("alpha")+"/api/v4/account", nil)
		req.Header.Set("Authorization", "Bearer "+b.admin.AccessToken)
		hc := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		return resp, data, err
	}
	_ = b.sb.SetFaults("alpha", sandbox.Faults{ResetRate: 1, Limit: 1})
	if _, _, err := send(5 * time.Second); err == nil {
		t.Fatal("reset: the request succeeded")
	}
	_ = b.sb.SetFaults("alpha", sandbox.Faults{HangRate: 1, Limit: 1})
	if _, _, err := send(200 * time.Millisecond); err == nil || !errors.Is(err, errTimeout(err)) {
		t.Fatalf("hang: %v, want a client timeout", err)
	}
	_ = b.sb.SetFaults("alpha", sandbox.Faults{TruncateRate: 1, Limit: 1})
	resp, data, err := send(5 * time.Second)
	if err == nil {
		t.Fatalf("truncate: read the whole body %q", data)
	}
	if resp != nil && resp.StatusCode != 200 {
		t.Fatalf("truncate: status %d", resp.StatusCode)
	}
	c := b.sb.Counters()
	if c.Total.Resets != 1 || c.Total.Hangs != 1 || c.Total.Truncations != 1 {
		t.Fatalf("fault counters %+v", c.Total)
	}
	// The hung request is counted once the sandbox noticed the client left.
	waitfor.Until(t, 5*time.Second, func() (bool, string) {
		r := b.sb.Counters().Requests
		return r["GET /api/v4/account"]["gone"] == 2, fmt.Sprintf("requests by status: %v, want 2 gone (reset, hang) and 1 truncated", r)
	})
	if n := b.sb.Counters().Requests["GET /api/v4/account"]["truncated"]; n != 1 {
		t.Fatalf("truncated count %d", n)
	}
}

// errTimeout returns err itself when it is a timeout, so errors.Is passes
// exactly for timeouts.
func errTimeout(err error) error {
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return err
	}
	return errors.New("not a timeout")
}

func TestCountersJSONAndConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{RatePerSecond: -1, Latency: 200 * time.Millisecond})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", b.base("alpha")+"/api/v4/account", nil)
			req.Header.Set("Authorization", "Bearer "+b.admin.AccessToken)
			if resp, err := b.srv.Client().Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	b.do(t, "POST", "alpha", "/api/v4/widgets/"+sandbox.WidgetAsterisk, b.admin.AccessToken, asteriskSettings)
	resp, err := http.Get(b.srv.URL + "/_sandbox/counters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c sandbox.Counters
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	a := c.Accounts["1001"]
	if a.MaxConcurrent < 2 || a.MaxConcurrent > 4 {
		t.Fatalf("max concurrent %d, want 2..4 for 4 parallel requests held 200ms", a.MaxConcurrent)
	}
	if a.Installed[sandbox.WidgetAsterisk] != 1 || c.Requests["GET /api/v4/account"]["200"] != 4 || c.Requests["POST /api/v4/widgets/{code}"]["200"] != 1 || c.Total.Requests != 5 {
		t.Fatalf("counters: %+v", c)
	}
	// Reset over HTTP.
	r2, err := http.Post(b.srv.URL+"/_sandbox/counters/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if n := b.sb.Counters().Total.Requests; n != 0 {
		t.Fatalf("after reset: %d requests", n)
	}
}

func TestFaultsOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	put := func(body string) int {
		req, _ := http.NewRequest("PUT", b.srv.URL+"/_sandbox/faults", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := put(`{"account":"alpha","faults":{"error_rate":1,"error_statuses":[500],"latency":"1ms"}}`); st != 204 {
		t.Fatalf("PUT faults: %d", st)
	}
	wantProblem(t, b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil), 500)
	if st := put(`{"account":"alpha","faults":{"error_rate":2}}`); st != 400 {
		t.Fatalf("PUT bad faults: %d, want 400", st)
	}
	if st := put(`{"account":"nobody","faults":{}}`); st != 400 {
		t.Fatalf("PUT faults for an unknown account: %d, want 400", st)
	}
	req, _ := http.NewRequest("DELETE", b.srv.URL+"/_sandbox/faults", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantStatus(t, b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil), 200, "")
}

func TestHostBasedRouting(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	req, _ := http.NewRequest("GET", b.srv.URL+"/api/v4/account", nil)
	req.Host = "alpha.localhost"
	req.Header.Set("Authorization", "Bearer "+b.admin.AccessToken)
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("host-routed request: %d", resp.StatusCode)
	}
	// Unknown accounts get nginx's 404.
	a := b.do(t, "GET", "nobody", "/api/v4/account", b.admin.AccessToken, nil)
	if a.status != 404 || !strings.Contains(string(a.body), "nginx") {
		t.Fatalf("unknown account: %d %q", a.status, a.body)
	}
}

func TestCloseEndsHungRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	_ = b.sb.SetFaults("", sandbox.Faults{HangRate: 1, HangFor: sandbox.Duration(time.Hour)})
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", b.base("alpha")+"/api/v4/account", nil)
		req.Header.Set("Authorization", "Bearer "+b.admin.AccessToken)
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitfor.Until(t, 5*time.Second, func() (bool, string) {
		return b.sb.Counters().Total.Hangs > 0, "request never reached the hang"
	})
	b.sb.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a hung request")
	}
}
