package testenv

import (
	"runtime"
	"strings"
	"testing"
)

func TestMissing(t *testing.T) {
	for _, c := range []struct {
		found, ci bool
		want      Verdict
	}{
		{true, false, Run},
		{true, true, Run},
		{false, false, Skip},
		{false, true, Fail},
	} {
		if got := Missing(c.found, c.ci); got != c.want {
			t.Errorf("Missing(found %v, ci %v) = %v, want %v", c.found, c.ci, got, c.want)
		}
	}
}

// recorder is a testing.TB that remembers how a test ended.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skip(args ...any) {
	r.skipped = toString(args)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) {
	r.failed = toString(args)
	runtime.Goexit()
}

func toString(args []any) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteString(a.(string))
	}
	return b.String()
}

// run calls Program on its own goroutine, as the testing package runs a
// test, so Skip and Fatal can end it.
func run(program string) (*recorder, string) {
	r := &recorder{}
	var path string
	done := make(chan struct{})
	go func() {
		defer close(done)
		path = Program(r, program)
	}()
	<-done
	return r, path
}

func TestProgramSkipsOrFailsNamingTheProgram(t *testing.T) {
	const missing = "widgetq-no-such-program"
	t.Setenv("CI", "")
	r, _ := run(missing)
	if r.failed != "" || !strings.Contains(r.skipped, missing) || !strings.Contains(r.skipped, "not on PATH") {
		t.Fatalf("outside CI: skipped %q, failed %q", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	r, _ = run(missing)
	if r.skipped != "" || !strings.Contains(r.failed, missing) {
		t.Fatalf("in CI: skipped %q, failed %q", r.skipped, r.failed)
	}
	// A program that is there is found, in CI or not.
	r, path := run("go")
	if r.skipped != "" || r.failed != "" || !strings.HasSuffix(path, "go") {
		t.Fatalf("go: path %q, skipped %q, failed %q", path, r.skipped, r.failed)
	}
}

func TestMessageSaysHowToGetIt(t *testing.T) {
	for _, p := range []string{"redis-server", "redis-cli", "chromium"} {
		if m := Message(p); !strings.Contains(m, "apt-get install") || !strings.HasPrefix(m, "needs "+p) {
			t.Errorf("%s: %q", p, m)
		}
	}
}
