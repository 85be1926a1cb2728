package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
)

func TestIntegrationsRegistry(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	k, _ := seal.New(bytes.Repeat([]byte{5}, seal.KeySize))
	s := store.New(r.Client, prefix).WithKeys(k)
	ctx := context.Background()
	a := store.Integration{Name: "crm-tel", ClientID: "cid-a", ClientSecret: "SECRET-A", RedirectURI: "https://vendor.example/oauth/callback", Widgets: []string{"amo_asterisk", "amo_telephony_lp"}}
	if err := s.PutIntegration(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.Integration(ctx, "crm-tel")
	if err != nil || got.ClientSecret != "SECRET-A" || got.ClientID != "cid-a" || len(got.Widgets) != 2 {
		t.Fatalf("read back %v %v", got, err)
	}
	if strings.Contains(fmt.Sprintf("%v %#v %+v", *got, *got, *got), "SECRET-A") {
		t.Fatal("printing an integration shows its secret")
	}
	if raw := rawValues(t, r, prefix); strings.Contains(raw, "SECRET-A") {
		t.Fatal("the client secret rests in Redis in plaintext")
	}
	if o, _ := s.OwnerOf(ctx, "amo_telephony_lp"); o != "crm-tel" {
		t.Fatalf("owner %q", o)
	}
	// Another integration cannot claim a widget that is taken.
	b := store.Integration{Name: "forms", ClientID: "cid-b", ClientSecret: "SECRET-B", RedirectURI: "https://vendor.example/cb", Widgets: []string{"amo_asterisk"}}
	if err := s.PutIntegration(ctx, b); err == nil || !strings.Contains(err.Error(), "amo_asterisk belongs to integration crm-tel") {
		t.Fatalf("a taken widget: %v", err)
	}
	b.Widgets = []string{"amo_custom_form"}
	if err := s.PutIntegration(ctx, b); err != nil {
		t.Fatal(err)
	}
	// Replacing an integration releases the widgets it no longer lists.
	a.Widgets = []string{"amo_asterisk"}
	if err := s.PutIntegration(ctx, a); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.OwnerOf(ctx, "amo_telephony_lp"); o != "" {
		t.Fatalf("a released widget still owned by %q", o)
	}
	list, err := s.Integrations(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "crm-tel" || list[1].Name != "forms" || list[0].ClientSecret != "" {
		t.Fatalf("list %v %v", list, err)
	}
	if err := s.DeleteIntegration(ctx, "crm-tel"); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.OwnerOf(ctx, "amo_asterisk"); o != "" {
		t.Fatal("a removed integration still owns its widget")
	}
	if _, err := s.Integration(ctx, "crm-tel"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after remove: %v", err)
	}
	if err := s.DeleteIntegration(ctx, "crm-tel"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remove twice: %v", err)
	}
}

func TestIntegrationValidationNamesTheField(t *testing.T) {
	t.Parallel()
	ok := store.Integration{Name: "a", ClientID: "c", ClientSecret: "s", RedirectURI: "https://x.example/cb"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mod  func(*store.Integration)
		want string
	}{
		{func(i *store.Integration) { i.Name = "Bad Name" }, "name:"},
		{func(i *store.Integration) { i.ClientID = " " }, "client_id:"},
		{func(i *store.Integration) { i.ClientSecret = "" }, "client_secret:"},
		{func(i *store.Integration) { i.RedirectURI = "http://x.example/cb" }, "redirect_uri:"},
		{func(i *store.Integration) { i.Widgets = []string{"../x"} }, "widgets:"},
		{func(i *store.Integration) { i.Widgets = []string{"w", "w"} }, "listed twice"},
	} {
		i := ok
		c.mod(&i)
		if err := i.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", i, err, c.want)
		}
	}
}
