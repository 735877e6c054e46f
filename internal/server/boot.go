package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot"
	"github.com/bakeryhq/bakery/internal/netboot/bootfiles"
	"github.com/bakeryhq/bakery/internal/netboot/dhcp"
	"github.com/bakeryhq/bakery/internal/netboot/tftp"
	"github.com/bakeryhq/bakery/internal/store"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// maxSeenIPs bounds the addresses remembered per machine.
const maxSeenIPs = 4

// persistEvery bounds how often last-seen is written for a busy machine.
const persistEvery = 30 * time.Second

// maxTextFile bounds cmdline.txt and config.txt read from an image.
const maxTextFile = 256 << 10

// ipxeBinaries are the chainload files served from DATA/ipxe/.
var ipxeBinaries = []string{"undionly.kpxe", "ipxe.efi", "ipxe-arm64.efi"}

// learnIP ties an address to a machine for requests that carry no serial.
func (s *Server) learnIP(ip netip.Addr, id string) {
	if !ip.IsValid() || ip.IsUnspecified() {
		return
	}
	s.mu.Lock()
	s.ipMachine[ip.Unmap()] = id
	s.mu.Unlock()
}

func (s *Server) forgetMachine(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ip, m := range s.ipMachine {
		if m == id {
			delete(s.ipMachine, ip)
		}
	}
	s.forgetTrustedLocked()
	delete(s.persisted, id)
}

// machineByMAC finds the machine whose id or mac field is mac.
func (s *Server) machineByMAC(mac string) (store.Machine, bool) {
	if mac == "" {
		return store.Machine{}, false
	}
	if m, err := s.store.Machine(mac); err == nil {
		return m, true
	}
	ms, err := s.store.Machines()
	if err != nil {
		return store.Machine{}, false
	}
	for _, m := range ms {
		if m.MAC == mac {
			return m, true
		}
	}
	return store.Machine{}, false
}

// machineByIP finds the machine behind an address: learned from DHCP and
// TFTP, set by the operator, or by the MAC in the kernel's ARP table. It
// only routes boot files and names machines in events: it grants nothing
// (trustedMachine does).
func (s *Server) machineByIP(ip netip.Addr) (store.Machine, bool) {
	ip = ip.Unmap()
	s.mu.Lock()
	id, ok := s.ipMachine[ip]
	s.mu.Unlock()
	if ok {
		if m, err := s.store.Machine(id); err == nil {
			return m, true
		}
	}
	if ms, err := s.store.Machines(); err == nil {
		for _, m := range ms {
			if m.IP == ip.String() {
				return m, true
			}
		}
	}
	if mac, ok := s.cfg.Neighbor(ip); ok {
		if m, ok := s.machineByMAC(mac); ok {
			s.learnIP(ip, m.ID)
			return m, true
		}
	}
	return store.Machine{}, false
}

// seen records that a machine showed up: the last-seen gauge always, the
// store when its address is new or the last write is older than persistEvery.
func (s *Server) seen(id string, ip netip.Addr, learn func(*store.Machine)) {
	now := time.Now().UTC()
	s.metrics.lastSeen.WithLabelValues(id).Set(float64(now.Unix()))
	if ip.IsValid() {
		s.learnIP(ip, id)
	}
	s.mu.Lock()
	last := s.persisted[id]
	s.mu.Unlock()
	_, err := s.store.UpdateMachine(id, func(m *store.Machine, exists bool) error {
		if !exists {
			return store.ErrNotFound
		}
		newIP := ip.IsValid() && (len(m.SeenIPs) == 0 || m.SeenIPs[0] != ip.String())
		learned := false
		if learn != nil {
			before := [3]string{m.MAC, m.Serial, m.Model}
			learn(m)
			learned = before != [3]string{m.MAC, m.Serial, m.Model}
		}
		if !newIP && !learned && now.Sub(last) < persistEvery {
			return errUnchanged
		}
		if newIP {
			ips := []string{ip.String()}
			for _, old := range m.SeenIPs {
				if old != ip.String() && len(ips) < maxSeenIPs {
					ips = append(ips, old)
				}
			}
			m.SeenIPs = ips
		}
		m.LastSeen = now
		return nil
	})
	if err == nil {
		s.mu.Lock()
		s.persisted[id] = now
		s.mu.Unlock()
	}
}

