package tasks_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/widgetq/widgetq/tasks"
)

func TestConnectPayloadNamesTheBadFieldNeverTheCode(t *testing.T) {
	t.Parallel()
	ok := tasks.ConnectAccountPayload{Integration: "vendor-a", BaseURL: "https://acme.kommo.com", Code: "def-CODE-123", ReceivedAt: time.Now()}
	if _, err := tasks.NewConnectAccountTask(ok, ok.Code); err != nil {
		t.Fatal(err)
	}
	for field, mod := range map[string]func(p *tasks.ConnectAccountPayload){
		"integration": func(p *tasks.ConnectAccountPayload) { p.Integration = "Bad Name" },
		"code":        func(p *tasks.ConnectAccountPayload) { p.Code = "" },
		"sealed_code": func(p *tasks.ConnectAccountPayload) { p.Code, p.SealedCode = "", "plain" },
		"base_url":    func(p *tasks.ConnectAccountPayload) { p.BaseURL = "ftp://x" },
		"received_at": func(p *tasks.ConnectAccountPayload) { p.ReceivedAt = time.Time{} },
	} {
		p := ok
		mod(&p)
		err := p.Validate()
		var fe *tasks.FieldError
		if !errors.As(err, &fe) || fe.Field != field || strings.Contains(err.Error(), "def-CODE-123") {
			t.Errorf("%s: %v", field, err)
		}
	}
	// One code, one task: a redirect that arrives twice is queued once.
	if tasks.ConnectTaskID("a", "c1") != tasks.ConnectTaskID("a", "c1") || tasks.ConnectTaskID("a", "c1") == tasks.ConnectTaskID("a", "c2") ||
		strings.Contains(tasks.ConnectTaskID("a", "def-CODE-123"), "CODE") {
		t.Fatal("connect task IDs must be per code and not show it")
	}
}

func FuzzDecodeConnectAccount(f *testing.F) {
	f.Add([]byte(`{"integration":"a","base_url":"https://acme.kommo.com","code":"def1","received_at":"2026-12-04T06:00:00Z"}`))
	f.Add([]byte(`{"integration":"a","base_url":"https://acme.kommo.com","sealed_code":"wqs1.x","received_at":"2026-12-04T06:00:00Z"}`))
	f.Add([]byte(`{"integration":"A","code":""}`))
	f.Add([]byte("\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := tasks.DecodeConnectAccount(data)
		if err != nil {
			if !errors.Is(err, tasks.ErrInvalidPayload) {
				t.Fatalf("error %v does not match ErrInvalidPayload", err)
			}
			return
		}
		if _, err := tasks.NewConnectAccountTask(p, p.Code+p.SealedCode); err != nil {
			t.Fatalf("decoded payload does not make a task: %v", err)
		}
	})
}
