package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/fleettest"
	"github.com/widgetq/widgetq/internal/waitfor"
)

func TestServeNeedsATokenThenServes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if o := e.cli(t, "", "serve", "--addr", "127.0.0.1:0"); o.code != 2 || !strings.Contains(o.stderr, "WIDGETQ_API_TOKEN") {
		t.Fatalf("serve without a token: %+v", o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vars := map[string]string{"REDIS_URL": e.r.URL, "WIDGETQ_PREFIX": e.prefix, "WIDGETQ_QUEUE": e.queue, "WIDGETQ_API_TOKEN": "tok"}
	var so, se fleettest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, func(k string) string { return vars[k] }, nil, &so, &se)
	}()
	var addr string
	waitfor.Until(t, 10*time.Second, func() (bool, string) {
		if m := regexp.MustCompile(`"addr":"([^"]+)"`).FindStringSubmatch(se.String()); m != nil {
			addr = m[1]
		}
		return addr != "", "serve did not start: " + se.String()
	})
	e.addAccounts(t, 1)
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/installs", strings.NewReader(`{"account_id":1,"widget_code":"amo_asterisk"}`))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 || e.queueSize(t) != 1 {
		t.Fatalf("POST: %d, queue %d", resp.StatusCode, e.queueSize(t))
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d: %s", code, se.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
}
