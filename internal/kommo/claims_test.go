package kommo

import (
	"encoding/base64"
	"testing"
)

func jwt(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc([]byte(payload)) + ".c2ln"
}

func TestParseClaims(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		token string
		want  Claims
		ok    bool
	}{
		{jwt(`{"aud":"9f1b","account_id":31,"api_domain":"api-b.kommo.com"}`), Claims{AccountID: 31, ClientUUID: "9f1b", APIDomain: "api-b.kommo.com"}, true},
		{jwt(`{"client_uuid":"c","account_id":"42"}`), Claims{AccountID: 42, ClientUUID: "c"}, true}, // issued before api_domain
		{"at_0123456789abcdef", Claims{}, false},
		{"a.b", Claims{}, false},
		{"a.!!!.c", Claims{}, false},
		{jwt(`[1,2]`), Claims{}, false},
	} {
		got, ok := ParseClaims(c.token)
		if got != c.want || ok != c.ok {
			t.Errorf("%.40s: %+v %v, want %+v %v", c.token, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseClaims: any token parses or is refused without a panic.
func FuzzParseClaims(f *testing.F) {
	f.Add(jwt(`{"account_id":31,"api_domain":"api-b.kommo.com"}`))
	f.Add("x.e30.y")
	f.Add("at_1")
	f.Fuzz(func(t *testing.T, tok string) {
		_, _ = ParseClaims(tok)
	})
}
