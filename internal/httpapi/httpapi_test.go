package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/httpapi"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/producer"
)

const token = "test-token"

func spec(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "api", "openapi.yaml")
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("api/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, r
}

type fixture struct {
	h      http.Handler
	st     *store.Store
	router routers.Router
}

func setup(t *testing.T) *fixture {
	t.Helper()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	hosts, _ := kommohost.Parse("") // the default: Kommo's hosts
	st := store.New(r.Client, prefix).WithHosts(hosts)
	prod := producer.New(r.Client, prefix, asynq.Queue("q-"+prefix))
	t.Cleanup(func() { prod.Close() })
	_, router := spec(t)
	return &fixture{h: (&httpapi.Server{Prod: prod, Store: st, Tokens: []string{"old-token", token}, MaxBody: 64 << 10, MaxItems: 10}).Handler(), st: st, router: router}
}

// call sends a request through the handler and checks the answer against
// the document; when valid is set, the request too.
func (f *fixture) call(t *testing.T, method, path, body, auth string, valid bool) (int, map[string]any, string) {
	t.Helper()
	req := httptest.NewRequest(method, "http://127.0.0.1:8080"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	route, params, err := f.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is not in api/openapi.yaml: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if valid {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Fatalf("the document refuses a request the server takes: %s %s %s: %v", method, path, body, err)
		}
		req.Body = io.NopCloser(strings.NewReader(body))
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
		Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("%s %s answered %d, not as documented: %v\n%s", method, path, rec.Code, err, rec.Body.String())
	}
	var m map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	return rec.Code, m, rec.Body.String()
}

