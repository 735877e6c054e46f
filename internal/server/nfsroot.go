package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/netboot"
	"github.com/bakeryhq/bakery/internal/netboot/bootfiles"
	"github.com/bakeryhq/bakery/internal/netboot/nfs"
	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	"github.com/bakeryhq/bakery/internal/store"
	"github.com/bakeryhq/bakery/internal/units"
)

// nfsBackend is the NFS server's view of the control plane.
type nfsBackend struct{ s *Server }

func (b nfsBackend) MachineFor(ip netip.Addr) (string, bool) { return b.s.nfsMachineFor(ip) }

// Root needs no store read: a machine has a layer exactly when it should
// have an NFS root (syncRoot keeps it so), and NFS asks for it per call.
func (b nfsBackend) Root(machine string) (*overlay.Root, error) { return b.s.machines.Root(machine) }

func (b nfsBackend) DiskPath(machine, disk string) (string, error) {
	m, err := b.s.store.Machine(machine)
	if err != nil {
		return "", err
	}
	for _, d := range m.Disks {
		if d.Name == disk {
			return b.s.machines.DiskPath(machine, disk), nil
		}
	}
	return "", fmt.Errorf("machine %s has no disk %q: %w", machine, disk, fs.ErrNotExist)
}

func (b nfsBackend) Disks(machine string) []string {
	m, err := b.s.store.Machine(machine)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(m.Disks))
	for _, d := range m.Disks {
		out = append(out, d.Name)
	}
	return out
}

func (b nfsBackend) Event(machine, typ, msg string, fields map[string]string) {
	b.s.event(machine, typ, msg, fields)
}

// nfsMachineFor finds the machine whose exports an NFS client's address
// may use (see trustedMachine).
func (s *Server) nfsMachineFor(ip netip.Addr) (string, bool) {
	m, ok := s.trustedMachine(ip)
	return m.ID, ok
}

// trustedIP is the one address a machine's NFS exports and node credential
// answer: the ip in its record when set (then only that), otherwise the
// address of its last DHCP request this server answered. Addresses seen
// only in TFTP or HTTP boot traffic (seen_ips) grant nothing: anyone can
// send those requests, with a serial heard in DHCP option 97.
func trustedIP(m store.Machine) string {
	if m.IP != "" {
		return m.IP
	}
	return m.DHCPIP
}

// trustedMachine finds the machine an address is trusted for. When two
// records claim it, a fixed ip beats a DHCP-learned one, then the machine
// seen last wins.
func (s *Server) trustedMachine(ip netip.Addr) (store.Machine, bool) {
	ip = ip.Unmap()
	key := ip.String()
	s.mu.Lock()
	id, ok := s.trusted[ip]
	gen := s.trustGen
	s.mu.Unlock()
	if ok {
		// The cache is dropped whenever a record's ip or dhcp_ip changes;
		// checking the record again keeps a stale entry from granting.
		if m, err := s.store.Machine(id); err == nil && trustedIP(m) == key {
			return m, true
		}
	}
	ms, err := s.store.Machines()
	if err != nil {
		return store.Machine{}, false
	}
	rank := func(m store.Machine) int {
		switch {
		case trustedIP(m) != key:
			return 0
		case m.IP != "":
			return 2
		}
		return 1
	}
	best := -1
	for i, m := range ms {
		r := rank(m)
		if r == 0 {
			continue
		}
		if best < 0 || r > rank(ms[best]) || r == rank(ms[best]) && m.LastSeen.After(ms[best].LastSeen) {
			best = i
		}
	}
	if best < 0 {
		return store.Machine{}, false
	}
	s.mu.Lock()
	if s.trustGen == gen {
		s.trusted[ip] = ms[best].ID
	}
	s.mu.Unlock()
	return ms[best], true
}

