// Package client is the Go client of the bakery serve API (/api/v1). The
// bakery CLI uses it; so can anything else that manages a bakery server.
//
//	c, err := client.New("http://boot.lan:8080", os.Getenv("BAKERY_TOKEN"))
//	img, err := c.PushImageFile(ctx, "raspios", "raspios.img", nil)
//	m, err := c.PutMachine(ctx, "3a7f91c2", client.MachineSpec{Image: img.ID})
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Image is a stored disk image.
type Image struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	Created   time.Time `json:"created"`
	BootFiles []string  `json:"boot_files"`
	Kind      string    `json:"kind"`
	Kernel    string    `json:"kernel,omitempty"`
	Initrd    string    `json:"initrd,omitempty"`
}

// MachineSpec is what an operator sets on a machine (PUT replaces it all).
type MachineSpec struct {
	Name          string            `json:"name,omitempty"`
	Image         string            `json:"image,omitempty"`
	MAC           string            `json:"mac,omitempty"`
	IP            string            `json:"ip,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	CmdlineAppend string            `json:"cmdline_append,omitempty"`
	ConfigAppend  string            `json:"config_append,omitempty"`
	// BootMode is netboot, local or once (netboot until the machine
	// reports a successful boot).
	BootMode string `json:"boot_mode,omitempty"`
	// Root is nfs (a per-machine copy-on-write root over NFS; the default
	// when the server runs NFS) or image (the image's own cmdline.txt).
	Root string `json:"root,omitempty"`
	// Power is the power driver. Secrets come back as "(redacted)";
	// sending that back keeps the stored secret.
	Power *Power `json:"power,omitempty"`
}

// Power is a machine's power driver (exec, http, tasmota, shelly) and its
// settings; see docs/power.md.
type Power struct {
	Driver   string         `json:"driver"`
	Settings map[string]any `json:"settings,omitempty"`
}

// Disk is an extra disk of a machine.
type Disk struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// Machine is a machine record: its spec plus what the server learned.
type Machine struct {
	ID string `json:"id"`
	MachineSpec
	Disks       []Disk    `json:"disks,omitempty"`
	NodeTokenID string    `json:"node_token_id,omitempty"`
	Booted      time.Time `json:"booted,omitzero"`
	Discovered  bool      `json:"discovered"`
	Model       string    `json:"model,omitempty"`
	Serial      string    `json:"serial,omitempty"`
	SeenIPs     []string  `json:"seen_ips,omitempty"`
	// DHCPIP is the address of the last DHCP request the server answered
	// for the machine: with no IP set, the one address its NFS exports
	// and node credentials trust (SeenIPs grant nothing).
	DHCPIP   string    `json:"dhcp_ip,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

// TrustedIP is the one address the server's NFS exports and credential
// endpoint answer for the machine: its IP, else its DHCP IP.
func (m Machine) TrustedIP() string {
	if m.IP != "" {
		return m.IP
	}
	return m.DHCPIP
}

// Spec returns the operator-set part of a machine, for read-modify-write.
func (m Machine) Spec() MachineSpec { return m.MachineSpec }

// Event is one entry of a boot timeline.
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Machine string            `json:"machine,omitempty"`
	Type    string            `json:"type"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// Token is an API token (without its secret).
type Token struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Scopes   []string  `json:"scopes"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// NewToken is a created token with its secret, shown once.
type NewToken struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Scopes  []string  `json:"scopes"`
	Created time.Time `json:"created"`
	Token   string    `json:"token"`
}

// Info describes a server.
type Info struct {
	Version   string `json:"version"`
	Advertise string `json:"advertise"`
	BootURL   string `json:"boot_url"`
	TFTP      string `json:"tftp"`
	DHCP      string `json:"dhcp"`
	NFS       string `json:"nfs"`
	Interface string `json:"interface,omitempty"`
}

// Error is an error answer from the server.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("server answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// IsStatus reports whether err is an API error with the given status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// Client talks to one server.
type Client struct {
	base  *url.URL
	token string
	// HTTP is the underlying client; replace it for custom TLS.
	HTTP *http.Client
}