func TestEveryRouteIsDocumentedAndOnlyThose(t *testing.T) {
	doc, _ := spec(t)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	served := append(append([]string(nil), httpapi.Routes...), httpapi.OAuthRoutes...)
	sort.Strings(documented)
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Fatalf("documented:\n%s\nserved:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
}

func TestTheServerAnswersAsDocumented(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()

	// Credentials first; the answer never holds the token.
	code, m, raw := f.call(t, "PUT", "/v1/accounts/7", `{"subdomain":"acme","access_token":"at_SECRET","refresh_token":"rt_SECRET"}`, token, true)
	if code != 200 || m["account_id"] != float64(7) || strings.Contains(raw, "SECRET") {
		t.Fatalf("put account: %d %s", code, raw)
	}
	if a, err := f.st.GetAccount(ctx, 7, ""); err != nil || a.AccessToken != "at_SECRET" || a.BaseURL != "https://acme.kommo.com" {
		t.Fatalf("stored %v %v", a, err)
	}
	if code, m, _ := f.call(t, "PUT", "/v1/accounts/7", `{"account_id":8,"subdomain":"acme","access_token":"x"}`, token, true); code != 422 || m["field"] != "account_id" {
		t.Fatalf("mismatched id: %d %v", code, m)
	}
	if code, m, raw := f.call(t, "PUT", "/v1/accounts/7", `{"subdomain":"a/b","access_token":"at_SECRET2"}`, token, true); code != 422 || m["field"] != "subdomain" || strings.Contains(raw, "SECRET2") {
		t.Fatalf("bad subdomain: %d %s", code, raw)
	}
	// A base URL off the Kommo host allow-list is refused, naming the
	// field and the rule, and not stored: no token is ever sent there.
	for _, c := range []struct{ url, rule string }{
		{"http://169.254.169.254/latest", "not an allowed Kommo host"},
		{"https://attacker.example", "not an allowed Kommo host"},
		{"https://kommo.com.attacker.example", "not an allowed Kommo host"},
		{"https://acme.kommo.com/api", "without a path"},
		{"http://acme.kommo.com", "needs https"},
	} {
		code, m, raw := f.call(t, "PUT", "/v1/accounts/8", `{"base_url":"`+c.url+`","access_token":"at_SECRET3"}`, token, true)
		if code != 422 || m["field"] != "base_url" || !strings.Contains(m["detail"].(string), c.rule) || strings.Contains(raw, "SECRET3") {
			t.Errorf("%s: %d %s", c.url, code, raw)
		}
	}
	if _, err := f.st.GetAccount(ctx, 8, ""); err == nil {
		t.Fatal("an account with a refused base URL was stored")
	}

	// One install: 202 queued, then already queued.
	body := `{"account_id":7,"widget_code":"amo_asterisk","settings":{"login":"x","password":"PW_SECRET"}}`
	if code, m, _ := f.call(t, "POST", "/v1/installs", body, token, true); code != 202 || m["outcome"] != "queued" || m["task_id"] != "install:7:amo_asterisk" {
		t.Fatalf("install: %d %v", code, m)
	}
	if code, m, _ := f.call(t, "POST", "/v1/installs", body, token, true); code != 202 || m["outcome"] != "already_queued" {
		t.Fatalf("again: %d %v", code, m)
	}
	// Invalid ones name the field.
	for _, c := range []struct{ body, field string }{
		{`{"account_id":0,"widget_code":"w"}`, "account_id"},
		{`{"account_id":7,"widget_code":"../x"}`, "widget_code"},
		{`{"account_id":7,"widget_code":"w","settings":[1]}`, "settings"},
		{`{"account_id":9,"widget_code":"w"}`, "account 9"},
	} {
		code, m, raw := f.call(t, "POST", "/v1/installs", c.body, token, false)
		if code != 422 || !strings.Contains(m["detail"].(string), c.field) {
			t.Errorf("%s: %d %s", c.body, code, raw)
		}
	}
	// An array: one outcome per item, in order.
	code, m, raw = f.call(t, "POST", "/v1/installs", `[{"account_id":7,"widget_code":"w2"},{"account_id":-1,"widget_code":"w"},{"acount_id":7},"x"]`, token, true)
	if code != 200 {
		t.Fatalf("array: %d %s", code, raw)
	}
	res := m["results"].([]any)
	want := []string{"queued", "invalid", "invalid", "invalid"}
	for i, w := range want {
		if got := res[i].(map[string]any)["outcome"]; got != w {
			t.Errorf("item %d: %v, want %s (%s)", i, got, w, raw)
		}
	}
	if !strings.Contains(raw, `unknown field \"acount_id\"`) {
		t.Errorf("no field named: %s", raw)
	}

	// The token being rotated out is still accepted beside the new one.
	if code, _, raw := f.call(t, "GET", "/v1/accounts/7/results", "", "old-token", true); code != 200 {
		t.Fatalf("the older of two tokens: %d %s", code, raw)
	}

	// Uninstalls.
	if code, m, _ := f.call(t, "POST", "/v1/uninstalls", `{"account_id":7,"widget_code":"amo_asterisk"}`, token, true); code != 202 || m["outcome"] != "queued" {
		t.Fatalf("uninstall: %d %v", code, m)
	}
	if code, m, raw := f.call(t, "POST", "/v1/uninstalls", `[{"account_id":7,"widget_code":"w9"},{"account_id":7}]`, token, true); code != 200 || m["counts"].(map[string]any)["invalid"] != float64(1) {
		t.Fatalf("uninstall array: %d %s", code, raw)
	}

	// Results.
	code, m, raw = f.call(t, "GET", "/v1/accounts/7/results", "", token, true)
	if code != 200 || m["total"].(float64) < 2 || strings.Contains(raw, "PW_SECRET") {
		t.Fatalf("results: %d %s", code, raw)
	}
	if code, _, _ := f.call(t, "GET", "/v1/accounts/x/results", "", token, false); code != 400 {
		t.Fatalf("bad id: %d", code)
	}

	// Refusals: no token, a wrong one, too large, too many, not JSON.
	for _, c := range []struct {
		method, path, body, auth string
		status                   int
	}{
		{"POST", "/v1/installs", body, "", 401},
		{"POST", "/v1/installs", body, "nope", 401},
		{"POST", "/v1/installs", body, "old-token," + token, 401},
		{"GET", "/v1/accounts/7/results", "", "", 401},
		{"POST", "/v1/installs", `{"account_id":7,"widget_code":"w","settings":{"a":"` + strings.Repeat("x", 70<<10) + `"}}`, token, 413},
		{"POST", "/v1/installs", "[" + strings.Repeat(`{"account_id":7,"widget_code":"w"},`, 11) + `{"account_id":7,"widget_code":"w"}]`, token, 413},
		{"POST", "/v1/installs", `[1,2`, token, 400},
	} {
		if code, _, raw := f.call(t, c.method, c.path, c.body, c.auth, false); code != c.status {
			t.Errorf("%s %s (%d bytes, auth %q): %d, want %d: %.200s", c.method, c.path, len(c.body), c.auth, code, c.status, raw)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
