package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/store"
)

// BenchmarkRecord is one result recorded by a worker: the script that
// writes it and moves it between status indexes.
func BenchmarkRecord(b *testing.B) {
	r := redistest.New(b)
	s := store.New(r.Client, redistest.Unique(b))
	ctx := context.Background()
	var n int64
	b.ReportAllocs()
	for b.Loop() {
		n++
		res := &store.Result{AccountID: n % 5000, WidgetCode: "amo_asterisk", Operation: "install", Status: store.StatusInstalled, EnqueueID: "e",
			Attempts: 1, WidgetID: 101, WidgetVersion: "1.0.3", FinishedAt: time.Now()}
		if err := s.Record(ctx, res); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBegin is a task's first round trip: result, account, block
// mark and the in-flight mark in one pipeline.
func BenchmarkBegin(b *testing.B) {
	r := redistest.New(b)
	s := store.New(r.Client, redistest.Unique(b))
	ctx := context.Background()
	for i := int64(1); i <= 100; i++ {
		_ = s.PutAccount(ctx, store.Account{ID: i, BaseURL: "https://a.kommo.com", AccessToken: "at"})
	}
	var n int64
	b.ReportAllocs()
	for b.Loop() {
		n++
		if _, err := s.Begin(ctx, n%100+1, "", "amo_asterisk", true); err != nil {
			b.Fatal(err)
		}
	}
}
