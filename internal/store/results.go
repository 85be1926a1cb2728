package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Status is where an account's install (or uninstall) of a widget stands.
type Status string

// The statuses of a result.
const (
	StatusQueued           Status = "queued"
	StatusRetrying         Status = "retrying"
	StatusInstalled        Status = "installed"
	StatusAlreadyInstalled Status = "already_installed"
	StatusFailed           Status = "failed"
	StatusUninstalled      Status = "uninstalled"
)

// Statuses lists every status, in the order reports show them.
var Statuses = []Status{StatusQueued, StatusRetrying, StatusInstalled, StatusAlreadyInstalled, StatusFailed, StatusUninstalled}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Final reports whether nothing more will happen to a result in s.
func (s Status) Final() bool { return s != StatusQueued && s != StatusRetrying }

// ErrorInfo is what a result keeps of the last error: never a secret.
type ErrorInfo struct {
	Class      string    `json:"class"`
	HTTPStatus int       `json:"http_status,omitempty"`
	Title      string    `json:"title,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	RequestID  string    `json:"request_id,omitempty"`
	At         time.Time `json:"at"`
}

// Result is the one record of an account's install (or uninstall) of a
// widget.
type Result struct {
	AccountID  int64  `json:"account_id"`
	WidgetCode string `json:"widget_code"`
	// Integration is the OAuth integration whose credentials the task
	// used (empty in results recorded before integrations: the default).
	Integration string `json:"integration,omitempty"`
	// BatchID is the batch whose counts the result moves (empty: none).
	BatchID string `json:"batch_id,omitempty"`
	// SettingsDigest fingerprints the installed settings' non-secret
	// values, by key (kommo.SettingsDigest): what `enqueue verify` compares
	// Kommo's current settings with. Never a value.
	SettingsDigest map[string]string `json:"settings_digest,omitempty"`
	// VerifiedAt is when `enqueue verify` last found the install standing.
	VerifiedAt    time.Time  `json:"verified_at,omitzero"`
	Operation     string     `json:"operation"` // "install" or "uninstall"
	Status        Status     `json:"status"`
	TaskID        string     `json:"task_id,omitempty"`
	Queue         string     `json:"queue,omitempty"`
	EnqueueID     string     `json:"enqueue_id,omitempty"`
	WidgetID      int        `json:"widget_id,omitempty"`
	WidgetVersion string     `json:"widget_version,omitempty"`
	Attempts      int        `json:"attempts"`
	LastError     *ErrorInfo `json:"last_error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	QueuedAt      time.Time  `json:"queued_at,omitzero"`
	UpdatedAt     time.Time  `json:"updated_at"`
	FinishedAt    time.Time  `json:"finished_at,omitzero"`
	// InFlight is set while a request that may change the account (an
	// install or uninstall) is on its way and no verdict is recorded: a
	// run that finds it set cannot know whether that request took effect.
	InFlight bool `json:"-"`
	// InFlightSince is when the mark was set (the first run that set it).
	InFlightSince time.Time `json:"-"`
	// Event, when set, is the webhook event (JSON) the record writes to
	// the outbox in the same step as the result: a result recorded is an
	// event that will be delivered.
	Event []byte `json:"-"`
}

func member(account int64, code string) string { return id(account) + ":" + code }

func (s *base) resultKey(account int64, code string) string {
	return s.prefix.KeyID("res", account, code)
}

func (s *base) resultKeys(account int64, code, batch string) []string {
	keys := make([]string, 0, len(s.recordKeys)+4)
	keys = append(append(keys, s.resultKey(account, code)), s.recordKeys...)
	return append(keys, s.batchKey(batch), s.outbox, s.batches)
}