// forgetTrusted drops trustedMachine's cache after a record's ip or
// dhcp_ip changed.
func (s *Server) forgetTrusted() {
	s.mu.Lock()
	s.forgetTrustedLocked()
	s.mu.Unlock()
}

// forgetTrustedLocked is forgetTrusted with s.mu held.
func (s *Server) forgetTrustedLocked() {
	clear(s.trusted)
	s.trustGen++
}

// flushLayers writes deferred layer metadata every second.
func (s *Server) flushLayers(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.machines.Flush()
			return
		case <-t.C:
			s.machines.Flush()
		}
	}
}

// nfsRootWanted says whether a machine should boot with an NFS root.
func (s *Server) nfsRootWanted(m store.Machine) bool {
	return s.nfs != nil && m.Image != "" && m.Root != store.RootImage
}

// nfsRoot returns where a machine's NFS root is served, if it has one.
func (s *Server) nfsRoot(m store.Machine) (bootfiles.NFSRoot, bool) {
	if !s.nfsRootWanted(m) || !s.machines.HasLayer(m.ID) {
		return bootfiles.NFSRoot{}, false
	}
	return bootfiles.NFSRoot{Server: s.cfg.Advertise.String(), Export: nfs.ExportPath(m.ID), Port: s.nfs.Port()}, true
}

// renderCmdline is a machine's cmdline.txt: with its NFS root if it has
// one, else the image's own, plus its cmdline_append. When this server
// issues node credentials, bakery.url= tells bakery-credential.service
// on the node where to ask for one.
func (s *Server) renderCmdline(m store.Machine, base []byte) []byte {
	extra := []string{}
	if s.cfg.Credentials != nil {
		extra = append(extra, "bakery.url="+s.baseURL)
	}
	extra = append(extra, m.CmdlineAppend)
	if root, ok := s.nfsRoot(m); ok {
		return bootfiles.RenderNFSRootCmdline(base, root, extra...)
	}
	return bootfiles.RenderCmdline(base, extra...)
}

// hostnameFor turns a machine name into a hostname (RFC 1123 labels), or
// "" to leave the name to DHCP.
func hostnameFor(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(name)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	var labels []string
	for _, l := range strings.Split(b.String(), ".") {
		if l = strings.Trim(l, "-"); l != "" {
			labels = append(labels, l[:min(len(l), 63)])
		}
	}
	h := strings.Join(labels, ".")
	if len(h) > 253 {
		h = strings.TrimRight(h[:253], ".-")
	}
	return h
}

func nodeScope(id string) string { return "node:" + id }

// mintNodeToken creates a machine's node token (scope node:<id>), makes it
// the machine's one and deletes the previous one.
func (s *Server) mintNodeToken(id string) (store.Token, string, error) {
	t, plain, err := newToken("node "+id, []string{nodeScope(id)})
	if err != nil {
		return store.Token{}, "", err
	}
	t.Machine = id
	if err := s.store.PutToken(t); err != nil {
		return store.Token{}, "", err
	}
	var old string
	if _, err := s.store.UpdateMachine(id, func(m *store.Machine, exists bool) error {
		if !exists {
			return store.ErrNotFound
		}
		old, m.NodeTokenID = m.NodeTokenID, t.ID
		return nil
	}); err != nil {
		s.store.DeleteToken(t.ID)
		return store.Token{}, "", err
	}
	if old != "" && old != t.ID {
		s.store.DeleteToken(old)
	}
	return t, plain, nil
}