var errUnchanged = errors.New("unchanged")

// discover records an unknown netboot client so that the operator only
// has to assign an image.
func (s *Server) discover(id string, learn func(*store.Machine), how string) {
	created := false
	_, err := s.store.UpdateMachine(id, func(m *store.Machine, exists bool) error {
		if exists {
			return errUnchanged
		}
		created = true
		now := time.Now().UTC()
		m.Discovered, m.BootMode, m.Created, m.Updated, m.LastSeen = true, store.BootNetboot, now, now, now
		if learn != nil {
			learn(m)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		s.log.Warn("recording discovered machine failed", "machine", id, "error", err)
		return
	}
	if created {
		s.log.Info("discovered machine", "machine", id, "via", how)
		s.event(id, "machine.discovered", "new machine seen in "+how+"; assign an image to boot it", nil)
	}
}

// bootable says why a machine must not be served, or "" if it may.
func (s *Server) bootable(m store.Machine) (store.Image, string) {
	switch {
	case m.BootMode == store.BootOnce && !m.Booted.IsZero():
		return store.Image{}, "boot-once finished (it reported a successful boot at " + m.Booted.Format(time.RFC3339) + "); it boots from its local disk"
	case m.BootMode != store.BootNetboot && m.BootMode != store.BootOnce:
		return store.Image{}, "boot mode is " + m.BootMode
	}
	if m.Image == "" {
		return store.Image{}, "no image assigned"
	}
	im, err := s.store.Image(m.Image)
	if err != nil {
		return store.Image{}, "image " + m.Image + " is missing"
	}
	return im, ""
}

// Decide is the proxy DHCP policy: answer only machines that are meant to
// netboot and have what they need; record everything else with its reason.
func (s *Server) Decide(ctx context.Context, c dhcp.Client) dhcp.Decision {
	if c.Kind == dhcp.KindOther {
		// The kernel of an NFS-root machine asks for its address itself
		// (ip=dhcp): learn it, so that its NFS mount is answered.
		if c.IP.IsValid() && c.MAC != "" {
			if m, ok := s.machineByMAC(c.MAC); ok && s.machines.HasLayer(m.ID) {
				s.seen(m.ID, c.IP, nil)
				s.trustDHCP(m.ID, c)
			}
		}
		s.metrics.dhcpRequests.WithLabelValues(string(c.Kind), "ignored").Inc()
		return dhcp.Decision{Reason: "not a netboot client"}
	}
	var (
		m     store.Machine
		found bool
		id    string
	)
	if c.Serial != "" {
		id = c.Serial
		if mm, err := s.store.Machine(c.Serial); err == nil {
			m, found = mm, true
		}
	}
	if !found {
		m, found = s.machineByMAC(c.MAC)
	}
	if id == "" {
		id = c.MAC
	}
	if found {
		id = m.ID
	}
	learn := func(m *store.Machine) {
		if m.MAC == "" {
			m.MAC = c.MAC
		}
		if c.Serial != "" {
			m.Serial = c.Serial
		}
		if c.Model != "" {
			m.Model = c.Model
		} else if m.Model == "" && c.Kind != dhcp.KindPi {
			m.Model = dhcp.ArchName(c.Arch)
		}
	}
	msg := c.MessageType.String()
	ignore := func(reason string) dhcp.Decision {
		s.metrics.dhcpRequests.WithLabelValues(string(c.Kind), "ignored").Inc()
		s.event(id, "dhcp.ignored", fmt.Sprintf("%s from %s (%s) ignored: %s", msg, c.MAC, c.Kind, reason),
			map[string]string{"mac": c.MAC, "kind": string(c.Kind), "reason": reason, "detected_by": c.DetectedBy})
		return dhcp.Decision{Reason: reason, MachineID: id}
	}
	if !found {
		s.discover(id, learn, "DHCP")
		return ignore("unknown machine (recorded as discovered)")
	}
	s.seen(id, c.IP, learn)
	im, why := s.bootable(m)
	if why != "" {
		return ignore(why)
	}
	d := dhcp.Decision{Answer: true, MachineID: id}
	switch c.Kind {
	case dhcp.KindPi:
		if im.Kind == bootfiles.KindPXE {
			return ignore("image " + im.ID + " has no Raspberry Pi boot files")
		}
		d.Reason = "Raspberry Pi boot"
	case dhcp.KindPXE:
		file := dhcp.IPXEBootFile(c.Arch)
		if file == "" {
			return ignore("no iPXE build for architecture " + dhcp.ArchName(c.Arch))
		}
		if _, err := os.Stat(filepath.Join(s.ipxeDir(), file)); err != nil {
			return ignore(fmt.Sprintf("%s is missing: put the iPXE binaries in %s", file, s.ipxeDir()))
		}
		if im.Kernel == "" {
			return ignore("image " + im.ID + " has no kernel for iPXE")
		}
		d.BootFile, d.Reason = file, "iPXE chainload "+file
	case dhcp.KindIPXE:
		if im.Kernel == "" {
			return ignore("image " + im.ID + " has no kernel for iPXE")
		}
		d.BootFile = s.baseURL + "/boot/ipxe?mac=" + url.QueryEscape(c.MAC)
		d.Reason = "iPXE script"
	}
	s.trustDHCP(id, c)
	return d
}

// trustDHCP records the address a DHCPREQUEST takes as the machine's own
// (dhcp_ip): with no ip in its record, the one address its NFS exports
// and node credential answer. Only requests count: a DISCOVER's address is
// a wish, a REQUEST's is the lease being taken. An address belongs to one
// machine, so the others that had it lose it.
func (s *Server) trustDHCP(id string, c dhcp.Client) {
	if c.MessageType != dhcpv4.MessageTypeRequest || !c.IP.IsValid() || c.IP.IsUnspecified() {
		return
	}
	key := c.IP.Unmap().String()
	_, err := s.store.UpdateMachine(id, func(m *store.Machine, exists bool) error {
		if !exists {
			return store.ErrNotFound
		}
		if m.DHCPIP == key {
			return errUnchanged
		}
		m.DHCPIP = key
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return
	}
	if err != nil {
		s.log.Warn("recording the DHCP address failed", "machine", id, "ip", key, "error", err)
		return
	}
	s.log.Info("machine address from DHCP", "machine", id, "ip", key)
	ms, err := s.store.Machines()
	if err != nil {
		s.log.Warn("listing machines failed", "error", err)
	}
	for _, o := range ms {
		if o.ID == id || o.DHCPIP != key {
			continue
		}
		_, err := s.store.UpdateMachine(o.ID, func(m *store.Machine, exists bool) error {
			if !exists || m.DHCPIP != key {
				return errUnchanged
			}
			m.DHCPIP = ""
			return nil
		})
		if err != nil && !errors.Is(err, errUnchanged) {
			s.log.Warn("dropping a moved DHCP address failed", "machine", o.ID, "ip", key, "error", err)
		}
	}
	s.forgetTrusted()
}

// dhcpSent records the outcome of an answer.
func (s *Server) dhcpSent(c dhcp.Client, d dhcp.Decision, err error) {
	result, typ, verb := "answered", "dhcp.answered", "answered"
	if err != nil {
		result, typ, verb = "failed", "dhcp.failed", "answer failed: "+err.Error()
	}
	s.metrics.dhcpRequests.WithLabelValues(string(c.Kind), result).Inc()
	reply := "OFFER"
	if c.MessageType == dhcpv4.MessageTypeRequest {
		reply = "ACK"
	}
	fields := map[string]string{"mac": c.MAC, "kind": string(c.Kind), "reply": reply, "server": s.cfg.Advertise.String()}
	if d.BootFile != "" {
		fields["boot_file"] = d.BootFile
	}
	s.event(d.MachineID, typ, fmt.Sprintf("%s from %s %s with %s (%s)", c.MessageType, c.MAC, verb, reply, d.Reason), fields)
}

// resolveErr carries the machine a refused TFTP request belongs to, for
// the event.
type resolveErr struct {
	machine string
	err     error
}

func (e *resolveErr) Error() string { return e.err.Error() }
func (e *resolveErr) Unwrap() error { return e.err }

func notFound(machine, format string, args ...any) error {
	return &resolveErr{machine, fmt.Errorf("%w: %s", tftp.ErrNotFound, fmt.Sprintf(format, args...))}
}

// Resolve maps a TFTP request to a machine's file. Requests under
// "<serial>/" (or "<mac>/") belong to that machine; requests without a
// prefix to the machine behind the requesting address. An unknown serial
// gets "file not found" and is recorded as discovered: it never gets
// another machine's files.
func (s *Server) Resolve(ctx context.Context, rq tftp.Request) (tftp.Content, error) {
	p, ip := rq.Path, rq.Remote.Addr()
	if !p.Prefixed() && slices.Contains(ipxeBinaries, p.File) {
		return s.ipxeBinary(p.File)
	}
	var (
		m     store.Machine
		found bool
	)
	switch {
	case p.Serial != "":
		if mm, err := s.store.Machine(p.Serial); err == nil {
			m, found = mm, true
		} else if mm, ok := s.machineByIP(ip); ok && (mm.Serial == "" || mm.Serial == p.Serial) {
			// A Pi 3 configured by MAC: its serial shows up only now.
			m, found = mm, true
			s.seen(m.ID, ip, func(m *store.Machine) { m.Serial = p.Serial })
		}
		if !found {
			s.discover(p.Serial, func(m *store.Machine) { m.Serial = p.Serial }, "TFTP")
			return tftp.Content{}, notFound(p.Serial, "unknown serial %s", p.Serial)
		}
	case p.MAC != "":
		if m, found = s.machineByMAC(p.MAC); !found {
			s.discover(p.MAC, func(m *store.Machine) { m.MAC = p.MAC }, "TFTP")
			return tftp.Content{}, notFound(p.MAC, "unknown MAC %s", p.MAC)
		}
	default:
		if m, found = s.machineByIP(ip); !found {
			if p.File == "bootcode.bin" && s.cfg.DefaultImage != "" {
				return s.defaultBootcode()
			}
			return tftp.Content{}, notFound("", "no machine known at %s", ip)
		}
	}
	s.seen(m.ID, ip, nil)
	s.noteTFTP(m.ID)
	im, why := s.bootable(m)
	if why != "" {
		return tftp.Content{}, notFound(m.ID, "%s", why)
	}
	c, err := s.machineFile(m, im, p.File)
	if err != nil {
		return tftp.Content{}, &resolveErr{m.ID, err}
	}
	return c, nil
}

// machineFile opens a file from the machine's image, rendering cmdline.txt
// and config.txt for it.
func (s *Server) machineFile(m store.Machine, im store.Image, file string) (tftp.Content, error) {
	loc := bootfiles.Location{Part: bootfiles.PartBoot, Path: "/" + file}
	switch strings.ToLower(file) {
	case "cmdline.txt", "config.txt":
		base, err := s.lib.ReadFile(im.SHA256, s.imagePath(im), loc, maxTextFile)
		if err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return tftp.Content{}, err
		}
		_, nfsRoot := s.nfsRoot(m)
		if errors.Is(err, iofs.ErrNotExist) && (strings.EqualFold(file, "cmdline.txt") && m.CmdlineAppend == "" && !nfsRoot || strings.EqualFold(file, "config.txt") && m.ConfigAppend == "") {
			return tftp.Content{}, fmt.Errorf("%w: %s not in image %s", tftp.ErrNotFound, file, im.ID)
		}
		var out []byte
		if strings.EqualFold(file, "cmdline.txt") {
			out = s.renderCmdline(m, base)
		} else {
			out = bootfiles.RenderConfig(base, m.ConfigAppend)
		}
		return tftp.Content{R: strings.NewReader(string(out)), Size: int64(len(out)), Machine: m.ID}, nil
	}
	f, err := s.openFile(im, loc)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return tftp.Content{}, fmt.Errorf("%w: %s not in image %s", tftp.ErrNotFound, file, im.ID)
		}
		return tftp.Content{}, err
	}
	return tftp.Content{R: f, Size: f.Size, Machine: m.ID, Close: f.Close}, nil
}

