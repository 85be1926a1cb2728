package kommo

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// asteriskTemplate is the seed document's asterisk widget.
var asteriskTemplate = SettingsTemplate{
	{Key: "login", Name: "Login", Type: SettingText, IsRequired: true},
	{Key: "password", Name: "Password", Type: SettingPass, IsRequired: true},
	{Key: "phones", Name: "Phones", Type: SettingUsers, IsRequired: true},
	{Key: "script_path", Name: "Script path", Type: SettingText},
}

var lpTemplate = SettingsTemplate{
	{Key: "operators", Type: SettingUsersLP, IsRequired: true},
	{Key: "api_key", Type: SettingPass},
	{Key: "config", Type: SettingCustom},
}

func problems(err error) string {
	if err == nil {
		return ""
	}
	var se *SettingsError
	if !errors.As(err, &se) {
		return "not a *SettingsError: " + err.Error()
	}
	var out []string
	for _, p := range se.Problems {
		out = append(out, p.String())
	}
	return strings.Join(out, " | ")
}

func TestValidateSettings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		tmpl     SettingsTemplate
		settings string
		want     string
	}{
		{"the seed's example", asteriskTemplate,
			`{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`, ""},
		{"optional key left out", asteriskTemplate, `{"login":"a","password":"b","phones":{"1":"2"}}`, ""},
		{"every problem at once", asteriskTemplate,
			`{"login":5,"phones":{"abc":"1","7":1039},"extra":true}`,
			"login: want a string, got a number | password: required | phones.abc: key must be a user ID (a positive integer) | phones.7: want an extension number as a string, got a number | extra: not in the widget's settings_template"},
		{"required null and empty", asteriskTemplate, `{"login":"  ","password":null,"phones":{}}`,
			"login: required, got an empty string | password: required | phones: required, got an empty object"},
		{"users not an object", asteriskTemplate, `{"login":"a","password":"b","phones":["1"]}`,
			"phones: want an object of user ID → extension, got an array"},
		{"duplicate keys", asteriskTemplate, `{"login":"a","login":"b","password":"c","phones":{"1":"2"}}`, "login: duplicate key"},
		{"not an object", asteriskTemplate, `["login"]`, "want a JSON object, got an array"},
		{"malformed", asteriskTemplate, `{"login":`, "malformed JSON"},
		{"trailing data", asteriskTemplate, `{"login":"a"} {}`, "malformed JSON: data after the object"},
		{"empty", asteriskTemplate, ``, "want a JSON object, got nothing"},
		{"users_lp good, custom anything", lpTemplate,
			`{"operators":{"42":{"login":"op","password":"pw"}},"config":[1,{"a":null}]}`, ""},
		{"users_lp malformed entries", lpTemplate,
			`{"operators":{"42":{"login":"op"},"0":{"login":"x","password":7,"pin":"1"},"9":"flat"},"api_key":{}}`,
			"operators.42.password: required | operators.0: key must be a user ID (a positive integer) | operators.0.password: want a string, got a number | operators.0.pin: unknown field (want login and password) | operators.9: want an object {login, password}, got a string | api_key: want a string, got an object"},
		{"leading zeros are not user IDs", lpTemplate, `{"operators":{"042":{"login":"a","password":"b"}}}`,
			"operators.042: key must be a user ID (a positive integer)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := problems(ValidateSettings(c.tmpl, []byte(c.settings))); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestSettingsProblemsNeverShowValues(t *testing.T) {
	t.Parallel()
	secret := "s3cr3t-value"
	in := `{"login":["` + secret + `"],"password":{"v":"` + secret + `"},"phones":{"1":["` + secret + `"]},"zzz":"` + secret + `"}`
	err := ValidateSettings(asteriskTemplate, []byte(in))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("error %v shows a value", err)
	}
}

func TestSecretValuesAndRedactSettings(t *testing.T) {
	t.Parallel()
	in := []byte(`{"operators":{"42":{"login":"op","password":"pw-42"},"43":{"login":"op2","password":"pw-43"}},"api_key":"key-1","config":{"password":"not a template secret"}}`)
	got := SecretValues(lpTemplate, in)
	joined := strings.Join(got, ",")
	for _, s := range []string{"pw-42", "pw-43", "key-1"} {
		if !strings.Contains(joined, s) {
			t.Fatalf("SecretValues %v lacks %s", got, s)
		}
	}
	if len(got) != 3 {
		t.Fatalf("SecretValues %v, want 3", got)
	}
	red := RedactSettings(lpTemplate, in)
	for _, s := range []string{"pw-42", "pw-43", "key-1"} {
		if strings.Contains(string(red), s) {
			t.Fatalf("RedactSettings left %s in %s", s, red)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(red, &m); err != nil {
		t.Fatal(err)
	}
	if m["operators"].(map[string]any)["42"].(map[string]any)["login"] != "op" || m["api_key"] != Redacted {
		t.Fatalf("redacted settings %s", red)
	}
	if string(RedactSettings(lpTemplate, []byte(`nope`))) != "null" {
		t.Fatal("RedactSettings of garbage is not null")
	}
	if SecretValues(asteriskTemplate, []byte(`{"password":"eXaMp1E"}`))[0] != "eXaMp1E" {
		t.Fatal("pass value not a secret")
	}
}