// New returns a client for the server at base ("http://host:8080").
func New(base, token string) (*Client, error) {
	if base == "" {
		return nil, errors.New("no server address (--server or BAKERY_SERVER)")
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("server address %q: want http(s)://host:port", base)
	}
	return &Client{base: u, token: token, HTTP: &http.Client{}}, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, size int64, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	if size >= 0 && body != nil {
		req.ContentLength = size
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil && method != http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &Error{Status: resp.StatusCode, Message: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func jsonBody(v any) (io.Reader, int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, 0, err
	}
	return bytes.NewReader(b), int64(len(b)), nil
}

// Info returns server information.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var i Info
	return i, c.do(ctx, http.MethodGet, "/api/v1/info", nil, nil, -1, &i)
}

// Images lists images.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	var out []Image
	return out, c.do(ctx, http.MethodGet, "/api/v1/images", nil, nil, -1, &out)
}

// Image shows an image by id, sha256 or name.
func (c *Client) Image(ctx context.Context, ref string) (Image, error) {
	var out Image
	return out, c.do(ctx, http.MethodGet, "/api/v1/images/"+url.PathEscape(ref), nil, nil, -1, &out)
}

// DeleteImage deletes an image; it fails with 409 while a machine uses it.
func (c *Client) DeleteImage(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/images/"+url.PathEscape(ref), nil, nil, -1, nil)
}

// Progress is told how many bytes are done of total.
type Progress func(done, total int64)

type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	f     Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.f != nil && n > 0 {
		p.f(p.done, p.total)
	}
	return n, err
}

// PushImage streams size bytes from r as an image whose SHA-256 is sum.
func (c *Client) PushImage(ctx context.Context, name string, r io.Reader, size int64, sum string, progress Progress) (Image, error) {
	q := url.Values{"name": {name}, "sha256": {sum}}
	var out Image
	err := c.do(ctx, http.MethodPost, "/api/v1/images", q, &progressReader{r: r, total: size, f: progress}, size, &out)
	return out, err
}

// PushImageFile hashes a file and uploads it. hashing and uploading report
// progress separately (either may be nil).
func (c *Client) PushImageFile(ctx context.Context, name, path string, hashing, uploading Progress) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Image{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, &progressReader{r: f, total: fi.Size(), f: hashing}); err != nil {
		return Image{}, fmt.Errorf("hash %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Image{}, err
	}
	return c.PushImage(ctx, name, f, fi.Size(), hex.EncodeToString(h.Sum(nil)), uploading)
}

// Machines lists machines; labels filters by key=value (all must match).
func (c *Client) Machines(ctx context.Context, labels map[string]string) ([]Machine, error) {
	q := url.Values{}
	for k, v := range labels {
		q.Add("label", k+"="+v)
	}
	var out []Machine
	return out, c.do(ctx, http.MethodGet, "/api/v1/machines", q, nil, -1, &out)
}

// Machine shows a machine by serial or MAC.
func (c *Client) Machine(ctx context.Context, id string) (Machine, error) {
	var out Machine
	return out, c.do(ctx, http.MethodGet, machinePath(id), nil, nil, -1, &out)
}

// PutMachine creates or replaces a machine's spec.
func (c *Client) PutMachine(ctx context.Context, id string, spec MachineSpec) (Machine, error) {
	body, n, err := jsonBody(spec)
	if err != nil {
		return Machine{}, err
	}
	var out Machine
	return out, c.do(ctx, http.MethodPut, machinePath(id), nil, body, n, &out)
}

// DeleteMachine deletes a machine and its events.
func (c *Client) DeleteMachine(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, machinePath(id), nil, nil, -1, nil)
}

// Events returns a machine's boot timeline, oldest first (limit 0: all kept).
func (c *Client) Events(ctx context.Context, id string, limit int) ([]Event, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out []Event
	return out, c.do(ctx, http.MethodGet, machinePath(id, "events"), q, nil, -1, &out)
}

// ServerEvents returns events that belong to no machine.
func (c *Client) ServerEvents(ctx context.Context, limit int) ([]Event, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out []Event
	return out, c.do(ctx, http.MethodGet, "/api/v1/events", q, nil, -1, &out)
}

// Tokens lists tokens.
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out []Token
	return out, c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, nil, -1, &out)
}

