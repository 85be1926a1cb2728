package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/keyspace"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/waitfor"
)

func setup(t *testing.T) *store.Store {
	t.Helper()
	r := redistest.New(t)
	return store.New(r.Client, redistest.Unique(t))
}

func TestAccountsRoundTripWithoutShowingTokens(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	exp := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a := store.Account{ID: 42, BaseURL: "https://acme.kommo.com/", AccessToken: "at_secret", RefreshToken: "rt_secret", ExpiresAt: exp}
	if err := s.PutAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAccount(ctx, 42, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.BaseURL != "https://acme.kommo.com" || got.AccessToken != "at_secret" || got.RefreshToken != "rt_secret" || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("got %+v", *got)
	}
	if text := fmt.Sprintf("%v %+v %#v %s", got, got, *got, *got); strings.Contains(text, "secret") {
		t.Fatalf("tokens printed: %s", text)
	}
	if _, err := s.GetAccount(ctx, 43, ""); !errors.Is(err, store.ErrAccountNotFound) || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing account: %v", err)
	}
	list, err := s.ListAccounts(ctx, 0, 10)
	if err != nil || len(list) != 1 || list[0].ID != 42 || !list[0].HasRefreshToken {
		t.Fatalf("list %+v %v", list, err)
	}
	if err := s.DeleteAccount(ctx, 42, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, 42, ""); !errors.Is(err, store.ErrAccountNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.SaveTokens(ctx, 42, "", "x", "", time.Time{}); !errors.Is(err, store.ErrAccountNotFound) {
		t.Fatalf("saving a token of a deleted account: %v", err)
	}
	if _, err := s.GetAccount(ctx, 42, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a token save recreated a deleted account")
	}
}

func TestAccountValidationNamesTheField(t *testing.T) {
	t.Parallel()
	s := setup(t)
	for _, c := range []struct {
		a    store.Account
		want string
	}{
		{store.Account{ID: 0, BaseURL: "https://a.kommo.com", AccessToken: "x"}, "account_id"},
		{store.Account{ID: 1, BaseURL: "a.kommo.com", AccessToken: "x"}, "base_url"},
		{store.Account{ID: 1, BaseURL: "https://a.kommo.com"}, "access_token"},
	} {
		if err := s.PutAccount(context.Background(), c.a); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.a, err, c.want)
		}
	}
}

func TestTokenStoreAndPaging(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	for i := int64(1); i <= 25; i++ {
		if err := s.PutAccount(ctx, store.Account{ID: i, BaseURL: "https://a.kommo.com", AccessToken: "at", RefreshToken: "rt"}); err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	if err := s.SaveTokens(ctx, 7, "", "at2", "rt2", exp); err != nil {
		t.Fatal(err)
	}
	tok, err := s.GetAccount(ctx, 7, "")
	if err != nil || tok.AccessToken != "at2" || tok.RefreshToken != "rt2" || !tok.ExpiresAt.Equal(exp) {
		t.Fatalf("token %v %v", tok, err)
	}
	var seen []int64
	for after := int64(0); ; {
		page, err := s.ListAccounts(ctx, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			seen = append(seen, a.ID)
		}
		after = page[len(page)-1].ID
	}
	if len(seen) != 25 || seen[0] != 1 || seen[24] != 25 {
		t.Fatalf("paged through %v", seen)
	}
	if n, _ := s.CountAccounts(ctx); n != 25 {
		t.Fatalf("count %d", n)
	}
}

func TestRefreshLockIsExclusiveAcrossClients(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	// Two stores, as two processes would have.
	a, b := store.New(r.Client, prefix), store.New(r.Client, prefix)
	ctx := context.Background()
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := s.RefreshLock(9, "").Lock(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond) // hold it a moment, so overlap would show
			inside.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Fatalf("%d holders at once", maxInside.Load())
	}
	// A waiter gives up with its context.
	unlock, _ := a.RefreshLock(9, "").Lock(ctx)
	defer unlock()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := b.RefreshLock(9, "").Lock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting on a held lock: %v", err)
	}
	// Another account's lock is free.
	u2, err := b.RefreshLock(10, "").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u2()
}

