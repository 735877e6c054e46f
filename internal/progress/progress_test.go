package progress

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// Bars whose byte count never reaches the total (a shorter stream, a
// failure) must still finish, or Wait would hang the command.
func TestBarsFinishShortOrFailed(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Bars, slog.Default())
	short := r.Start("short", 100)
	short.Add(50)
	short.Done(nil)
	unknown := r.Start("unknown", 0)
	unknown.Add(10)
	unknown.Done(nil)
	failed := r.Start("failed", 100)
	failed.Add(10)
	failed.Done(errors.New("boom"))
	r.Wait()
}

func TestLinesMode(t *testing.T) {
	var logs bytes.Buffer
	r := New(&bytes.Buffer{}, Lines, slog.New(slog.NewTextHandler(&logs, nil)))
	task := r.Start("download", 10)
	task.Writer(&bytes.Buffer{}).Write([]byte("0123456789"))
	task.Done(nil)
	r.Wait()
	if !strings.Contains(logs.String(), "download started") || !strings.Contains(logs.String(), "download done") {
		t.Fatalf("log lines: %s", logs.String())
	}
	var nilReporter *Reporter
	nilReporter.Start("x", 1).Done(nil) // a nil reporter reports nothing
}
