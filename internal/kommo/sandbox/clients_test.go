package sandbox_test

import (
	"net/url"
	"testing"

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
