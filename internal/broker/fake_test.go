package broker_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeVault enforces the documented AppRole and response-wrapping
// semantics the broker relies on (bootstrap-security.md): the broker's
// token may only mint on the role's secret-id path with a wrap TTL
// (min_wrapping_ttl) and with cidr_list and metadata (required_parameters),
// and destroy by accessor; a wrapping token unwraps exactly once.
type fakeVault struct {
	*httptest.Server
	t           *testing.T
	brokerToken string
	mu          sync.Mutex
	wraps       map[string]map[string]any // wrap token -> wrapped data
	secretIDs   map[string]bool           // accessor -> live
	requests    []map[string]any
	headers     []http.Header
}

func newFakeVault(t *testing.T) *fakeVault {
	f := &fakeVault{t: t, brokerToken: "hvs." + randHex(24), wraps: map[string]map[string]any{}, secretIDs: map[string]bool{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func vaultError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"errors": []string{msg}})
}

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	f.requests = append(f.requests, body)
	f.headers = append(f.headers, r.Header.Clone())
	tok := r.Header.Get("X-Vault-Token")
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/sys/wrapping/unwrap":
		data, ok := f.wraps[tok]
		if !ok {
			vaultError(w, 400, "wrapping token is not valid or does not exist")
			return
		}
		delete(f.wraps, tok) // single use
		json.NewEncoder(w).Encode(map[string]any{"data": data})
	case tok != f.brokerToken:
		vaultError(w, 403, "permission denied")
	case r.Method == "POST" && r.URL.Path == "/v1/auth/approle/role/node/secret-id":
		wrapTTL := r.Header.Get("X-Vault-Wrap-TTL")
		if wrapTTL == "" {
			vaultError(w, 400, "wrapping required (min_wrapping_ttl)")
			return
		}
		for _, p := range []string{"cidr_list", "metadata"} {
			if _, ok := body[p]; !ok {
				vaultError(w, 403, "missing required parameter "+p)
				return
			}
		}
		if _, ok := body["metadata"].(string); !ok {
			vaultError(w, 400, "metadata must be a JSON string")
			return
		}
		ttl, err := time.ParseDuration(wrapTTL)
		if err != nil {
			vaultError(w, 400, "bad wrap ttl")
			return
		}
		acc := randHex(36)
		f.secretIDs[acc] = true
		wt := "hvs." + randHex(90)
		f.wraps[wt] = map[string]any{"secret_id": randHex(36), "secret_id_accessor": acc, "secret_id_num_uses": body["num_uses"]}
		json.NewEncoder(w).Encode(map[string]any{"wrap_info": map[string]any{
			"token": wt, "accessor": randHex(24), "ttl": int(ttl.Seconds()), "creation_time": time.Now().UTC().Format(time.RFC3339Nano),
			"creation_path": "auth/approle/role/node/secret-id", "wrapped_accessor": acc,
		}})
	case r.Method == "POST" || r.Method == "PUT":
		if r.URL.Path != "/v1/auth/approle/role/node/secret-id-accessor/destroy" {
			vaultError(w, 403, "permission denied")
			return
		}
		acc, _ := body["secret_id_accessor"].(string)
		if !f.secretIDs[acc] {
			vaultError(w, 404, "failed to find accessor entry for secret_id_accessor")
			return
		}
		delete(f.secretIDs, acc)
		w.WriteHeader(http.StatusNoContent)
	default:
		vaultError(w, 405, "unsupported")
	}
}

func (f *fakeVault) last() (map[string]any, http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1], f.headers[len(f.headers)-1]
}

// unwrap is what Vault Agent does on the node.
func (f *fakeVault) unwrap(t *testing.T, token string) (int, string) {
	req, _ := http.NewRequest("POST", f.URL+"/v1/sys/wrapping/unwrap", strings.NewReader("{}"))
	req.Header.Set("X-Vault-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	b, _ := json.Marshal(out)
	return resp.StatusCode, string(b)
}
