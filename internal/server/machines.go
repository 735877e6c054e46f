package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot"
	"github.com/bakeryhq/bakery/internal/power"
	"github.com/bakeryhq/bakery/internal/store"
)

// MachineSpec is the body of PUT /api/v1/machines/{id}: everything the
// operator sets. Fields left out are cleared, so PUT is idempotent.
type MachineSpec struct {
	Name          string            `json:"name,omitempty"`
	Image         string            `json:"image,omitempty"`
	MAC           string            `json:"mac,omitempty"`
	IP            string            `json:"ip,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	CmdlineAppend string            `json:"cmdline_append,omitempty"`
	ConfigAppend  string            `json:"config_append,omitempty"`
	BootMode      string            `json:"boot_mode,omitempty"`
	// Root is "nfs" (default when NFS runs: a per-machine copy-on-write
	// root over the image) or "image" (the image's own cmdline.txt).
	Root string `json:"root,omitempty"`
	// Power is the power driver; secret settings come back redacted from
	// GET, and a PUT that sends the redacted value keeps the stored one.
	Power *store.Power `json:"power,omitempty"`
}

const (
	maxCmdlineAppend = 2048
	maxConfigAppend  = 16 << 10
	maxLabels        = 64
)

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errStatus(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.code
	}
	return statusFor(err)
}

// normalise checks a spec and brings it to canonical form.
func (s *Server) normalise(id, kind string, spec *MachineSpec) error {
	if len(spec.Name) > 128 || strings.ContainsAny(spec.Name, "\x00\n\r") {
		return badRequest("name: at most 128 characters, no line breaks")
	}
	if spec.MAC != "" {
		mac, err := netboot.NormalizeMAC(spec.MAC)
		if err != nil {
			return badRequest("mac: %v", err)
		}
		spec.MAC = mac
	} else if kind == netboot.KindMAC {
		spec.MAC = id
	}
	if kind == netboot.KindMAC && spec.MAC != id {
		return badRequest("mac %s differs from the machine id %s", spec.MAC, id)
	}
	if spec.IP != "" {
		ip, err := netip.ParseAddr(spec.IP)
		if err != nil || !ip.Is4() {
			return badRequest("ip %q: want an IPv4 address", spec.IP)
		}
		spec.IP = ip.String()
	}
	if len(spec.Labels) > maxLabels {
		return badRequest("labels: at most %d", maxLabels)
	}
	for k, v := range spec.Labels {
		if k == "" || len(k) > 63 || len(v) > 256 || strings.ContainsAny(k, "=,\x00\n") || strings.ContainsAny(v, "\x00\n") {
			return badRequest("label %q=%q: keys 1-63 characters without '=' or ','; values up to 256 characters", k, v)
		}
	}
	if len(spec.CmdlineAppend) > maxCmdlineAppend || strings.ContainsAny(spec.CmdlineAppend, "\x00\n\r") {
		return badRequest("cmdline_append: one line of at most %d bytes (the kernel reads only the first line)", maxCmdlineAppend)
	}
	if len(spec.ConfigAppend) > maxConfigAppend || strings.ContainsRune(spec.ConfigAppend, 0) {
		return badRequest("config_append: at most %d bytes", maxConfigAppend)
	}
	switch spec.BootMode {
	case "":
		spec.BootMode = store.BootNetboot
	case store.BootNetboot, store.BootLocal, store.BootOnce:
	default:
		return badRequest("boot_mode %q: want netboot, local or once", spec.BootMode)
	}
	switch spec.Root {
	case "", store.RootImage:
	case store.RootNFS:
		if s.nfs == nil {
			return badRequest("root %q: the NFS server is off (bakery serve --no-nfs)", spec.Root)
		}
	default:
		return badRequest("root %q: want nfs or image", spec.Root)
	}
	if spec.Power != nil {
		spec.Power.Driver = strings.TrimSpace(spec.Power.Driver)
		if spec.Power.Driver == "" && len(spec.Power.Settings) == 0 {
			spec.Power = nil
		}
	}
	if spec.Image != "" {
		im, err := s.resolveImage(spec.Image)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return badRequest("image %q: no such image (upload it with bakery image push)", spec.Image)
			}
			return err
		}
		spec.Image = im.ID
	}
	return nil
}

func (s *Server) handlePutMachine(w http.ResponseWriter, r *http.Request) {
	id, kind, err := netboot.ParseMachineID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var spec MachineSpec
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		writeError(w, http.StatusBadRequest, "body: %v", err)
		return
	}
	if err := s.normalise(id, kind, &spec); err != nil {
		writeError(w, errStatus(err), "%v", err)
		return
	}
	created := false
	var changed []string
	now := time.Now().UTC()
	var before store.Machine
	m, err := s.store.UpdateMachine(id, func(m *store.Machine, exists bool) error {
		created = !exists
		before = *m
		if spec.Power != nil {
			p := &store.Power{Driver: spec.Power.Driver, Settings: spec.Power.Settings}
			if m.Power != nil && m.Power.Driver == p.Driver {
				p.Settings = power.MergeRedacted(p.Settings, m.Power.Settings)
			}
			if left := power.HasRedacted(p.Settings); len(left) > 0 {
				return badRequest("power settings %s: %q stands for a stored secret, and there is none", strings.Join(left, ", "), power.RedactedValue)
			}
			if err := power.Validate(power.Config{Driver: p.Driver, Settings: p.Settings}, s.powerOpts); err != nil {
				return badRequest("power: %v", err)
			}
			m.Power = p
		} else {
			m.Power = nil
		}
		if spec.BootMode == store.BootOnce && m.BootMode != store.BootOnce {
			m.Booted = time.Time{} // a new boot-once run
		}
		m.Name, m.Image, m.MAC, m.IP = spec.Name, spec.Image, spec.MAC, spec.IP
		m.Labels, m.CmdlineAppend, m.ConfigAppend, m.BootMode = spec.Labels, spec.CmdlineAppend, spec.ConfigAppend, spec.BootMode
		m.Root = spec.Root
		m.Discovered = false
		if kind == netboot.KindSerial {
			m.Serial = id
		}
		if !exists {
			m.Created = now
		}
		changed = diffMachine(before, *m)
		if len(changed) > 0 || !exists {
			m.Updated = now
		}
		return nil
	})
	if err != nil {
		writeError(w, errStatus(err), "%v", err)
		return
	}
	if m.IP != "" {
		if ip, err := netip.ParseAddr(m.IP); err == nil {
			s.learnIP(ip, m.ID)
		}
	}
	s.forgetTrusted() // the ip may have changed
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	if created || len(changed) > 0 {
		tok, _ := tokenFrom(r.Context())
		s.event(id, "api.machine.put", "machine configured: "+strings.Join(changed, ", "),
			map[string]string{"changed": strings.Join(changed, ","), "token_id": tok.ID, "image": m.Image, "boot_mode": m.BootMode})
	}
	s.syncRoot(before, m)
	if after, err := s.store.Machine(m.ID); err == nil {
		m = after // provisioning set the node token
	}
	writeJSON(w, code, machineView(m))
}

// machineView is a machine as the API shows it: power secrets redacted.
func machineView(m store.Machine) store.Machine {
	if m.Power != nil {
		p := *m.Power
		p.Settings = power.Redact(p.Settings)
		m.Power = &p
	}
	return m
}

func diffMachine(a, b store.Machine) []string {
	var out []string
	add := func(name string, differ bool) {
		if differ {
			out = append(out, name)
		}
	}
	add("name", a.Name != b.Name)
	add("image", a.Image != b.Image)
	add("mac", a.MAC != b.MAC)
	add("ip", a.IP != b.IP)
	add("labels", fmt.Sprint(a.Labels) != fmt.Sprint(b.Labels))
	add("cmdline_append", a.CmdlineAppend != b.CmdlineAppend)
	add("config_append", a.ConfigAppend != b.ConfigAppend)
	add("boot_mode", a.BootMode != b.BootMode)
	add("root", a.Root != b.Root)
	add("power", fmt.Sprint(a.Power) != fmt.Sprint(b.Power))
	add("discovered", a.Discovered != b.Discovered)
	return out
}

func (s *Server) machineFromPath(w http.ResponseWriter, r *http.Request) (store.Machine, bool) {
	id, _, err := netboot.ParseMachineID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return store.Machine{}, false
	}
	m, err := s.store.Machine(id)
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return store.Machine{}, false
	}
	return m, true
}

func (s *Server) handleGetMachine(w http.ResponseWriter, r *http.Request) {
	if m, ok := s.machineFromPath(w, r); ok {
		writeJSON(w, http.StatusOK, machineView(m))
	}
}

// handleListMachines lists machines, filtered by ?label=k=v (repeatable,
// all must match) and ?discovered=true|false.
func (s *Server) handleListMachines(w http.ResponseWriter, r *http.Request) {
	ms, err := s.store.Machines()
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	type kv struct{ k, v string }
	var want []kv
	for _, sel := range r.URL.Query()["label"] {
		k, v, ok := strings.Cut(sel, "=")
		if !ok || k == "" {
			writeError(w, http.StatusBadRequest, "label filter %q: want key=value", sel)
			return
		}
		want = append(want, kv{k, v})
	}
	disc := r.URL.Query().Get("discovered")
	out := []store.Machine{}
	for _, m := range ms {
		match := true
		for _, f := range want {
			if v, ok := m.Labels[f.k]; !ok || v != f.v {
				match = false
			}
		}
		if disc != "" && strconv.FormatBool(m.Discovered) != disc {
			match = false
		}
		if match {
			out = append(out, machineView(m))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleDeleteMachine(w http.ResponseWriter, r *http.Request) {
	m, ok := s.machineFromPath(w, r)
	if !ok {
		return
	}
	if err := s.store.DeleteMachine(m.ID); err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	if s.nfs != nil {
		s.nfs.Disconnect(m.ID)
	}
	if err := s.machines.RemoveMachine(m.ID); err != nil {
		s.log.Warn("removing machine files failed", "machine", m.ID, "error", err)
	}
	if m.NodeTokenID != "" {
		s.store.DeleteToken(m.NodeTokenID)
	}
	s.forgetMachine(m.ID)
	s.metrics.lastSeen.DeleteLabelValues(m.ID)
	s.event("", "api.machine.delete", "machine "+m.ID+" deleted", map[string]string{"machine_id": m.ID})
	w.WriteHeader(http.StatusNoContent)
}

func eventLimit(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

func (s *Server) handleMachineEvents(w http.ResponseWriter, r *http.Request) {
	m, ok := s.machineFromPath(w, r)
	if !ok {
		return
	}
	evs, err := s.store.Events(m.ID, eventLimit(r))
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	if evs == nil {
		evs = []store.Event{}
	}
	writeJSON(w, http.StatusOK, evs)
}

func (s *Server) handleServerEvents(w http.ResponseWriter, r *http.Request) {
	evs, err := s.store.Events(store.ServerEvents, eventLimit(r))
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	if evs == nil {
		evs = []store.Event{}
	}
	writeJSON(w, http.StatusOK, evs)
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

// NewToken is the answer to POST /api/v1/tokens: the only time the
// plaintext is shown.
type NewToken struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Scopes  []string  `json:"scopes"`
	Created time.Time `json:"created"`
	Token   string    `json:"token"`
}

// tokenView hides the hash.
func tokenView(t store.Token) store.Token { t.Hash = ""; return t }

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: %v", err)
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 128 {
		writeError(w, http.StatusBadRequest, "name: want 1 to 128 characters")
		return
	}
	if len(req.Scopes) == 0 {
		writeError(w, http.StatusBadRequest, "scopes: want at least one of read, write, admin")
		return
	}
	for _, sc := range req.Scopes {
		if scopeLevel(sc) == 0 {
			writeError(w, http.StatusBadRequest, "scope %q: want read, write or admin", sc)
			return
		}
	}
	t, plain, err := newToken(req.Name, req.Scopes)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if err := s.store.PutToken(t); err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	by, _ := tokenFrom(r.Context())
	s.event("", "api.token.create", "token "+t.ID+" ("+t.Name+") created", map[string]string{"token_id": t.ID, "by": by.ID, "scopes": strings.Join(t.Scopes, ",")})
	writeJSON(w, http.StatusCreated, NewToken{ID: t.ID, Name: t.Name, Scopes: t.Scopes, Created: t.Created, Token: plain})
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := s.store.Tokens()
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	out := make([]store.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, tokenView(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleDeleteToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.store.DeleteToken(id); err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	by, _ := tokenFrom(r.Context())
	s.event("", "api.token.delete", "token "+id+" deleted", map[string]string{"token_id": id, "by": by.ID})
	w.WriteHeader(http.StatusNoContent)
}
