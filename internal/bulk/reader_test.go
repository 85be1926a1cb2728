package bulk_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/widgetq/widgetq/internal/bulk"
	"github.com/widgetq/widgetq/tasks"
)

type outcome struct {
	entries []*bulk.Entry
	rejects []*bulk.Reject
}

func readAll(t *testing.T, in string, f bulk.Format) outcome {
	t.Helper()
	rd, err := bulk.NewReader(strings.NewReader(in), f)
	if err != nil {
		t.Fatal(err)
	}
	var o outcome
	for range 10000 {
		e, rej, err := rd.Next()
		if err == io.EOF {
			return o
		}
		if err != nil {
			t.Fatal(err)
		}
		if e != nil {
			o.entries = append(o.entries, e)
		}
		if rej != nil {
			o.rejects = append(o.rejects, rej)
		}
	}
	t.Fatal("reader never ended")
	return o
}

func TestJSONLRejectsEachBadLineByNumber(t *testing.T) {
	t.Parallel()
	in := "\xef\xbb\xbf" + `{"account_id":1,"widget_code":"w","settings":{"a":1}}` + "\r\n" +
		"\r\n" + // blank: skipped, still counted
		`{"account_id":2,"widget_code":"w"}` + "\n" +
		`{"account_id":3,"widget_code":"w"` + "\n" + // 4: cut off
		`{"account_id":"4","widget_code":"w"}` + "\n" + // 5: mistyped
		`{"widget_code":"w"}` + "\n" + // 6: missing
		`{"account_id":0,"widget_code":"w"}` + "\n" + // 7: zero
		`{"account_id":8,"widget_code":"../etc"}` + "\n" + // 8: bad code
		`{"account_id":9,"widget_code":"w","settings":[1]}` + "\n" + // 9: settings not an object
		`{"account_id":10,"widget_code":"w","settings":{"a":"` + strings.Repeat("x", tasks.MaxSettingsBytes) + `"}}` + "\n" + // 10: too large
		"{\"account_id\":11,\"widget_code\":\"w\",\"settings\":{\"a\":\"\xff\"}}\n" + // 11: invalid UTF-8
		`{"account_id":1,"widget_code":"w"}` + "\n" + // 12: duplicate of 1
		`{"acount_id":13,"widget_code":"w"}` + "\n" + // 13: typo
		`{"account_id":14,"widget_code":"w"} {}` + "\n" + // 14: two values
		`[1,2]` + "\n" + // 15: not an object
		`{"account_id":1.5,"widget_code":"w"}` + "\n" + // 16: not an integer
		`{"account_id":17,"widget_code":7}` + "\n" + // 17: code not a string
		`{"account_id":18,"widget_code":"w","settings":null}` // 18: fine, no final newline
	o := readAll(t, in, bulk.JSONL)
	var good []string
	for _, e := range o.entries {
		good = append(good, fmt.Sprintf("%d:%d", e.Line, e.Payload.AccountID))
	}
	if strings.Join(good, ",") != "1:1,3:2,18:18" {
		t.Fatalf("entries %v", good)
	}
	want := map[int]string{
		4: "malformed JSON", 5: "account_id: want a positive integer, got a string", 6: "account_id: required",
		7: "account_id: must be a positive integer", 8: "widget_code", 9: "settings: must be a JSON object", 10: "settings: ",
		11: "not valid UTF-8", 12: "duplicate of line 1", 13: `unknown field "acount_id"`, 14: "more than one JSON value",
		15: "want a JSON object", 16: "account_id: want a positive integer", 17: "widget_code: want a string",
	}
	if len(o.rejects) != len(want) {
		t.Fatalf("%d rejects: %v", len(o.rejects), o.rejects)
	}
	for _, r := range o.rejects {
		if w, ok := want[r.Line]; !ok || !strings.Contains(r.Reason, w) {
			t.Errorf("line %d: %q, want %q", r.Line, r.Reason, w)
		}
		if r.Raw == nil {
			t.Errorf("line %d: no raw line for the rejects file", r.Line)
		}
	}
}

