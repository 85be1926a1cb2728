package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json's TestEvent, and the
// build events of `go test -json`).
type event struct {
	Action      string
	Package     string
	ImportPath  string
	Test        string
	Output      string
	FailedBuild string
}

// skip is one skipped test and why.
type skip struct{ pkg, test, reason string }

// summary turns the event stream into go test's plain output and counts.
type summary struct {
	w                      io.Writer
	out                    map[[2]string]*strings.Builder // (package, test) → output so far
	passed, failed, nskips int
	skips                  []skip
	packages, failedPkgs   int
	buildFailed            bool
	// testFailedIn marks packages where a test failed; brokenPkgs are the
	// packages that failed without one (a build error, a panic in
	// TestMain, a timeout), counted as failures too.
	testFailedIn map[string]bool
	brokenPkgs   []string
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, out: map[[2]string]*strings.Builder{}, testFailedIn: map[string]bool{}}
}

// read consumes the stream. A line that is not JSON is passed through.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(s.w, "%s\n", line)
			continue
		}
		s.add(e)
	}
	return sc.Err()
}

// noise is what plain go test does not print for a passing run.
func noise(line string) bool {
	t := strings.TrimSpace(line)
	return t == "PASS" || strings.HasPrefix(t, "=== RUN") || strings.HasPrefix(t, "=== PAUSE") ||
		strings.HasPrefix(t, "=== CONT") || strings.HasPrefix(t, "=== NAME")
}

func (s *summary) add(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.w, e.Output)
		return
	case "build-fail":
		s.buildFailed = true
		return
	}
	k := [2]string{e.Package, e.Test}
	switch e.Action {
	case "output":
		if e.Test == "" {
			// The package's own lines: ok/FAIL, panics, TestMain's output.
			if !noise(e.Output) {
				fmt.Fprint(s.w, e.Output)
			}
			return
		}
		b := s.out[k]
		if b == nil {
			b = &strings.Builder{}
			s.out[k] = b
		}
		if !noise(e.Output) {
			b.WriteString(e.Output)
		}
	case "pass", "fail", "skip":
		if e.Test == "" {
			s.endPackage(e)
			return
		}
		text := ""
		if b := s.out[k]; b != nil {
			text = b.String()
			delete(s.out, k)
		}
		switch e.Action {
		case "pass":
			s.passed++
		case "fail":
			s.failed++
			s.testFailedIn[e.Package] = true
			fmt.Fprint(s.w, text)
		case "skip":
			s.nskips++
			s.skips = append(s.skips, skip{pkg: e.Package, test: e.Test, reason: skipReason(text)})
		}
	}
}

// endPackage notes a package's end; a failed one shows what its unfinished
// tests printed (a panic or a timeout ends them all at once).
func (s *summary) endPackage(e event) {
	if e.Action == "skip" { // no test files
		return
	}
	s.packages++
	if e.Action != "fail" {
		return
	}
	s.failedPkgs++
	if e.FailedBuild != "" {
		s.buildFailed = true
	}
	if !s.testFailedIn[e.Package] {
		s.failed++
		s.brokenPkgs = append(s.brokenPkgs, e.Package)
	}
	for k, b := range s.out {
		if k[0] == e.Package {
			fmt.Fprint(s.w, b.String())
			delete(s.out, k)
		}
	}
}

// logPrefix is what t.Log puts before a message: "    file_test.go:12: ".
var logPrefix = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

// skipReason is a skipped test's message without the "--- SKIP" line and
// the file:line prefix, on one line.
func skipReason(text string) string {
	var parts []string
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, strings.TrimSpace(logPrefix.ReplaceAllString(l, "")))
	}
	if len(parts) == 0 {
		return "no reason given"
	}
	return strings.Join(parts, " ")
}

// close writes the two closing lines and reports whether the run passed.
func (s *summary) close() bool {
	ok := s.failed == 0 && s.failedPkgs == 0 && !s.buildFailed
	if ok && s.passed == 0 {
		fmt.Fprintln(s.w, "testsummary: no test ran")
		ok = false
	}
	if len(s.brokenPkgs) > 0 {
		fmt.Fprintf(s.w, "failed without a failing test (build error, TestMain, panic or timeout; counted as failures): %s\n", strings.Join(s.brokenPkgs, ", "))
	}
	if len(s.skips) == 0 {
		fmt.Fprintln(s.w, "skipped: none")
	} else {
		// Tests skipped for the same reason are named together.
		var reasons []string
		tests := map[string][]string{}
		for _, k := range s.skips {
			if tests[k.reason] == nil {
				reasons = append(reasons, k.reason)
			}
			tests[k.reason] = append(tests[k.reason], path.Base(k.pkg)+"."+k.test)
		}
		items := make([]string, len(reasons))
		for i, r := range reasons {
			items[i] = fmt.Sprintf("%s (%s)", strings.Join(tests[r], ", "), r)
		}
		fmt.Fprintf(s.w, "skipped %d: %s\n", len(s.skips), strings.Join(items, "; "))
	}
	fmt.Fprintf(s.w, "tests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.nskips)
	return ok
}
