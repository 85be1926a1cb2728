package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/tasks"
)

// Account is an account's API base and the credentials one integration
// holds for it (an account may hold several integrations' credentials).
// Printing it never shows the tokens.
type Account struct {
	ID int64 `json:"account_id"`
	// Integration names the OAuth integration the tokens were issued to
	// ("" is DefaultIntegration).
	Integration  string    `json:"integration,omitempty"`
	BaseURL      string    `json:"base_url"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	UpdatedAt    time.Time `json:"updated_at,omitzero"`
	// RevokedAt is when Kommo's revoke hook said the integration was
	// disconnected from the account: its tasks fail token_revoked without
	// a request until new credentials are stored.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

func (a Account) String() string {
	return fmt.Sprintf("store.Account{ID:%d Integration:%s BaseURL:%s AccessToken:%s RefreshToken:%s ExpiresAt:%s}",
		a.ID, IntegrationOf(a.Integration), a.BaseURL, mask(a.AccessToken), mask(a.RefreshToken), a.ExpiresAt.Format(time.RFC3339))
}

// GoString keeps %#v as secret-free as %v.
func (a Account) GoString() string { return a.String() }

// LogValue keeps slog from showing the tokens.
func (a Account) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", a.ID), slog.String("integration", IntegrationOf(a.Integration)), slog.String("base_url", a.BaseURL))
}

// IntegrationOf is name, or DefaultIntegration when name is empty.
func IntegrationOf(name string) string {
	if name == "" {
		return DefaultIntegration
	}
	return name
}

func mask(s string) string {
	if s == "" {
		return "none"
	}
	return redacted
}

// redacted stands where a token would be shown.
const redacted = "[REDACTED]"

// Validate names the first field that is not acceptable.
func (a *Account) Validate() error {
	if a.ID <= 0 {
		return fmt.Errorf("account_id: must be a positive integer, got %d", a.ID)
	}
	if a.Integration != "" && !tasks.ValidIntegration(a.Integration) {
		return fmt.Errorf("account %d: integration: %.50q must be 1-40 lower-case letters, digits, '-' or '_'", a.ID, a.Integration)
	}
	if err := kommohost.Syntax(a.BaseURL); err != nil {
		return fmt.Errorf("account %d: base_url: %v", a.ID, err)
	}
	if a.AccessToken == "" {
		return fmt.Errorf("account %d: access_token: required", a.ID)
	}
	return nil
}

// Info is what may be shown of an account: no tokens.
type Info struct {
	ID              int64     `json:"account_id"`
	Integration     string    `json:"integration"`
	BaseURL         string    `json:"base_url"`
	HasRefreshToken bool      `json:"has_refresh_token"`
	ExpiresAt       time.Time `json:"expires_at,omitzero"`
	UpdatedAt       time.Time `json:"updated_at,omitzero"`
	RevokedAt       time.Time `json:"revoked_at,omitzero"`
}

// Info returns the account without its tokens.
func (a *Account) Info() Info {
	return Info{ID: a.ID, Integration: IntegrationOf(a.Integration), BaseURL: a.BaseURL, HasRefreshToken: a.RefreshToken != "", ExpiresAt: a.ExpiresAt,
		UpdatedAt: a.UpdatedAt, RevokedAt: a.RevokedAt}
}

// credKey is the hash of the credentials integ holds for account n. The
// default integration's keep the name they had before integrations
// existed ("acct:N"), so a worker of the earlier version sharing the Redis
// during a rollout still finds them.
func (s *base) credKey(n int64, integ string) string {
	if integ = IntegrationOf(integ); integ == DefaultIntegration {
		return s.prefix.KeyID("acct", n)
	}
	return s.prefix.KeyID("acct", n, integ)
}

// credsKey indexes every (account, integration) with credentials: members
// "N:integration", scored by the account ID.
func (s *base) credsKey() string { return s.key("creds") }

// credIntegsKey is the set of integration names credentials were ever
// stored for (registered or not): AccountsExist looks under each.
func (s *base) credIntegsKey() string { return s.key("cred-integs") }

func credMember(n int64, integ string) string { return id(n) + ":" + IntegrationOf(integ) }

// parseCredMember reads a credsKey member.
func parseCredMember(m string) (int64, string) {
	a, integ, _ := strings.Cut(m, ":")
	n, _ := strconv.ParseInt(a, 10, 64)
	return n, IntegrationOf(integ)
}

// CheckAccount names what makes an account unacceptable: a bad field, or
// (with WithHosts) a base URL off the Kommo host allow-list — the error
// then reads "account N: base_url: host … is not an allowed Kommo host"
// and is a *kommohost.Error underneath.
func (s *base) CheckAccount(a Account) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if s.hosts != nil {
		if err := s.hosts.Check(a.BaseURL); err != nil {
			return fmt.Errorf("account %d: base_url: %w", a.ID, err)
		}
	}
	return nil
}

// PutAccount stores the credentials an integration holds for an account,
// replacing any before. It refuses what CheckAccount refuses.
func (s *AccountStore) PutAccount(ctx context.Context, a Account) error {
	if err := s.CheckAccount(a); err != nil {
		return err
	}
	u, _ := url.Parse(strings.TrimSpace(a.BaseURL))
	a.BaseURL = strings.TrimRight(u.String(), "/")
	a.UpdatedAt = s.now().UTC()
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		k := s.credKey(a.ID, a.Integration)
		p.Del(ctx, k)
		p.HSet(ctx, k, s.accountFields(a)...)
		p.ZAdd(ctx, s.credsKey(), redis.Z{Score: float64(a.ID), Member: credMember(a.ID, a.Integration)})
		p.SAdd(ctx, s.credIntegsKey(), IntegrationOf(a.Integration))
		return nil
	})
	return redisErr(fmt.Sprintf("put account %d", a.ID), err)
}

// accountFields are the hash fields of an account, its tokens sealed when
// the store has a key.
func (s *AccountStore) accountFields(a Account) []any {
	f := []any{"base_url", a.BaseURL, "access_token", s.keys.Seal(a.AccessToken), "refresh_token", s.keys.Seal(a.RefreshToken), "updated_at", a.UpdatedAt.Format(time.RFC3339Nano)}
	if !a.ExpiresAt.IsZero() {
		f = append(f, "expires_at", a.ExpiresAt.UTC().Format(time.RFC3339Nano))
	} else {
		f = append(f, "expires_at", "")
	}
	return f
}

// GetAccount reads the credentials integ ("": the default integration)
// holds for account n; ErrAccountNotFound when there are none.
func (s *AccountStore) GetAccount(ctx context.Context, n int64, integ string) (*Account, error) {
	m, err := s.rdb.HGetAll(ctx, s.credKey(n, integ)).Result()
	if err != nil {
		return nil, redisErr(fmt.Sprintf("get account %d", n), err)
	}
	return s.decodeAccount(n, integ, m)
}

// decodeAccount reads an account's hash, opening sealed tokens. An error
// opening them names the account and the field, never the value.
func (s *base) decodeAccount(n int64, integ string, m map[string]string) (*Account, error) {
	if len(m) == 0 || m["base_url"] == "" {
		if integ = IntegrationOf(integ); integ != DefaultIntegration {
			return nil, fmt.Errorf("account %d: integration %s: %w", n, integ, ErrAccountNotFound)
		}
		return nil, fmt.Errorf("account %d: %w", n, ErrAccountNotFound)
	}
	a := &Account{ID: n, Integration: IntegrationOf(integ), BaseURL: m["base_url"]}
	var err error
	if a.AccessToken, err = s.keys.Open(m["access_token"]); err != nil {
		return nil, fmt.Errorf("account %d: access_token: %w", n, err)
	}
	if a.RefreshToken, err = s.keys.Open(m["refresh_token"]); err != nil {
		return nil, fmt.Errorf("account %d: refresh_token: %w", n, err)
	}
	a.ExpiresAt, _ = time.Parse(time.RFC3339Nano, m["expires_at"])
	a.UpdatedAt, _ = time.Parse(time.RFC3339Nano, m["updated_at"])
	a.RevokedAt, _ = time.Parse(time.RFC3339Nano, m["revoked_at"])
	return a, nil
}

// setIfExistsScript sets hash fields only while the hash exists.
var setIfExistsScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`)

