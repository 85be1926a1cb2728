package kommo_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/widgetq/widgetq/internal/kommo"
)

// A caller decides what to do with a failure from its Class: retry the
// retryable ones later (honouring RetryAfter), stop on the others.
func ExampleError() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "5f1c")
		w.Header().Set("Retry-After", "3")
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, "<html><head><title>429 Too Many Requests</title></head></html>")
	}))
	defer srv.Close()

	c, _ := kommo.NewClient(srv.URL, kommo.WithAuth(kommo.StaticToken("long-lived-token")))
	_, _, err := c.InstallWidget(context.Background(), "amo_asterisk", []byte(`{"login":"example"}`))

	var ke *kommo.Error
	if errors.As(err, &ke) {
		fmt.Println(ke.Class, ke.Retryable(), ke.RetryAfter, ke.RequestID)
	}
	fmt.Println(err)
	// Output:
	// rate_limited true 3s 5f1c
	// kommo: install widget amo_asterisk: 429 Too Many Requests (rate_limited): 429 Too Many Requests [request 5f1c]
}

// ValidateSettings reports every problem at once, by key path, without
// the values.
func ExampleValidateSettings() {
	tmpl := kommo.SettingsTemplate{
		{Key: "login", Type: kommo.SettingText, IsRequired: true},
		{Key: "password", Type: kommo.SettingPass, IsRequired: true},
		{Key: "phones", Type: kommo.SettingUsers, IsRequired: true},
	}
	err := kommo.ValidateSettings(tmpl, []byte(`{"login":"example","password":42,"phones":{"admin":"1039"}}`))
	fmt.Println(err)
	// Output:
	// invalid settings: password: want a string, got a number; phones.admin: key must be a user ID (a positive integer)
}