// recordScript writes a result and moves it between the status indexes in
// one step; a success also forgets the recent Kommo blocks (only blocks
// with no success between them point at an IP block: see NoteBlock). The
// same step moves the result's batch counts (completing or reopening the
// batch) and writes its webhook event to the outbox.
// KEYS: the result, the all-index, one index per status (in Statuses
// order), the recent blocks, the batch, the outbox, the batches index.
// ARGV: member, score, status, data, enqueue_id, created at, batch ID,
// event, now, batch key prefix, batch TTL (ms).
var recordScript = redis.NewScript(recordLua)

// recordUnfinishedScript is recordScript, run only while the result is
// still the given enqueueing's and not final (queued or retrying).
var recordUnfinishedScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'enqueue_id', 'status')
if cur[1] ~= ARGV[5] or (cur[2] ~= 'queued' and cur[2] ~= 'retrying') then return 0 end
` + recordLua)

var recordLua = batchLua + statusesLua + `
local ns = #KEYS - 6
local cur = redis.call('HMGET', KEYS[1], 'status', 'batch', 'created_at')
local old, curBatch = cur[1], cur[2]
local f = {'status', ARGV[3], 'data', ARGV[4], 'enqueue_id', ARGV[5]}
if not cur[3] then f[7], f[8] = 'created_at', ARGV[6] end
if ARGV[7] ~= '' and curBatch ~= ARGV[7] then f[#f + 1], f[#f + 2] = 'batch', ARGV[7] end
redis.call('HSET', KEYS[1], unpack(f))
redis.call('HDEL', KEYS[1], 'inflight')
for i, st in ipairs(statuses) do
  local idx = KEYS[i + 2]
  if st == ARGV[3] then
    redis.call('ZADD', idx, ARGV[2], ARGV[1])
  elseif old == st then
    redis.call('ZREM', idx, ARGV[1])
  end
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[3] == 'installed' or ARGV[3] == 'already_installed' or ARGV[3] == 'uninstalled' then
  redis.call('DEL', KEYS[ns + 3])
end
local url = ''
if ARGV[7] ~= '' then
  local bk, now, ttl = KEYS[ns + 4], ARGV[9], ARGV[11]
  if curBatch == ARGV[7] then
    bmove(bk, old, ARGV[3])
  else
    if curBatch then
      local ok = ARGV[10] .. curBatch
      bmove(ok, old, 'superseded')
      bcheck(ok, now, KEYS[ns + 5], ttl)
    end
    bmove(bk, nil, ARGV[3])
    redis.call('HINCRBY', bk, 'total', 1)
    redis.call('HSETNX', bk, 'id', ARGV[7])
  end
  url = bcheck(bk, now, KEYS[ns + 5], ttl)
end
if ARGV[8] ~= '' then
  redis.call('LPUSH', KEYS[ns + 5], cjson.encode({event = ARGV[8], url = url, at = ARGV[9]}))
end
return 1`

// statusesLua names Statuses in their order, in a Lua table: the record
// scripts need not be sent them with every call.
var statusesLua = func() string {
	names := make([]string, len(Statuses))
	for i, st := range Statuses {
		names[i] = string(st)
	}
	return "local statuses = {" + luaList(names) + "}\n"
}()

// batchLua is what the result scripts share about batches: moving a
// member's count from one status to another, and completing (or
// reopening) a sealed batch, whose completion event goes to the outbox;
// bcheck returns the batch's callback URL (empty if none).
const batchLua = `
local function bmove(bk, from, to)
  if from then redis.call('HINCRBY', bk, 's:' .. from, -1) end
  if to then redis.call('HINCRBY', bk, 's:' .. to, 1) end
end
local function bcheck(bk, now, outbox, ttl)
  redis.call('PEXPIRE', bk, ttl)
  local m = redis.call('HMGET', bk, 'sealed', 'done', 's:queued', 's:retrying', 'callback_url')
  local url = m[5] or ''
  if m[1] ~= '1' then return url end
  local open = (tonumber(m[3]) or 0) + (tonumber(m[4]) or 0)
  if m[2] == '1' then
    if open > 0 then
      redis.call('HSET', bk, 'done', '0')
      redis.call('HDEL', bk, 'done_at')
    end
    return url
  end
  if open > 0 then return url end
  -- Every member is final: the whole hash, only now.
  local h = redis.call('HGETALL', bk)
  local counts, total, sum, id, url = {}, 0, 0, '', ''
  for i = 1, #h, 2 do
    local f, v = h[i], h[i + 1]
    if string.sub(f, 1, 2) == 's:' then
      local n = tonumber(v)
      if n ~= 0 then counts[string.sub(f, 3)] = n end
      sum = sum + n
    elseif f == 'total' then total = tonumber(v)
    elseif f == 'id' then id = v
    elseif f == 'callback_url' then url = v
    end
  end
  if sum >= total then
    local n = redis.call('HINCRBY', bk, 'completions', 1)
    redis.call('HSET', bk, 'done', '1', 'done_at', now)
    if redis.call('HGET', bk, 'events') == '1' then
      local ev = cjson.encode({id = 'evt_' .. id .. '_done' .. n, type = 'batch.completed', created_at = now,
        data = {batch_id = id, total = total, counts = counts}})
      redis.call('LPUSH', outbox, cjson.encode({event = ev, url = url, at = now}))
    end
  end
  return url
end
`

// queuedManyScript marks tasks queued: each gets a fresh result made of
// hash fields (no JSON to build or parse: bulk marks thousands a second),
// moved to the queued index. It leaves alone a result that already carries
// the task's enqueue_id: a worker got there first, and its verdict stands.
// One call takes a whole batch: the script call's own cost is most of
// what a mark costs. It returns how many it wrote.
// KEYS: the all-index, the status indexes, then one result per entry.
// ARGV: now, the statuses, then per entry: member, score, enqueue_id,
// task_id, queue, op, integration.
var queuedManyScript = redis.NewScript(batchLua + `
local now = ARGV[1]
local ns = 6
local b, prefix, ttl = ARGV[2 + ns], ARGV[3 + ns], ARGV[5 + ns]
local bk, outbox = KEYS[2 + ns], KEYS[3 + ns]
local written = 0
local e = 0
local first = 9 + ns
-- This batch's count changes, applied once at the end (bulk marks
-- thousands a second: one HINCRBY per status, not per entry).
local delta, joined = {}, 0
local function add(st, n) delta[st] = (delta[st] or 0) + n end
if b ~= '' then
  if redis.call('HSETNX', bk, 'id', b) == 1 or redis.call('HEXISTS', bk, 'created_at') == 0 then
    redis.call('HSET', bk, 'created_at', now, 'events', ARGV[6 + ns])
    if ARGV[7 + ns] ~= '' then redis.call('HSET', bk, 'callback_url', ARGV[7 + ns]) end
    redis.call('ZADD', KEYS[4 + ns], ARGV[8 + ns], b)
  end
