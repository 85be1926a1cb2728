package store_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
)

// BenchmarkRecord is one result recorded by a worker as the bench's
// installs are: a task of a sealed batch, marked queued by its producer,
// recorded installed — the script that writes it, moves it between
// status indexes and moves the batch's counts. On a real Redis it reports
// the server's CPU per record too.
func BenchmarkRecord(b *testing.B) {
	r := redistest.New(b)
	prefix := redistest.Unique(b)
	redistest.Forget(b, r.Client, prefix)
	s := store.New(r.Client, prefix)
	ctx := context.Background()
	const members = 5000
	qs := make([]store.Queued, members)
	for i := range qs {
		qs[i] = store.Queued{Op: "install", Queue: "q", AccountID: int64(i + 1), Code: "amo_asterisk", TaskID: fmt.Sprint("t", i), EnqueueID: fmt.Sprint("e", i)}
	}
	if err := s.MarkQueuedBatch(ctx, qs, store.BatchMarks{ID: "b_bench", Seal: true}); err != nil {
		b.Fatal(err)
	}
	var n int
	b.ReportAllocs()
	cpu := r.ServerCPU(b)
	for b.Loop() {
		q := qs[n%members]
		n++
		res := &store.Result{AccountID: q.AccountID, WidgetCode: q.Code, Operation: "install", Status: store.StatusInstalled, EnqueueID: q.EnqueueID,
			TaskID: q.TaskID, Queue: q.Queue, BatchID: "b_bench", Attempts: 1, WidgetID: 101, WidgetVersion: "1.0.3", FinishedAt: time.Now().UTC()}
		if err := s.Record(ctx, res); err != nil {
			b.Fatal(err)
		}
	}
	r.ReportServerCPU(b, cpu)
}

// BenchmarkBegin is a task's first round trip: result, account, block
// mark and the in-flight mark, for credentials with Kommo-sized tokens
// (an access token, a JWT, of about 900 bytes; a refresh token of about
// 700), stored plain and sealed.
func BenchmarkBegin(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		b.Run(fmt.Sprintf("sealed=%v", sealed), func(b *testing.B) {
			r := redistest.New(b)
			prefix := redistest.Unique(b)
			redistest.Forget(b, r.Client, prefix)
			s := store.New(r.Client, prefix)
			if sealed {
				k, err := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
				if err != nil {
					b.Fatal(err)
				}
				s = s.WithKeys(k)
			}
			ctx := context.Background()
			access, refresh := strings.Repeat("a", 900), strings.Repeat("r", 700)
			for i := int64(1); i <= 100; i++ {
				if err := s.PutAccount(ctx, store.Account{ID: i, BaseURL: "https://a.kommo.com", AccessToken: access, RefreshToken: refresh,
					ExpiresAt: time.Now().Add(24 * time.Hour)}); err != nil {
					b.Fatal(err)
				}
			}
			var n int64
			b.ReportAllocs()
			cpu := r.ServerCPU(b)
			for b.Loop() {
				n++
				if _, err := s.Begin(ctx, n%100+1, "", "amo_asterisk", true); err != nil {
					b.Fatal(err)
				}
			}
			r.ReportServerCPU(b, cpu)
		})
	}
}
