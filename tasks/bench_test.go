package tasks_test

import (
	"encoding/json"
	"testing"

	"github.com/widgetq/widgetq/tasks"
)

var benchSettings = json.RawMessage(`{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`)

func BenchmarkNewInstallWidgetTask(b *testing.B) {
	p := tasks.InstallWidgetPayload{AccountID: 30123456, WidgetCode: "amo_asterisk", Settings: benchSettings}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tasks.NewInstallWidgetTask(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeInstallWidget(b *testing.B) {
	task, _ := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 30123456, WidgetCode: "amo_asterisk", Settings: benchSettings})
	payload := task.Payload()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tasks.DecodeInstallWidget(payload); err != nil {
			b.Fatal(err)
		}
	}
}
