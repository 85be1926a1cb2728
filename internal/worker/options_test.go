package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/worker"
)

func TestOptionsValidateNamesTheSetting(t *testing.T) {
	t.Parallel()
	if err := (worker.Options{}).Validate(); err != nil {
		t.Fatalf("zero options (all defaults): %v", err)
	}
	for _, c := range []struct {
		o    worker.Options
		want string
	}{
		{worker.Options{Prefix: "a:b"}, "prefix:"},
		{worker.Options{Concurrency: -1}, "concurrency:"},
		{worker.Options{RatePerAccount: -7}, "rate-per-account:"},
		{worker.Options{RateGlobal: 2e6}, "rate-global:"},
		{worker.Options{Queues: map[string]int{"q": 0}}, "queues:"},
		{worker.Options{Handler: worker.Config{Policy: retry.Policy{Base: time.Minute, Cap: time.Second}}}, "retry-cap:"},
		{worker.Options{AdminAddr: "0.0.0.0:9090"}, "admin-addr:"},
		{worker.Options{DebugAddr: "0.0.0.0:6060"}, "debug-addr:"},
		{worker.Options{Handler: worker.Config{OAuth: &kommo.OAuthConfig{ClientID: "x"}}}, "client-secret:"},
	} {
		err := c.o.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.o, err, c.want)
		}
	}
	if err := (worker.Options{AdminAddr: "0.0.0.0:9090", AdminTokens: []string{"t"}}).Validate(); err != nil {
		t.Errorf("a wide admin address with a token: %v", err)
	}
}