end
for a = first, #ARGV, 7 do
  e = e + 1
  local k = KEYS[4 + ns + e]
  local m, score, eid = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local cur = redis.call('HMGET', k, 'enqueue_id', 'status', 'batch')
  if not cur[2] then
    -- A first result for this account and widget: nothing to undo.
    if b ~= '' then
      redis.call('HSET', k, 'status', 'queued', 'enqueue_id', eid, 'task_id', ARGV[a + 3], 'queue', ARGV[a + 4], 'op', ARGV[a + 5], 'integ', ARGV[a + 6], 'queued_at', now, 'created_at', now, 'batch', b)
      add('queued', 1)
      joined = joined + 1
    else
      redis.call('HSET', k, 'status', 'queued', 'enqueue_id', eid, 'task_id', ARGV[a + 3], 'queue', ARGV[a + 4], 'op', ARGV[a + 5], 'integ', ARGV[a + 6], 'queued_at', now, 'created_at', now)
    end
    redis.call('ZADD', KEYS[2], score, m)
    redis.call('ZADD', KEYS[1], score, m)
    written = written + 1
  elseif cur[1] ~= eid then
    redis.call('HSET', k, 'status', 'queued', 'enqueue_id', eid, 'task_id', ARGV[a + 3], 'queue', ARGV[a + 4], 'op', ARGV[a + 5], 'integ', ARGV[a + 6], 'queued_at', now)
    redis.call('HDEL', k, 'data', 'inflight')
    local old = cur[2]
    if old ~= 'queued' then
      for i = 1, ns do
        if ARGV[1 + i] == old then redis.call('ZREM', KEYS[1 + i], m) end
      end
      redis.call('ZADD', KEYS[2], score, m)
    end
    if b ~= '' then
      if cur[3] == b then
        add(old, -1)
        add('queued', 1)
      else
        if cur[3] then
          local ok = prefix .. cur[3]
          bmove(ok, old, 'superseded')
          bcheck(ok, now, outbox, ttl)
        end
        redis.call('HSET', k, 'batch', b)
        add('queued', 1)
        joined = joined + 1
      end
    elseif cur[3] then
      -- Queued again outside any batch: its old batch is done with it.
      local ok = prefix .. cur[3]
      bmove(ok, old, 'superseded')
      bcheck(ok, now, outbox, ttl)
      redis.call('HDEL', k, 'batch')
    end
    written = written + 1
  end
