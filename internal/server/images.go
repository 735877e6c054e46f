package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot/bootfiles"
	"github.com/bakeryhq/bakery/internal/store"
)

const maxImageName = 128

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// handleUploadImage streams the body into DATA/tmp while hashing it, checks
// the hash, validates the image with the engine, and only then moves it to
// DATA/images/sha256/<hex>.img and writes the record. Anything that fails or
// a client that goes away leaves neither a file nor a record.
func (s *Server) handleUploadImage(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.URL.Query().Get("name"))
	want := lower(r.URL.Query().Get("sha256"))
	switch {
	case name == "" || len(name) > maxImageName || strings.ContainsAny(name, "\x00\n\r/"):
		writeError(w, http.StatusBadRequest, "name: want 1 to %d characters without slashes or line breaks", maxImageName)
		return
	case !validSHA256(want):
		writeError(w, http.StatusBadRequest, "sha256: want the 64 hex digits of the image's SHA-256")
		return
	case r.ContentLength > s.cfg.MaxUploadBytes:
		writeError(w, http.StatusRequestEntityTooLarge, "image of %d bytes is larger than the %d-byte limit", r.ContentLength, s.cfg.MaxUploadBytes)
		return
	}
	tmp, err := os.CreateTemp(s.tmpDir(), "upload-*.img")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "create temporary file: %v", err)
		return
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadBytes)
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h), body, make([]byte, 1<<20))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "image is larger than the %d-byte limit", s.cfg.MaxUploadBytes)
			return
		}
		s.log.Warn("image upload interrupted; nothing kept", "name", name, "bytes", n, "error", err)
		writeError(w, http.StatusBadRequest, "upload interrupted after %d bytes: %v", n, err)
		return
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		writeError(w, http.StatusBadRequest, "sha256 mismatch: the %d bytes received hash to %s, not %s", n, got, want)
		return
	}
	if err := tmp.Sync(); err != nil {
		writeError(w, http.StatusInternalServerError, "sync: %v", err)
		return
	}
	if err := tmp.Close(); err != nil {
		writeError(w, http.StatusInternalServerError, "close: %v", err)
		return
	}
	info, err := s.cfg.InspectImage(tmp.Name())
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "%s", strings.ReplaceAll(err.Error(), tmp.Name()+": ", ""))
		return
	}
	id := got[:12]
	if existing, err := s.store.Image(id); err == nil && existing.SHA256 == got {
		// Same bytes again: keep the stored copy and record.
		writeJSON(w, http.StatusOK, existing)
		return
	}
	final := filepath.Join(s.imagesDir(), got+".img")
	if err := os.Chmod(tmp.Name(), 0o440); err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		writeError(w, http.StatusInternalServerError, "store image: %v", err)
		return
	}
	committed = true
	im := store.Image{
		ID: id, Name: name, SHA256: got, Size: n,
		Created: time.Now().UTC(), BootFiles: info.BootFiles, Kind: info.Kind, Kernel: info.Kernel, Initrd: info.Initrd,
	}
	if im.BootFiles == nil {
		im.BootFiles = []string{}
	}
	if err := s.store.PutImage(im); err != nil {
		os.Remove(final)
		writeError(w, http.StatusInternalServerError, "record image: %v", err)
		return
	}
	s.event("", "api.image.upload", "image "+id+" ("+name+") uploaded", map[string]string{"image": id, "bytes": itoa(n)})
	writeJSON(w, http.StatusCreated, im)
}

// resolveImage finds an image by id, full sha256 or name (newest wins).
func (s *Server) resolveImage(ref string) (store.Image, error) {
	ref = strings.TrimSpace(ref)
	if im, err := s.store.Image(lower(ref)); err == nil {
		return im, nil
	}
	ims, err := s.store.Images()
	if err != nil {
		return store.Image{}, err
	}
	var found *store.Image
	for i := range ims {
		if ims[i].SHA256 == lower(ref) || ims[i].Name == ref {
			if found == nil || ims[i].Created.After(found.Created) {
				found = &ims[i]
			}
		}
	}
	if found == nil {
		return store.Image{}, &notFoundError{"image " + ref}
	}
	return *found, nil
}

type notFoundError struct{ what string }

func (e *notFoundError) Error() string { return e.what + ": not found" }
func (e *notFoundError) Unwrap() error { return store.ErrNotFound }

func (s *Server) handleListImages(w http.ResponseWriter, r *http.Request) {
	ims, err := s.store.Images()
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	if ims == nil {
		ims = []store.Image{}
	}
	writeJSON(w, http.StatusOK, ims)
}

func (s *Server) handleGetImage(w http.ResponseWriter, r *http.Request) {
	im, err := s.resolveImage(r.PathValue("id"))
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, im)
}

func (s *Server) handleDeleteImage(w http.ResponseWriter, r *http.Request) {
	im, err := s.resolveImage(r.PathValue("id"))
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	if err := s.store.DeleteImage(im.ID); err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	s.lib.Forget(im.SHA256)
	s.bases.Forget(im.SHA256)
	os.Remove(s.imagePath(im))
	s.event("", "api.image.delete", "image "+im.ID+" ("+im.Name+") deleted", map[string]string{"image": im.ID})
	w.WriteHeader(http.StatusNoContent)
}

// imagePath is the absolute path of a stored image.
func (s *Server) imagePath(im store.Image) string {
	return filepath.Join(s.imagesDir(), im.SHA256+".img")
}

// openFile opens a file of a stored image through the library.
func (s *Server) openFile(im store.Image, loc bootfiles.Location) (*bootfiles.File, error) {
	return s.lib.Open(im.SHA256, s.imagePath(im), loc)
}
