package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, path string, opts Options) *Bolt {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStateSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path, Options{})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.PutImage(Image{ID: "abc", Name: "raspios", SHA256: "abc123", Size: 42, Created: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMachine("3a7f91c2", func(m *Machine, exists bool) error {
		if exists {
			t.Error("new machine exists")
		}
		m.Image, m.BootMode, m.Labels = "abc", BootNetboot, map[string]string{"rack": "a"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(Token{ID: "tok1", Name: "ci", Scopes: []string{ScopeRead}, Hash: "h1", Created: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents(Event{Machine: "3a7f91c2", Type: "dhcp.answered", Time: now}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path, Options{})
	defer s.Close()
	if im, err := s.Image("abc"); err != nil || im.Name != "raspios" || !im.Created.Equal(now) {
		t.Fatalf("image %+v %v", im, err)
	}
	if m, err := s.Machine("3a7f91c2"); err != nil || m.Image != "abc" || m.Labels["rack"] != "a" {
		t.Fatalf("machine %+v %v", m, err)
	}
	if tok, err := s.TokenByHash("h1"); err != nil || tok.ID != "tok1" {
		t.Fatalf("token %+v %v", tok, err)
	}
	if evs, err := s.Events("3a7f91c2", 0); err != nil || len(evs) != 1 || evs[0].Seq != 1 {
		t.Fatalf("events %+v %v", evs, err)
	}
}

func TestImageInUse(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	defer s.Close()
	s.PutImage(Image{ID: "abc"})
	s.UpdateMachine("m1", func(m *Machine, _ bool) error { m.Image = "abc"; return nil })
	if err := s.DeleteImage("abc"); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete in-use image: %v", err)
	}
	if err := s.DeleteMachine("m1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteImage("abc"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image("abc"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted image: %v", err)
	}
	if err := s.DeleteImage("abc"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestUpdateMachineErrorWritesNothing(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	defer s.Close()
	boom := errors.New("boom")
	if _, err := s.UpdateMachine("m1", func(m *Machine, _ bool) error { m.Name = "x"; return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if _, err := s.Machine("m1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("machine written despite error: %v", err)
	}
}

func TestTokens(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	defer s.Close()
	s.PutToken(Token{ID: "a", Hash: "ha"})
	s.PutToken(Token{ID: "a", Hash: "hb"}) // re-hash drops the old index entry
	if _, err := s.TokenByHash("ha"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old hash still resolves: %v", err)
	}
	if err := s.DeleteToken("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TokenByHash("hb"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted token resolves: %v", err)
	}
	if err := s.PutToken(Token{ID: "x"}); err == nil {
		t.Fatal("token without hash stored")
	}
}

func TestEventRetention(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), Options{EventRetention: 10})
	defer s.Close()
	for i := 1; i <= 25; i++ {
		if err := s.AppendEvents(Event{Machine: "m", Message: fmt.Sprint(i)}, Event{Message: "server"}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.Events("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 10 || evs[0].Message != "16" || evs[9].Message != "25" {
		t.Fatalf("kept %d events: first %+v", len(evs), evs[0])
	}
	if evs, _ := s.Events("m", 3); len(evs) != 3 || evs[2].Message != "25" {
		t.Fatalf("limit: %+v", evs)
	}
	if evs, _ := s.Events("", 0); len(evs) != 10 {
		t.Fatalf("server events: %d", len(evs))
	}
	if evs, _ := s.Events("nobody", 0); len(evs) != 0 {
		t.Fatalf("events of unknown machine: %d", len(evs))
	}
}

func TestSchemaVersionGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path, Options{})
	s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("99")) })
	s.Close()
	if _, err := Open(path, Options{}); err == nil {
		t.Fatal("opened a database from a newer schema")
	}
}
