package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestBadSettingsAreUsageErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-accounts", "0"}, nil, "must be positive"},
		{[]string{"-nope"}, nil, "flag provided but not defined"},
		{nil, map[string]string{"WIDGETQ_DEMO_ACCOUNTS": "many"}, "WIDGETQ_DEMO_ACCOUNTS"},
		{nil, map[string]string{"WIDGETQ_SECRET_KEY": "short"}, "WIDGETQ_SECRET_KEY"},
	} {
		var so, se bytes.Buffer
		code := run(context.Background(), c.args, func(k string) string { return c.env[k] }, &so, &se)
		if code != 2 || !strings.Contains(se.String(), c.want) {
			t.Errorf("%v %v: exit %d, stderr %q", c.args, c.env, code, se.String())
		}
	}
}
