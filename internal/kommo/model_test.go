package kommo

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestWidgetDecodingIsTolerant(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		json       string
		version    Version
		rating     Rating
		settings   int // number of settings keys; -1 means none sent
		pipelineID *int
		uuid       *string
	}{
		{"documented: rating with a decimal comma, settings []",
			`{"id":1,"code":"a","version":"1.0.3","rating":"2,8","settings":[],"pipeline_id":null,"client_uuid":null}`,
			"1.0.3", Rating{2.8, true}, 0, nil, nil},
		{"numbers: version int, rating float, settings object",
			`{"id":1,"code":"a","version":7,"rating":2.8,"settings":{"login":"x","phones":{"1":"2"}},"pipeline_id":5,"client_uuid":"u-1"}`,
			"7", Rating{2.8, true}, 2, ptr(5), ptr("u-1")},
		{"nulls everywhere",
			`{"id":1,"code":"a","version":null,"rating":null,"settings":null,"settings_template":null}`,
			"", Rating{}, 0, nil, nil},
		{"absent fields, unknown fields ignored",
			`{"id":1,"code":"a","surprise":{"deep":[1,2,3]},"is_active_in_account":true}`,
			"", Rating{}, -1, nil, nil},
		{"rating as an empty string, version as a float",
			`{"id":1,"code":"a","version":1.5,"rating":""}`,
			"1.5", Rating{}, -1, nil, nil},
		{"rating with a dot in a string",
			`{"id":1,"code":"a","rating":"4.75"}`,
			"", Rating{4.75, true}, -1, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w Widget
			if err := json.Unmarshal([]byte(c.json), &w); err != nil {
				t.Fatal(err)
			}
			if w.Version != c.version || w.Rating != c.rating {
				t.Fatalf("version %q rating %+v, want %q %+v", w.Version, w.Rating, c.version, c.rating)
			}
			if c.settings >= 0 && len(w.Settings) != c.settings {
				t.Fatalf("settings %v, want %d keys", w.Settings, c.settings)
			}
			if !eqPtr(w.PipelineID, c.pipelineID) || !eqPtr(w.ClientUUID, c.uuid) {
				t.Fatalf("pipeline_id %v client_uuid %v", w.PipelineID, w.ClientUUID)
			}
		})
	}
}

func TestWidgetDecodingRejectsNonsense(t *testing.T) {
	t.Parallel()
	for _, j := range []string{
		`{"rating":"lots"}`, `{"rating":"NaN"}`, `{"rating":"Inf"}`, `{"version":{}}`, `{"settings":"x"}`,
		`{"is_active_in_account":"maybe"}`, `{"settings_template":"x"}`,
	} {
		var w Widget
		if err := json.Unmarshal([]byte(j), &w); err == nil {
			t.Errorf("%s decoded without an error", j)
		}
	}
}

func TestBoolShapes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Bool{`true`: true, `false`: false, `1`: true, `0`: false, `"Y"`: true, `"N"`: false, `"1"`: true, `null`: false, `""`: false} {
		var b Bool
		if err := json.Unmarshal([]byte(in), &b); err != nil || b != want {
			t.Errorf("Bool(%s) = %v, %v; want %v", in, b, err, want)
		}
	}
}

func TestSettingsTemplateShapes(t *testing.T) {
	t.Parallel()
	arr := `[{"key":"login","name":"Login","type":"text","is_required":true},{"key":"phones","name":"Phones","type":"users","is_required":false}]`
	obj := `{"login":{"name":"Login","type":"text","is_required":"Y"},"phones":{"key":"phones","name":"Phones","type":"users","is_required":0}}`
	for _, in := range []string{arr, obj} {
		var tmpl SettingsTemplate
		if err := json.Unmarshal([]byte(in), &tmpl); err != nil {
			t.Fatal(err)
		}
		if len(tmpl) != 2 || tmpl[0].Key != "login" || !bool(tmpl[0].IsRequired) || tmpl[1].Key != "phones" || tmpl[1].Type != SettingUsers || bool(tmpl[1].IsRequired) {
			t.Fatalf("%s → %+v", in, tmpl)
		}
	}
}

func TestRatingRoundTrip(t *testing.T) {
	t.Parallel()
	b, _ := json.Marshal(struct{ R, N Rating }{Rating{2.8, true}, Rating{}})
	if string(b) != `{"R":2.8,"N":null}` {
		t.Fatalf("marshal: %s", b)
	}
}

func TestTokenNeverPrintsItsSecrets(t *testing.T) {
	t.Parallel()
	tok := Token{AccessToken: "at_visible?", RefreshToken: "rt_visible?"}
	for _, s := range []string{tok.String(), tok.GoString(), tok.LogValue().String(), sprintAll(tok), sprintAll(&tok)} {
		if strings.Contains(s, "visible") {
			t.Fatalf("token printed: %s", s)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func sprintAll(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }
