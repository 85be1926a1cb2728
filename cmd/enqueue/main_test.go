package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/tasks"
)

type env struct {
	vars   map[string]string // more variables for the CLI
	r      *redistest.Redis
	prefix string
	queue  string
	st     *store.Store
	dir    string
}

func setup(t *testing.T) *env {
	t.Helper()
	e := &env{r: redistest.New(t), dir: t.TempDir()}
	e.prefix = redistest.Unique(t)
	e.queue = "q-" + e.prefix
	redistest.Forget(t, e.r.Client, e.prefix, e.queue)
	e.st = store.New(e.r.Client, e.prefix)
	return e
}

type out struct {
	code           int
	stdout, stderr string
}

// sandboxHosts allows the sandbox's loopback address, as
// WIDGETQ_KOMMO_HOSTS=127.0.0.1 does.
var sandboxHosts, _ = kommohost.Parse("127.0.0.1")

func (e *env) cli(t *testing.T, stdin string, args ...string) out {
	t.Helper()
	return e.cliCtx(context.Background(), t, stdin, args...)
}

func (e *env) cliCtx(ctx context.Context, t *testing.T, stdin string, args ...string) out {
	t.Helper()
	return e.cliReader(ctx, t, strings.NewReader(stdin), args...)
}

func (e *env) cliReader(ctx context.Context, _ *testing.T, stdin io.Reader, args ...string) out {
	vars := map[string]string{"REDIS_URL": e.r.URL, "WIDGETQ_PREFIX": e.prefix, "WIDGETQ_QUEUE": e.queue, "WIDGETQ_KOMMO_HOSTS": "127.0.0.1," + kommohost.Default}
	for k, v := range e.vars {
		vars[k] = v
	}
	var so, se bytes.Buffer
	code := run(ctx, args, func(k string) string { return vars[k] }, stdin, &so, &se)
	return out{code, so.String(), se.String()}
}

func (e *env) file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) addAccounts(t *testing.T, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		if err := e.st.PutAccount(context.Background(), store.Account{ID: id, BaseURL: fmt.Sprintf("https://a%d.kommo.com", id), AccessToken: "at_secret"}); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) queueSize(t *testing.T) int {
	t.Helper()
	qi, err := asynq.NewInspectorFromRedisClient(e.r.Client).GetQueueInfo(e.queue)
	if err != nil {
		return 0
	}
	return qi.Size
}

func TestAccountsImport(t *testing.T) {
	t.Parallel()
	e := setup(t)
	f := e.file(t, "accounts.jsonl", "\xef\xbb\xbf"+
		`{"account_id":1,"base_url":"https://one.kommo.com","access_token":"at_ONE","refresh_token":"rt_ONE","expires_at":"2026-12-31T23:59:59Z"}`+"\r\n"+
		`{"account_id":2,"subdomain":"two","access_token":"at_TWO"}`+"\n"+
		"\n"+
		`{"account_id":3,"subdomain":"three","domain":"amocrm.ru","access_token":"at_THREE"}`+"\n"+
		`{"account_id":4,"base_url":"ftp://x","access_token":"at_FOUR"}`+"\n"+ // 5
		`{"account_id":5,"subdomain":"five"}`+"\n"+ // 6
		`{"account_id":6,"subdomain":"six","access_token":"at_SIX","expires_at":"tomorrow"}`+"\n"+ // 7
		`{"account_id":-7,"subdomain":"seven","access_token":"at_SEVEN"}`+"\n"+ // 8
		`{"account_id":8,"subdomain":"eight","access_token":"at_EIGHT","password":"x"}`+"\n"+ // 9
		`not json`+"\n") // 10
	o := e.cli(t, "", "accounts", "import", f)
	if o.code != 1 || !strings.Contains(o.stdout, "imported 3 accounts, rejected 6 lines") {
		t.Fatalf("%+v", o)
	}
	for _, w := range []string{"line 5: account 4: base_url", "line 6: account 5: access_token: required", "line 7: expires_at", "line 8: account_id", `line 9: unknown field "password"`, "line 10:"} {
		if !strings.Contains(o.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, o.stderr)
		}
	}
	if strings.Contains(o.stdout+o.stderr, "at_") {
		t.Fatal("a token was printed")
	}
	a3, err := e.st.GetAccount(context.Background(), 3, "")
	if err != nil || a3.BaseURL != "https://three.amocrm.ru" {
		t.Fatalf("account 3 %v %v", a3, err)
	}
	a1, _ := e.st.GetAccount(context.Background(), 1, "")
	if a1.RefreshToken != "rt_ONE" || a1.ExpiresAt.IsZero() {
		t.Fatalf("account 1 %v", a1)
	}
	// From stdin, and listing without secrets.
	o = e.cli(t, `{"account_id":9,"subdomain":"nine","access_token":"at_NINE"}`, "accounts", "import", "-")
	if o.code != 0 {
		t.Fatalf("%+v", o)
	}
	o = e.cli(t, "", "accounts", "list")
	if o.code != 0 || strings.Contains(o.stdout, "at_") || !strings.Contains(o.stdout, "https://nine.kommo.com") || strings.Count(o.stdout, "\n") != 5 {
		t.Fatalf("list: %+v", o)
	}
	o = e.cli(t, "", "accounts", "list", "--format", "jsonl")
	if o.code != 0 || strings.Contains(o.stdout, "at_") || strings.Count(o.stdout, "\n") != 4 {
		t.Fatalf("list jsonl: %+v", o)
	}
	if o = e.cli(t, "", "accounts", "import", filepath.Join(e.dir, "missing.jsonl")); o.code != 1 || !strings.Contains(o.stderr, "cannot read") {
		t.Fatalf("missing file: %+v", o)
	}
}

