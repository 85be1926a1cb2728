package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/store"
)

func TestAnAccountHoldsCredentialsOfSeveralIntegrations(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	for _, a := range []store.Account{
		{ID: 7, BaseURL: "https://acme.kommo.com", AccessToken: "at-default", RefreshToken: "rt-default"},
		{ID: 7, Integration: "crm-sync", BaseURL: "https://acme.kommo.com", AccessToken: "at-sync", RefreshToken: "rt-sync"},
		{ID: 8, Integration: "crm-sync", BaseURL: "https://beta.kommo.com", AccessToken: "at-8"},
	} {
		if err := st.PutAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	def, err := st.GetAccount(ctx, 7, "")
	if err != nil || def.AccessToken != "at-default" || def.Integration != store.DefaultIntegration {
		t.Fatalf("default credentials of 7: %v, %v", def, err)
	}
	syn, err := st.GetAccount(ctx, 7, "crm-sync")
	if err != nil || syn.AccessToken != "at-sync" || syn.Integration != "crm-sync" {
		t.Fatalf("crm-sync credentials of 7: %v, %v", syn, err)
	}
	if _, err := st.GetAccount(ctx, 8, ""); !errors.Is(err, store.ErrAccountNotFound) {
		t.Fatalf("default credentials of 8: %v, want not found", err)
	}
	// A refresh saves one integration's pair, leaving the other's alone.
	if err := st.SaveTokens(ctx, 7, "crm-sync", "at-sync-2", "rt-sync-2", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if a, _ := st.GetAccount(ctx, 7, ""); a.RefreshToken != "rt-default" {
		t.Fatalf("default refresh token changed to %q by another integration's refresh", a.RefreshToken)
	}
	if a, _ := st.GetAccount(ctx, 7, "crm-sync"); a.RefreshToken != "rt-sync-2" {
		t.Fatalf("crm-sync refresh token %q, want the saved one", a.RefreshToken)
	}
	// Listing shows every (account, integration), by account then name.
	infos, err := st.ListAccounts(ctx, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range infos {
		got = append(got, i.Integration+"@"+strings.TrimPrefix(i.BaseURL, "https://"))
	}
	// A page of 2 still holds all of account 7's credentials (and no more).
	if strings.Join(got, " ") != "crm-sync@acme.kommo.com default@acme.kommo.com" {
		t.Fatalf("first page: %v", got)
	}
	if n, _ := st.CountAccounts(ctx); n != 3 {
		t.Fatalf("count %d, want 3 credentials", n)
	}
	exist, _ := st.AccountsExist(ctx, []int64{7, 8, 9})
	if !exist[7] || !exist[8] || exist[9] {
		t.Fatalf("exist %v", exist)
	}
	// Locks are per (integration, account): two refreshes of different
	// integrations of one account do not wait for each other.
	unlock, err := st.RefreshLock(7, "").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	u2, err := st.RefreshLock(7, "crm-sync").Lock(short)
	if err != nil {
		t.Fatalf("crm-sync's lock waited for default's: %v", err)
	}
	u2()
	// Deleting one integration's credentials keeps the other's.
	if err := st.DeleteAccount(ctx, 7, "crm-sync"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetAccount(ctx, 7, ""); err != nil {
		t.Fatalf("default credentials gone with crm-sync's: %v", err)
	}
	if err := st.DeleteAccount(ctx, 7, "crm-sync"); !errors.Is(err, store.ErrAccountNotFound) || !strings.Contains(err.Error(), "crm-sync") {
		t.Fatalf("second delete: %v, want not found naming the integration", err)
	}
	if err := st.PutAccount(ctx, store.Account{ID: 9, Integration: "Bad Name", BaseURL: "https://x.kommo.com", AccessToken: "t"}); err == nil || !strings.Contains(err.Error(), "integration") {
		t.Fatalf("bad integration name: %v", err)
	}
}

func TestMigrationIndexesEarlierAccountsAsDefault(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	st := store.New(r.Client, prefix)
	ctx := context.Background()
	// What the version before integrations wrote: acct:N hashes indexed in
	// accts.
	for _, n := range []string{"11", "12", "13"} {
		r.Client.HSet(ctx, "{"+prefix+"}:acct:"+n, "base_url", "https://a"+n+".kommo.com", "access_token", "tok", "refresh_token", "", "expires_at", "")
		r.Client.ZAdd(ctx, "{"+prefix+"}:accts", redisZ(n))
	}
	if n, _ := st.CountAccounts(ctx); n != 0 {
		t.Fatalf("before the migration %d accounts are listed", n)
	}
	done, err := st.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || !strings.Contains(done[0], "3 accounts") {
		t.Fatalf("migration said %q", done)
	}
	infos, _ := st.ListAccounts(ctx, 0, 10)
	if len(infos) != 3 || infos[0].ID != 11 || infos[0].Integration != store.DefaultIntegration {
		t.Fatalf("after the migration: %+v", infos)
	}
	// The credentials did not move: a task's state still reads them.
	ts, err := st.Begin(ctx, 12, "", "w", false)
	if err != nil || ts.Account == nil || ts.Account.BaseURL != "https://a12.kommo.com" {
		t.Fatalf("begin after migration: %+v, %v", ts.Account, err)
	}
	// Again: nothing to do, nothing said.
	if done, err := st.Migrate(ctx); err != nil || len(done) != 0 {
		t.Fatalf("second migration: %q, %v", done, err)
	}
}

func redisZ(n string) redis.Z {
	f, _ := strconv.ParseFloat(n, 64)
	return redis.Z{Score: f, Member: n}
}

func TestResultsFilterByIntegration(t *testing.T) {
	t.Parallel()
	st := setup(t)
	ctx := context.Background()
	for i, integ := range []string{"", "crm-sync", "default", "crm-sync", "other"} {
		r := &store.Result{AccountID: int64(i + 1), WidgetCode: "w", Integration: integ, Operation: "install", Status: store.StatusInstalled}
		if err := st.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// A queued mark carries the integration the producer knew.
	if err := st.MarkQueuedMany(ctx, []store.Queued{{Op: "install", AccountID: 9, Code: "w", EnqueueID: "e9", Integration: "crm-sync"}}); err != nil {
		t.Fatal(err)
	}
	accounts := func(q store.Query) []int64 {
		t.Helper()
		p, err := st.Results(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, r := range p.Results {
			out = append(out, r.AccountID)
		}
		if p.Total != int64(len(out)) && q.Limit == 0 {
			t.Fatalf("total %d for %d results", p.Total, len(out))
		}
		return out
	}
	if got := accounts(store.Query{Integration: "crm-sync"}); len(got) != 3 || got[0] != 2 || got[1] != 4 || got[2] != 9 {
		t.Fatalf("crm-sync: %v, want [2 4 9]", got)
	}
	// The default's include results that name none.
	if got := accounts(store.Query{Integration: "default"}); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("default: %v, want [1 3]", got)
	}
	// Pages count matching results only.
	p, _ := st.Results(ctx, store.Query{Integration: "crm-sync", Offset: 1, Limit: 1})
	if p.Total != 3 || len(p.Results) != 1 || p.Results[0].AccountID != 4 {
		t.Fatalf("page 2 of crm-sync: %+v", p)
	}
	if got := accounts(store.Query{Integration: "crm-sync", Status: store.StatusQueued}); len(got) != 1 || got[0] != 9 {
		t.Fatalf("queued crm-sync: %v", got)
	}
}
