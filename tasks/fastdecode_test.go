package tasks

import (
	"bytes"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeInstallFast holds the fast decoder to decodeStrict: a payload
// it accepts decodes strictly, without error, to the same payload.
func FuzzDecodeInstallFast(f *testing.F) {
	for _, c := range fastSeeds {
		f.Add([]byte(c.payload))
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

// fastSeeds are payloads for the fast decoder, and whether it takes them
// (else it leaves them to decodeStrict).
var fastSeeds = []struct {
	payload string
	taken   bool
}{
	{`{"account_id":30123456,"widget_code":"amo_asterisk","settings":{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"}},"enqueue_id":"e_1","integration":"vendor-a","batch_id":"b_00000000000000a1"}`, true},
	{`{"account_id":7,"widget_code":"w","sealed_settings":"wqs1.0a0b0c0d.AAAA","enqueue_id":"e"}`, true},
	{`{}`, true},
	{`{"account_id":01,"widget_code":"w"}`, false},
	{`{"account_id":-0,"widget_code":"w"}`, true},
	{`{"account_id":1.5,"widget_code":"w"}`, false},
	{`{"account_id":99999999999999999999,"widget_code":"w"}`, false},
	{`{"account_id":1,"account_id":2}`, false},
	{`{"Account_ID":1,"widget_code":"w"}`, false},
	{`{"account_id":1,"widget_code":"w\u0041"}`, false},
	{`{"account_id":1,"widget_code":"w","settings":{"a":"}"},"x":1}`, false},
	{`{"account_id":1,"widget_code":"w","settings":{"a":"\"}"}}`, true},
	{`{"account_id":1,"widget_code":"w","settings":{"a":[1,{"b":2}]}}`, true},
	{`{"account_id":1,"widget_code":"w","settings":{"a":]}}`, false},
	{`{"account_id":1,"widget_code":"w","settings":null}`, false},
	{`{"account_id":1,"widget_code":"w"} `, false},
	{`{"account_id":1,"widget_code":"w",}`, false},
	{`{"account_id":1,"widget_code":"w"}{}`, false},
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
	for _, c := range fastSeeds {
		if taken := decodeInstallFast([]byte(c.payload), &InstallWidgetPayload{}); taken != c.taken {
			t.Errorf("%s: taken %v, want %v", c.payload, taken, c.taken)
		}
	}
}