func TestDeadHolderLosesTheLockAfterTTL(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	s := store.New(r.Client, redistest.Unique(t))
	s.LockTTL = 200 * time.Millisecond
	if _, err := s.RefreshLock(1, "").Lock(context.Background()); err != nil { // never unlocked
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unlock, err := s.RefreshLock(1, "").Lock(ctx)
	if err != nil {
		t.Fatalf("lock of a dead holder never freed: %v", err)
	}
	unlock()
}

func TestBlocks(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if b, err := s.Blocked(ctx, 5); b != nil || err != nil {
		t.Fatalf("unblocked account: %v %v", b, err)
	}
	if err := s.MarkBlocked(ctx, store.Block{AccountID: 5, RequestID: "r1", Detail: "403 Forbidden"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	b, err := s.Blocked(ctx, 5)
	if err != nil || b == nil || b.RequestID != "r1" || b.Until.Sub(b.Since) != time.Hour {
		t.Fatalf("block %+v %v", b, err)
	}
	list, _ := s.ListBlocked(ctx)
	if len(list) != 1 || list[0].AccountID != 5 {
		t.Fatalf("list %+v", list)
	}
	if ok, err := s.Unblock(ctx, 5); !ok || err != nil {
		t.Fatalf("unblock: %v %v", ok, err)
	}
	if b, _ := s.Blocked(ctx, 5); b != nil {
		t.Fatal("still blocked")
	}
	if ok, _ := s.Unblock(ctx, 5); ok {
		t.Fatal("unblocked twice")
	}
	// A mark runs out by itself.
	_ = s.MarkBlocked(ctx, store.Block{AccountID: 6}, 150*time.Millisecond)
	waitfor.Until(t, 10*time.Second, func() (bool, string) {
		b, err := s.Blocked(ctx, 6)
		return err == nil && b == nil, fmt.Sprintf("block mark never ran out (%v)", err)
	})
}

func TestResultsAndIndexes(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	for a := int64(1); a <= 3; a++ {
		for _, code := range []string{"w_a", "w_b"} {
			if _, err := s.MarkQueued(ctx, store.Queued{Op: "install", AccountID: a, Code: code, TaskID: fmt.Sprintf("install:%d:%s", a, code), EnqueueID: "e1"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := &store.Result{AccountID: 2, WidgetCode: "w_a", Operation: "install", Status: store.StatusFailed, EnqueueID: "e1", Attempts: 1,
		LastError: &store.ErrorInfo{Class: "invalid", HTTPStatus: 400, Detail: "phones: required", RequestID: "req"}}
	if err := s.Record(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, &store.Result{AccountID: 3, WidgetCode: "w_b", Operation: "install", Status: store.StatusInstalled, EnqueueID: "e1", WidgetID: 101, WidgetVersion: "1.0.3"}); err != nil {
		t.Fatal(err)
	}
	counts, err := s.CountByStatus(ctx)
	if err != nil || counts[store.StatusQueued] != 4 || counts[store.StatusFailed] != 1 || counts[store.StatusInstalled] != 1 {
		t.Fatalf("counts %v %v", counts, err)
	}
	got, err := s.Result(ctx, 2, "w_a")
	if err != nil || got.Status != store.StatusFailed || got.LastError.Detail != "phones: required" || got.CreatedAt.IsZero() || got.TaskID != "" && got.TaskID != "install:2:w_a" {
		t.Fatalf("result %+v %v", got, err)
	}
	page, _ := s.Results(ctx, store.Query{Status: store.StatusFailed})
	if page.Total != 1 || page.Results[0].AccountID != 2 {
		t.Fatalf("failed page %+v", page)
	}
	page, _ = s.Results(ctx, store.Query{AccountID: 3})
	if page.Total != 2 || page.Results[0].WidgetCode != "w_a" || page.Results[1].Status != store.StatusInstalled {
		t.Fatalf("account 3 page %+v", page)
	}
	page, _ = s.Results(ctx, store.Query{AccountID: 3, Status: store.StatusQueued})
	if page.Total != 1 || page.Results[0].WidgetCode != "w_a" {
		t.Fatalf("account 3 queued %+v", page)
	}
	var all []string
	for off := 0; ; off += 4 {
		p, err := s.Results(ctx, store.Query{Offset: off, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 6 {
			t.Fatalf("total %d", p.Total)
		}
		for _, r := range p.Results {
			all = append(all, fmt.Sprintf("%d:%s", r.AccountID, r.WidgetCode))
		}
		if len(p.Results) < 4 {
			break
		}
	}
	if strings.Join(all, ",") != "1:w_a,1:w_b,2:w_a,2:w_b,3:w_a,3:w_b" {
		t.Fatalf("paged %v", all)
	}
	if _, err := s.Results(ctx, store.Query{Status: "done"}); err == nil {
		t.Fatal("unknown status accepted")
	}
	if _, err := s.Result(ctx, 9, "w_a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing result: %v", err)
	}
}

func TestMarkQueuedNeverOverwritesTheWorker(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	// The worker finished before the producer got to mark the task queued.
	if err := s.Record(ctx, &store.Result{AccountID: 1, WidgetCode: "w", Operation: "install", Status: store.StatusInstalled, EnqueueID: "e7"}); err != nil {
		t.Fatal(err)
	}
	wrote, err := s.MarkQueued(ctx, store.Queued{Op: "install", AccountID: 1, Code: "w", TaskID: "install:1:w", EnqueueID: "e7"})
	if err != nil || wrote {
		t.Fatalf("MarkQueued over the worker's result: wrote %v, %v", wrote, err)
	}
	if r, _ := s.Result(ctx, 1, "w"); r.Status != store.StatusInstalled {
		t.Fatalf("status %s", r.Status)
	}
	// A new enqueueing does start afresh.
	if wrote, _ := s.MarkQueued(ctx, store.Queued{Op: "install", AccountID: 1, Code: "w", TaskID: "install:1:w", EnqueueID: "e8"}); !wrote {
		t.Fatal("a new enqueueing was not recorded")
	}
	counts, _ := s.CountByStatus(ctx)
	if counts[store.StatusQueued] != 1 || counts[store.StatusInstalled] != 0 {
		t.Fatalf("indexes after re-queue: %v", counts)
	}
}

func TestInFlightMarkIsClearedByAVerdict(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, err := s.MarkQueued(ctx, store.Queued{Op: "install", AccountID: 1, Code: "w", TaskID: "install:1:w", EnqueueID: "e1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Begin(ctx, 1, "", "w", true); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Result(ctx, 1, "w"); !r.InFlight || r.Status != store.StatusQueued {
		t.Fatalf("after Begin marked it in flight: %+v", r)
	}
	_ = s.Record(ctx, &store.Result{AccountID: 1, WidgetCode: "w", Status: store.StatusRetrying, EnqueueID: "e1"})
	if r, _ := s.Result(ctx, 1, "w"); r.InFlight {
		t.Fatal("a verdict left the in-flight mark")
	}
}

func TestKommoPauseTripsOnBlocksFromSeveralAccounts(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	s := store.New(r.Client, redistest.Unique(t))
	ctx := context.Background()
	note := func(account int64) *store.KommoPause {
		t.Helper()
		p, err := s.NoteBlock(ctx, account, time.Minute, 3, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// One account blocked twice, another once: two accounts, no pause.
	if note(1) != nil || note(1) != nil || note(2) != nil {
		t.Fatal("tripped by two accounts")
	}
	if p, err := s.KommoPaused(ctx); p != nil || err != nil {
		t.Fatalf("paused: %+v %v", p, err)
	}
	// A third account: every worker pauses.
	p := note(3)
	if p == nil || len(p.Accounts) != 3 || p.Until.Sub(p.Since) != time.Hour {
		t.Fatalf("third account: %+v", p)
	}
	got, err := s.KommoPaused(ctx)
	if err != nil || got == nil || !got.Until.Equal(p.Until.Truncate(time.Nanosecond)) || fmt.Sprint(got.Accounts) != "[1 2 3]" {
		t.Fatalf("stored pause %+v %v, want %+v", got, err, p)
	}
	if st, _ := s.Begin(ctx, 9, "", "w", false); st.KommoPause == nil || st.KommoPause.For(time.Now()) <= 59*time.Minute {
		t.Fatalf("Begin does not see the pause: %+v", st.KommoPause)
	}
	// A fourth does not start it again (it would not shorten it either).
	if note(4) != nil {
		t.Fatal("a pause already on was started again")
	}
	// Lifting ends it and forgets the blocks counted so far.
	_ = s.MarkBlocked(ctx, store.Block{AccountID: 1}, time.Hour)
	n, had, err := s.UnblockAll(ctx)
	if err != nil || n != 1 || !had {
		t.Fatalf("unblock all: %d %v %v", n, had, err)
	}
	if p, _ := s.KommoPaused(ctx); p != nil {
		t.Fatal("still paused")
	}
	if b, _ := s.Blocked(ctx, 1); b != nil {
		t.Fatal("account 1 still blocked")
	}
	if note(5) != nil {
		t.Fatal("blocks from before the lift still counted")
	}
	// A success between blocks means Kommo answers: no IP block. A block,
	// a success, two blocks, a success, two more: never three in a row.
	success := func() {
		t.Helper()
		if err := s.Record(ctx, &store.Result{AccountID: 8, WidgetCode: "w", Operation: "install", Status: store.StatusInstalled}); err != nil {
			t.Fatal(err)
		}
	}
	success()
	if note(6) != nil || note(7) != nil {
		t.Fatal("tripped by two blocks after a success")
	}
	success()
	if note(9) != nil || note(10) != nil {
		t.Fatal("tripped across a success")
	}
	// A failure recorded in between does not reset the count.
	if err := s.Record(ctx, &store.Result{AccountID: 8, WidgetCode: "w2", Operation: "install", Status: store.StatusFailed}); err != nil {
		t.Fatal(err)
	}
	if note(11) == nil {
		t.Fatal("three blocks in a row (a failure between them) did not trip")
	}
}

// TestBeginRunsItsPartOnlyWhenTheTaskMayReachKommo: BeginWith's script
// part (the worker's rate reservation) runs in the same call only for an
// account with credentials, not revoked, not blocked, and with all Kommo
// traffic not paused; it gets its keys and arguments and its answer comes
// back; the state reads are the same with or without it.
func TestBeginRunsItsPartOnlyWhenTheTaskMayReachKommo(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	ctx := context.Background()
	part := func(key string) *store.ScriptPart {
		return &store.ScriptPart{Lua: "local function part(K, A) redis.call('SET', K[1], A[1]) return {tonumber(A[1]), 7} end\n",
			Keys: []string{key}, Args: []any{42}}
	}
	for _, c := range []struct {
		name    string
		prepare func(s *store.Store)
		runs    bool
	}{
		{"credentials stored", func(*store.Store) {}, true},
		{"no credentials", func(s *store.Store) { _ = s.DeleteAccount(ctx, 1, "") }, false},
		{"blocked", func(s *store.Store) { _ = s.MarkBlocked(ctx, store.Block{AccountID: 1}, time.Hour) }, false},
		{"revoked", func(s *store.Store) { _, _ = s.MarkRevoked(ctx, 1, "") }, false},
		{"all Kommo traffic paused", func(s *store.Store) {
			for n := int64(2); n <= 4; n++ {
				_, _ = s.NoteBlock(ctx, n, time.Minute, 3, time.Hour)
			}
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			prefix := redistest.Unique(t)
			s := store.New(r.Client, prefix)
			if err := s.PutAccount(ctx, store.Account{ID: 1, BaseURL: "https://a.kommo.com", AccessToken: "at"}); err != nil {
				t.Fatal(err)
			}
			c.prepare(s)
			key := keyspace.New(prefix).Key("part")
			st, err := s.BeginWith(ctx, 1, "", "w", true, part(key))
			if err != nil {
				t.Fatal(err)
			}
			ran := r.Client.Get(ctx, key).Val() == "42"
			if ran != c.runs || (st.Part != nil) != c.runs || (c.runs && fmt.Sprint(st.Part) != "[42 7]") {
				t.Fatalf("part ran %v, answered %v; want it to run: %v", ran, st.Part, c.runs)
			}
			plain, err := s.Begin(ctx, 1, "", "w", true)
			if err != nil || (plain.Account == nil) != (st.Account == nil) || (plain.Block == nil) != (st.Block == nil) ||
				(plain.KommoPause == nil) != (st.KommoPause == nil) || plain.Part != nil {
				t.Fatalf("Begin and BeginWith read different states: %+v / %+v (%v)", plain, st, err)
			}
		})
	}
}

// TestBeginReadsWhatTheReadersRead: Begin reads only the fields it
// decodes; what it hands the worker is what Result and GetAccount read —
// a queued mark, a recorded result, the in-flight mark, and every field of
// the credentials (a field the script forgot would come back empty) but
// the refresh token, of which it says only whether one is stored.
func TestBeginReadsWhatTheReadersRead(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	ctx := context.Background()
	s := store.New(r.Client, redistest.Unique(t))
	exp := time.Date(2026, 12, 4, 13, 0, 0, 0, time.UTC)
	if err := s.PutAccount(ctx, store.Account{ID: 1, Integration: "acme", BaseURL: "https://a.kommo.com", AccessToken: "at", RefreshToken: "rt", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	same := func(step string) {
		t.Helper()
		st, err := s.Begin(ctx, 1, "acme", "w", false)
		if err != nil {
			t.Fatal(err)
		}
		want, err := s.Result(ctx, 1, "w")
		if err != nil {
			t.Fatal(err)
		}
		acct, err := s.GetAccount(ctx, 1, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%+v", st.Result) != fmt.Sprintf("%+v", want) {
			t.Errorf("%s: Begin read the result\n%+v\nResult reads\n%+v", step, st.Result, want)
		}
		if acct.RefreshToken != "rt" || st.Account.RefreshToken != "" || !st.RefreshStored {
			t.Errorf("%s: the refresh token stored %q, Begin read %q and says stored: %v; want it not read, and stored", step, acct.RefreshToken, st.Account.RefreshToken, st.RefreshStored)
		}
		acct.RefreshToken = ""
		if !reflect.DeepEqual(st.Account, acct) || !st.Account.ExpiresAt.Equal(exp) {
			t.Errorf("%s: Begin read the account\n%#v\nGetAccount reads (but the refresh token)\n%#v", step, *st.Account, *acct)
		}
	}
	if _, err := s.MarkQueued(ctx, store.Queued{Op: "install", Queue: "q", AccountID: 1, Code: "w", TaskID: "t1", EnqueueID: "e1", Integration: "acme"}); err != nil {
		t.Fatal(err)
	}
	same("queued")
	if _, err := s.Begin(ctx, 1, "acme", "w", true); err != nil {
		t.Fatal(err)
	}
	same("in flight")
	if err := s.Record(ctx, &store.Result{AccountID: 1, WidgetCode: "w", Operation: "install", Integration: "acme", Status: store.StatusInstalled, EnqueueID: "e1", Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	same("recorded")
	if _, err := s.MarkRevoked(ctx, 1, "acme"); err != nil {
		t.Fatal(err)
	}
	same("revoked")
	// Credentials stored without a refresh token (a long-lived token).
	if err := s.PutAccount(ctx, store.Account{ID: 2, BaseURL: "https://a.kommo.com", AccessToken: "at"}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Begin(ctx, 2, "", "w", false); err != nil || st.Account == nil || st.Account.AccessToken != "at" || st.RefreshStored {
		t.Fatalf("no refresh token stored: Begin read %v, says stored: %v (%v)", st.Account, st.RefreshStored, err)
	}
}