// provision gives a machine a fresh root layer over its image, with its
// adjustments and a new node token. It costs the same whatever the image
// size. Connections serving the old layer are closed.
func (s *Server) provision(m store.Machine, why string) ([]string, error) {
	im, err := s.store.Image(m.Image)
	if err != nil {
		return nil, err
	}
	_, plain, err := s.mintNodeToken(m.ID)
	if err != nil {
		return nil, fmt.Errorf("node token: %w", err)
	}
	adj := overlay.Adjustments{
		Hostname: hostnameFor(m.Name), NodeToken: plain,
		NodeEnv: map[string]string{"BAKERY_SERVER": s.baseURL, "BAKERY_MACHINE": m.ID},
	}
	start := time.Now()
	_, done, err := s.machines.Provision(m.ID, im.SHA256, adj)
	if s.nfs != nil {
		s.nfs.Disconnect(m.ID)
	}
	if err != nil {
		s.event(m.ID, "root.failed", "NFS root not provisioned: "+err.Error()+
			"; the machine boots with its image's own cmdline.txt (set root \"image\" to say that is intended)", map[string]string{"image": im.ID})
		return nil, err
	}
	s.event(m.ID, "root.provisioned", fmt.Sprintf("fresh NFS root over image %s (%s, %s): %s", im.ID, why,
		time.Since(start).Round(time.Millisecond), strings.Join(done, "; ")),
		map[string]string{"image": im.ID, "export": nfs.ExportPath(m.ID), "reason": why})
	return done, nil
}

// layerImage returns the image key a machine's layer sits on.
func (s *Server) layerImage(id string) (string, bool) {
	if !s.machines.HasLayer(id) {
		return "", false
	}
	r, err := s.machines.Root(id)
	if err != nil {
		return "", false
	}
	return r.Base().Key(), true
}

// syncRoot brings a machine's layer in line with its record after a
// change: a new image gets a fresh layer, no image (or root "image") none,
// a new name a new /etc/hostname.
func (s *Server) syncRoot(before, after store.Machine) {
	want := s.nfsRootWanted(after)
	key, has := s.layerImage(after.ID)
	switch {
	case !want && s.machines.HasLayer(after.ID):
		if err := s.machines.Discard(after.ID); err != nil {
			s.log.Warn("discarding root layer failed", "machine", after.ID, "error", err)
		}
		if s.nfs != nil {
			s.nfs.Disconnect(after.ID)
		}
		s.event(after.ID, "root.discarded", "NFS root layer discarded (no image assigned, or root is \"image\")", nil)
	case want:
		im, err := s.store.Image(after.Image)
		if err != nil {
			return
		}
		if !has || key != im.SHA256 {
			why := "image assigned"
			if has {
				why = "image changed"
			}
			if _, err := s.provision(after, why); err != nil {
				s.log.Warn("provisioning NFS root failed", "machine", after.ID, "error", err)
			}
			return
		}
		if before.Name != after.Name {
			if r, err := s.machines.Root(after.ID); err == nil {
				if err := r.SetHostname(hostnameFor(after.Name)); err == nil {
					s.event(after.ID, "root.hostname", "hostname set to "+hostnameFor(after.Name)+" in the NFS root", nil)
				}
			}
		}
	}
}

// ResetAnswer is the answer to POST /machines/{id}/reset.
type ResetAnswer struct {
	Machine     string        `json:"machine"`
	Export      string        `json:"export"`
	Adjustments []string      `json:"adjustments"`
	Usage       overlay.Usage `json:"usage"`
}

func (s *Server) handleReset(w http.ResponseWriter, r *http.Request) {
	m, ok := s.machineFromPath(w, r)
	if !ok {
		return
	}
	if !s.nfsRootWanted(m) {
		writeError(w, http.StatusConflict, "machine %s has no NFS root to reset (%s)", m.ID, s.noNFSRootReason(m))
		return
	}
	if n := s.nfs.Active(m.ID); n > 0 && r.URL.Query().Get("force") != "true" {
		writeError(w, http.StatusConflict, "machine %s is using its root (%d NFS connection(s)); power it off first, or pass force=true", m.ID, n)
		return
	}
	tok, _ := tokenFrom(r.Context())
	done, err := s.provision(m, "reset by token "+tok.ID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reset: %v", err)
		return
	}
	ans := ResetAnswer{Machine: m.ID, Export: nfs.ExportPath(m.ID), Adjustments: done}
	if root, err := s.machines.Root(m.ID); err == nil {
		ans.Usage, _ = root.Usage()
	}
	writeJSON(w, http.StatusOK, ans)
}