// MarkRevoked records that integ was disconnected from account n (Kommo's
// revoke hook): until new credentials are stored, its tasks fail without
// a request. It reports whether there were credentials to mark.
func (s *AccountStore) MarkRevoked(ctx context.Context, n int64, integ string) (bool, error) {
	ok, err := setIfExistsScript.Run(ctx, s.rdb, []string{s.credKey(n, integ)}, "revoked_at", s.now().UTC().Format(time.RFC3339Nano)).Int()
	return ok == 1, redisErr(fmt.Sprintf("mark account %d revoked", n), err)
}

// MoveAccount changes the base URL of the credentials integ holds for
// account n (Kommo renamed the account's subdomain). It refuses what
// CheckAccount refuses, and reports whether the credentials existed.
func (s *AccountStore) MoveAccount(ctx context.Context, n int64, integ, baseURL string) (bool, error) {
	if err := s.CheckAccount(Account{ID: n, Integration: integ, BaseURL: baseURL, AccessToken: "-"}); err != nil {
		return false, err
	}
	ok, err := setIfExistsScript.Run(ctx, s.rdb, []string{s.credKey(n, integ)}, "base_url", strings.TrimRight(strings.TrimSpace(baseURL), "/"),
		"updated_at", s.now().UTC().Format(time.RFC3339Nano)).Int()
	return ok == 1, redisErr(fmt.Sprintf("move account %d", n), err)
}