func (s *Server) ipxeBinary(name string) (tftp.Content, error) {
	f, err := os.Open(filepath.Join(s.ipxeDir(), name))
	if err != nil {
		return tftp.Content{}, fmt.Errorf("%w: %s is not in %s", tftp.ErrNotFound, name, s.ipxeDir())
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return tftp.Content{}, fmt.Errorf("%w: %s", tftp.ErrNotFound, name)
	}
	return tftp.Content{R: f, Size: fi.Size(), Close: func() { f.Close() }}, nil
}

// defaultBootcode serves bootcode.bin from the configured default image to
// a Pi 3 we cannot place yet: it is generic firmware, the same for all.
func (s *Server) defaultBootcode() (tftp.Content, error) {
	im, err := s.resolveImage(s.cfg.DefaultImage)
	if err != nil {
		return tftp.Content{}, fmt.Errorf("%w: default image %s: %v", tftp.ErrNotFound, s.cfg.DefaultImage, err)
	}
	f, err := s.openFile(im, bootfiles.Location{Part: bootfiles.PartBoot, Path: "/bootcode.bin"})
	if err != nil {
		return tftp.Content{}, fmt.Errorf("%w: bootcode.bin in default image %s: %v", tftp.ErrNotFound, im.ID, err)
	}
	return tftp.Content{R: f, Size: f.Size, Close: f.Close}, nil
}

