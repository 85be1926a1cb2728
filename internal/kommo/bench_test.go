package kommo

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

func BenchmarkErrorFromBody(b *testing.B) {
	cases := []struct {
		name   string
		status int
		ct     string
		body   []byte
	}{
		{"problem400", 400, "application/problem+json", []byte(`{"validation-errors":[{"request_id":"0","errors":[{"code":"NotSupportedChoice","path":"phones.1","detail":"The value you selected is not a valid choice."}]}],"title":"Bad Request","type":"https://httpstatus.es/400","status":400,"detail":"Request validation failed"}`)},
		{"html429", 429, "text/html", []byte(nginx403)},
		{"empty503", 503, "", nil},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h := http.Header{"Content-Type": {c.ct}, "X-Request-Id": {"abc"}, "Retry-After": {"3"}}
			red := newRedactor("at_0123456789abcdef", "eXaMp1E")
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				_ = errorFromBody("install widget w", nil, c.status, h, c.body, red, now, false)
			}
		})
	}
}

func BenchmarkClassify(b *testing.B) {
	for b.Loop() {
		_ = classify(403, false, "", "", false)
		_ = classify(429, false, "", "", false)
		_ = classify(401, true, "Token has been revoked", "", true)
	}
}

func BenchmarkValidateSettings(b *testing.B) {
	s := []byte(`{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateSettings(asteriskTemplate, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInstallAnswer reads an install's answer for the four fields
// the worker keeps: in one pass, and with encoding/json (what it did).
func BenchmarkInstallAnswer(b *testing.B) {
	body := []byte(sandboxAnswer)
	b.Run("one-pass", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w installed
			if !w.decodeFast(body) {
				b.Fatal("not read")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w installed
			if err := json.Unmarshal(body, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}
