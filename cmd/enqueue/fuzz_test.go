package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/widgetq/widgetq/internal/redisconn"
)

// FuzzAccountLine: any line of an accounts file is an account that passes
// validation or an error, and the error never repeats a token.
func FuzzAccountLine(f *testing.F) {
	f.Add(`{"account_id":1,"subdomain":"acme","access_token":"at_secret_value","refresh_token":"rt_secret_value","expires_at":"2026-12-31T23:59:59Z"}`)
	f.Add(`{"account_id":"x","base_url":"https://a.kommo.com","access_token":"at_secret_value"}`)
	f.Add(`{"account_id":1,"base_url":"ftp://x","access_token":"at_secret_value"}`)
	f.Add(`{"account_id":1,"subdomain":"a.b","access_token":"at_secret_value"} {}`)
	f.Add(`{"account_id":1e3,"acces_token":"at_secret_value"}`)
	f.Add(`[`)
	f.Fuzz(func(t *testing.T, line string) {
		acct, err := parseAccountLine([]byte(line))
		if err == nil {
			if verr := acct.Validate(); verr != nil {
				t.Fatalf("accepted an invalid account: %v", verr)
			}
			return
		}
		var fields map[string]json.RawMessage
		_ = json.Unmarshal([]byte(line), &fields)
		for _, name := range []string{"access_token", "refresh_token"} {
			var tok string
			if json.Unmarshal(fields[name], &tok) != nil || len(tok) < 8 || !strings.Contains(err.Error(), tok) {
				continue
			}
			// Other fields' names and values may be quoted back (an
			// unknown field, an account_id that is not a number); a token
			// may not.
			elsewhere := false
			for k, v := range fields {
				if k != name && (strings.Contains(string(v), tok) || strings.Contains(k, tok)) {
					elsewhere = true
				}
			}
			if !elsewhere {
				t.Fatalf("error repeats the %s: %v", name, err)
			}
		}
	})
}

// FuzzRedisURL: any REDIS_URL parses or is refused, and a refusal never
// shows the password.
func FuzzRedisURL(f *testing.F) {
	for _, s := range []string{"redis://:s3cretpw@127.0.0.1:6379/0", "rediss://user:s3cretpw@h:1/2", "redis-sentinel://:s3cretpw@a:26379,b:26379?master=m",
		"redis://a:7000,redis://b:7001", "postgres://u:s3cretpw@h/0", "redis://:s3cretpw@h:99999", "redis://h/notanumber", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		conn, err := redisconn.Parse(raw)
		i := strings.Index(raw, ":s3cretpw@")
		if i < 0 {
			return
		}
		if err != nil && strings.Contains(err.Error(), "s3cretpw") {
			t.Fatalf("error shows the password: %v", err)
		}
		if err == nil && strings.Contains(conn.Display, "s3cretpw") {
			t.Fatalf("display shows the password: %s", conn.Display)
		}
	})
}