func (s *Server) noNFSRootReason(m store.Machine) string {
	switch {
	case s.nfs == nil:
		return "the NFS server is off (--no-nfs)"
	case m.Image == "":
		return "no image assigned"
	case m.Root == store.RootImage:
		return `its root is "image"`
	}
	return "no root layer yet"
}

// RootUsage is the answer to GET /machines/{id}/root/usage.
type RootUsage struct {
	overlay.Usage
	Image  string `json:"image"`
	Export string `json:"export"`
	// Connections is the number of NFS connections serving it now.
	Connections int `json:"connections"`
}

func (s *Server) handleRootUsage(w http.ResponseWriter, r *http.Request) {
	m, ok := s.machineFromPath(w, r)
	if !ok {
		return
	}
	if !s.nfsRootWanted(m) || !s.machines.HasLayer(m.ID) {
		writeError(w, http.StatusNotFound, "machine %s has no NFS root (%s)", m.ID, s.noNFSRootReason(m))
		return
	}
	root, err := s.machines.Root(m.ID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	u, err := root.Usage()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, RootUsage{Usage: u, Image: m.Image, Export: nfs.ExportPath(m.ID), Connections: s.nfs.Active(m.ID)})
}

// DiskRequest is the body of PUT /machines/{id}/disks/{name}: the size in
// bytes, or a string such as "10GiB".
type DiskRequest struct {
	Size json.RawMessage `json:"size"`
}

// DiskAnswer describes an extra disk.
type DiskAnswer struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Export string `json:"export"`
	File   string `json:"file"`
}

func parseSize(raw json.RawMessage) (int64, error) {
	var n int64
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return 0, fmt.Errorf("size: want a number of bytes or a string such as \"10GiB\"")
	}
	return units.ParseBytes(str)
}

