package tty_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/widgetq/widgetq/internal/tty"
)

func TestFilesAndBuffersAreNotTerminals(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if tty.Is(f) || tty.Is(&bytes.Buffer{}) {
		t.Fatal("a file or a buffer taken for a terminal")
	}
	if dev, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer dev.Close()
		if !tty.Is(dev) {
			t.Fatal("/dev/tty not taken for a terminal")
		}
	}
}
