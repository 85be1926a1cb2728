package kommo

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
)

// Claims are what widgetq reads of a Kommo access token: a JWT holding the
// account, the integration and, since 21 August 2024, api_domain — the
// host that answers /oauth2/account/current/subdomain when the account's
// subdomain changed. The token's signature is not checked: it came from
// the account's own token endpoint, and every host read from it still
// goes through the Kommo host allow-list before anything is sent there.
type Claims struct {
	AccountID  int64
	ClientUUID string
	APIDomain  string
}

// ParseClaims reads an access token's claims; ok is false for a token
// that is not a JWT (a long-lived token of another form, a sandbox's).
func ParseClaims(token string) (c Claims, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > 8<<10 {
		return c, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return c, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return c, false
	}
	c.AccountID = jsonInt(m["account_id"])
	c.ClientUUID = jsonString(m["client_uuid"])
	if c.ClientUUID == "" {
		c.ClientUUID = jsonString(m["aud"])
	}
	c.APIDomain = jsonString(m["api_domain"])
	return c, true
}

func jsonString(r json.RawMessage) string {
	var s string
	if json.Unmarshal(r, &s) != nil {
		return ""
	}
	return s
}

// jsonInt reads a number or a numeric string (Kommo's claims have both).
func jsonInt(r json.RawMessage) int64 {
	var n json.Number
	if json.Unmarshal(r, &n) == nil {
		v, _ := n.Int64()
		return v
	}
	v, _ := strconv.ParseInt(jsonString(r), 10, 64)
	return v
}
