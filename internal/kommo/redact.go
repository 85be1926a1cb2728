package kommo

import (
	"encoding/json"
	"regexp"
	"strings"
)

// Redacted replaces a secret wherever widgetq would otherwise show it.
const Redacted = "[REDACTED]"

// minSecretLen is the shortest secret the redactor replaces verbatim:
// shorter strings would blot out ordinary words and numbers.
const minSecretLen = 4

// secretFields matches JSON members and header-like pairs whose values are
// secrets whatever they are, so a secret the redactor was not told about is
// still hidden when an answer echoes it under its usual name.
var secretFields = regexp.MustCompile(
	`(?i)("(?:access_token|refresh_token|client_secret|password|pass|code|token)"\s*:\s*)"(?:[^"\\]|\\.)*"` +
		`|(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+`)

// redactor removes the secrets of one request from anything derived from
// its answer. The zero value and nil remove only the well-known fields.
type redactor struct {
	secrets []string
}

func newRedactor(secrets ...string) *redactor {
	r := &redactor{}
	r.add(secrets...)
	return r
}

// add registers secrets. Their JSON-escaped forms are made only when
// something is cleaned (an error: rare), not for every request.
func (r *redactor) add(secrets ...string) {
	for _, s := range secrets {
		if len(s) >= minSecretLen {
			r.secrets = append(r.secrets, s)
		}
	}
}

// clean returns s with every known secret and every secret-named field
// replaced by Redacted.
func (r *redactor) clean(s string) string {
	if s == "" {
		return s
	}
	if r != nil {
		for _, sec := range r.secrets {
			if strings.Contains(s, sec) {
				s = strings.ReplaceAll(s, sec, Redacted)
			}
			// The secret as a JSON string would carry it.
			if b, err := json.Marshal(sec); err == nil {
				if esc := string(b[1 : len(b)-1]); esc != sec && strings.Contains(s, esc) {
					s = strings.ReplaceAll(s, esc, Redacted)
				}
			}
		}
	}
	return secretFields.ReplaceAllStringFunc(s, func(m string) string {
		sub := secretFields.FindStringSubmatch(m)
		if sub[1] != "" {
			return sub[1] + `"` + Redacted + `"`
		}
		return sub[2] + Redacted
	})
}

// Redact returns s with the given secrets and every secret-named JSON field
// (access_token, refresh_token, client_secret, password, pass, code, token)
// and bearer token replaced by Redacted. Use it on any text that may echo a
// request before it reaches a log or a result.
func Redact(s string, secrets ...string) string {
	return newRedactor(secrets...).clean(s)
}
