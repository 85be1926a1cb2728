package worker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/widgetq/widgetq/internal/kommo"
)

// TestSettingsAreCheckedOncePerTemplate: valid settings are checked once
// and their secrets and digest shared; invalid ones are checked every time
// and each caller gets its own error; the memory is bounded.
func TestSettingsAreCheckedOncePerTemplate(t *testing.T) {
	e := &templateEntry{tmpl: kommo.SettingsTemplate{
		{Key: "login", Type: kommo.SettingText, IsRequired: true},
		{Key: "password", Type: kommo.SettingPass, IsRequired: true},
	}, ok: true}
	good := []byte(`{"login":"a","password":"hunter22"}`)
	first, err := e.check(good)
	if err != nil || len(first.secrets) != 1 || first.secrets[0] != "hunter22" || first.digest["login"] == "" || first.digest["password"] != "" {
		t.Fatalf("valid settings: %+v %v", first, err)
	}
	if again, _ := e.check(good); again != first {
		t.Fatal("valid settings were checked again")
	}
	bad := []byte(`{"login":"a"}`)
	_, err1 := e.check(bad)
	var se *kommo.SettingsError
	if !errors.As(err1, &se) {
		t.Fatalf("missing password: %v", err1)
	}
	se.Widget = "w" // the handler names the widget on its own copy
	_, err2 := e.check(bad)
	var se2 *kommo.SettingsError
	if !errors.As(err2, &se2) || se2 == se || se2.Widget != "" {
		t.Fatalf("invalid settings share an error between callers: %v", err2)
	}
	for i := range maxChecked + 10 {
		if _, err := e.check(fmt.Appendf(nil, `{"login":"a%d","password":"p"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.checked); n > maxChecked {
		t.Fatalf("%d settings remembered, more than %d", n, maxChecked)
	}
}
