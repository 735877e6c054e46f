package server

import (
	"context"
	_ "embed"
	"net/http"
	"strconv"
	"time"

	"github.com/bakeryhq/bakery/internal/store"
)

// route is one HTTP endpoint. scope "" means no token (healthz, and the
// boot endpoints firmware calls); "metrics" means read unless MetricsPublic.
type route struct {
	pattern string // net/http pattern: "GET /api/v1/machines/{id}"
	scope   string
	handler http.HandlerFunc
}

const scopeMetrics = "metrics"

// scopeNode is for endpoints a machine calls about itself: its node token
// (scope node:<id>, for the id in the path) or a write token.
const scopeNode = "node"

func (s *Server) buildRoutes() []route {
	return []route{
		{"GET /healthz", "", s.handleHealthz},
		{"GET /metrics", scopeMetrics, s.metrics.handler().ServeHTTP},
		{"GET /api/v1/openapi.json", store.ScopeRead, s.handleOpenAPI},
		{"GET /api/v1/info", store.ScopeRead, s.handleInfo},

		{"GET /api/v1/images", store.ScopeRead, s.handleListImages},
		{"POST /api/v1/images", store.ScopeWrite, s.handleUploadImage},
		{"GET /api/v1/images/{id}", store.ScopeRead, s.handleGetImage},
		{"DELETE /api/v1/images/{id}", store.ScopeWrite, s.handleDeleteImage},

		{"GET /api/v1/machines", store.ScopeRead, s.handleListMachines},
		{"GET /api/v1/machines/{id}", store.ScopeRead, s.handleGetMachine},
		{"PUT /api/v1/machines/{id}", store.ScopeWrite, s.handlePutMachine},
		{"DELETE /api/v1/machines/{id}", store.ScopeWrite, s.handleDeleteMachine},
		{"GET /api/v1/machines/{id}/events", store.ScopeRead, s.handleMachineEvents},
		{"POST /api/v1/machines/{id}/reset", store.ScopeWrite, s.handleReset},
		{"GET /api/v1/machines/{id}/root/usage", store.ScopeRead, s.handleRootUsage},
		{"PUT /api/v1/machines/{id}/disks/{name}", store.ScopeWrite, s.handlePutDisk},
		{"DELETE /api/v1/machines/{id}/disks/{name}", store.ScopeWrite, s.handleDeleteDisk},
		{"POST /api/v1/machines/{id}/power", store.ScopeWrite, s.handlePower},
		{"POST /api/v1/machines/{id}/booted", scopeNode, s.handleBooted},
		{"POST /api/v1/machines/{id}/node-token", store.ScopeAdmin, s.handleNodeToken},
		{"GET /api/v1/events", store.ScopeRead, s.handleServerEvents},

		{"GET /api/v1/tokens", store.ScopeAdmin, s.handleListTokens},
		{"POST /api/v1/tokens", store.ScopeAdmin, s.handleCreateToken},
		{"DELETE /api/v1/tokens/{id}", store.ScopeAdmin, s.handleDeleteToken},

		{"GET /boot/ipxe", "", s.handleIPXEScript},
		{"POST /boot/credential", "", s.handleCredential},
		{"GET /boot/{id}/{file}", "", s.handleBootFile},
	}
}

// statusRecorder remembers the status code for metrics and logs.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// wrap adds authentication, scope checks, metrics and a debug log line. The
// log names the token by id, never by value.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		tokenID := ""
		defer func() {
			code := rec.code
			if code == 0 {
				code = http.StatusOK
			}
			s.metrics.httpRequests.WithLabelValues(rt.pattern, strconv.Itoa(code)).Inc()
			s.log.Debug("http request", "route", rt.pattern, "status", code, "token_id", tokenID,
				"remote", r.RemoteAddr, "ms", time.Since(start).Milliseconds())
		}()
		need := rt.scope
		if need == scopeMetrics {
			need = store.ScopeRead
			if s.cfg.MetricsPublic {
				need = ""
			}
		}
		if need != "" {
			t, ok := s.authenticate(r)
			if !ok {
				rec.Header().Set("WWW-Authenticate", `Bearer realm="bakery"`)
				writeError(rec, http.StatusUnauthorized, "missing or invalid bearer token")
				return
			}
			tokenID = t.ID
			switch {
			case need == scopeNode:
				if tokenLevel(t) < scopeLevel(store.ScopeWrite) && !nodeTokenAllows(t, r) {
					writeError(rec, http.StatusForbidden, "token %s is neither this machine's node token nor a write token", t.ID)
					return
				}
			case tokenLevel(t) < scopeLevel(need):
				writeError(rec, http.StatusForbidden, "token %s lacks the %q scope this endpoint needs", t.ID, need)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), tokenKey, t))
		}
		rt.handler(rec, r)
	})
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte("ok\n"))
}

//go:embed openapi.json
var openAPIDoc []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDoc)
}

// Info describes the running server.
type Info struct {
	Version   string `json:"version"`
	Advertise string `json:"advertise"`
	BootURL   string `json:"boot_url"`
	TFTP      string `json:"tftp"`
	DHCP      string `json:"dhcp"`
	NFS       string `json:"nfs"`
	Interface string `json:"interface,omitempty"`
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Info{
		Version: s.cfg.Version, Advertise: s.cfg.Advertise.String(), BootURL: s.baseURL,
		TFTP: addrString(s.TFTPAddr()), DHCP: addrString(s.DHCPAddr()), NFS: addrString(s.NFSAddr()), Interface: s.cfg.Interface,
	})
}