// DeleteAccount removes the credentials integ holds for an account; none
// is ErrAccountNotFound.
func (s *AccountStore) DeleteAccount(ctx context.Context, n int64, integ string) error {
	var del *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, s.credKey(n, integ))
		p.ZRem(ctx, s.credsKey(), credMember(n, integ))
		return nil
	})
	if err != nil {
		return redisErr(fmt.Sprintf("delete account %d", n), err)
	}
	if del.Val() == 0 {
		return fmt.Errorf("account %d: integration %s: %w", n, IntegrationOf(integ), ErrAccountNotFound)
	}
	return nil
}

// ListAccounts returns the credentials of up to about limit accounts after
// the one with ID after (0: from the start), in ID order and by
// integration within an account (all of an account's on one page), without
// their tokens.
func (s *AccountStore) ListAccounts(ctx context.Context, after int64, limit int) ([]Info, error) {
	if limit <= 0 {
		limit = 100
	}
	members, err := s.rdb.ZRangeByScore(ctx, s.credsKey(), &redis.ZRangeBy{Min: "(" + id(after), Max: "+inf", Count: int64(limit)}).Result()
	if err == nil && len(members) == limit {
		// Finish the last account: its other integrations may lie beyond.
		last, _ := parseCredMember(members[len(members)-1])
		var rest []string
		rest, err = s.rdb.ZRangeByScore(ctx, s.credsKey(), &redis.ZRangeBy{Min: id(last), Max: id(last)}).Result()
		for _, m := range rest {
			if !slices.Contains(members, m) {
				members = append(members, m)
			}
		}
	}
	if err != nil {
		return nil, redisErr("list accounts", err)
	}
	sort.SliceStable(members, func(i, j int) bool {
		a, ai := parseCredMember(members[i])
		b, bi := parseCredMember(members[j])
		return a < b || (a == b && ai < bi)
	})
	out := make([]Info, 0, len(members))
	for _, m := range members {
		n, integ := parseCredMember(m)
		a, err := s.GetAccount(ctx, n, integ)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, a.Info())
	}
	return out, nil
}

