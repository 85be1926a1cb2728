// Package testenv decides what a test does when something outside Go that
// it needs is missing: on a developer's machine it skips, naming the
// program and how to get it; in CI (CI=true) it fails, because CI must run
// everything. `make test` lists every skip in its summary line (see
// internal/testsummary), so a skip is never silent.
package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// howToGet tells, per program, how to install it.
var howToGet = map[string]string{
	"redis-server": "apt-get install redis-server, or brew install redis",
	"redis-cli":    "apt-get install redis-server (it brings redis-cli), or brew install redis",
	"chromium":     "apt-get install chromium",
}

// HowToGet says how to install a program the tests use.
func HowToGet(program string) string {
	if h, ok := howToGet[program]; ok {
		return h
	}
	return "install it and put it on PATH"
}

// InCI reports whether the tests run in CI: the variable CI is true.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Verdict is what a test does about a missing program.
type Verdict int

// The verdicts of Missing.
const (
	Run  Verdict = iota // the program is there
	Skip                // not there, not in CI: skip, saying why
	Fail                // not there, in CI: fail
)

// Missing decides what a test does when a program it needs is (or is not)
// found.
func Missing(found, ci bool) Verdict {
	switch {
	case found:
		return Run
	case ci:
		return Fail
	}
	return Skip
}

// Message is the skip or failure message for a missing program.
func Message(program string) string {
	return "needs " + program + ", which is not on PATH (" + HowToGet(program) + "); with CI=true this fails instead"
}

// Program returns the path of program, which the test needs. When it is
// not on PATH the test is skipped, or, with CI=true, fails.
func Program(t testing.TB, program string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	switch Missing(err == nil, InCI()) {
	case Fail:
		t.Fatal(Message(program))
	case Skip:
		t.Skip(Message(program))
	}
	return path
}