func TestAccountsAddRemoveUnblock(t *testing.T) {
	t.Parallel()
	e := setup(t)
	vars := map[string]string{"REDIS_URL": e.r.URL, "WIDGETQ_PREFIX": e.prefix, "KOMMO_ACCESS_TOKEN": "at_env", "WIDGETQ_KOMMO_HOSTS": "127.0.0.1," + kommohost.Default}
	var so, se bytes.Buffer
	code := run(context.Background(), []string{"accounts", "add", "--account", "5", "--subdomain", "five"}, func(k string) string { return vars[k] }, nil, &so, &se)
	if code != 0 {
		t.Fatalf("add: %d %s %s", code, so.String(), se.String())
	}
	if a, _ := e.st.GetAccount(context.Background(), 5, ""); a == nil || a.AccessToken != "at_env" {
		t.Fatalf("added %v", a)
	}
	if o := e.cli(t, "", "accounts", "add", "--account", "6", "--subdomain", "six"); o.code != 2 || !strings.Contains(o.stderr, "access_token") {
		t.Fatalf("add without a token: %+v", o)
	}
	_ = e.st.MarkBlocked(context.Background(), store.Block{AccountID: 5}, time.Hour)
	if o := e.cli(t, "", "accounts", "unblock", "5"); o.code != 0 || !strings.Contains(o.stdout, "account 5 unblocked") {
		t.Fatalf("unblock: %+v", o)
	}
	if b, _ := e.st.Blocked(context.Background(), 5); b != nil {
		t.Fatal("still blocked")
	}
	if o := e.cli(t, "", "accounts", "remove", "5"); o.code != 0 {
		t.Fatalf("remove: %+v", o)
	}
	if o := e.cli(t, "", "accounts", "remove", "5"); o.code != 1 || !strings.Contains(o.stderr, "not found") {
		t.Fatalf("remove twice: %+v", o)
	}
	if o := e.cli(t, "", "accounts", "remove", "abc"); o.code != 2 {
		t.Fatalf("remove abc: %+v", o)
	}
}

