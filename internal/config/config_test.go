package config

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

var testSettings = []Setting{
	{Name: "concurrency", Env: "WIDGETQ_CONCURRENCY", Default: "50", Help: "tasks at once"},
	{Name: "rate", Env: "WIDGETQ_RATE", Default: "7", Help: "per second"},
	{Name: "timeout", Env: "WIDGETQ_TIMEOUT", Default: "30s", Help: "bound"},
	{Name: "writable", Env: "WIDGETQ_WRITABLE", Default: "false", Help: "let it write"},
}

func load(t *testing.T, args []string, env map[string]string) *Loader {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := Bind(fs, func(k string) string { return env[k] }, testSettings)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return l.Parsed(fs)
}

func TestAFlagWinsOverItsVariableWhichWinsOverTheDefault(t *testing.T) {
	t.Parallel()
	l := load(t, []string{"-concurrency", "9"}, map[string]string{"WIDGETQ_CONCURRENCY": "4", "WIDGETQ_RATE": "5.5"})
	if n := l.Int("concurrency", 1); n != 9 {
		t.Errorf("concurrency %d, want the flag's 9", n)
	}
	if r := l.Float("rate", true); r != 5.5 {
		t.Errorf("rate %v, want the variable's 5.5", r)
	}
	if d := l.Duration("timeout"); d != 30*time.Second {
		t.Errorf("timeout %v, want the default", d)
	}
	if !l.Explicit("concurrency") || !l.Explicit("rate") || l.Explicit("timeout") {
		t.Error("Explicit is wrong")
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsNameWhereTheValueCameFrom(t *testing.T) {
	t.Parallel()
	l := load(t, []string{"-timeout", "soon"}, map[string]string{"WIDGETQ_CONCURRENCY": "0", "WIDGETQ_RATE": "lots", "WIDGETQ_WRITABLE": "maybe"})
	l.Int("concurrency", 1)
	l.Float("rate", true)
	l.Duration("timeout")
	l.Bool("writable")
	err := l.Err()
	for _, want := range []string{`WIDGETQ_CONCURRENCY: want an integer ≥ 1, got "0"`, `WIDGETQ_RATE: want a number > 0, got "lots"`,
		`-timeout: want a positive duration like 30s, got "soon"`, `WIDGETQ_WRITABLE: want true or false, got "maybe"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in %v", want, err)
		}
	}
}

func TestSharedSettings(t *testing.T) {
	t.Parallel()
	if p, err := Prefix(""); p != "widgetq" || err != nil {
		t.Errorf("empty prefix: %q %v", p, err)
	}
	for _, bad := range []string{"a:b", "{x}", "a b"} {
		if _, err := Prefix(bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
	if l, err := Hosts(""); err != nil || l.String() != ".kommo.com,.amocrm.ru,.amocrm.com" {
		t.Errorf("default hosts: %v %v", l, err)
	}
	if _, err := Hosts("https://x"); err == nil || strings.Contains(err.Error(), "WIDGETQ_KOMMO_HOSTS: WIDGETQ") {
		t.Errorf("bad hosts: %v", err)
	}
	if n, err := Shards(""); n != 1 || err != nil {
		t.Errorf("no shards: %d %v", n, err)
	}
	if _, err := Shards("0"); err == nil {
		t.Error("0 shards accepted")
	}
	if _, err := Keys(func(k string) string { return map[string]string{"WIDGETQ_SECRET_KEY": "c2hvcnQ="}[k] }); err == nil || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Errorf("a short key: %v", err)
	}
}
