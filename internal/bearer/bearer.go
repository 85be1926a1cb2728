// Package bearer checks "Authorization: Bearer <token>" against a list of
// accepted tokens, so a shared token can be rotated without downtime:
// list the new one beside the old, move the clients, drop the old.
package bearer

import (
	"crypto/subtle"
	"strings"
)

// Parse splits a comma-separated list of tokens (WIDGETQ_API_TOKEN,
// WIDGETQ_ADMIN_TOKEN), dropping blanks and surrounding spaces.
func Parse(list string) []string {
	var out []string
	for _, t := range strings.Split(list, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// Match reports whether header is "Bearer <t>" for a token t of tokens.
// Every token is compared, in constant time, whichever matches: the time
// taken tells nothing about which one, or how much of it, was right. No
// token matches an empty list.
func Match(header string, tokens []string) bool {
	got := []byte(header)
	ok := 0
	for _, t := range tokens {
		ok |= subtle.ConstantTimeCompare(got, []byte("Bearer "+t))
	}
	return ok == 1
}
