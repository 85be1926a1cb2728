package tasks

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeInstallFast holds the fast decoder to decodeStrict: a payload
// it accepts decodes strictly, without error, to the same payload.
func FuzzDecodeInstallFast(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return
		}
		var fast, strict InstallWidgetPayload
		if !decodeInstallFast(data, &fast) {
			return
		}
		if err := decodeStrict(data, &strict); err != nil {
			t.Fatalf("fast decoder accepted %q, decodeStrict: %v", data, err)
		}
		if !bytes.Equal(fast.Settings, strict.Settings) {
			t.Fatalf("%q: settings %q, decodeStrict %q", data, fast.Settings, strict.Settings)
		}
		fast.Settings, strict.Settings = nil, nil
		if !reflect.DeepEqual(fast, strict) {
			t.Fatalf("%q: fast %+v, decodeStrict %+v", data, fast, strict)
		}
	})
}

var fastSeeds = []string{
	`{"account_id":30123456,"widget_code":"amo_asterisk","settings":{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"}},"enqueue_id":"e_1","integration":"vendor-a","batch_id":"b_00000000000000a1"}`,
	`{"account_id":7,"widget_code":"w","sealed_settings":"wqs1.0a0b0c0d.AAAA","enqueue_id":"e"}`,
	`{}`,
	`{"account_id":01,"widget_code":"w"}`,
	`{"account_id":-0,"widget_code":"w"}`,
	`{"account_id":1.5,"widget_code":"w"}`,
	`{"account_id":99999999999999999999,"widget_code":"w"}`,
	`{"account_id":1,"account_id":2}`,
	`{"Account_ID":1,"widget_code":"w"}`,
	`{"account_id":1,"widget_code":"w\u0041"}`,
	`{"account_id":1,"widget_code":"w","settings":{"a":"}"},"x":1}`,
	`{"account_id":1,"widget_code":"w","settings":{"a":"\"}"}}`,
	`{"account_id":1,"widget_code":"w","settings":{"a":[1,{"b":2}]}}`,
	`{"account_id":1,"widget_code":"w","settings":{"a":]}}`,
	`{"account_id":1,"widget_code":"w","settings":null}`,
	`{"account_id":1,"widget_code":"w"} `,
	`{"account_id":1,"widget_code":"w",}`,
	`{"account_id":1,"widget_code":"w"}{}`,
}

// leftToStrict are the fastSeeds the fast decoder must not take.
var leftToStrict = []string{
	`{"account_id":01,"widget_code":"w"}`,
	`{"account_id":1.5,"widget_code":"w"}`,
	`{"account_id":99999999999999999999,"widget_code":"w"}`,
	`{"account_id":1,"account_id":2}`,
	`{"Account_ID":1,"widget_code":"w"}`,
	`{"account_id":1,"widget_code":"w\u0041"}`,
	`{"account_id":1,"widget_code":"w","settings":{"a":"}"},"x":1}`,
	`{"account_id":1,"widget_code":"w","settings":{"a":]}}`,
	`{"account_id":1,"widget_code":"w","settings":null}`,
	`{"account_id":1,"widget_code":"w"} `,
	`{"account_id":1,"widget_code":"w",}`,
	`{"account_id":1,"widget_code":"w"}{}`,
}

// The fast decoder takes what producers write and hands anything else
// to decodeStrict: each case is what it must answer.
func TestFastDecoderTakesOnlyWhatProducersWrite(t *testing.T) {
	task, err := NewInstallWidgetTask(InstallWidgetPayload{AccountID: 30123456, WidgetCode: "amo_asterisk",
		Settings: []byte(`{"login":"x","phones":{"1":"2"}}`), Integration: "vendor-a", BatchID: "b_00000000000000a1"})
	if err != nil {
		t.Fatal(err)
	}
	var p InstallWidgetPayload
	if !decodeInstallFast(task.Payload(), &p) {
		t.Fatalf("a producer's payload %s was not taken", task.Payload())
	}
	if p.AccountID != 30123456 || p.WidgetCode != "amo_asterisk" || string(p.Settings) != `{"login":"x","phones":{"1":"2"}}` ||
		p.Integration != "vendor-a" || p.BatchID != "b_00000000000000a1" || p.EnqueueID == "" {
		t.Fatalf("decoded %+v", p)
	}
	for _, s := range fastSeeds {
		taken := decodeInstallFast([]byte(s), &InstallWidgetPayload{})
		want := !slices.Contains(leftToStrict, s)
		if taken != want {
			t.Errorf("%s: taken %v, want %v", s, taken, want)
		}
	}
}