// CountAccounts returns how many (account, integration) credentials are
// stored.
func (s *AccountStore) CountAccounts(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.credsKey()).Result()
	return n, redisErr("count accounts", err)
}

// migrateScript moves up to 1000 accounts from the index of the version
// before integrations ("accts", members "N") to the credentials index
// ("creds", members "N:default"); the credentials themselves stay where
// they are. KEYS: accts, creds. Returns how many it moved.
var migrateScript = redis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[1], 0, 999)
for _, n in ipairs(ids) do
  redis.call('ZADD', KEYS[2], n, n .. ':default')
  redis.call('ZREM', KEYS[1], n)
end
return #ids`)

// Migrate brings data written before integrations existed up to date, and
// returns what it did, one line per change (none: nothing to do). Every
// account's credentials become the default integration's: their keys stay
// (so a worker of the earlier version still finds them during a rollout);
// only the index of accounts moves. Safe to run again and from several
// processes at once.
func (s *AccountStore) Migrate(ctx context.Context) ([]string, error) {
	moved := 0
	for range 100000 {
		n, err := migrateScript.Run(ctx, s.rdb, []string{s.key("accts"), s.credsKey()}).Int()
		if err != nil {
			return nil, redisErr("migrate accounts index", err)
		}
		if n == 0 {
			break
		}
		moved += n
	}
	if moved == 0 {
		return nil, nil
	}
	return []string{fmt.Sprintf("indexed %d accounts' credentials as integration %q (keys unchanged)", moved, DefaultIntegration)}, nil
}

// saveTokenScript writes a refreshed pair only while the account exists,
// so a refresh racing a delete cannot leave half an account behind.
var saveTokenScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'access_token', ARGV[1], 'refresh_token', ARGV[2], 'expires_at', ARGV[3], 'updated_at', ARGV[4])
return 1`)

// SaveTokens stores the refreshed pair integ holds for an account (sealed
// with the store's keys) only while those credentials exist, so a refresh
// racing a delete cannot leave half an account behind. GetAccount reads
// them back.
func (s *AccountStore) SaveTokens(ctx context.Context, n int64, integ, access, refresh string, expiry time.Time) error {
	exp := ""
	if !expiry.IsZero() {
		exp = expiry.UTC().Format(time.RFC3339Nano)
	}
	ok, err := saveTokenScript.Run(ctx, s.rdb, []string{s.credKey(n, integ)},
		s.keys.Seal(access), s.keys.Seal(refresh), exp, s.now().UTC().Format(time.RFC3339Nano)).Int()
	if err != nil {
		return redisErr(fmt.Sprintf("save token of account %d", n), err)
	}
	if ok == 0 {
		return fmt.Errorf("save token: account %d: %w", n, ErrAccountNotFound)
	}
	return nil
}

// unlockScript deletes the lock only if it still holds our token.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// RefreshLock returns the refresh lock of the credentials integ holds for
// account n, shared by every process on this Redis (a kommo.Locker):
// refresh tokens are single use per (integration, account).
func (s *MarkStore) RefreshLock(n int64, integ string) *Lock {
	k := s.key("lock", "refresh", id(n))
	if integ = IntegrationOf(integ); integ != DefaultIntegration {
		k += ":" + integ
	}
	return &Lock{s: s.base, key: k}
}

// Lock is a lock in Redis, held by one process at a time.
type Lock struct {
	s   *base
	key string
}

// Lock waits (bounded by ctx) until it holds the lock. A holder that dies
// keeps it at most LockTTL.
func (l *Lock) Lock(ctx context.Context) (func(), error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	poll := time.NewTicker(l.s.LockPoll)
	defer poll.Stop()
	for {
		ok, err := l.s.rdb.SetNX(ctx, l.key, token, l.s.LockTTL).Result()
		if err != nil {
			return nil, redisErr("take refresh lock", err)
		}
		if ok {
			return func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = unlockScript.Run(ctx, l.s.rdb, []string{l.key}, token).Err()
			}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for refresh lock: %w", ctx.Err())
		case <-poll.C:
		}
	}
}

// Block is an account's block mark: Kommo answered with its HTML 403, so
// nothing is sent to the account until the mark is cleared or runs out.
type Block struct {
	AccountID int64     `json:"account_id"`
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	RequestID string    `json:"request_id,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// MarkBlocked marks an account blocked for ttl.
func (s *MarkStore) MarkBlocked(ctx context.Context, b Block, ttl time.Duration) error {
	b.Since = s.now().UTC()
	b.Until = b.Since.Add(ttl)
	raw, _ := json.Marshal(b)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.blockedKey(b.AccountID), raw, ttl)
		p.ZAdd(ctx, s.key("blocked"), redis.Z{Score: float64(b.Until.UnixMilli()), Member: id(b.AccountID)})
		return nil
	})
	return redisErr(fmt.Sprintf("mark account %d blocked", b.AccountID), err)
}

