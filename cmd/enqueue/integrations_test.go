package main

import (
	"context"
	"strings"
	"testing"
)

// TestIntegrationsAddListRemove: the secret comes from the environment or
// stdin, never a flag's value, and no listing shows it.
func TestIntegrationsAddListRemove(t *testing.T) {
	t.Parallel()
	e := setup(t)
	add := []string{"integrations", "add", "--name", "crm-tel", "--client-id", "cid-a", "--redirect-uri", "https://vendor.example/oauth/callback", "--widgets", "amo_asterisk,amo_telephony_lp"}
	if o := e.cli(t, "SECRET-FROM-STDIN\n", append(add, "--client-secret", "-")...); o.code != 0 || !strings.Contains(o.stdout, "integration crm-tel stored (client cid-a, 2 widgets") {
		t.Fatalf("add: %+v", o)
	}
	i, err := e.st.Integration(context.Background(), "crm-tel")
	if err != nil || i.ClientSecret != "SECRET-FROM-STDIN" {
		t.Fatalf("stored %v %v", i, err)
	}
	if o := e.cli(t, "", append(add, "--client-secret", "SECRET-IN-A-FLAG")...); o.code != 2 || !strings.Contains(o.stderr, "never as a flag value") || strings.Contains(o.stderr+o.stdout, "SECRET-IN-A-FLAG") {
		t.Fatalf("a secret as a flag value: %+v", o)
	}
	if o := e.cli(t, "", "integrations", "add", "--name", "forms", "--client-id", "cid-b", "--redirect-uri", "https://vendor.example/cb", "--widgets", "amo_asterisk"); o.code != 2 || !strings.Contains(o.stderr, "client_secret: required") {
		t.Fatalf("no secret: %+v", o)
	}
	e.vars = map[string]string{"KOMMO_CLIENT_SECRET": "SECRET-FROM-ENV"}
	if o := e.cli(t, "", "integrations", "add", "--name", "forms", "--client-id", "cid-b", "--redirect-uri", "https://vendor.example/cb", "--widgets", "amo_asterisk"); o.code != 2 || !strings.Contains(o.stderr, "amo_asterisk belongs to integration crm-tel") {
		t.Fatalf("a taken widget: %+v", o)
	}
	if o := e.cli(t, "", "integrations", "add", "--name", "forms", "--client-id", "cid-b", "--redirect-uri", "http://vendor.example/cb"); o.code != 2 || !strings.Contains(o.stderr, "redirect_uri") {
		t.Fatalf("an http redirect URI: %+v", o)
	}
	if o := e.cli(t, "", "integrations", "add", "--name", "forms", "--client-id", "cid-b", "--redirect-uri", "https://vendor.example/cb", "--widgets", "amo_custom_form"); o.code != 0 {
		t.Fatalf("add from env: %+v", o)
	}
	for _, format := range []string{"table", "jsonl"} {
		o := e.cli(t, "", "integrations", "list", "--format", format)
		if o.code != 0 || !strings.Contains(o.stdout, "crm-tel") || !strings.Contains(o.stdout, "cid-b") || strings.Contains(o.stdout, "SECRET") {
			t.Fatalf("list %s: %+v", format, o)
		}
	}
	if o := e.cli(t, "", "integrations", "remove", "crm-tel"); o.code != 0 || !strings.Contains(o.stdout, "integration crm-tel removed") {
		t.Fatalf("remove: %+v", o)
	}
	if o := e.cli(t, "", "integrations", "remove", "crm-tel"); o.code != 1 || !strings.Contains(o.stderr, "not found") {
		t.Fatalf("remove twice: %+v", o)
	}
}
