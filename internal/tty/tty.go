// Package tty tells whether output goes to a terminal, for progress
// displays that redraw a line there and print plain lines elsewhere.
package tty

import (
	"io"
	"os"
)

// Is reports whether w is a terminal.
func Is(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