// TestAccountsOffTheHostListAreRefused: import rejects each line whose
// base_url is not on WIDGETQ_KOMMO_HOSTS, naming the field and the rule,
// and imports the rest; add refuses with exit 2; list marks an account
// stored earlier whose host is no longer allowed.
func TestAccountsOffTheHostListAreRefused(t *testing.T) {
	t.Parallel()
	e := setup(t)
	f := e.file(t, "accounts.jsonl", ""+
		`{"account_id":1,"base_url":"https://one.kommo.com","access_token":"at_ONE"}`+"\n"+
		`{"account_id":2,"base_url":"http://169.254.169.254/latest","access_token":"at_TWO"}`+"\n"+
		`{"account_id":3,"base_url":"https://attacker.example","access_token":"at_THREE"}`+"\n"+
		`{"account_id":4,"base_url":"https://kommo.com.attacker.example","access_token":"at_FOUR"}`+"\n"+
		`{"account_id":5,"base_url":"https://u:pw@five.kommo.com","access_token":"at_FIVE"}`+"\n"+
		`{"account_id":6,"base_url":"https://10.0.0.7","access_token":"at_SIX"}`+"\n"+
		`{"account_id":7,"base_url":"https://seven.kommo.com/api/v4","access_token":"at_SEVEN"}`+"\n"+
		`{"account_id":8,"subdomain":"eight","domain":"amocrm.ru","access_token":"at_EIGHT"}`+"\n")
	o := e.cli(t, "", "accounts", "import", f)
	if o.code != 1 || !strings.Contains(o.stdout, "imported 2 accounts, rejected 6 lines") {
		t.Fatalf("%+v", o)
	}
	for _, w := range []string{
		`line 2: account 2: base_url: host "169.254.169.254" is not an allowed Kommo host (WIDGETQ_KOMMO_HOSTS=`,
		`line 3: account 3: base_url: host "attacker.example" is not an allowed Kommo host`,
		`line 4: account 4: base_url: host "kommo.com.attacker.example" is not an allowed Kommo host`,
		`line 5: account 5: base_url: must not carry credentials`,
		`line 6: account 6: base_url: host "10.0.0.7" is not an allowed Kommo host`,
		`line 7: account 7: base_url: host "seven.kommo.com" must be the account's root`,
	} {
		if !strings.Contains(o.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, o.stderr)
		}
	}
	if strings.Contains(o.stdout+o.stderr, "at_") || strings.Contains(o.stderr, "pw@") {
		t.Fatal("a token or password was printed")
	}
	for id := int64(2); id <= 7; id++ {
		if a, _ := e.st.GetAccount(context.Background(), id, ""); a != nil {
			t.Errorf("account %d was stored: %s", id, a.BaseURL)
		}
	}
	if o := e.cli(t, "", "accounts", "add", "--account", "9", "--base-url", "https://attacker.example", "--access-token", "at_NINE"); o.code != 2 ||
		!strings.Contains(o.stderr, `base_url: host "attacker.example" is not an allowed Kommo host`) || strings.Contains(o.stderr, "at_NINE") {
		t.Fatalf("add: %+v", o)
	}
	// Stored before the list changed (written around the check): marked.
	if err := store.New(e.r.Client, e.prefix).PutAccount(context.Background(), store.Account{ID: 10, BaseURL: "https://old.example", AccessToken: "at_TEN"}); err != nil {
		t.Fatal(err)
	}
	o = e.cli(t, "", "accounts", "list")
	if !regexp.MustCompile(`(?m)^10 +default +https://old\.example +NOT ALLOWED `).MatchString(o.stdout) || !regexp.MustCompile(`(?m)^1 +default +https://one\.kommo\.com +allowed `).MatchString(o.stdout) {
		t.Fatalf("list:\n%s", o.stdout)
	}
	o = e.cli(t, "", "accounts", "list", "--format", "jsonl")
	if !strings.Contains(o.stdout, `"base_url":"https://old.example","has_refresh_token":false,"updated_at":`) || !strings.Contains(o.stdout, `"host_allowed":false`) {
		t.Fatalf("list jsonl:\n%s", o.stdout)
	}
}

