package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func summarize(t *testing.T, stream string) (string, bool) {
	t.Helper()
	var out bytes.Buffer
	s := newSummary(&out)
	if err := s.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	ok := s.close()
	return out.String(), ok
}

func TestSummary(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, stream string
		ok           bool
		want, not    []string
	}{
		{
			name: "passing, with a skip",
			stream: `{"Action":"start","Package":"m/a"}
{"Action":"run","Package":"m/a","Test":"TestA"}
{"Action":"output","Package":"m/a","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"m/a","Test":"TestA","Output":"    a_test.go:9: chatter of a passing test\n"}
{"Action":"output","Package":"m/a","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"m/a","Test":"TestA"}
{"Action":"run","Package":"m/a","Test":"TestB"}
{"Action":"output","Package":"m/a","Test":"TestB","Output":"=== RUN   TestB\n"}
{"Action":"output","Package":"m/a","Test":"TestB","Output":"    b_test.go:12: needs redis-server, which is not on PATH (apt-get install redis-server)\n"}
{"Action":"output","Package":"m/a","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"m/a","Test":"TestB"}
{"Action":"output","Package":"m/a","Output":"PASS\n"}
{"Action":"output","Package":"m/a","Output":"ok  \tm/a\t0.012s\n"}
{"Action":"pass","Package":"m/a"}
{"Action":"output","Package":"m/b","Output":"?   \tm/b\t[no test files]\n"}
{"Action":"skip","Package":"m/b"}
`,
			ok:   true,
			want: []string{"ok  \tm/a\t0.012s\n", "?   \tm/b\t[no test files]\n", "skipped 1: a.TestB (needs redis-server, which is not on PATH (apt-get install redis-server))\n", "tests: 1 passed, 0 failed, 1 skipped\n"},
			not:  []string{"chatter", "PASS\n", "=== RUN"},
		},
		{
			name: "a failing test shows its output",
			stream: `{"Action":"run","Package":"m/a","Test":"TestC"}
{"Action":"output","Package":"m/a","Test":"TestC","Output":"=== RUN   TestC\n"}
{"Action":"output","Package":"m/a","Test":"TestC","Output":"    c_test.go:3: got 1, want 2\n"}
{"Action":"output","Package":"m/a","Test":"TestC","Output":"--- FAIL: TestC (0.00s)\n"}
{"Action":"fail","Package":"m/a","Test":"TestC"}
{"Action":"run","Package":"m/a","Test":"TestD"}
{"Action":"pass","Package":"m/a","Test":"TestD"}
{"Action":"output","Package":"m/a","Output":"FAIL\n"}
{"Action":"output","Package":"m/a","Output":"FAIL\tm/a\t0.01s\n"}
{"Action":"fail","Package":"m/a"}
`,
			want: []string{"    c_test.go:3: got 1, want 2\n--- FAIL: TestC (0.00s)\n", "FAIL\tm/a\t0.01s\n", "skipped: none\ntests: 1 passed, 1 failed, 0 skipped\n"},
		},
		{
			name: "a panic ends the package with a test unfinished",
			stream: `{"Action":"run","Package":"m/a","Test":"TestE"}
{"Action":"output","Package":"m/a","Test":"TestE","Output":"panic: boom\n"}
{"Action":"output","Package":"m/a","Output":"FAIL\tm/a\t0.01s\n"}
{"Action":"fail","Package":"m/a"}
{"Action":"run","Package":"m/z","Test":"TestZ"}
{"Action":"pass","Package":"m/z","Test":"TestZ"}
`,
			want: []string{"panic: boom\n", "failed without a failing test (build error, TestMain, panic or timeout; counted as failures): m/a", "tests: 1 passed, 1 failed, 0 skipped"},
		},
		{
			name: "a build failure",
			stream: `{"ImportPath":"m/a [m/a.test]","Action":"build-output","Output":"a.go:1:1: syntax error\n"}
{"ImportPath":"m/a [m/a.test]","Action":"build-fail"}
{"Action":"output","Package":"m/a","Output":"FAIL\tm/a [build failed]\n"}
{"Action":"fail","Package":"m/a","FailedBuild":"m/a [m/a.test]"}
{"Action":"run","Package":"m/z","Test":"TestZ"}
{"Action":"pass","Package":"m/z","Test":"TestZ"}
`,
			want: []string{"a.go:1:1: syntax error\n", "FAIL\tm/a [build failed]\n", "tests: 1 passed, 1 failed, 0 skipped"},
		},
		{
			name:   "nothing ran",
			stream: "go: no packages to test\n",
			want:   []string{"go: no packages to test\n", "no test ran", "tests: 0 passed, 0 failed, 0 skipped\n"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, ok := summarize(t, c.stream)
			if ok != c.ok {
				t.Errorf("passed %v, want %v", ok, c.ok)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("no %q in\n%s", w, out)
				}
			}
			for _, n := range c.not {
				if strings.Contains(out, n) {
					t.Errorf("%q in\n%s", n, out)
				}
			}
			if lines := strings.Split(strings.TrimSpace(out), "\n"); !strings.HasPrefix(lines[len(lines)-1], "tests: ") {
				t.Errorf("the last line is %q, not the counts", lines[len(lines)-1])
			}
		})
	}
}

// TestRealGoTest runs `go test -json` on a module with a passing, a
// failing and a skipping test: the format this reads is go's, not ours.
func TestRealGoTest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/m\n\ngo 1.22\n",
		"m_test.go": `package m

import "testing"

func TestPasses(t *testing.T) {}
func TestFails(t *testing.T)  { t.Fatal("the reason it failed") }
func TestSkips(t *testing.T)  { t.Skip("needs chromium, which is not on PATH") }
func TestSkips2(t *testing.T) { t.Skip("needs chromium, which is not on PATH") }
func TestSub(t *testing.T) {
	t.Run("one", func(t *testing.T) {})
	t.Run("two", func(t *testing.T) { t.Skip("not today") })
}
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-count=1", "-json", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	stream, _ := cmd.Output() // it fails: one test does
	out, ok := summarize(t, string(stream))
	if ok {
		t.Fatalf("a failing run passed:\n%s", out)
	}
	for _, w := range []string{
		"the reason it failed", "--- FAIL: TestFails", "FAIL\texample.com/m",
		"skipped 3: m.TestSkips, m.TestSkips2 (needs chromium, which is not on PATH); m.TestSub/two (not today)",
		"tests: 3 passed, 1 failed, 3 skipped",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("no %q in\n%s", w, out)
		}
	}
}
