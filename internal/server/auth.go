package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/atomicfile"
	"github.com/bakeryhq/bakery/internal/store"
)

// TokenPrefix starts every bakery token, so that secret scanners and humans
// recognise one.
const TokenPrefix = "bkr_"

// AdminTokenFile is where the first admin token is written, in the data dir.
const AdminTokenFile = "admin.token"

// scopeLevel orders scopes: a token may do what its highest scope allows.
func scopeLevel(scope string) int {
	switch scope {
	case store.ScopeRead:
		return 1
	case store.ScopeWrite:
		return 2
	case store.ScopeAdmin:
		return 3
	}
	return 0
}

func tokenLevel(t store.Token) int {
	lvl := 0
	for _, sc := range t.Scopes {
		lvl = max(lvl, scopeLevel(sc))
	}
	return lvl
}

// HashToken is how tokens are stored: the hex SHA-256 of the plaintext. The
// plaintext has 256 bits of entropy, so a plain hash is enough.
func HashToken(plain string) string {
	h := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(h[:])
}

// newToken makes a token record and its plaintext.
func newToken(name string, scopes []string) (store.Token, string, error) {
	var id [6]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return store.Token{}, "", err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return store.Token{}, "", err
	}
	plain := TokenPrefix + hex.EncodeToString(secret[:])
	t := store.Token{ID: "tok_" + hex.EncodeToString(id[:]), Name: name, Scopes: scopes, Hash: HashToken(plain), Created: time.Now().UTC()}
	return t, plain, nil
}

// bootstrapAdminToken creates the first admin token when there is none and
// writes its plaintext to DATA/admin.token (mode 0600). Only the hash is kept
// in the store; the log says where the file is, never the token.
func (s *Server) bootstrapAdminToken() error {
	toks, err := s.store.Tokens()
	if err != nil {
		return err
	}
	if len(toks) > 0 {
		return nil
	}
	t, plain, err := newToken("admin", []string{store.ScopeAdmin})
	if err != nil {
		return err
	}
	path := filepath.Join(s.cfg.DataDir, AdminTokenFile)
	if err := atomicfile.WriteFile(path, []byte(plain+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	if err := s.store.PutToken(t); err != nil {
		os.Remove(path)
		return err
	}
	s.log.Info("created the first admin token; use it with --token or BAKERY_TOKEN", "file", path, "token_id", t.ID)
	return nil
}

type ctxKey int

const tokenKey ctxKey = 0

// authenticate resolves the bearer token of a request.
func (s *Server) authenticate(r *http.Request) (store.Token, bool) {
	h := r.Header.Get("Authorization")
	scheme, plain, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || plain == "" {
		return store.Token{}, false
	}
	t, err := s.store.TokenByHash(HashToken(strings.TrimSpace(plain)))
	if err != nil {
		return store.Token{}, false
	}
	s.touchToken(t)
	return t, true
}

// touchToken records last use at most once a minute per token, so that
// reads do not turn into writes.
func (s *Server) touchToken(t store.Token) {
	now := time.Now().UTC()
	s.mu.Lock()
	last := s.tokenUsed[t.ID]
	if now.Sub(last) < time.Minute {
		s.mu.Unlock()
		return
	}
	s.tokenUsed[t.ID] = now
	s.mu.Unlock()
	t.LastUsed = now
	if err := s.store.PutToken(t); err != nil {
		s.log.Debug("recording token use failed", "token_id", t.ID, "error", err)
	}
}

func tokenFrom(ctx context.Context) (store.Token, bool) {
	t, ok := ctx.Value(tokenKey).(store.Token)
	return t, ok
}

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, apiError{Error: fmt.Sprintf(format, args...)})
}

// statusFor maps store errors to HTTP codes.
func statusFor(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrInUse):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}