// TestStatusShowsAndUnblockAllLiftsTheKommoPause: the pause every worker
// takes on an IP block is in status, and unblock --all lifts it with every
// account's mark.
func TestStatusShowsAndUnblockAllLiftsTheKommoPause(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	for _, a := range []int64{11, 12, 13} {
		_ = e.st.MarkBlocked(ctx, store.Block{AccountID: a}, time.Hour)
		if _, err := e.st.NoteBlock(ctx, a, time.Minute, 3, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	o := e.cli(t, "", "status")
	if !regexp.MustCompile(`KOMMO PAUSED +all traffic, by every worker, until .*accounts \[11 12 13\].*unblock --all`).MatchString(o.stdout) ||
		!strings.Contains(o.stdout, "BLOCKED ACCOUNTS  3") {
		t.Fatalf("status:\n%s", o.stdout)
	}
	if o := e.cli(t, "", "accounts", "unblock", "--all", "12"); o.code != 2 {
		t.Fatalf("--all with an ID: %+v", o)
	}
	if o := e.cli(t, "", "accounts", "unblock", "--all"); o.code != 0 || !strings.Contains(o.stdout, "3 accounts unblocked; the pause of all Kommo traffic is lifted") {
		t.Fatalf("unblock --all: %+v", o)
	}
	if p, _ := e.st.KommoPaused(ctx); p != nil {
		t.Fatal("still paused")
	}
	if o := e.cli(t, "", "status"); strings.Contains(o.stdout, "KOMMO PAUSED") || !strings.Contains(o.stdout, "BLOCKED ACCOUNTS  0") {
		t.Fatalf("status after:\n%s", o.stdout)
	}
}

func TestInstallAndUninstall(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.addAccounts(t, 1)
	sf := e.file(t, "s.json", `{"login":"x"}`)
	if o := e.cli(t, "", "install", "--account", "1", "--widget", "amo_asterisk", "--settings", "@"+sf); o.code != 0 || !strings.Contains(o.stdout, "queued install:1:amo_asterisk") {
		t.Fatalf("install: %+v", o)
	}
	if o := e.cli(t, "", "install", "--account", "1", "--widget", "amo_asterisk"); o.code != 0 || !strings.Contains(o.stdout, "already queued") {
		t.Fatalf("again: %+v", o)
	}
	if r, _ := e.st.Result(context.Background(), 1, "amo_asterisk"); r == nil || r.Status != store.StatusQueued {
		t.Fatalf("result %v", r)
	}
	if o := e.cli(t, "", "install", "--account", "2", "--widget", "amo_asterisk"); o.code != 1 || !strings.Contains(o.stderr, "account 2: no credentials") {
		t.Fatalf("no credentials: %+v", o)
	}
	for _, args := range [][]string{
		{"install", "--account", "1", "--widget", "amo_asterisk", "--settings", "[1]"},
		{"install", "--account", "0", "--widget", "w"},
		{"install", "--widget", "w"},
		{"install", "--account", "1", "--widget", "../x"},
		{"install", "--account", "x", "--widget", "w"},
		{"install", "--bogus"},
		{"uninstall", "--account", "1"},
	} {
		if o := e.cli(t, "", args...); o.code != 2 {
			t.Errorf("%v: %+v, want exit 2", args, o)
		}
	}
	if o := e.cli(t, "", "install", "--account", "1", "--widget", "w", "--settings", "@/nonexistent"); o.code != 1 || !strings.Contains(o.stderr, "cannot read settings file") {
		t.Fatalf("missing settings file: %+v", o)
	}
	if o := e.cli(t, "", "uninstall", "--account", "1", "--widget", "amo_asterisk"); o.code != 0 || !strings.Contains(o.stdout, "queued uninstall:1:amo_asterisk") {
		t.Fatalf("uninstall: %+v", o)
	}
	if e.queueSize(t) != 2 {
		t.Fatalf("queue holds %d tasks, want 2", e.queueSize(t))
	}
}

func bulkLines(ids []int64, code string) string {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, `{"account_id":%d,"widget_code":"%s","settings":{"login":"x"}}`+"\n", id, code)
	}
	return b.String()
}

