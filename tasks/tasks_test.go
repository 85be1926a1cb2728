package tasks_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/tasks"
)

func TestConstructorsRefuseBadPayloads(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		p     tasks.InstallWidgetPayload
		field string
	}{
		{tasks.InstallWidgetPayload{AccountID: 0, WidgetCode: "w"}, "account_id"},
		{tasks.InstallWidgetPayload{AccountID: -4, WidgetCode: "w"}, "account_id"},
		{tasks.InstallWidgetPayload{AccountID: 1}, "widget_code"},
		{tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "../account"}, "widget_code"},
		{tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: strings.Repeat("w", 101)}, "widget_code"},
		{tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "w\xff"}, "widget_code"},
		{tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "w", Settings: json.RawMessage(`[1]`)}, "settings"},
		{tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "w", Settings: json.RawMessage(`{"a":`)}, "settings"},
		{tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "w", Settings: json.RawMessage("{\"a\":\"\xff\"}")}, "settings"},
		{tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "w", Settings: json.RawMessage(`{"a":"` + strings.Repeat("x", tasks.MaxSettingsBytes) + `"}`)}, "settings"},
	} {
		_, err := tasks.NewInstallWidgetTask(c.p)
		var fe *tasks.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("%+v: %v, want an error on %s", c.p, err, c.field)
		}
	}
	if _, err := tasks.NewUninstallWidgetTask(tasks.UninstallWidgetPayload{AccountID: 1, WidgetCode: ""}); err == nil {
		t.Error("uninstall without a code accepted")
	}
}

func TestTasksCarryTheirDefaultsAndID(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	client := asynq.NewClientFromRedisClient(r.Client)
	queue := "q-" + redistest.Unique(t)
	task, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 42, WidgetCode: "amo_asterisk", Settings: json.RawMessage(` { "login" : "x" } `)})
	if err != nil {
		t.Fatal(err)
	}
	info, err := client.Enqueue(task, asynq.Queue(queue)) // enqueue-time options still win
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "install:42:amo_asterisk" || info.Queue != queue || info.MaxRetry != tasks.DefaultMaxRetry || info.Timeout != tasks.DefaultTimeout || info.Retention != tasks.DefaultRetention {
		t.Fatalf("info %+v", info)
	}
	var p tasks.InstallWidgetPayload
	if err := json.Unmarshal(info.Payload, &p); err != nil || string(p.Settings) != `{"login":"x"}` || p.EnqueueID == "" {
		t.Fatalf("payload %s", info.Payload)
	}
	// The same install again: refused while the first exists.
	again, _ := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 42, WidgetCode: "amo_asterisk"}, asynq.Queue(queue))
	if _, err := client.Enqueue(again); !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Fatalf("duplicate install: %v", err)
	}
	un, _ := tasks.NewUninstallWidgetTask(tasks.UninstallWidgetPayload{AccountID: 42, WidgetCode: "amo_asterisk"}, asynq.Queue(queue), asynq.MaxRetry(2), asynq.Timeout(time.Minute))
	info, err = client.Enqueue(un)
	if err != nil || info.ID != "uninstall:42:amo_asterisk" || info.MaxRetry != 2 || info.Timeout != time.Minute {
		t.Fatalf("uninstall %+v %v", info, err)
	}
}

func TestDecodeIsStrict(t *testing.T) {
	t.Parallel()
	good := `{"account_id":7,"widget_code":"w","settings":{"a":1},"enqueue_id":"e"}`
	if p, err := tasks.DecodeInstallWidget([]byte(good)); err != nil || p.AccountID != 7 {
		t.Fatalf("good payload: %v", err)
	}
	for _, bad := range []string{`{"account_id":7,"widget_code":"w","extra":1}`, `{"account_id":"7","widget_code":"w"}`, `{"account_id":7,"widget_code":"w"} {}`, `[]`, ``, "\xff", `{"account_id":0,"widget_code":"w"}`} {
		if _, err := tasks.DecodeInstallWidget([]byte(bad)); !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := tasks.DecodeUninstallWidget([]byte(`{"account_id":7,"widget_code":"w","settings":{}}`)); err == nil {
		t.Error("uninstall payload with settings accepted")
	}
}

// FuzzDecodeInstallWidget: payloads put in the queue by anyone decode to a
// valid payload or to an ErrInvalidPayload, never a panic; what decodes
// re-encodes to a task.
func FuzzDecodeInstallWidget(f *testing.F) {
	f.Add([]byte(`{"account_id":7,"widget_code":"amo_asterisk","settings":{"login":"x"},"enqueue_id":"e"}`))
	f.Add([]byte(`{"account_id":-1,"widget_code":"w"}`))
	f.Add([]byte(`{"account_id":1e3,"widget_code":"w"}`))
	f.Add([]byte(`{"account_id":7,"widget_code":"w","settings":[]}`))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := tasks.DecodeInstallWidget(data)
		if err != nil {
			if !errors.Is(err, tasks.ErrInvalidPayload) {
				t.Fatalf("error %v does not match ErrInvalidPayload", err)
			}
			return
		}
		if _, err := tasks.NewInstallWidgetTask(p); err != nil {
			t.Fatalf("decoded payload %+v does not make a task: %v", p, err)
		}
	})
}

func TestSealedSettingsAreValidatedAndStandAlone(t *testing.T) {
	ok := tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "w", SealedSettings: "wqs1.0a0b0c0d.AAAA"}
	task, err := tasks.NewInstallWidgetTask(ok)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tasks.DecodeInstallWidget(task.Payload())
	if err != nil || p.SealedSettings != ok.SealedSettings || len(p.Settings) != 0 {
		t.Fatalf("round trip: %+v %v (settings must not default to {} beside sealed ones)", p, err)
	}
	for _, c := range []struct {
		p     tasks.InstallWidgetPayload
		field string
	}{
		{tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "w", SealedSettings: "plain"}, "sealed_settings"},
		{tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "w", SealedSettings: ok.SealedSettings, Settings: json.RawMessage(`{"a":1}`)}, "settings"},
	} {
		var fe *tasks.FieldError
		if _, err := tasks.NewInstallWidgetTask(c.p); !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: %v, want an error naming %s", c.p, err, c.field)
		}
	}
}

func TestShardQueues(t *testing.T) {
	if q := tasks.ShardQueue("widgets", 7, 1); q != "widgets" {
		t.Fatalf("one shard: %s", q)
	}
	all := map[string]bool{}
	for _, q := range tasks.ShardQueues("widgets", 4) {
		all[q] = true
	}
	seen := map[string]bool{}
	for a := int64(1); a <= 100; a++ {
		q := tasks.ShardQueue("widgets", a, 4)
		if !all[q] || q != tasks.ShardQueue("widgets", a, 4) {
			t.Fatalf("account %d: %s is not one of %v", a, q, all)
		}
		seen[q] = true
	}
	if len(seen) != 4 {
		t.Fatalf("100 accounts used %d of 4 shards", len(seen))
	}
}
