package producer_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// A marketplace backend enqueues an install when an account connects;
// enqueueing the same install again adds nothing.
func ExampleProducer_Install() {
	m, err := miniredis.Run() // in production: your Redis
	if err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()

	p := producer.New(rdb, "")
	install := tasks.InstallWidgetPayload{AccountID: 30123456, WidgetCode: "amo_asterisk", Settings: json.RawMessage(`{"login":"example"}`)}
	for range 2 {
		out, err := p.Install(context.Background(), install)
		fmt.Println(out, err)
	}
	// Output:
	// queued <nil>
	// already_queued <nil>
}

// InstallMany enqueues a batch with one outcome per payload; with
// RequireAccounts, accounts without stored credentials are refused.
func ExampleProducer_InstallMany() {
	m, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	// Account 1 has credentials (normally stored by `enqueue accounts import`).
	rdb.HSet(context.Background(), "{widgetq}:acct:1", "base_url", "https://one.kommo.com", "access_token", "…")

	p := producer.New(rdb, "")
	defer p.Close()
	res := p.InstallMany(context.Background(), []tasks.InstallWidgetPayload{
		{AccountID: 1, WidgetCode: "amo_asterisk"},
		{AccountID: 2, WidgetCode: "amo_asterisk"},
		{AccountID: 1, WidgetCode: "bad code"},
	}, producer.BatchOptions{RequireAccounts: true})
	for _, r := range res {
		fmt.Println(r.Outcome, r.TaskID, r.Err)
	}
	// Output:
	// queued install:1:amo_asterisk <nil>
	// invalid  account 2: no credentials stored for the account
	// invalid  widget_code: "bad code" is not a widget code (1-100 letters, digits, '_', '-', '.')
}