func TestBulkJSONLRejectsAndRerun(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.addAccounts(t, 1, 2, 3, 4, 5)
	content := bulkLines([]int64{1, 2, 3}, "amo_asterisk") + // 1-3
		"\n" + // 4
		`{"account_id":4,"widget_code":"amo_asterisk","settings":[1]}` + "\n" + // 5 settings
		`{"account_id":99,"widget_code":"amo_asterisk"}` + "\n" + // 6 no credentials
		`{"account_id":5,"widget_code":"bad code"}` + "\n" + // 7 code
		`{"account_id":5,"widget_code":"amo_asterisk"` + "\n" + // 8 bad JSON
		"{\"account_id\":5,\"widget_code\":\"amo_asterisk\",\"settings\":{\"a\":\"\xff\"}}\n" + // 9 UTF-8
		`{"account_id":1,"widget_code":"amo_asterisk"}` + "\n" + // 10 duplicate
		`{"account_id":5,"widget_code":"amo_asterisk","settings":{"a":"` + strings.Repeat("y", tasks.MaxSettingsBytes) + `"}}` + "\n" + // 11 too large
		`{"account_id":"5","widget_code":"amo_asterisk"}` + "\n" + // 12 mistyped
		`{"widget_code":"amo_asterisk"}` + "\r\n" // 13 missing
	f := e.file(t, "onboard.jsonl", content)
	o := e.cli(t, "", "bulk", "--no-progress", f)
	if o.code != 1 || !strings.Contains(o.stdout, "queued 3, already queued 0, rejected 9") {
		t.Fatalf("bulk: %+v", o)
	}
	for _, w := range []string{"line 5: settings", "line 6: account 99: no credentials", "line 7: widget_code", "line 8: malformed JSON", "line 9: not valid UTF-8",
		"line 10: duplicate of line 1", "line 11: settings", "line 12: account_id", "line 13: account_id: required"} {
		if !strings.Contains(o.stderr, w) {
			t.Errorf("stderr lacks %q", w)
		}
	}
	rejects, err := os.ReadFile(filepath.Join(e.dir, "onboard.rejects.jsonl"))
	if err != nil || strings.Count(string(rejects), "\n") != 9 || !strings.Contains(string(rejects), `{"account_id":99,"widget_code":"amo_asterisk"}`) {
		t.Fatalf("rejects file %q %v", rejects, err)
	}
	if n := e.queueSize(t); n != 3 {
		t.Fatalf("queue %d", n)
	}
	counts, _ := e.st.CountByStatus(context.Background())
	if counts[store.StatusQueued] != 3 {
		t.Fatalf("counts %v", counts)
	}
	// The same file again doubles nothing.
	o = e.cli(t, "", "bulk", "--no-progress", f)
	if o.code != 1 || !strings.Contains(o.stdout, "queued 0, already queued 3, rejected 9") || e.queueSize(t) != 3 {
		t.Fatalf("rerun: %+v, queue %d", o, e.queueSize(t))
	}
	// A clean file exits 0; a dry run queues nothing.
	clean := e.file(t, "clean.jsonl", bulkLines([]int64{4, 5}, "amo_asterisk"))
	if o = e.cli(t, "", "bulk", "--dry-run", "--no-progress", clean); o.code != 0 || !strings.Contains(o.stdout, "would queue 2") || e.queueSize(t) != 3 {
		t.Fatalf("dry run: %+v", o)
	}
	if o = e.cli(t, "", "bulk", "--no-progress", clean); o.code != 0 || !strings.Contains(o.stdout, "queued 2, already queued 0, rejected 0") {
		t.Fatalf("clean: %+v", o)
	}
}

func TestBulkCSVAndStdin(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.addAccounts(t, 1, 2, 3)
	csvIn := "account_id,widget_code,settings\r\n" +
		`1,amo_asterisk,"{""login"":""x""}"` + "\r\n" +
		"2,amo_asterisk,\r\n" +
		"x,amo_asterisk,{}\r\n"
	f := e.file(t, "onboard.csv", csvIn)
	o := e.cli(t, "", "bulk", "--no-progress", f)
	if o.code != 1 || !strings.Contains(o.stdout, "queued 2, already queued 0, rejected 1") || !strings.Contains(o.stderr, "line 4: account_id") {
		t.Fatalf("csv: %+v", o)
	}
	rejects, _ := os.ReadFile(filepath.Join(e.dir, "onboard.rejects.csv"))
	if string(rejects) != "account_id,widget_code,settings\nx,amo_asterisk,{}\n" {
		t.Fatalf("csv rejects %q", rejects)
	}
	// stdin, format sniffed; rejects go where asked.
	rej := filepath.Join(e.dir, "stdin-rejects.jsonl")
	o = e.cli(t, bulkLines([]int64{3}, "amo_asterisk")+`{"account_id":0,"widget_code":"w"}`+"\n", "bulk", "--no-progress", "--rejects", rej, "-")
	if o.code != 1 || !strings.Contains(o.stdout, "queued 1,") {
		t.Fatalf("stdin: %+v", o)
	}
	if b, _ := os.ReadFile(rej); !strings.Contains(string(b), `"account_id":0`) {
		t.Fatalf("stdin rejects %q", b)
	}
	txt := e.file(t, "x.txt", "")
	for _, args := range [][]string{{"bulk", txt}, {"bulk", "--format", "xml", f}, {"bulk", "--parallel", "0", f}, {"bulk"}} {
		if o := e.cli(t, "", args...); o.code != 2 {
			t.Errorf("%v: %+v", args, o)
		}
	}
	if o := e.cli(t, "", "bulk", filepath.Join(e.dir, "nope.jsonl")); o.code != 1 || !strings.Contains(o.stderr, "cannot read") {
		t.Fatalf("missing: %+v", o)
	}
	if o := e.cli(t, "", "bulk", e.file(t, "bad.csv", "account_id,bogus\n")); o.code != 1 || !strings.Contains(o.stderr, `unknown column "bogus"`) {
		t.Fatalf("bad header: %+v", o)
	}
}

