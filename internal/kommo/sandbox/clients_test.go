package sandbox_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
)

func twoClients() sandbox.Config {
	return sandbox.Config{Clients: []sandbox.Client{{ID: "one", Secret: "s1"}, {ID: "two", Secret: "s2"}}}
}

func TestTokensArePerClient(t *testing.T) {
	t.Parallel()
	b := setup(t, twoClients())
	two, err := b.sb.IssueTokensFor("two", "alpha", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.sb.IssueTokensFor("three", "alpha", 0); err == nil {
		t.Fatal("tokens issued for an unknown client")
	}
	refresh := func(id, secret, token string) answer {
		return tokenRequest(b, t, url.Values{"client_id": {id}, "client_secret": {secret}, "grant_type": {"refresh_token"}, "refresh_token": {token}})
	}
	// Client one's credentials cannot refresh client two's token, and the
	// attempt does not spend it.
	if p := wantProblem(t, refresh("one", "s1", two.RefreshToken), 401); p["hint"] != "Token has been revoked" {
		t.Fatalf("wrong client: hint %v", p["hint"])
	}
	wantStatus(t, refresh("two", "s2", two.RefreshToken), 200, "application/json")
	// b.admin's pair is the first client's.
	wantStatus(t, refresh("one", "s1", b.admin.RefreshToken), 200, "application/json")
	c := b.sb.Counters()
	if c.Total.WrongClient != 1 || c.Clients["one"].Refreshes != 1 || c.Clients["two"].Refreshes != 1 {
		t.Fatalf("wrong client %d, refreshes by client %+v", c.Total.WrongClient, c.Clients)
	}
	// Codes too are per client.
	code, _ := b.sb.IssueCodeFor("two", "alpha", 0)
	wantProblem(t, tokenRequest(b, t, url.Values{"client_id": {"one"}, "client_secret": {"s1"}, "grant_type": {"authorization_code"}, "code": {code}}), 400)
	wantStatus(t, tokenRequest(b, t, url.Values{"client_id": {"two"}, "client_secret": {"s2"}, "grant_type": {"authorization_code"}, "code": {code}}), 200, "application/json")
}

func TestRateLimitIsPerClientUnderTheAccountsTotal(t *testing.T) {
	t.Parallel()
	cfg := twoClients()
	cfg.RatePerSecond, cfg.AccountRatePerSecond, cfg.BlockAfter = 2, 3, -1
	b := setup(t, cfg)
	two, _ := b.sb.IssueTokensFor("two", "alpha", 0)
	get := func(tok string) int { return b.do(t, "GET", "alpha", "/api/v4/account", tok, nil).status }
	// Within one second (the clock stands still): client one gets its 2...
	if s1, s2, s3 := get(b.admin.AccessToken), get(b.admin.AccessToken), get(b.admin.AccessToken); s1 != 200 || s2 != 200 || s3 != 429 {
		t.Fatalf("client one: %d %d %d, want 200 200 429", s1, s2, s3)
	}
	// ...and client two has its own 2, but the account's total is 3.
	if s1, s2 := get(two.AccessToken), get(two.AccessToken); s1 != 200 || s2 != 429 {
		t.Fatalf("client two: %d %d, want 200 then 429 (account total 3)", s1, s2)
	}
	c := b.sb.Counters()
	if c.Clients["one"].Requests != 3 || c.Clients["two"].Requests != 2 {
		t.Fatalf("requests by client %+v", c.Clients)
	}
}

func TestKommosCallsIntoTheIntegration(t *testing.T) {
	t.Parallel()
	cfg := twoClients()
	var got []url.Values
	var mu sync.Mutex
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Query())
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer hook.Close()
	cfg.Clients[1].RedirectURI = hook.URL + "/oauth/callback?x=1"
	b := setup(t, cfg)
	ctx := context.Background()
	// The install redirect: a fresh code of client two, the account's host.
	res, err := b.sb.Connect(ctx, "two", "alpha", "st", "", b.srv.URL)
	if err != nil || res.Status != http.StatusAccepted {
		t.Fatalf("connect: %+v %v", res, err)
	}
	q := got[0]
	if q.Get("code") != res.Code || q.Get("client_id") != "two" || q.Get("state") != "st" || q.Get("x") != "1" ||
		"http://"+q.Get("referer") != b.base("alpha") {
		t.Fatalf("redirect query %v", q)
	}
	wantStatus(t, tokenRequest(b, t, url.Values{"client_id": {"two"}, "client_secret": {"s2"}, "grant_type": {"authorization_code"}, "code": {res.Code},
		"redirect_uri": {cfg.Clients[1].RedirectURI}}), 200, "application/json")
	// The revoke hook: signed with client two's secret; its tokens die,
	// client one's live on.
	two, _ := b.sb.IssueTokensFor("two", "alpha", 0)
	st, err := b.sb.Revoke(ctx, "two", "alpha", hook.URL+"/oauth/revoked")
	if err != nil || st != http.StatusAccepted {
		t.Fatalf("revoke: %d %v", st, err)
	}
	q = got[1]
	m := hmac.New(sha256.New, []byte("s2"))
	m.Write([]byte("two|1001"))
	if q.Get("client_uuid") != "two" || q.Get("account_id") != "1001" || q.Get("signature") != hex.EncodeToString(m.Sum(nil)) {
		t.Fatalf("revoke query %v", q)
	}
	wantProblem(t, b.do(t, "GET", "alpha", "/api/v4/account", two.AccessToken, nil), 401)
	wantStatus(t, b.do(t, "GET", "alpha", "/api/v4/account", b.admin.AccessToken, nil), 200, "")
}

func TestRenamedAccountsAnswerTheirNewSubdomain(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	b.sb.SetAPIDomain(strings.TrimPrefix(b.srv.URL, "http://"))
	tok, _ := b.sb.IssueTokens("alpha", 0)
	claims, ok := kommo.ParseClaims(tok.AccessToken)
	if !ok || claims.AccountID != 1001 || "http://"+claims.APIDomain != b.srv.URL {
		t.Fatalf("claims %+v %v", claims, ok)
	}
	if err := b.sb.RenameAccount("alpha", "alpha2"); err != nil {
		t.Fatal(err)
	}
	// The old base is gone; the token works at the new one.
	if a := b.do(t, "GET", "alpha", "/api/v4/account", tok.AccessToken, nil); a.status != 404 {
		t.Fatalf("old base: %d", a.status)
	}
	wantStatus(t, b.do(t, "GET", "alpha2", "/api/v4/account", tok.AccessToken, nil), 200, "")
	ask := func(rt string) answer {
		req, _ := http.NewRequest("GET", b.srv.URL+"/oauth2/account/current/subdomain", nil)
		req.Header.Set("X-Refresh-Token", rt)
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header, data}
	}
	m := ask(tok.RefreshToken).json(t)
	if m["id"] != float64(1001) || m["subdomain"] != "alpha2" || m["domain"] != "kommo.com" {
		t.Fatalf("current subdomain: %v", m)
	}
	wantProblem(t, ask("rt_unknown"), 401)
}
