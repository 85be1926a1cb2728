package kommo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/widgetq/widgetq/tasks"
)

// MaxPageLimit is the most widgets Kommo returns on one page.
const MaxPageLimit = 250

// maxPages bounds a listing, so a server that keeps answering with a next
// link cannot keep a caller forever.
const maxPages = 1000

// ValidWidgetCode reports whether code is a well-formed widget code: 1–100
// letters, digits, '_', '-' or '.', starting with a letter or digit
// (tasks.ValidWidgetCode). Kommo's codes are short identifiers; anything
// else would be a path injection.
func ValidWidgetCode(code string) bool { return tasks.ValidWidgetCode(code) }

func checkCode(op, code string) error {
	if !ValidWidgetCode(code) {
		return &Error{Op: op, Class: ClassInvalid, Detail: fmt.Sprintf("malformed widget code %.40q", code)}
	}
	return nil
}

// GetWidget returns one widget: GET /api/v4/widgets/{code}. A widget
// unknown to Kommo or not available to the account is a ClassNotFound error.
func (c *Client) GetWidget(ctx context.Context, code string) (*Widget, *Response, error) {
	op := "get widget " + code
	if err := checkCode(op, code); err != nil {
		return nil, nil, err
	}
	var w Widget
	resp, err := c.do(ctx, call{op: op, method: "GET", path: "/api/v4/widgets/" + code}, &w)
	if err != nil {
		return nil, resp, err
	}
	return &w, resp, nil
}

// ListOptions tunes ListWidgets.
type ListOptions struct {
	// Limit is the page size, 1..MaxPageLimit; 0 means MaxPageLimit.
	Limit int
}

type widgetsPage struct {
	Page  int                `json:"_page"`
	Links map[string]halLink `json:"_links"`
	Embed struct {
		Widgets []Widget `json:"widgets"`
	} `json:"_embedded"`
}

// ListWidgets returns every widget, page by page: GET /api/v4/widgets,
// following _links.next until it is absent (or a page comes back empty).
// A next link that points off the account's host is refused, so the token
// never leaves it.
func (c *Client) ListWidgets(ctx context.Context, opts ListOptions) ([]Widget, error) {
	const op = "list widgets"
	limit := opts.Limit
	if limit == 0 {
		limit = MaxPageLimit
	}
	if limit < 0 || limit > MaxPageLimit {
		return nil, &Error{Op: op, Class: ClassInvalid, Detail: fmt.Sprintf("limit must be 1..%d, got %d", MaxPageLimit, limit)}
	}
	path := "/api/v4/widgets?page=1&limit=" + strconv.Itoa(limit)
	var all []Widget
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		if pages == maxPages {
			return all, &Error{Op: op, Class: ClassServer, Detail: fmt.Sprintf("more than %d pages", maxPages)}
		}
		seen[path] = true
		var p widgetsPage
		_, err := c.do(ctx, call{op: op, method: "GET", path: path}, &p)
		if err != nil {
			return all, err
		}
		all = append(all, p.Embed.Widgets...)
		next := p.Links["next"].Href
		if next == "" || len(p.Embed.Widgets) == 0 {
			return all, nil
		}
		path, err = c.relative(next)
		if err != nil {
			return all, &Error{Op: op, Class: ClassServer, Detail: "next link: " + err.Error()}
		}
		if seen[path] {
			return all, &Error{Op: op, Class: ClassServer, Detail: "next link repeats a page already read"}
		}
	}
}

// relative turns a link from an answer into a path (with query) under the
// client's base, refusing links to other hosts.
func (c *Client) relative(href string) (string, error) {
	u, err := c.base.Parse(href)
	if err != nil {
		return "", fmt.Errorf("not a URL")
	}
	if u.Host != c.base.Host {
		return "", fmt.Errorf("points to another host")
	}
	p := u.EscapedPath()
	if prefix := c.base.EscapedPath(); prefix != "" {
		if len(p) < len(prefix) || p[:len(prefix)] != prefix {
			return "", fmt.Errorf("points outside the account's base")
		}
		p = p[len(prefix):]
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p, nil
}

// InstallWidget installs a widget into the account with the given settings
// (a flat JSON object keyed by settings_template keys): POST
// /api/v4/widgets/{code}. Only administrators may. The widget returned
// holds what the answer says of the install: its ID, code, version and
// is_active_in_account (GetWidget reads the rest). secrets are the values
// that must never reach an error (see SecretValues); the access token is
// always scrubbed.
func (c *Client) InstallWidget(ctx context.Context, code string, settings json.RawMessage, secrets ...string) (*Widget, *Response, error) {
	op := "install widget " + code
	if err := checkCode(op, code); err != nil {
		return nil, nil, err
	}
	body := bytes.TrimSpace(settings)
	if len(body) == 0 || isNull(body) {
		body = []byte("{}")
	}
	if body[0] != '{' || !json.Valid(body) {
		return nil, nil, &Error{Op: op, Class: ClassInvalid, Detail: "settings must be a JSON object"}
	}
	var w installed
	resp, err := c.do(ctx, call{op: op, method: "POST", path: "/api/v4/widgets/" + code, body: body, secrets: secrets}, &w)
	if err != nil {
		return nil, resp, err
	}
	return &Widget{ID: w.ID, Code: w.Code, Version: w.Version, IsActiveInAccount: w.IsActiveInAccount}, resp, nil
}

// installed is what an install's answer is read for. The rest of the
// widget (its settings_template, the settings echoed back, its links) is
// not needed, and decoding it was most of the worker's JSON work per
// install: fields a struct does not name are only scanned.
type installed struct {
	ID                int     `json:"id"`
	Code              string  `json:"code"`
	Version           Version `json:"version"`
	IsActiveInAccount Bool    `json:"is_active_in_account"`
}

// UninstallWidget removes a widget from the account: DELETE
// /api/v4/widgets/{code}. Kommo answers 204 with no body; 200 with {} is
// accepted too.
func (c *Client) UninstallWidget(ctx context.Context, code string) (*Response, error) {
	op := "uninstall widget " + code
	if err := checkCode(op, code); err != nil {
		return nil, err
	}
	var ignored json.RawMessage
	return c.do(ctx, call{op: op, method: "DELETE", path: "/api/v4/widgets/" + code}, &ignored)
}

// GetAccount returns the account's parameters: GET /api/v4/account.
func (c *Client) GetAccount(ctx context.Context) (*Account, *Response, error) {
	var a Account
	resp, err := c.do(ctx, call{op: "get account", method: "GET", path: "/api/v4/account"}, &a)
	if err != nil {
		return nil, resp, err
	}
	return &a, resp, nil
}
