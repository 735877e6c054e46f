package fs

import (
	"errors"
	iofs "io/fs"
	"testing"
)

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"/": "/", "/etc": "/etc", "/etc/": "/etc", "//etc//ssh/./x": "/etc/ssh/x",
	} {
		got, err := Clean(in)
		if err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "etc", "/etc/../x", "/..", "/a\x00b", "/" + string(make([]byte, 256))} {
		if _, err := Clean(bad); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Clean(%q) = %v; want ErrInvalidPath", bad, err)
		}
	}
	if Dir("/a/b") != "/a" || Dir("/a") != "/" || Base("/a/b") != "b" || Join("/", "x") != "/x" || Join("/a", "x") != "/a/x" {
		t.Error("Dir/Base/Join")
	}
}

func TestModes(t *testing.T) {
	m, err := ParseMode("4755")
	if err != nil || m != iofs.ModeSetuid|0o755 || UnixPerm(m) != 0o4755 {
		t.Fatalf("ParseMode(4755) = %v %v", m, err)
	}
	if FormatMode(iofs.ModeDir|iofs.ModeSticky|0o777) != "drwxrwxrwt" || FormatMode(iofs.ModeSetuid|0o644) != "-rwSr--r--" {
		t.Errorf("FormatMode: %s %s", FormatMode(iofs.ModeDir|iofs.ModeSticky|0o777), FormatMode(iofs.ModeSetuid|0o644))
	}
	for _, bad := range []string{"", "9", "abc", "17777"} {
		if _, err := ParseMode(bad); err == nil {
			t.Errorf("ParseMode(%q) succeeded", bad)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"config.txt":           "config.txt",
		"a\x1b[2Jb":            "a\uFFFD[2Jb",
		"line\r\nnext\t\x07":   "line\uFFFD\uFFFDnext\uFFFD\uFFFD",
		"Grüße, \u00e9t\u00e9": "Grüße, \u00e9t\u00e9",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