end
if b ~= '' then
  for st, n in pairs(delta) do
    if n ~= 0 then redis.call('HINCRBY', bk, 's:' .. st, n) end
  end
  if joined > 0 then redis.call('HINCRBY', bk, 'total', joined) end
  if ARGV[4 + ns] == '1' then redis.call('HSET', bk, 'sealed', '1') end
  bcheck(bk, now, outbox, ttl)
end
return written`)

// Record writes a result as it stands.
func (s *ResultStore) Record(ctx context.Context, r *Result) error {
	args, err := s.recordArgs(r)
	if err != nil {
		return err
	}
	if err := recordScript.Run(ctx, s.rdb, s.resultKeys(r.AccountID, r.WidgetCode, r.BatchID), args...).Err(); err != nil {
		return redisErr(fmt.Sprintf("record result of account %d widget %s", r.AccountID, r.WidgetCode), err)
	}
	return nil
}

func (s *ResultStore) recordArgs(r *Result) ([]any, error) {
	if !r.Status.Valid() {
		return nil, fmt.Errorf("store: record: unknown status %q", r.Status)
	}
	now := s.now().UTC()
	r.UpdatedAt = now
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now
	}
	data, err := encodeResult(r)
	if err != nil {
		return nil, fmt.Errorf("store: encode result: %w", err)
	}
	args := []any{member(r.AccountID, r.WidgetCode), r.AccountID, string(r.Status), data, r.EnqueueID, r.CreatedAt.Format(time.RFC3339Nano),
		r.BatchID, string(r.Event), now.Format(time.RFC3339Nano), s.batchKey(""), s.batchTTL().Milliseconds()}
	return args, nil
}

// RecordUnfinished records r only while the stored result is r's
// enqueueing (same enqueue ID) and still queued or retrying: a verdict
// found after the fact never overwrites a worker's, nor a newer
// enqueueing. It reports whether it wrote.
func (s *ResultStore) RecordUnfinished(ctx context.Context, r *Result) (bool, error) {
	args, err := s.recordArgs(r)
	if err != nil {
		return false, err
	}
	n, err := recordUnfinishedScript.Run(ctx, s.rdb, s.resultKeys(r.AccountID, r.WidgetCode, r.BatchID), args...).Int()
	if err != nil {
		return false, redisErr(fmt.Sprintf("record result of account %d widget %s", r.AccountID, r.WidgetCode), err)
	}
	return n == 1, nil
}

// MarkQueued records that a task was enqueued: a fresh result in status
// queued, keeping only when the account and widget were first seen. It
// writes nothing if a worker already recorded this enqueueing (same
// enqueue ID), and reports whether it wrote.
func (s *ResultStore) MarkQueued(ctx context.Context, q Queued) (bool, error) {
	n, err := s.markQueuedMany(ctx, []Queued{q}, BatchMarks{}, true)
	return n == 1, err
}

// Result reads one result; ErrNotFound when there is none.
func (s *ResultStore) Result(ctx context.Context, account int64, code string) (*Result, error) {
	m, err := s.rdb.HGetAll(ctx, s.resultKey(account, code)).Result()
	if err != nil {
		return nil, redisErr("read result", err)
	}
	return decodeResult(account, code, m)
}

func decodeResult(account int64, code string, m map[string]string) (*Result, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("result of account %d widget %s: %w", account, code, ErrNotFound)
	}
	var r Result
	if m["data"] == "" && m["status"] == "" {
		// Only an in-flight mark: a task enqueued without a queued mark.
		m["status"] = string(StatusQueued)
	}
	if m["data"] == "" {
		// A queued mark: plain fields.
		r = Result{AccountID: account, WidgetCode: code, Status: Status(m["status"]), EnqueueID: m["enqueue_id"], TaskID: m["task_id"],
			Queue: m["queue"], Operation: m["op"], Integration: m["integ"]}
		r.QueuedAt, _ = time.Parse(time.RFC3339Nano, m["queued_at"])
		r.UpdatedAt = r.QueuedAt
	} else if err := json.Unmarshal([]byte(m["data"]), &r); err != nil {
		return nil, fmt.Errorf("store: result of account %d widget %s: %w", account, code, err)
	}
	if t, err := time.Parse(time.RFC3339Nano, m["created_at"]); err == nil {
		r.CreatedAt = t
	}
	r.InFlight = m["inflight"] != ""
	r.InFlightSince, _ = time.Parse(time.RFC3339Nano, m["inflight"])
	return &r, nil
}

// TaskState is what a task needs to know before it runs: its result so
// far, its account, and the account's block mark. Any may be nil.
type TaskState struct {
	Result *Result
	// Account is the credentials without the refresh token: a task needs
	// it only to refresh, and a refresh reads the pair afresh under the
	// account's lock. RefreshStored says whether one is stored.
	Account       *Account
	RefreshStored bool
	Block         *Block
	// KommoPause is the pause on all Kommo traffic, when one is on.
	KommoPause *KommoPause
	// Part is what BeginWith's script part answered (nil: it did not run).
	Part []int64
}

// Begin reads a task's state in one round trip and, when markInFlight,
// then marks its result in flight: a request that may change the account
// (an install or uninstall) may be on its way, and a run that finds the
// mark cannot know whether it took effect. Recording a verdict clears it.
// Result is the state before the mark.
func (s *ResultStore) Begin(ctx context.Context, account int64, integ, code string, markInFlight bool) (TaskState, error) {
	return s.BeginWith(ctx, account, integ, code, markInFlight, nil)
}

// ScriptPart is another package's work that Begin does in the same script
// call, after its reads, when the task may reach Kommo: credentials
// stored and not revoked, no block mark, no pause of all Kommo traffic.
// Lua defines `local function part(K, A)`, which gets the tables of Keys
// and Args (all in widgetq's key space) and returns an array of integers,
// TaskState.Part.
type ScriptPart struct {
	Lua  string
	Keys []string
	Args []any
}

// beginLua reads a task's state, marks it in flight, and runs a part.
// It reads only the fields decodeResult and decodeAccount use (HMGET, not
// HGETALL: half the strings for Redis to convert and the worker to read),
// and of the refresh token only its length: the single-use token does not
// travel with every task, nor is it opened for each.
// KEYS: the result, the credentials, the block mark, the Kommo pause,
// then the part's.
// ARGV: the in-flight time (empty: no mark), how many keys are the part's,
// then the part's arguments.
var beginLua = `
local res = redis.call('HMGET', KEYS[1], ` + luaList(beginResultFields) + `)
local acct = redis.call('HMGET', KEYS[2], ` + luaList(beginAccountFields) + `)
local rt = redis.call('HSTRLEN', KEYS[2], 'refresh_token')
local m = redis.call('MGET', KEYS[3], KEYS[4])
local blk, pause = m[1], m[2]
if ARGV[1] ~= '' then redis.call('HSETNX', KEYS[1], 'inflight', ARGV[1]) end
local out = false
local nk = tonumber(ARGV[2])
-- The credentials exist (a base URL) and are not revoked.
if part and acct[1] and not acct[` + strconv.Itoa(len(beginAccountFields)) + `] and not blk and not pause then
  local K, A = {}, {}
  for i = 1, nk do K[i] = KEYS[4 + i] end
  for i = 3, #ARGV do A[#A + 1] = ARGV[i] end
  out = part(K, A)