func (s *Server) handlePutDisk(w http.ResponseWriter, r *http.Request) {
	m, ok := s.machineFromPath(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if err := overlay.CheckDiskName(name); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var req DiskRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || len(req.Size) == 0 {
		writeError(w, http.StatusBadRequest, "body: want {\"size\": \"10GiB\"}")
		return
	}
	size, err := parseSize(req.Size)
	if err == nil {
		size, err = overlay.DiskSize(size)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	existed := slices.ContainsFunc(m.Disks, func(d store.Disk) bool { return d.Name == name })
	changed, err := s.machines.PutDisk(m.ID, name, size)
	if errors.Is(err, overlay.ErrShrink) {
		writeError(w, http.StatusConflict, "%v", err)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if _, err := s.store.UpdateMachine(m.ID, func(rec *store.Machine, exists bool) error {
		if !exists {
			return store.ErrNotFound
		}
		rec.Disks = slices.DeleteFunc(rec.Disks, func(d store.Disk) bool { return d.Name == name })
		rec.Disks = append(rec.Disks, store.Disk{Name: name, Size: size})
		sort.Slice(rec.Disks, func(i, j int) bool { return rec.Disks[i].Name < rec.Disks[j].Name })
		return nil
	}); err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	ans := DiskAnswer{Name: name, Size: size, Export: nfs.DiskExportPath(m.ID, name), File: name + ".img"}
	code := http.StatusOK
	switch {
	case !existed:
		code = http.StatusCreated
		s.event(m.ID, "disk.created", fmt.Sprintf("extra disk %s created (%s, sparse), exported at %s", name, units.Format(size), ans.Export), map[string]string{"disk": name, "bytes": itoa(size)})
	case changed:
		s.event(m.ID, "disk.resized", fmt.Sprintf("extra disk %s grown to %s", name, units.Format(size)), map[string]string{"disk": name, "bytes": itoa(size)})
	}
	writeJSON(w, code, ans)
}

func (s *Server) handleDeleteDisk(w http.ResponseWriter, r *http.Request) {
	m, ok := s.machineFromPath(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if err := overlay.CheckDiskName(name); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if !slices.ContainsFunc(m.Disks, func(d store.Disk) bool { return d.Name == name }) {
		writeError(w, http.StatusNotFound, "machine %s has no disk %q", m.ID, name)
		return
	}
	if err := s.machines.DeleteDisk(m.ID, name); err != nil && !errors.Is(err, os.ErrNotExist) {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if _, err := s.store.UpdateMachine(m.ID, func(rec *store.Machine, exists bool) error {
		if !exists {
			return store.ErrNotFound
		}
		rec.Disks = slices.DeleteFunc(rec.Disks, func(d store.Disk) bool { return d.Name == name })
		return nil
	}); err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	s.event(m.ID, "disk.deleted", "extra disk "+name+" deleted", map[string]string{"disk": name})
	w.WriteHeader(http.StatusNoContent)
}

// handleBooted records that a machine booted (called by the machine with
// its node token). For boot mode once this ends netbooting.
func (s *Server) handleBooted(w http.ResponseWriter, r *http.Request) {
	m, ok := s.machineFromPath(w, r)
	if !ok {
		return
	}
	now := time.Now().UTC()
	m, err := s.store.UpdateMachine(m.ID, func(rec *store.Machine, exists bool) error {
		if !exists {
			return store.ErrNotFound
		}
		rec.Booted = now
		return nil
	})
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	tok, _ := tokenFrom(r.Context())
	msg := "machine reported a successful boot"
	if m.BootMode == store.BootOnce {
		msg += "; boot-once finished: DHCP ignores it from now on, so it boots from its local disk"
	}
	s.event(m.ID, "machine.booted", msg, map[string]string{"remote": r.RemoteAddr, "token_id": tok.ID, "boot_mode": m.BootMode})
	writeJSON(w, http.StatusOK, machineView(m))
}

// NodeTokenAnswer is the answer to POST /machines/{id}/node-token.
type NodeTokenAnswer struct {
	NewToken
	Machine string `json:"machine"`
	// WrittenToRoot says the token was written to /etc/bakery/node-token
	// in the machine's NFS root.
	WrittenToRoot bool `json:"written_to_root"`
}

func (s *Server) handleNodeToken(w http.ResponseWriter, r *http.Request) {
	m, ok := s.machineFromPath(w, r)
	if !ok {
		return
	}
	t, plain, err := s.mintNodeToken(m.ID)
	if err != nil {
		writeError(w, statusFor(err), "%v", err)
		return
	}
	written := false
	if s.nfsRootWanted(m) && s.machines.HasLayer(m.ID) {
		if root, err := s.machines.Root(m.ID); err == nil {
			if err := root.SetNodeToken(plain); err != nil {
				s.log.Warn("writing node token into the root failed", "machine", m.ID, "error", err)
			} else {
				written = true
			}
		}
	}
	by, _ := tokenFrom(r.Context())
	s.event(m.ID, "api.node_token.create", "node token "+t.ID+" created", map[string]string{"token_id": t.ID, "by": by.ID, "written_to_root": fmt.Sprint(written)})
	writeJSON(w, http.StatusCreated, NodeTokenAnswer{
		NewToken: NewToken{ID: t.ID, Name: t.Name, Scopes: t.Scopes, Created: t.Created, Token: plain},
		Machine:  m.ID, WrittenToRoot: written,
	})
}

// nodeTokenAllows reports whether t is the node token of the machine in
// the request path.
func nodeTokenAllows(t store.Token, r *http.Request) bool {
	id, _, err := netboot.ParseMachineID(r.PathValue("id"))
	return err == nil && t.Machine == id && slices.Contains(t.Scopes, nodeScope(id))
}