// tftpDone turns a finished transfer into metrics and an event.
func (s *Server) tftpDone(t tftp.Transfer) {
	s.metrics.tftpActive.Dec()
	s.metrics.tftpTransfers.WithLabelValues(t.Outcome).Inc()
	s.metrics.tftpBytes.Add(float64(t.Bytes))
	machine := t.Machine
	var re *resolveErr
	if errors.As(t.Err, &re) && machine == "" {
		machine = re.machine
	}
	if machine == "" && t.Outcome == tftp.OutcomeRefused {
		if m, ok := s.machineByIP(t.Remote.Addr()); ok {
			machine = m.ID
		}
	}
	fields := map[string]string{"file": t.Filename, "remote": t.Remote.String(), "outcome": t.Outcome}
	msg := t.Filename + ": " + t.Outcome
	switch t.Outcome {
	case tftp.OutcomeServed:
		fields["bytes"] = itoa(t.Bytes)
		fields["blksize"] = itoa(int64(t.BlockSize))
		fields["windowsize"] = itoa(int64(t.WindowSize))
		msg = fmt.Sprintf("%s served (%d bytes, blksize %d, windowsize %d, %s)", t.Filename, t.Bytes, t.BlockSize, t.WindowSize, t.Duration.Round(time.Millisecond))
	case tftp.OutcomeProbe:
		msg = t.Filename + ": existence probe answered"
	default:
		if t.Err != nil {
			fields["reason"] = t.Err.Error()
			msg += ": " + t.Err.Error()
		}
	}
	typ := "tftp." + t.Outcome
	s.event(machine, typ, msg, fields)
	if t.Outcome == tftp.OutcomeFailed {
		s.log.Warn("tftp transfer failed", "file", t.Filename, "remote", t.Remote, "machine", machine, "error", t.Err)
	} else {
		s.log.Debug("tftp transfer", "file", t.Filename, "remote", t.Remote, "machine", machine, "outcome", t.Outcome)
	}
}