// Blocked returns the account's block mark, or nil when it has none.
func (s *MarkStore) Blocked(ctx context.Context, n int64) (*Block, error) {
	raw, err := s.rdb.Get(ctx, s.blockedKey(n)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, redisErr(fmt.Sprintf("read block of account %d", n), err)
	}
	var b Block
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("store: block of account %d: %w", n, err)
	}
	return &b, nil
}

// Unblock clears an account's block mark; it reports whether there was one.
func (s *MarkStore) Unblock(ctx context.Context, n int64) (bool, error) {
	var del *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, s.blockedKey(n))
		p.ZRem(ctx, s.key("blocked"), id(n))
		return nil
	})
	if err != nil {
		return false, redisErr(fmt.Sprintf("unblock account %d", n), err)
	}
	return del.Val() > 0, nil
}

// ListBlocked returns the accounts blocked now.
func (s *MarkStore) ListBlocked(ctx context.Context) ([]Block, error) {
	now := s.now().UnixMilli()
	ids, err := s.rdb.ZRangeByScore(ctx, s.key("blocked"), &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now, 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, redisErr("list blocked", err)
	}
	// Forget marks that ran out.
	_ = s.rdb.ZRemRangeByScore(ctx, s.key("blocked"), "-inf", strconv.FormatInt(now, 10)).Err()
	var out []Block
	for _, sid := range ids {
		n, _ := strconv.ParseInt(sid, 10, 64)
		b, err := s.Blocked(ctx, n)
		if err != nil {
			return out, err
		}
		if b != nil {
			out = append(out, *b)
		}
	}
	return out, nil
}

// AccountsExist reports which of the accounts have credentials (of any
// integration), in two round trips: one EXISTS per account over its
// possible credential keys, each O(1) — on the embedded Redis too, where a
// sorted-set range is not.
func (s *AccountStore) AccountsExist(ctx context.Context, ids []int64) (map[int64]bool, error) {
	names, err := s.rdb.SMembers(ctx, s.credIntegsKey()).Result()
	if err != nil {
		return nil, redisErr("check accounts", err)
	}
	if !slices.Contains(names, DefaultIntegration) {
		names = append(names, DefaultIntegration) // stored by the version before integrations
	}
	cmds := make([]*redis.IntCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		keys := make([]string, len(names))
		for i, n := range ids {
			for j, name := range names {
				keys[j] = s.credKey(n, name)
			}
			cmds[i] = p.Exists(ctx, keys...)
		}
		return nil
	})
	if err != nil {
		return nil, redisErr("check accounts", err)
	}
	out := make(map[int64]bool, len(ids))
	for i, n := range ids {
		out[n] = cmds[i].Val() > 0
	}
	return out, nil
}

