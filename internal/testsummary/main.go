// Command testsummary reads `go test -json` on standard input and writes
// what plain `go test` would (each package's ok/FAIL line, the output of
// failed tests, build errors), then two closing lines: every skipped test
// with its reason, and the counts.
//
//	skipped 2: faults.TestRedisSentinel (needs redis-server, which is not on PATH …); …
//	tests: 431 passed, 0 failed, 2 skipped
//
// `make test` pipes the suite through it, so a skip is never silent. It
// exits 1 when a test or a build failed, or when no test ran at all.
package main

import (
	"fmt"
	"os"
)

func main() {
	s := newSummary(os.Stdout)
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	if !s.close() {
		os.Exit(1)
	}
}