// ipxeMachine finds the machine an iPXE request is for and checks that it
// may boot. Boot endpoints have no token (firmware cannot send one), so
// they answer only machines that exist and are in netboot mode.
func (s *Server) ipxeMachine(w http.ResponseWriter, r *http.Request, ref string) (store.Machine, store.Image, bool) {
	id, kind, err := netboot.ParseMachineID(ref)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return store.Machine{}, store.Image{}, false
	}
	var m store.Machine
	found := false
	if kind == netboot.KindMAC {
		m, found = s.machineByMAC(id)
	} else if mm, err := s.store.Machine(id); err == nil {
		m, found = mm, true
	}
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	if !found {
		if kind == netboot.KindMAC {
			s.discover(id, func(m *store.Machine) { m.MAC = id }, "iPXE")
		}
		http.Error(w, "unknown machine", http.StatusNotFound)
		return store.Machine{}, store.Image{}, false
	}
	s.seen(m.ID, remote.Addr(), nil)
	im, why := s.bootable(m)
	if why == "" && im.Kernel == "" {
		why = "image " + im.ID + " has no kernel for iPXE"
	}
	if why != "" {
		s.event(m.ID, "http.refused", r.URL.Path+": "+why, map[string]string{"remote": r.RemoteAddr})
		http.Error(w, why, http.StatusNotFound)
		return store.Machine{}, store.Image{}, false
	}
	return m, im, true
}

