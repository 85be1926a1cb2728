package console

import (
	"strings"
	"testing"

	"github.com/widgetq/widgetq/tasks"
)

func TestFormatPayloadHidesEverySettingValue(t *testing.T) {
	task, _ := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 4, WidgetCode: "amo_x",
		Settings: []byte(`{"login":"LOGIN_V","password":"PASS_V","operators":{"1":{"login":"a","password":"LP_V"}}}`)})
	out := FormatPayload(tasks.TypeInstallWidget, task.Payload())
	for _, leak := range []string{"LOGIN_V", "PASS_V", "LP_V"} {
		if strings.Contains(out, leak) {
			t.Fatalf("shows %s: %s", leak, out)
		}
	}
	if !strings.Contains(out, `"password": "•••"`) || !strings.Contains(out, `"account_id": 4`) || !strings.Contains(out, "amo_x") {
		t.Fatalf("payload view: %s", out)
	}
	sealed, _ := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 4, WidgetCode: "amo_x", SealedSettings: "wqs1.00000000.AAAA"})
	if out := FormatPayload(tasks.TypeInstallWidget, sealed.Payload()); !strings.Contains(out, "(sealed)") || strings.Contains(out, "wqs1") {
		t.Fatalf("sealed: %s", out)
	}
	if out := FormatPayload(tasks.TypeInstallWidget, []byte(`{"account_id":1,"widget_code":"w","password":"GARBAGE_V"}`)); strings.Contains(out, "GARBAGE_V") || !strings.Contains(out, "not a valid widgetq payload") {
		t.Fatalf("garbage: %s", out)
	}
	if out := FormatPayload("email:send", []byte(`{"to":"x@y"}`)); strings.Contains(out, "x@y") {
		t.Fatalf("another program's task: %s", out)
	}
}
