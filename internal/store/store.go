// Package store keeps bakery serve's state: images, machines (configured and
// discovered), API tokens (as hashes only) and per-machine boot events. The
// embedded implementation is bbolt; the Store interface is what the server
// uses, so another backend can replace it.
package store

import (
	"errors"
	"time"
)

// Errors callers test for with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrInUse    = errors.New("in use")
)

// SchemaVersion is the layout this code reads and writes. Open refuses a
// database written by a newer version and migrates older ones.
const SchemaVersion = 1

// Image is an uploaded disk image, stored content-addressed.
type Image struct {
	ID      string    `json:"id"` // first 12 hex digits of SHA256
	Name    string    `json:"name"`
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"` // stored at DATA/images/sha256/<SHA256>.img
	Created time.Time `json:"created"`
	// BootFiles lists the boot-relevant files found in the boot partition.
	BootFiles []string `json:"boot_files"`
	// Kind is "pi" (Pi firmware found), "pxe" (a kernel for iPXE) or "pi+pxe".
	Kind string `json:"kind"`
	// Kernel and Initrd are what an iPXE client boots, as "boot:/path" or
	// "root:/path" (partition role and path); empty for Pi-only images.
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
}

// Boot modes.
const (
	BootNetboot = "netboot"
	BootLocal   = "local"
	// BootOnce netboots until the machine reports a successful boot
	// (POST /machines/{id}/booted sets Machine.Booted); then it is ignored.
	BootOnce = "once"
)

// Root modes.
const (
	RootNFS   = "nfs"
	RootImage = "image"
)

// Machine is a netboot client: a Pi keyed by serial or anything keyed by MAC.
type Machine struct {
	ID string `json:"id"`
	// Operator-set fields (PUT /machines/{id}).
	Name          string            `json:"name,omitempty"`
	Image         string            `json:"image,omitempty"` // image id
	MAC           string            `json:"mac,omitempty"`
	IP            string            `json:"ip,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	CmdlineAppend string            `json:"cmdline_append,omitempty"`
	ConfigAppend  string            `json:"config_append,omitempty"`
	BootMode      string            `json:"boot_mode"`
	// Root is how the machine gets its root filesystem: "nfs" (its own
	// copy-on-write layer over the image, served by the built-in NFS
	// server; the default when bakery serve runs NFS) or "image" (the
	// image's cmdline.txt unchanged: the root is on the machine's disk).
	Root string `json:"root,omitempty"`
	// Power is the power driver (POST /machines/{id}/power).
	Power *Power `json:"power,omitempty"`
	// Disks are extra disks exported over NFS (PUT /machines/{id}/disks/{name}).
	Disks []Disk `json:"disks,omitempty"`
	// NodeTokenID is the machine's own API token (scope node:<id>).
	NodeTokenID string `json:"node_token_id,omitempty"`

	// Learned by the server.
	Discovered bool     `json:"discovered"` // created by DHCP/TFTP, not yet configured
	Model      string   `json:"model,omitempty"`
	Serial     string   `json:"serial,omitempty"`
	SeenIPs    []string `json:"seen_ips,omitempty"` // addresses seen in DHCP, TFTP and HTTP boot traffic, newest first; shown only, they grant nothing
	// DHCPIP is the address of the last DHCP request the server answered
	// for the machine (or its NFS-root kernel's own DHCP request). When IP
	// is empty it is the one address the machine's NFS exports and node
	// credential answer; when IP is set it grants nothing.
	DHCPIP   string    `json:"dhcp_ip,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Booted is when the machine last reported a successful boot; for boot
	// mode once it means "done, boot locally from now on".
	Booted  time.Time `json:"booted,omitzero"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// Power is a machine's power driver: exec, http, tasmota or shelly, with
// its settings (see internal/power and docs/power.md).
type Power struct {
	Driver   string         `json:"driver"`
	Settings map[string]any `json:"settings,omitempty"`
}

// Disk is an extra disk: a sparse image file exported to the machine.
type Disk struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// Token scopes, in increasing power.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
	ScopeAdmin = "admin"
)

// Token is an API token. Only the SHA-256 of the secret is stored.
type Token struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Scopes   []string  `json:"scopes"`
	Hash     string    `json:"hash,omitempty"` // hex SHA-256 of the plaintext
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
	// Machine, when set, limits a node token to one machine (scope
	// node:<id>).
	Machine string `json:"machine,omitempty"`
}

// Event is one entry in a machine's boot timeline.
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Machine string            `json:"machine,omitempty"`
	Type    string            `json:"type"` // dhcp.answered, tftp.served, api.machine.put, ...
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// ServerEvents is the pseudo machine id under which events that belong to
// no machine (a refused request from an unknown address) are kept.
const ServerEvents = "_server"

// Store is what the server needs from its state.
type Store interface {
	PutImage(Image) error
	Image(id string) (Image, error)
	Images() ([]Image, error)
	// DeleteImage fails with ErrInUse while a machine refers to the image.
	DeleteImage(id string) error

	Machine(id string) (Machine, error)
	Machines() ([]Machine, error)
	// UpdateMachine runs fn on the current record (a zero Machine with the
	// id set and exists false if there is none) and stores the result
	// atomically. If fn returns an error nothing is written.
	UpdateMachine(id string, fn func(m *Machine, exists bool) error) (Machine, error)
	DeleteMachine(id string) error

	PutToken(Token) error
	TokenByHash(hash string) (Token, error)
	Tokens() ([]Token, error)
	DeleteToken(id string) error

	// AppendEvents adds events and drops the oldest beyond the retention.
	AppendEvents(evs ...Event) error
	// Events returns up to limit most recent events of a machine, oldest first.
	Events(machine string, limit int) ([]Event, error)

	Close() error
}
