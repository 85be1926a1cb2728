package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"-help"}, &out, &out, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	for _, name := range []string{"addr", "accounts", "first-account-id", "subdomain-prefix", "accounts-out", "client-id", "client-secret", "clients",
		"redirect-uri", "token-lifetime", "rate", "global-rate", "ratelimit-body", "retry-after", "block-after", "block-window",
		"block-for", "block-ip-after", "latency", "latency-jitter", "error-rate", "error-html", "reset-rate", "hang-rate", "hang-for",
		"truncate-rate", "delete-200", "filler-widgets", "seed"} {
		if !strings.Contains(out.String(), "\n  -"+name+" ") && !strings.Contains(out.String(), "\n  -"+name+"\n") {
			t.Errorf("-help does not document -%s", name)
		}
	}
	if n := strings.Count(out.String(), "\n  -"); n != 29 {
		t.Errorf("-help lists %d flags; update this test's list when adding one", n)
	}
}

func TestBadFlagsAreUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-nope"}, {"-ratelimit-body", "xml"}, {"-accounts", "-1"}, {"extra"}, {"-error-rate", "2"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out, &out, nil); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestServesAccountsWithWorkingCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "accounts.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-accounts", "2", "-first-account-id", "500", "-accounts-out", out}, os.Stdout, &stderr, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("sandbox did not start")
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var a struct {
			AccountID    int    `json:"account_id"`
			Subdomain    string `json:"subdomain"`
			BaseURL      string `json:"base_url"`
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			ExpiresAt    string `json:"expires_at"`
		}
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339, a.ExpiresAt); err != nil || a.RefreshToken == "" {
			t.Fatalf("line %d: %+v", n+1, a)
		}
		c, err := kommo.NewClient(a.BaseURL, kommo.WithAuth(kommo.StaticToken(a.AccessToken)))
		if err != nil {
			t.Fatal(err)
		}
		acct, _, err := c.GetAccount(ctx)
		if err != nil || acct.ID != a.AccountID || acct.Subdomain != a.Subdomain {
			t.Fatalf("account %+v via %s: %v", acct, a.BaseURL, err)
		}
		if _, _, err := c.InstallWidget(ctx, sandbox.WidgetAsterisk, json.RawMessage(`{"login":"a","password":"b","phones":{"1":"2"}}`)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d accounts written, want 2", n)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop on cancel")
	}
	if !strings.Contains(stderr.String(), "serving 2 accounts") {
		t.Fatalf("stderr %q", stderr.String())
	}
}