func (s *Server) handleIPXEScript(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("mac")
	if ref == "" {
		ref = r.URL.Query().Get("id")
	}
	m, im, ok := s.ipxeMachine(w, r, ref)
	if !ok {
		return
	}
	// The base command line: the image's cmdline.txt if it has one.
	base, err := s.lib.ReadFile(im.SHA256, s.imagePath(im), bootfiles.Location{Part: bootfiles.PartBoot, Path: "/cmdline.txt"}, maxTextFile)
	if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		s.log.Warn("reading cmdline.txt for iPXE failed", "machine", m.ID, "image", im.ID, "error", err)
	}
	cmdline := strings.TrimSpace(string(s.renderCmdline(m, base)))
	prefix := s.baseURL + "/boot/" + url.PathEscape(m.ID)
	initrd := ""
	if im.Initrd != "" {
		initrd = prefix + "/initrd"
	}
	script := bootfiles.IPXEScript(prefix+"/kernel", initrd, cmdline)
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, script)
	s.event(m.ID, "http.ipxe", "iPXE script served", map[string]string{"remote": r.RemoteAddr})
}

func (s *Server) handleBootFile(w http.ResponseWriter, r *http.Request) {
	m, im, ok := s.ipxeMachine(w, r, r.PathValue("id"))
	if !ok {
		return
	}
	var ref string
	switch r.PathValue("file") {
	case "kernel":
		ref = im.Kernel
	case "initrd":
		ref = im.Initrd
	}
	if ref == "" {
		http.NotFound(w, r)
		return
	}
	loc, err := bootfiles.ParseLocation(ref)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f, err := s.openFile(im, loc)
	if err != nil {
		s.event(m.ID, "http.refused", r.URL.Path+": "+err.Error(), nil)
		http.Error(w, "cannot read "+r.PathValue("file"), http.StatusNotFound)
		return
	}
	defer f.Close()
	cw := &countingWriter{ResponseWriter: w}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(cw, r, r.PathValue("file"), im.Created, io.NewSectionReader(f, 0, f.Size))
	s.metrics.bootBytes.Add(float64(cw.n))
	s.event(m.ID, "http.served", fmt.Sprintf("%s served over HTTP (%d bytes)", r.PathValue("file"), cw.n),
		map[string]string{"file": r.PathValue("file"), "bytes": itoa(cw.n), "remote": r.RemoteAddr})
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}
