package kommo

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

const fuzzSecret = "SeCrEt-Tok3n-xyz"

// FuzzErrorBody feeds the error decoder whatever a server might send. It
// must never panic, always pick a known class that agrees with classify,
// keep its snippet bounded and valid UTF-8, and never show the secret.
func FuzzErrorBody(f *testing.F) {
	f.Add(400, "application/problem+json", []byte(`{"validation-errors":[{"request_id":"0","errors":[{"code":"NotSupportedChoice","path":"x","detail":"y"}]}],"title":"Bad Request","status":400}`))
	f.Add(401, "application/json", []byte(`{"hint":"Token has been revoked","title":"Unauthorized","status":401,"detail":"`+fuzzSecret+`"}`))
	f.Add(403, "text/html", []byte(nginx403))
	f.Add(403, "", []byte(""))
	f.Add(429, "text/html; charset=utf-8", []byte("<html><title>429</title>"))
	f.Add(502, "application/problem+json", []byte(`{"title":"Bad Gat`))
	f.Add(500, "text/plain", []byte("\xff\xfe"+fuzzSecret))
	f.Add(400, "application/json", []byte(`{"error":"invalid_grant","error_description":"`+fuzzSecret+`","validation-errors":{"a":1}}`))
	f.Add(404, "application/json", []byte(`{"password":"x","access_token":"`+fuzzSecret+`"}`))
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		status = 100 + ((status%500)+500)%500
		h := http.Header{"Content-Type": {contentType}, "Retry-After": {string(body[:min(len(body), 12)])}}
		for _, token := range []bool{false, true} {
			e := errorFromBody("op", nil, status, h, body, newRedactor(fuzzSecret), time.Now(), token)
			if !slices.Contains(Classes, e.Class) {
				t.Fatalf("unknown class %q", e.Class)
			}
			if want := classify(status, looksJSON(body), e.Hint, e.Code, token); want != e.Class {
				t.Fatalf("class %s, classify says %s", e.Class, want)
			}
			if len(e.Body) > maxSnippet+len("…") || !utf8.ValidString(e.Body) {
				t.Fatalf("snippet %d bytes, valid %v", len(e.Body), utf8.ValidString(e.Body))
			}
			if e.RetryAfter < 0 || e.RetryAfter > 24*time.Hour {
				t.Fatalf("retry after %v", e.RetryAfter)
			}
			if msg := e.Error(); strings.Contains(msg, fuzzSecret) || strings.Contains(e.Body, fuzzSecret) {
				t.Fatalf("secret shown: %q", msg)
			}
		}
	})
}

// looksJSON reports whether the decoder would have read body as a JSON
// object (as decodeErrorBody does).
func looksJSON(body []byte) bool {
	s := strings.TrimSpace(string(body))
	var p problem
	return strings.HasPrefix(s, "{") && json.Unmarshal([]byte(s), &p) == nil
}

// problemText is every problem ValidateSettings may state: fixed words and
// JSON kinds, so no value can ever be among them.
var problemText = regexp.MustCompile(`^(required|required, got an empty string|required, got an empty object|duplicate key|` +
	`not in the widget's settings_template|key must be a user ID \(a positive integer\)|unknown field \(want login and password\)|` +
	`malformed JSON|malformed JSON: data after the object|` +
	`want (a string|an extension number as a string|an object of user ID → extension|an object of user ID → \{login, password\}|an object \{login, password\}|a JSON object), ` +
	`got (nothing|a string|an object|an array|a boolean|null|a number|malformed JSON))$`)

// FuzzValidateSettings checks that validation never panics, states
// problems only in its own words, and accepts only JSON objects.
func FuzzValidateSettings(f *testing.F) {
	f.Add([]byte(`{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`))
	f.Add([]byte(`{"login":5,"phones":{"abc":"1","7":1039},"extra":true}`))
	f.Add([]byte(`{"operators":{"42":{"login":"op"},"0":{"login":"x","password":7,"pin":"1"},"9":"flat"},"api_key":{}}`))
	f.Add([]byte(`{"login":"a","login":"b"}`))
	f.Add([]byte(`{"login":"a"} trailing`))
	f.Add([]byte(`[]`))
	f.Add([]byte(""))
	f.Add([]byte("{\"login\":\"\xff\"}"))
	tmpl := append(append(SettingsTemplate{}, asteriskTemplate...), lpTemplate...)
	f.Fuzz(func(t *testing.T, settings []byte) {
		err := ValidateSettings(tmpl, settings)
		if err == nil {
			var m map[string]json.RawMessage
			if json.Unmarshal(settings, &m) != nil || m == nil {
				t.Fatalf("accepted %q, which is not a JSON object", settings)
			}
			return
		}
		var se *SettingsError
		if !errors.As(err, &se) || len(se.Problems) == 0 {
			t.Fatalf("error %v is not a *SettingsError with problems", err)
		}
		for _, p := range se.Problems {
			if !problemText.MatchString(p.Problem) {
				t.Fatalf("problem %q is not in validation's own words", p.Problem)
			}
		}
		checkRedacted(t, tmpl, settings)
	})
}

// checkRedacted asserts that RedactSettings replaced every pass value and
// every users_lp password of the input.
func checkRedacted(t *testing.T, tmpl SettingsTemplate, settings []byte) {
	t.Helper()
	var red map[string]json.RawMessage
	if json.Unmarshal(RedactSettings(tmpl, settings), &red) != nil || red == nil {
		return
	}
	for _, st := range tmpl {
		v, ok := red[st.Key]
		if !ok || isNull(v) {
			continue
		}
		switch st.Type {
		case SettingPass:
			if string(v) != mustJSON(Redacted) {
				t.Fatalf("pass %s not redacted: %s", st.Key, v)
			}
		case SettingUsersLP:
			var entries map[string]map[string]json.RawMessage
			if json.Unmarshal(v, &entries) != nil {
				if string(v) != mustJSON(Redacted) {
					t.Fatalf("malformed users_lp %s not redacted whole: %s", st.Key, v)
				}
				continue
			}
			for id, e := range entries {
				if p, ok := e["password"]; ok && string(p) != mustJSON(Redacted) {
					t.Fatalf("users_lp %s.%s password not redacted: %s", st.Key, id, p)
				}
			}
		}
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// FuzzWidget decodes arbitrary widget models: no panic, and a rating that
// decodes is a finite number.
func FuzzWidget(f *testing.F) {
	f.Add([]byte(`{"id":1,"code":"a","version":"1.0.3","rating":"2,8","settings":[],"pipeline_id":null,"client_uuid":null}`))
	f.Add([]byte(`{"id":1,"version":7,"rating":2.8,"settings":{"a":1},"settings_template":{"k":{"type":"text","is_required":"Y"}}}`))
	f.Add([]byte(`{"rating":"NaN","version":{},"is_active_in_account":"maybe"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var w Widget
		if json.Unmarshal(data, &w) != nil {
			return
		}
		if w.Rating.Valid && (math.IsNaN(w.Rating.Value) || math.IsInf(w.Rating.Value, 0)) {
			t.Fatalf("rating %v", w.Rating.Value)
		}
		if _, err := json.Marshal(w); err != nil {
			t.Fatalf("a decoded widget does not encode: %v", err)
		}
	})
}