// CreateToken creates a token; the secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, name string, scopes []string) (NewToken, error) {
	body, n, err := jsonBody(map[string]any{"name": name, "scopes": scopes})
	if err != nil {
		return NewToken{}, err
	}
	var out NewToken
	return out, c.do(ctx, http.MethodPost, "/api/v1/tokens", nil, body, n, &out)
}

// DeleteToken deletes a token.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil, -1, nil)
}

// RootUsage is the size of a machine's copy-on-write root layer.
type RootUsage struct {
	Bytes       int64  `json:"bytes"`
	Files       int    `json:"files"`
	Whiteouts   int    `json:"whiteouts"`
	Data        int    `json:"data"`
	Image       string `json:"image,omitempty"`
	Export      string `json:"export,omitempty"`
	Connections int    `json:"connections"`
}

// ResetResult is the answer to a reset.
type ResetResult struct {
	Machine     string    `json:"machine"`
	Export      string    `json:"export"`
	Adjustments []string  `json:"adjustments"`
	Usage       RootUsage `json:"usage"`
}

// DiskInfo describes an extra disk and where the machine mounts it.
type DiskInfo struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Export string `json:"export"`
	File   string `json:"file"`
}

// PowerResult is the outcome of a power action.
type PowerResult struct {
	Machine string `json:"machine"`
	Action  string `json:"action"`
	Driver  string `json:"driver"`
	OK      bool   `json:"ok"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// NodeToken is a machine's new node token (scope node:<id>), shown once.
type NodeToken struct {
	NewToken
	Machine       string `json:"machine"`
	WrittenToRoot bool   `json:"written_to_root"`
}

func machinePath(id string, rest ...string) string {
	p := "/api/v1/machines/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// ResetMachine discards a machine's root layer: a fresh root from its
// image. Without force the server refuses while the machine is connected.
func (c *Client) ResetMachine(ctx context.Context, id string, force bool) (ResetResult, error) {
	q := url.Values{}
	if force {
		q.Set("force", "true")
	}
	var out ResetResult
	return out, c.do(ctx, http.MethodPost, machinePath(id, "reset"), q, nil, -1, &out)
}

// RootUsage reports the size of a machine's root layer.
func (c *Client) RootUsage(ctx context.Context, id string) (RootUsage, error) {
	var out RootUsage
	return out, c.do(ctx, http.MethodGet, machinePath(id, "root", "usage"), nil, nil, -1, &out)
}

// PutDisk creates a sparse extra disk of size bytes, or grows one.
func (c *Client) PutDisk(ctx context.Context, id, name string, size int64) (DiskInfo, error) {
	body, n, err := jsonBody(map[string]int64{"size": size})
	if err != nil {
		return DiskInfo{}, err
	}
	var out DiskInfo
	return out, c.do(ctx, http.MethodPut, machinePath(id, "disks", url.PathEscape(name)), nil, body, n, &out)
}

// DeleteDisk deletes an extra disk.
func (c *Client) DeleteDisk(ctx context.Context, id, name string) error {
	return c.do(ctx, http.MethodDelete, machinePath(id, "disks", url.PathEscape(name)), nil, nil, -1, nil)
}

// Power runs a power action: on, off, cycle or status.
func (c *Client) Power(ctx context.Context, id, action string) (PowerResult, error) {
	body, n, err := jsonBody(map[string]string{"action": action})
	if err != nil {
		return PowerResult{}, err
	}
	var out PowerResult
	return out, c.do(ctx, http.MethodPost, machinePath(id, "power"), nil, body, n, &out)
}

// Booted reports that the machine booted (ends boot mode once). Machines
// call it with their node token.
func (c *Client) Booted(ctx context.Context, id string) (Machine, error) {
	var out Machine
	return out, c.do(ctx, http.MethodPost, machinePath(id, "booted"), nil, nil, -1, &out)
}

// CreateNodeToken makes a new node token for a machine (admin).
func (c *Client) CreateNodeToken(ctx context.Context, id string) (NodeToken, error) {
	var out NodeToken
	return out, c.do(ctx, http.MethodPost, machinePath(id, "node-token"), nil, nil, -1, &out)
}