func TestInterruptedBulkResumes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var ids []int64
	for i := int64(1); i <= 3000; i++ {
		ids = append(ids, i)
	}
	e.addAccounts(t, ids...)
	all := bulkLines(ids, "amo_asterisk")
	f := e.file(t, "big.jsonl", all)
	// The first run reads from a pipe that holds only the first half, and
	// is interrupted once that half is in.
	half := strings.Join(strings.SplitAfter(all, "\n")[:1500], "")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan out, 1)
	go func() {
		done <- e.cliReader(ctx, t, pr, "bulk", "--no-progress", "--format", "jsonl", "--batch", "50", "-")
	}()
	if _, err := io.WriteString(pw, half); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 30*time.Second, func() (bool, string) {
		n := e.queueSize(t)
		return n >= 1500, fmt.Sprintf("the first half never got in: %d queued", n)
	})
	cancel()
	pw.Close()
	o := <-done
	first := e.queueSize(t)
	if o.code != 1 || !strings.Contains(o.stderr, "interrupted") || first != 1500 {
		t.Fatalf("interrupted run: %+v; %d queued", o, first)
	}
	o = e.cli(t, "", "bulk", "--no-progress", f)
	if o.code != 0 || e.queueSize(t) != 3000 || !strings.Contains(o.stdout, "queued 1500, already queued 1500") {
		t.Fatalf("resumed: %+v; queue %d", o, e.queueSize(t))
	}
	counts, _ := e.st.CountByStatus(context.Background())
	if counts[store.StatusQueued] != 3000 {
		t.Fatalf("results %v", counts)
	}
}

func TestRedisUnreachableFailsFast(t *testing.T) {
	t.Parallel()
	var so, se bytes.Buffer
	// Fails, rather than retries: it must exit while nothing answers. (A
	// command that kept retrying would still be running at the deadline.)
	exited := make(chan int, 1)
	go func() {
		exited <- run(context.Background(), []string{"status"}, func(k string) string {
			return map[string]string{"REDIS_URL": "redis://:pw-secret@127.0.0.1:1/0"}[k]
		}, nil, &so, &se)
	}()
	var code int
	select {
	case code = <-exited:
	case <-time.After(time.Minute):
		t.Fatal("enqueue status kept retrying an unreachable Redis")
	}
	if code != 1 || !strings.Contains(se.String(), "127.0.0.1:1") || strings.Contains(se.String(), "pw-secret") {
		t.Fatalf("code %d, stderr %q", code, se.String())
	}
	se.Reset()
	code = run(context.Background(), []string{"status"}, func(string) string { return "" }, nil, &so, &se)
	if code != 1 || !strings.Contains(se.String(), "127.0.0.1:6380") || !strings.Contains(se.String(), "worker") {
		t.Fatalf("embedded: %d %q", code, se.String())
	}
	se.Reset()
	if code = run(context.Background(), []string{"status", "--redis-url", "http://x"}, func(string) string { return "" }, nil, &so, &se); code != 2 {
		t.Fatalf("bad URL: %d %q", code, se.String())
	}
}

