package store_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
)

func keys(t *testing.T, cur byte, prev ...byte) *seal.Keys {
	t.Helper()
	var p [][]byte
	for _, b := range prev {
		p = append(p, bytes.Repeat([]byte{b}, seal.KeySize))
	}
	k, err := seal.New(bytes.Repeat([]byte{cur}, seal.KeySize), p...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rawValues is every value widgetq's keys hold, as Redis has them.
func rawValues(t *testing.T, r *redistest.Redis, prefix string) string {
	t.Helper()
	ctx := context.Background()
	var out strings.Builder
	iter := r.Client.Scan(ctx, 0, "{"+prefix+"}:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ, _ := r.Client.Type(ctx, k).Result()
		switch typ {
		case "hash":
			m, _ := r.Client.HGetAll(ctx, k).Result()
			for f, v := range m {
				out.WriteString(k + " " + f + "=" + v + "\n")
			}
		case "string":
			v, _ := r.Client.Get(ctx, k).Result()
			out.WriteString(k + "=" + v + "\n")
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestTokensAreSealedInRedisAndOpenForTheWorker(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	s := store.New(r.Client, prefix).WithKeys(keys(t, 1))
	ctx := context.Background()
	if err := s.PutAccount(ctx, store.Account{ID: 7, BaseURL: "https://a.kommo.com", AccessToken: "at_PLAIN_ACCESS", RefreshToken: "rt_PLAIN_REFRESH"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveTokens(ctx, 8, "", "x", "", time.Time{}); !errors.Is(err, store.ErrAccountNotFound) {
		t.Fatal(err)
	}
	raw := rawValues(t, r, prefix)
	if strings.Contains(raw, "PLAIN") || !strings.Contains(raw, seal.Prefix) {
		t.Fatalf("Redis holds:\n%s", raw)
	}
	// Through every read path: GetAccount, the token store, Begin.
	a, err := s.GetAccount(ctx, 7, "")
	if err != nil || a.AccessToken != "at_PLAIN_ACCESS" || a.RefreshToken != "rt_PLAIN_REFRESH" {
		t.Fatalf("get: %+v %v", a, err)
	}
	if err := s.SaveTokens(ctx, 7, "", "at_NEW_PLAIN", "rt_NEW_PLAIN", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if raw := rawValues(t, r, prefix); strings.Contains(raw, "PLAIN") {
		t.Fatalf("a saved token is in plaintext:\n%s", raw)
	}
	st, err := s.Begin(ctx, 7, "", "w", false)
	if err != nil || st.Account == nil || st.Account.AccessToken != "at_NEW_PLAIN" {
		t.Fatalf("begin: %+v %v", st.Account, err)
	}
	// A process without the key, or with another, says so and names the
	// account and field.
	for _, other := range []*store.Store{store.New(r.Client, prefix), store.New(r.Client, prefix).WithKeys(keys(t, 2))} {
		_, err := other.GetAccount(ctx, 7, "")
		if err == nil || !strings.Contains(err.Error(), "account 7: access_token") || errors.Is(err, store.ErrNotFound) {
			t.Fatalf("wrong key: %v", err)
		}
		if _, err := other.Begin(ctx, 7, "", "w", false); err == nil {
			t.Fatal("Begin with the wrong key must fail, not report the account missing")
		}
		if err := other.CheckKeys(ctx); err == nil {
			t.Fatal("CheckKeys passed with the wrong key")
		}
	}
	if err := s.CheckKeys(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestResealMovesEveryAccountToTheNewKey(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	ctx := context.Background()
	plain := store.New(r.Client, prefix)
	old := store.New(r.Client, prefix).WithKeys(keys(t, 1))
	// Account 1 from before any key; 2 and 3 sealed with the old key.
	if err := plain.PutAccount(ctx, store.Account{ID: 1, BaseURL: "https://a.kommo.com", AccessToken: "at_ONE"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{2, 3} {
		if err := old.PutAccount(ctx, store.Account{ID: n, BaseURL: "https://a.kommo.com", AccessToken: "at_OLD", RefreshToken: "rt_OLD"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := plain.ResealAccounts(ctx); err == nil {
		t.Fatal("re-seal without a key must refuse")
	}
	rot := store.New(r.Client, prefix).WithKeys(keys(t, 2, 1))
	// Account 4 was sealed with a key nobody has any more: reported, left
	// alone, and the others still move.
	if err := store.New(r.Client, prefix).WithKeys(keys(t, 3)).PutAccount(ctx, store.Account{ID: 4, BaseURL: "https://a.kommo.com", AccessToken: "at_LOST"}); err != nil {
		t.Fatal(err)
	}
	changed, total, stuck, err := rot.ResealAccounts(ctx)
	if err != nil || changed != 3 || total != 4 || len(stuck) != 1 || !strings.Contains(stuck[0].Error(), "account 4") {
		t.Fatalf("re-seal: %d of %d, stuck %v, %v", changed, total, stuck, err)
	}
	_ = store.New(r.Client, prefix).DeleteAccount(ctx, 4, "")
	if changed, _, _, _ := rot.ResealAccounts(ctx); changed != 0 {
		t.Fatalf("a second re-seal rewrote %d", changed)
	}
	// Only the new key is needed now.
	fresh := store.New(r.Client, prefix).WithKeys(keys(t, 2))
	for _, n := range []int64{1, 2, 3} {
		a, err := fresh.GetAccount(ctx, n, "")
		if err != nil || !strings.HasPrefix(a.AccessToken, "at_") {
			t.Fatalf("account %d after re-seal: %v", n, err)
		}
	}
	if raw := rawValues(t, r, prefix); strings.Contains(raw, "at_") || strings.Contains(raw, "rt_") {
		t.Fatalf("plaintext left:\n%s", raw)
	}
}