// resealScript replaces an account's tokens only while they are still the
// ones the re-seal read: a refresh that lands in between wins, and the
// re-seal reads the account again.
var resealScript = redis.NewScript(`
if (redis.call('HGET', KEYS[1], 'access_token') or '') ~= ARGV[1] or (redis.call('HGET', KEYS[1], 'refresh_token') or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'access_token', ARGV[3], 'refresh_token', ARGV[4])
return 1`)

// ResealAccounts seals every account's tokens with the store's current
// key: plaintext ones, and ones sealed with the previous key. It returns
// how many accounts it rewrote and how many it looked at; accounts whose
// tokens no configured key opens are left as they are and listed in stuck.
func (s *AccountStore) ResealAccounts(ctx context.Context) (changed, total int, stuck []error, err error) {
	if !s.keys.Enabled() {
		return 0, 0, nil, errors.New("store: re-seal: no WIDGETQ_SECRET_KEY is configured")
	}
	for offset := int64(0); ; offset += 500 {
		members, err := s.rdb.ZRange(ctx, s.credsKey(), offset, offset+499).Result()
		if err != nil {
			return changed, total, stuck, redisErr("re-seal: list accounts", err)
		}
		if len(members) == 0 {
			return changed, total, stuck, nil
		}
		for _, m := range members {
			n, integ := parseCredMember(m)
			total++
			did, err := s.resealAccount(ctx, n, integ)
			if errors.Is(err, seal.ErrUnknownKey) || errors.Is(err, seal.ErrCorrupt) {
				stuck = append(stuck, err)
				continue
			}
			if err != nil {
				return changed, total, stuck, err
			}
			if did {
				changed++
			}
		}
	}
}

func (s *AccountStore) resealAccount(ctx context.Context, n int64, integ string) (bool, error) {
	k := s.credKey(n, integ)
	for range 5 {
		m, err := s.rdb.HMGet(ctx, k, "access_token", "refresh_token").Result()
		if err != nil {
			return false, redisErr(fmt.Sprintf("re-seal account %d", n), err)
		}
		at, _ := m[0].(string)
		rt, _ := m[1].(string)
		if !s.keys.NeedsReseal(at) && !s.keys.NeedsReseal(rt) {
			return false, nil
		}
		nat, _, err := s.keys.Reseal(at)
		if err != nil {
			return false, fmt.Errorf("re-seal account %d: access_token: %w", n, err)
		}
		nrt, _, err := s.keys.Reseal(rt)
		if err != nil {
			return false, fmt.Errorf("re-seal account %d: refresh_token: %w", n, err)
		}
		ok, err := resealScript.Run(ctx, s.rdb, []string{k}, at, rt, nat, nrt).Int()
		if err != nil {
			return false, redisErr(fmt.Sprintf("re-seal account %d", n), err)
		}
		if ok == 1 {
			return true, nil
		}
	}
	return false, fmt.Errorf("re-seal account %d: its tokens kept changing; run the re-seal again", n)
}

// CheckKeys opens the tokens of the first stored account, so a process
// started with the wrong WIDGETQ_SECRET_KEY says so at start rather than
// on every task. No accounts: nil.
func (s *AccountStore) CheckKeys(ctx context.Context) error {
	members, err := s.rdb.ZRange(ctx, s.credsKey(), 0, 0).Result()
	if err != nil || len(members) == 0 {
		return redisErr("check keys", err)
	}
	n, integ := parseCredMember(members[0])
	_, err = s.GetAccount(ctx, n, integ)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// CountBlocked returns how many accounts are blocked now, in one command.
func (s *MarkStore) CountBlocked(ctx context.Context) (int, error) {
	n, err := s.rdb.ZCount(ctx, s.key("blocked"), "("+strconv.FormatInt(s.now().UnixMilli(), 10), "+inf").Result()
	return int(n), redisErr("count blocked", err)
}