// failingFleet runs a worker against a sandbox where some accounts fail,
// so that results, status and replay have something to show.
func failingFleet(t *testing.T, e *env) *sandbox.Server {
	t.Helper()
	sb := sandbox.New(sandbox.Config{})
	srv := httptest.NewServer(sb)
	t.Cleanup(func() { sb.Close(); srv.Close() })
	ctx := context.Background()
	for id := 1; id <= 4; id++ {
		sub := fmt.Sprintf("a%d", id)
		_ = sb.AddAccount(sandbox.AccountSpec{ID: id, Subdomain: sub})
		tok, _ := sb.IssueTokens(sub, 0)
		_ = e.st.PutAccount(ctx, store.Account{ID: int64(id), BaseURL: sandbox.BaseURL(srv.URL, sub), AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt})
	}
	_ = sb.SetFaults("a1", sandbox.Faults{ErrorRate: 1, ErrorStatuses: []int{503}, Routes: []string{"POST /api/v4/widgets/{code}"}})
	sb.Block("a2", time.Hour)
	w, err := worker.New(context.Background(), e.r.Client, e.r.Opt(), worker.Options{
		Prefix: e.prefix, Keys: e.st.Keys(), Concurrency: 4, Queues: map[string]int{e.queue: 1},
		Handler: worker.Config{
			OAuth:  &kommo.OAuthConfig{ClientID: sandbox.DefaultClientID, ClientSecret: sandbox.DefaultClientSecret},
			Hosts:  sandboxHosts,
			Policy: retry.Policy{Base: 50 * time.Millisecond, Cap: 100 * time.Millisecond}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(wctx) }()
	t.Cleanup(func() { stop(); <-ran })
	return sb
}

func (e *env) waitFinal(t *testing.T, n int64) map[store.Status]int64 {
	t.Helper()
	var c map[store.Status]int64
	waitfor.Until(t, 30*time.Second, func() (bool, string) {
		c, _ = e.st.CountByStatus(context.Background())
		var total int64
		for _, v := range c {
			total += v
		}
		return total == n && c[store.StatusQueued] == 0 && c[store.StatusRetrying] == 0, fmt.Sprintf("not final: %v", c)
	})
	return c
}

const seedSettings = `{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"}}`

func TestResultsStatusAndReplay(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sb := failingFleet(t, e)
	lines := ""
	for id := 1; id <= 4; id++ {
		lines += fmt.Sprintf(`{"account_id":%d,"widget_code":"amo_asterisk","settings":%s}`+"\n", id, seedSettings)
	}
	// Two attempts each, so account 1 exhausts its budget quickly.
	o := e.cli(t, lines, "bulk", "--no-progress", "--max-retry", "2", "-")
	if o.code != 0 {
		t.Fatalf("bulk: %+v", o)
	}
	counts := e.waitFinal(t, 4)
	if counts[store.StatusInstalled] != 2 || counts[store.StatusFailed] != 2 {
		t.Fatalf("counts %v", counts)
	}

	o = e.cli(t, "", "results", "--status", "failed")
	if o.code != 0 || !strings.Contains(o.stdout, "server") || !strings.Contains(o.stdout, "blocked") || strings.Contains(o.stdout, "eXaMp1E") {
		t.Fatalf("results: %+v", o)
	}
	o = e.cli(t, "", "results", "--format", "jsonl", "--account", "1")
	var r store.Result
	if o.code != 0 || json.Unmarshal([]byte(strings.TrimSpace(o.stdout)), &r) != nil || r.LastError.Class != "server" || r.LastError.HTTPStatus != 503 || r.Attempts != 2 {
		t.Fatalf("results jsonl: %+v %+v", o, r)
	}
	o = e.cli(t, "", "results", "--format", "csv", "--widget", "amo_asterisk", "--status", "installed")
	if o.code != 0 || strings.Count(o.stdout, "\n") != 3 || !strings.HasPrefix(o.stdout, "account_id,widget_code") {
		t.Fatalf("results csv: %+v", o)
	}
	if o = e.cli(t, "", "results", "--status", "done"); o.code != 2 {
		t.Fatalf("bad status: %+v", o)
	}
	o = e.cli(t, "", "status")
	if o.code != 0 || !strings.Contains(o.stdout, "failed             2") || !strings.Contains(o.stdout, e.queue) || !strings.Contains(o.stdout, "BLOCKED ACCOUNTS  1") {
		t.Fatalf("status: %+v", o)
	}

	// Replay needs a filter.
	if o = e.cli(t, "", "replay"); o.code != 2 {
		t.Fatalf("replay without a filter: %+v", o)
	}
	if o = e.cli(t, "", "replay", "--class", "server", "--dry-run"); o.code != 0 || !strings.Contains(o.stdout, "would replay install:1:amo_asterisk") {
		t.Fatalf("dry run: %+v", o)
	}
	// Kommo is back for account 1: replay by class.
	sb.ClearFaults()
	o = e.cli(t, "", "replay", "--class", "server")
	if o.code != 0 || !strings.Contains(o.stdout, "replayed install:1:amo_asterisk") || !strings.Contains(o.stdout, "replayed 1, skipped 0, cannot replay 0") {
		t.Fatalf("replay: %+v", o)
	}
	info, err := asynq.NewInspectorFromRedisClient(e.r.Client).GetTaskInfo(e.queue, "install:1:amo_asterisk")
	if err == nil && info.State != asynq.TaskStateCompleted && info.Retried != 0 {
		t.Fatalf("replayed task has %d retries spent", info.Retried)
	}
	// Account 2: unblocked at Kommo and in widgetq, replayed by account.
	sb.Unblock("a2")
	e.cli(t, "", "accounts", "unblock", "2")
	if o = e.cli(t, "", "replay", "--account", "2"); o.code != 0 || !strings.Contains(o.stdout, "replayed install:2:amo_asterisk") {
		t.Fatalf("replay account: %+v", o)
	}
	counts = e.waitFinal(t, 4)
	if counts[store.StatusInstalled] != 4 {
		t.Fatalf("after replays: %v", counts)
	}
	r1, _ := e.st.Result(context.Background(), 1, "amo_asterisk")
	if r1.Attempts != 1 {
		t.Fatalf("replayed result attempts %d, want a fresh count of 1", r1.Attempts)
	}
	if n := sb.Counters().Installs(1, "amo_asterisk"); n != 1 {
		t.Fatalf("account 1 installed %d times", n)
	}
	// Nothing left to replay.
	if o = e.cli(t, "", "replay", "--all"); o.code != 0 || !strings.Contains(o.stdout, "replayed 0") {
		t.Fatalf("replay all: %+v", o)
	}
}

func TestInterruptedReplayLosesNoTask(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	e.addAccounts(t, 7)
	// A failed, archived task…
	task, _ := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 7, WidgetCode: "w", Settings: json.RawMessage(`{"a":1}`)}, asynq.Queue(e.queue))
	client := asynq.NewClientFromRedisClient(e.r.Client)
	if _, err := client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(e.r.Client)
	if err := insp.ArchiveTask(e.queue, "install:7:w"); err != nil {
		t.Fatal(err)
	}
	_ = e.st.Record(ctx, &store.Result{AccountID: 7, WidgetCode: "w", Operation: "install", Status: store.StatusFailed, TaskID: "install:7:w", LastError: &store.ErrorInfo{Class: "server"}})
	info, _ := insp.GetTaskInfo(e.queue, "install:7:w")
	// …whose replay died after journaling and deleting the archived task.
	if err := e.st.JournalPut(ctx, store.JournalEntry{TaskID: info.ID, Queue: e.queue, Type: info.Type, Payload: info.Payload, MaxRetry: info.MaxRetry, Timeout: info.Timeout}); err != nil {
		t.Fatal(err)
	}
	if err := insp.DeleteTask(e.queue, info.ID); err != nil {
		t.Fatal(err)
	}
	if e.queueSize(t) != 0 {
		t.Fatal("setup: the task should be nowhere")
	}
	o := e.cli(t, "", "replay", "--account", "7")
	if o.code != 0 || !strings.Contains(o.stdout, "finished 1 replays") {
		t.Fatalf("replay: %+v", o)
	}
	got, err := insp.GetTaskInfo(e.queue, "install:7:w")
	if err != nil || got.State != asynq.TaskStatePending || string(got.Payload) == "" {
		t.Fatalf("task after recovery: %+v %v", got, err)
	}
	if r, _ := e.st.Result(ctx, 7, "w"); r.Status != store.StatusQueued {
		t.Fatalf("result %s", r.Status)
	}
	if left, _ := e.st.JournalAll(ctx); len(left) != 0 {
		t.Fatalf("journal left %v", left)
	}
}

func TestHelpOnEverySubcommand(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, sub := range [][]string{{}, {"accounts"}, {"accounts", "import"}, {"accounts", "add"}, {"accounts", "list"}, {"accounts", "remove"}, {"accounts", "unblock"},
		{"install"}, {"uninstall"}, {"bulk"}, {"results"}, {"status"}, {"replay"}} {
		o := e.cli(t, "", append(sub, "--help")...)
		if o.code != 0 || !strings.Contains(o.stdout, "Usage:") {
			t.Errorf("%v --help: %+v", sub, o)
		}
	}
}
