package kommo

import (
	"encoding/json"
	"testing"
)

// sandboxAnswer is an install's answer as the sandbox (and Kommo's
// documentation) shape it.
const sandboxAnswer = `{"id":101,"code":"amo_asterisk","version":"1.0.3","rating":"2,8","settings_template":[{"key":"login","name":"Login","type":"text","is_required":true},{"key":"pass","name":"Password","type":"pass","is_required":false}],"is_lead_source":false,"is_work_with_dp":false,"is_crm_template":false,"client_uuid":null,"is_active_in_account":true,"settings":{"login":"op\u00e9rator","note":"a \"quoted\" \\ line\n"},"_links":{"self":{"href":"http://127.0.0.1:1/k/a/api/v4/widgets/amo_asterisk"}}}`

// TestInstallAnswerIsReadInOnePass: the answers Kommo and the sandbox send
// are read by decodeFast, with the fields json.Unmarshal reads; any form it
// does not read in one pass goes to json.Unmarshal, which then decides.
func TestInstallAnswerIsReadInOnePass(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		body string
		fast bool
		want installed
	}{
		{"the sandbox's answer", sandboxAnswer, true, installed{ID: 101, Code: "amo_asterisk", Version: "1.0.3", IsActiveInAccount: true}},
		{"spaced out", " {\n\t\"id\" : 7 , \"is_active_in_account\" : false , \"x\" : [ 1 , -2.5e+3 , true , null , { } ] }\r\n", true, installed{ID: 7}},
		{"nulls", `{"id":null,"code":null,"version":null,"is_active_in_account":null}`, true, installed{}},
		{"the last of a repeated key", `{"code":"a","version":"1","code":"b","version":null}`, true, installed{Code: "b"}},
		{"empty object", `{}`, true, installed{}},
		{"a key in another case", `{"ID":5}`, false, installed{}},
		{"a key that folds to ours", `{"verſion":"2"}`, false, installed{}},
		{"an escaped key", `{"c\u006fde":"x"}`, false, installed{}},
		{"an escape in the code", `{"code":"a\nb"}`, false, installed{}},
		{"a number version", `{"version":7}`, false, installed{}},
		{"a string id", `{"id":"5"}`, false, installed{}},
		{"a fraction id", `{"id":5.0}`, false, installed{}},
		{"a string boolean", `{"is_active_in_account":"Y"}`, false, installed{}},
		{"an array", `[]`, false, installed{}},
		{"null", `null`, false, installed{}},
		{"cut off", sandboxAnswer[:len(sandboxAnswer)/2], false, installed{}},
		{"trailing data", `{"id":1} {}`, false, installed{}},
		{"a bad escape skipped", `{"x":"\q"}`, false, installed{}},
		{"a leading zero skipped", `{"x":01}`, false, installed{}},
		{"invalid UTF-8 in the code", "{\"code\":\"\xff\"}", false, installed{}},
	} {
		var got installed
		if fast := got.decodeFast([]byte(c.body)); fast != c.fast || got != c.want {
			t.Errorf("%s: decodeFast read %+v (%v), want %+v (%v)", c.name, got, fast, c.want, c.fast)
		}
		if !c.fast {
			continue
		}
		var want installed
		if err := json.Unmarshal([]byte(c.body), &want); err != nil || want != got {
			t.Errorf("%s: json.Unmarshal reads %+v (%v), decodeFast %+v", c.name, want, err, got)
		}
	}
}

// FuzzInstalledAnswer: whatever decodeFast reads, json.Unmarshal reads
// too, with the same fields.
func FuzzInstalledAnswer(f *testing.F) {
	for _, s := range []string{sandboxAnswer, `{"id":1,"code":"a","version":"1.0.3","is_active_in_account":false}`,
		`{"id":-0,"x":{"y":[{"z":"\ud83d\ude00"}]},"code":"é"}`, `{"ID":1,"Code":"x"}`, `{"id":123456789012345678}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast installed
		if !fast.decodeFast(b) {
			return
		}
		var want installed
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("decodeFast read %q as %+v; json.Unmarshal refuses it: %v", b, fast, err)
		}
		if want != fast {
			t.Fatalf("%q: decodeFast read %+v, json.Unmarshal %+v", b, fast, want)
		}
	})
}
