package bulk_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/bulk"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/producer"
)

// TestLoadEnqueuesTheGoodLinesAndRejectsTheRest: a bad line and a line
// for an account without credentials are rejected with their numbers; the
// good lines go in once, across batches and parallel senders; a second
// load of the same file finds them already queued.
func TestLoadEnqueuesTheGoodLinesAndRejectsTheRest(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	st := store.New(r.Client, prefix)
	for id := int64(1); id <= 20; id++ {
		if err := st.PutAccount(context.Background(), store.Account{ID: id, BaseURL: "https://a.kommo.com", AccessToken: "at"}); err != nil {
			t.Fatal(err)
		}
	}
	p := producer.New(r.Client, prefix, asynq.Queue("q-"+prefix))
	t.Cleanup(func() {
		p.Close()
		_ = asynq.NewInspectorFromRedisClient(r.Client).DeleteQueue("q-"+prefix, true)
	})
	var lines []string
	for id := 1; id <= 20; id++ {
		lines = append(lines, fmt.Sprintf(`{"account_id":%d,"widget_code":"w","settings":{}}`, id))
	}
	lines = append(lines, `{"account_id":0,"widget_code":"w"}`, `{"account_id":99,"widget_code":"w"}`)
	load := func() (*bulk.Stats, []string) {
		rd, err := bulk.NewReader(strings.NewReader(strings.Join(lines, "\n")), bulk.JSONL)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var rejects []string
		var st bulk.Stats
		readErr, enqErr := bulk.Load(context.Background(), p, rd, bulk.LoadOptions{
			Batch: 3, Parallel: 4, Enqueue: producer.BatchOptions{RequireAccounts: true},
			Reject: func(line int, reason string, _ []byte) {
				mu.Lock()
				defer mu.Unlock()
				rejects = append(rejects, fmt.Sprintf("%d: %s", line, reason))
			},
		}, &st)
		if readErr != nil || enqErr != nil {
			t.Fatal(readErr, enqErr)
		}
		sort.Strings(rejects)
		return &st, rejects
	}
	st1, rej := load()
	if st1.Lines.Load() != 22 || st1.Queued.Load() != 20 || st1.Rejected.Load() != 2 || st1.Failed.Load() != 0 || len(rej) != 2 ||
		!strings.HasPrefix(rej[0], "21: account_id") || !strings.Contains(rej[1], "22: ") || !strings.Contains(rej[1], "99") {
		t.Fatalf("first load: lines %d queued %d rejected %d; %q", st1.Lines.Load(), st1.Queued.Load(), st1.Rejected.Load(), rej)
	}
	st2, _ := load()
	if st2.Queued.Load() != 0 || st2.Already.Load() != 20 {
		t.Fatalf("second load: queued %d, already %d", st2.Queued.Load(), st2.Already.Load())
	}
}
