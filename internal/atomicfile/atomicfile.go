// Package atomicfile writes outputs under a temporary name in the target
// directory and renames them into place only when complete, so an
// interrupted run never leaves a file that looks finished.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// File is an output being written. Call Commit to publish it or Abort to
// remove it; Abort after Commit is a no-op, so `defer f.Abort()` is safe.
type File struct {
	*os.File
	final string
	done  bool
}

// Create starts writing the file that will appear at path.
func Create(path string, perm os.FileMode) (*File, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.partial")
	if err != nil {
		return nil, fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	return &File{File: tmp, final: path}, nil
}

// TempPath is where the file is being written.
func (f *File) TempPath() string { return f.File.Name() }

// FinalPath is where the file will appear.
func (f *File) FinalPath() string { return f.final }

// Commit syncs, closes and renames the file into place.
func (f *File) Commit() error {
	if f.done {
		return nil
	}
	if err := f.File.Sync(); err != nil {
		f.Abort()
		return fmt.Errorf("sync %s: %w", f.final, err)
	}
	if err := f.File.Close(); err != nil {
		f.Abort()
		return fmt.Errorf("close %s: %w", f.final, err)
	}
	if err := os.Rename(f.File.Name(), f.final); err != nil {
		os.Remove(f.File.Name())
		f.done = true
		return fmt.Errorf("rename into %s: %w", f.final, err)
	}
	f.done = true
	syncDir(filepath.Dir(f.final))
	return nil
}

// Abort closes and removes the temporary file.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// syncDir makes the rename durable; best effort (not all platforms allow it).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
