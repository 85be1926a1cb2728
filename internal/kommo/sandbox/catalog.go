package sandbox

import "fmt"

// Setting is one settings_template entry of a sandbox widget.
type Setting struct {
	Key      string
	Name     string
	Type     string // text, pass, users, users_lp, custom
	Required bool
}

// Widget is a widget in the sandbox's catalog. Version and Rating are sent
// as they are, so a widget can carry Kommo's odd shapes: a version as a
// number, a rating as "2,8" or null.
type Widget struct {
	ID       int
	Code     string
	Version  any
	Rating   any
	Template []Setting
	// Unavailable widgets answer 404 like unknown ones.
	Unavailable bool
	// LeadSource, WorkWithDP and CRMTemplate fill the model's flags.
	LeadSource, WorkWithDP, CRMTemplate bool
	// ClientUUID is the owning integration's UUID; nil sends null.
	ClientUUID *string
}

// The codes of the default catalog's widgets.
const (
	// WidgetAsterisk is the seed document's asterisk widget: text login,
	// pass password, users phones, text script_path.
	WidgetAsterisk = "amo_asterisk"
	// WidgetTelephonyLP takes users_lp operators and a pass api_key; its
	// version is a number and its rating a float.
	WidgetTelephonyLP = "amo_telephony_lp"
	// WidgetCustom takes a custom config of any shape; its rating is null.
	WidgetCustom = "amo_custom_form"
	// WidgetUnavailable exists but is not available: 404.
	WidgetUnavailable = "amo_retired"
)

// DefaultCatalog returns the widgets a sandbox serves unless told otherwise.
func DefaultCatalog() []Widget {
	uuid := "2a6f1c3e-6a0d-4b8e-9d53-0c1f2b7e9a10"
	return []Widget{
		{ID: 101, Code: WidgetAsterisk, Version: "1.0.3", Rating: "2,8", Template: []Setting{
			{Key: "login", Name: "Login", Type: "text", Required: true},
			{Key: "password", Name: "Password", Type: "pass", Required: true},
			{Key: "phones", Name: "Phones", Type: "users", Required: true},
			{Key: "script_path", Name: "Script path", Type: "text"},
		}},
		{ID: 102, Code: WidgetTelephonyLP, Version: 7, Rating: 4.5, LeadSource: true, ClientUUID: &uuid, Template: []Setting{
			{Key: "operators", Name: "Operators", Type: "users_lp", Required: true},
			{Key: "api_key", Name: "API key", Type: "pass", Required: true},
		}},
		{ID: 103, Code: WidgetCustom, Version: "2.1", Rating: nil, CRMTemplate: true, Template: []Setting{
			{Key: "config", Name: "Config", Type: "custom", Required: true},
			{Key: "title", Name: "Title", Type: "text"},
		}},
		{ID: 104, Code: WidgetUnavailable, Version: "0.9", Rating: "1,0", Unavailable: true},
	}
}

// FillerWidgets returns n plain widgets (codes filler_0001…), to make a
// catalog long enough to page through.
func FillerWidgets(n, firstID int) []Widget {
	out := make([]Widget, n)
	for i := range out {
		out[i] = Widget{ID: firstID + i, Code: fmt.Sprintf("filler_%04d", i+1), Version: "1.0.0", Rating: "3,0",
			Template: []Setting{{Key: "note", Name: "Note", Type: "text"}}}
	}
	return out
}