end
return {res, acct, blk, pause, out, rt}`

// beginResultFields are the result's fields decodeResult reads;
// beginAccountFields the credentials' fields decodeAccount reads but the
// refresh token, the base URL first and revoked_at last (the script tests
// both).
var (
	beginResultFields  = []string{"status", "data", "enqueue_id", "task_id", "queue", "op", "integ", "queued_at", "created_at", "inflight"}
	beginAccountFields = []string{"base_url", "access_token", "expires_at", "updated_at", "revoked_at"}
)

// luaList is names as Lua string literals, comma-separated.
func luaList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return strings.Join(q, ", ")
}

var (
	beginScript  = redis.NewScript("local part = nil\n" + beginLua)
	beginScripts sync.Map // ScriptPart.Lua → *redis.Script
)

// BeginWith is Begin doing part in the same script call (nil: none).
func (s *ResultStore) BeginWith(ctx context.Context, account int64, integ, code string, markInFlight bool, part *ScriptPart) (TaskState, error) {
	script := beginScript
	keys := []string{s.resultKey(account, code), s.credKey(account, integ), s.blockedKey(account), s.kommoPause}
	var inflight string
	if markInFlight {
		// The first run's time stays: it bounds when a request it sent
		// could still take effect.
		inflight = s.now().UTC().Format(time.RFC3339Nano)
	}
	args := []any{inflight, 0}
	if part != nil {
		sc, ok := beginScripts.Load(part.Lua)
		if !ok {
			sc, _ = beginScripts.LoadOrStore(part.Lua, redis.NewScript(part.Lua+beginLua))
		}
		script = sc.(*redis.Script)
		keys = append(keys, part.Keys...)
		args = append(append(args[:1], len(part.Keys)), part.Args...)
	}
	raw, err := script.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return TaskState{}, redisErr("begin task", err)
	}
	if len(raw) != 6 {
		return TaskState{}, fmt.Errorf("store: begin task: the script answered %d values", len(raw))
	}
	var st TaskState
	if r, err := decodeResult(account, code, fieldMap(beginResultFields, raw[0])); err == nil {
		st.Result = r
	} else if !errors.Is(err, ErrNotFound) {
		return st, err
	}
	if a, err := s.decodeAccount(account, integ, fieldMap(beginAccountFields, raw[1])); err == nil {
		st.Account = a
		n, _ := raw[5].(int64)
		st.RefreshStored = n > 0
	} else if !errors.Is(err, ErrNotFound) {
		// Stored, but its tokens do not open with this process's keys.
		return st, err
	}
	if v, ok := raw[2].(string); ok {
		var b Block
		if json.Unmarshal([]byte(v), &b) == nil {
			st.Block = &b
		}
	}
	if v, ok := raw[3].(string); ok {
		st.KommoPause = decodeKommoPause(v)
	}
	if out, ok := raw[4].([]any); ok {
		st.Part = make([]int64, len(out))
		for i, v := range out {
			st.Part[i], _ = v.(int64)
		}
	}
	return st, nil
}

// fieldMap is the fields of a hash that a script read with HMGET: the
// names asked for, paired with the values (nil: no such field).
func fieldMap(names []string, v any) map[string]string {
	a, _ := v.([]any)
	m := make(map[string]string, len(names))
	for i, val := range a {
		if str, ok := val.(string); ok && i < len(names) {
			m[names[i]] = str
		}
	}
	return m
}

// ClearInFlight takes back an in-flight mark set by a run that ended
// without sending anything (deferred for rate budget).
func (s *ResultStore) ClearInFlight(ctx context.Context, account int64, code string) error {
	return redisErr("clear in flight", s.rdb.HDel(ctx, s.resultKey(account, code), "inflight").Err())
}

// Query selects results. Zero fields select everything.
type Query struct {
	AccountID int64
	Status    Status
	// Integration selects one integration's results (the default's
	// include those recorded before integrations existed).
	Integration string
	// Offset and Limit page through the selection (Limit 0: 100).
	Offset, Limit int
}

// Page is one page of results and the size of the whole selection.
type Page struct {
	Results []Result `json:"results"`
	Total   int64    `json:"total"`
}

// Results returns results ordered by account, then widget code.
func (s *ResultStore) Results(ctx context.Context, q Query) (Page, error) {
	if q.Status != "" && !q.Status.Valid() {
		return Page{}, fmt.Errorf("status: %q is not one of %s", q.Status, statusList())
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	if q.Integration != "" {
		return s.resultsOf(ctx, q)
	}
	idx := s.key("idx", "all")
	if q.Status != "" {
		idx = s.key("idx", "status", string(q.Status))
	}
	min, max := "-inf", "+inf"
	if q.AccountID != 0 {
		min, max = id(q.AccountID), id(q.AccountID)
	}
	var members []string
	var total int64
	var err error
	if q.AccountID == 0 {
		members, err = s.rdb.ZRange(ctx, idx, int64(q.Offset), int64(q.Offset+q.Limit-1)).Result()
		if err == nil {
			total, err = s.rdb.ZCard(ctx, idx).Result()
		}
	} else {
		members, err = s.rdb.ZRangeByScore(ctx, idx, &redis.ZRangeBy{Min: min, Max: max, Offset: int64(q.Offset), Count: int64(q.Limit)}).Result()
		if err == nil {
			total, err = s.rdb.ZCount(ctx, idx, min, max).Result()
		}
	}
	if err != nil {
		return Page{}, redisErr("list results", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(members))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			a, c, _ := strings.Cut(m, ":")
			n, _ := strconv.ParseInt(a, 10, 64)
			cmds[i] = p.HGetAll(ctx, s.resultKey(n, c))
		}
		return nil
	})
	if err != nil {
		return Page{}, redisErr("read results", err)
	}
	page := Page{Total: total, Results: make([]Result, 0, len(members))}
	for i, m := range members {
		a, c, _ := strings.Cut(m, ":")
		n, _ := strconv.ParseInt(a, 10, 64)
		r, err := decodeResult(n, c, cmds[i].Val())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return page, err
		}
		page.Results = append(page.Results, *r)
	}
	return page, nil
}

// CountByStatus returns how many results are in each status.
func (s *ResultStore) CountByStatus(ctx context.Context) (map[Status]int64, error) {
	cmds := make([]*redis.IntCmd, len(Statuses))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, st := range Statuses {
			cmds[i] = p.ZCard(ctx, s.key("idx", "status", string(st)))
		}
		return nil
	})
	if err != nil {
		return nil, redisErr("count results", err)
	}
	out := make(map[Status]int64, len(Statuses))
	for i, st := range Statuses {
		out[st] = cmds[i].Val()
	}
	return out, nil
}

func statusList() string {
	parts := make([]string, len(Statuses))
	for i, s := range Statuses {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// Queued describes a task just enqueued, for MarkQueued.
type Queued struct {
	Op        string
	Queue     string
	AccountID int64
	Code      string
	TaskID    string
	EnqueueID string
	// Integration is the task's integration when the producer knows it
	// (the payload's, or its widget's owner); the worker's record names
	// the one it used.
	Integration string
}

// BatchMarks is the batch a MarkQueuedMany call adds its tasks to.
type BatchMarks struct {
	ID string
	// Seal says no more tasks will join: the batch is done once every
	// member has a final result.
	Seal bool
	// CallbackURL receives the batch's webhook events instead of the
	// default URL.
	CallbackURL string
	// Events says webhook events are written for the batch.
	Events bool
}

// MarkQueuedMany is MarkQueued for many tasks in one round trip.
func (s *ResultStore) MarkQueuedMany(ctx context.Context, qs []Queued) error {
	_, err := s.markQueuedMany(ctx, qs, BatchMarks{}, true)
	return err
}

// MarkQueuedBatch is MarkQueuedMany for tasks of a batch: they join it
// (its total grows by len(qs)), each counted under its status; a result a
// newer batch takes over counts as superseded in its old one. With
// bm.Seal, no more tasks will join; qs may then be empty.
func (s *ResultStore) MarkQueuedBatch(ctx context.Context, qs []Queued, bm BatchMarks) error {
	_, err := s.markQueuedMany(ctx, qs, bm, true)
	return err
}

func (s *ResultStore) markQueuedMany(ctx context.Context, qs []Queued, bm BatchMarks, retry bool) (int, error) {
	if len(qs) == 0 && bm.ID == "" {
		return 0, nil
	}
	nowT := s.now().UTC()
	now := nowT.Format(time.RFC3339Nano)
	keys := []string{s.key("idx", "all")}
	for _, st := range Statuses {
		keys = append(keys, s.key("idx", "status", string(st)))
	}
	keys = append(keys, s.batchKey(bm.ID), s.outboxKey(), s.batchesKey())
	args := []any{now}
	for _, st := range Statuses {
		args = append(args, string(st))
	}
	args = append(args, bm.ID, s.batchKey(""), flag(bm.Seal), s.batchTTL().Milliseconds(), flag(bm.Events), bm.CallbackURL, nowT.UnixMilli())
	for _, q := range qs {
		keys = append(keys, s.resultKey(q.AccountID, q.Code))
		args = append(args, member(q.AccountID, q.Code), q.AccountID, q.EnqueueID, q.TaskID, q.Queue, q.Op, q.Integration)
	}
	n, err := queuedManyScript.EvalSha(ctx, s.rdb, keys, args...).Int()
	if err != nil && retry && strings.Contains(err.Error(), "NOSCRIPT") {
		// The script is not cached on this server yet: load it, try again.
		if lerr := queuedManyScript.Load(ctx, s.rdb).Err(); lerr != nil {
			return 0, redisErr("load script", lerr)
		}
		return s.markQueuedMany(ctx, qs, bm, false)
	}
	return n, redisErr("mark queued", err)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// resultsOf is Results of one integration: the indexes are not kept per
// integration, so it reads the selection in chunks and keeps the matching
// results (Total counts them all).
func (s *ResultStore) resultsOf(ctx context.Context, q Query) (Page, error) {
	want := IntegrationOf(q.Integration)
	sub := q
	sub.Integration, sub.Offset, sub.Limit = "", 0, 500
	page := Page{Results: []Result{}}
	skip := q.Offset
	for range 100000 {
		p, err := s.Results(ctx, sub)
		if err != nil {
			return page, err
		}
		for _, r := range p.Results {
			if IntegrationOf(r.Integration) != want {
				continue
			}
			page.Total++
			if skip > 0 {
				skip--
				continue
			}
			if len(page.Results) < q.Limit {
				page.Results = append(page.Results, r)
			}
		}
		sub.Offset += sub.Limit
		if int64(sub.Offset) >= p.Total {
			break
		}
	}
	return page, nil
}
