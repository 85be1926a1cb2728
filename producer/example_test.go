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