func TestOverlongLinesAreReportedNotHeld(t *testing.T) {
	t.Parallel()
	in := `{"account_id":1,"widget_code":"w","settings":{"a":"` + strings.Repeat("x", bulk.MaxLine+10) + `"}}` + "\n" + `{"account_id":2,"widget_code":"w"}`
	o := readAll(t, in, bulk.JSONL)
	if len(o.rejects) != 1 || o.rejects[0].Line != 1 || !strings.Contains(o.rejects[0].Reason, "longer than") {
		t.Fatalf("rejects %v", o.rejects)
	}
	if len(o.entries) != 1 || o.entries[0].Line != 2 {
		t.Fatalf("entries %v", o.entries)
	}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	in := "\xef\xbb\xbfwidget_code,account_id,settings\r\n" +
		`amo_asterisk,1,"{""login"":""x"",""phones"":{""1"":""2""}}"` + "\r\n" +
		"\r\n" +
		"amo_asterisk,2,\r\n" +
		"amo_asterisk,abc,{}\r\n" +
		"amo_asterisk,4\r\n" +
		`amo_asterisk,5,"{""a"":"` + "\r\n" + // bad JSON in settings
		`amo_asterisk,6,"never closed` + "\r\n"
	o := readAll(t, in, bulk.CSV)
	if len(o.entries) != 2 || o.entries[0].Payload.AccountID != 1 || string(o.entries[0].Payload.Settings) != `{"login":"x","phones":{"1":"2"}}` || o.entries[1].Line != 4 {
		t.Fatalf("entries %+v", o.entries)
	}
	want := []string{"line 5: account_id: want a positive integer", "line 6: 2 fields, the header has 3", "line 7: settings: must be a JSON object", "line 8: malformed CSV"}
	if len(o.rejects) != len(want) {
		t.Fatalf("rejects %v", o.rejects)
	}
	for i, r := range o.rejects {
		if !strings.Contains(r.String(), want[i]) {
			t.Errorf("reject %d: %s, want %s", i, r, want[i])
		}
	}
}

func TestCSVHeaderErrors(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                  "no header",
		"account_id,settings\n":             "no widget_code column",
		"account_id,widget_code,extra\n":    `unknown column "extra"`,
		"account_id,account_id,widget_code": "twice",
	} {
		if _, err := bulk.NewReader(strings.NewReader(in), bulk.CSV); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	if _, err := bulk.NewReader(strings.NewReader(""), "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestFormatOfAndSniff(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bulk.Format{"a.jsonl": bulk.JSONL, "A.NDJSON": bulk.JSONL, "x.json": bulk.JSONL, "x.csv": bulk.CSV, "x.txt": "", "-": ""} {
		if got := bulk.FormatOf(name); got != want {
			t.Errorf("FormatOf(%s) = %q", name, got)
		}
	}
	f, r := bulk.Sniff(strings.NewReader("\xef\xbb\xbf\n  {\"account_id\":1}"))
	if f != bulk.JSONL {
		t.Fatalf("sniffed %s", f)
	}
	if b, _ := io.ReadAll(r); !strings.Contains(string(b), "account_id") {
		t.Fatal("sniffing consumed the input")
	}
	if f, _ := bulk.Sniff(strings.NewReader("account_id,widget_code\n")); f != bulk.CSV {
		t.Fatalf("sniffed %s", f)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		f.n--
		return copy(p, `{"account_id":1,"widget_code":"w"}`+"\n"), nil
	}
	return 0, errors.New("disk on fire")
}

func TestReadErrorsEndTheRead(t *testing.T) {
	t.Parallel()
	rd, _ := bulk.NewReader(&failingReader{n: 1}, bulk.JSONL)
	if e, _, err := rd.Next(); err != nil || e == nil {
		t.Fatalf("first line: %v", err)
	}
	if _, _, err := rd.Next(); err == nil || err == io.EOF {
		t.Fatalf("after a read error: %v", err)
	}
}

// FuzzReader feeds both formats arbitrary files: no panic, every line is
// an entry or a reject with a reason, entries are valid payloads, and no
// two entries share an account and widget.
func FuzzReader(f *testing.F) {
	f.Add([]byte(`{"account_id":1,"widget_code":"w","settings":{"a":1}}`+"\n"+`{"account_id":1,"widget_code":"w"}`), false)
	f.Add([]byte("\xef\xbb\xbf{\"account_id\":2}\r\n\r\n[]\n{"), false)
	f.Add([]byte("account_id,widget_code,settings\n1,w,\"{\"\"a\"\":1}\"\n1,w,{}\n\"x"), true)
	f.Add([]byte("widget_code,account_id\r\nw,-1\r\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, csv bool) {
		format := bulk.JSONL
		if csv {
			format = bulk.CSV
		}
		rd, err := bulk.NewReader(strings.NewReader(string(data)), format)
		if err != nil {
			return // a bad CSV header
		}
		seen := map[string]bool{}
		for range len(data) + 2 {
			e, rej, err := rd.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("read error on in-memory input: %v", err)
			}
			if (e == nil) == (rej == nil) {
				t.Fatalf("want exactly one of entry and reject: %v %v", e, rej)
			}
			if rej != nil {
				if rej.Reason == "" || rej.Line < 1 {
					t.Fatalf("reject without a reason or line: %+v", rej)
				}
				continue
			}
			if err := e.Payload.Validate(); err != nil {
				t.Fatalf("entry %+v is not valid: %v", e.Payload, err)
			}
			k := fmt.Sprint(e.Payload.AccountID, "/", e.Payload.WidgetCode)
			if seen[k] {
				t.Fatalf("duplicate entry %s", k)
			}
			seen[k] = true
		}
		t.Fatal("more results than bytes")
	})
}
