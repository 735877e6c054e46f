package accounts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	iofs "io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// The account files, in the order they are saved.
const (
	PasswdPath  = "/etc/passwd"
	ShadowPath  = "/etc/shadow"
	GroupPath   = "/etc/group"
	GShadowPath = "/etc/gshadow"
)

// LoginDefs are the id ranges of /etc/login.defs that new accounts are
// allocated from.
type LoginDefs struct {
	UIDMin, UIDMax       uint32
	GIDMin, GIDMax       uint32
	SysUIDMin, SysUIDMax uint32
	SysGIDMin, SysGIDMax uint32
}

// DefaultLoginDefs are Debian's defaults, used for missing settings.
func DefaultLoginDefs() LoginDefs {
	return LoginDefs{UIDMin: 1000, UIDMax: 60000, GIDMin: 1000, GIDMax: 60000,
		SysUIDMin: 100, SysUIDMax: 999, SysGIDMin: 100, SysGIDMax: 999}
}

// ParseLoginDefs reads the id ranges from login.defs content.
func ParseLoginDefs(b []byte) LoginDefs {
	d := DefaultLoginDefs()
	fields := map[string]*uint32{
		"UID_MIN": &d.UIDMin, "UID_MAX": &d.UIDMax, "GID_MIN": &d.GIDMin, "GID_MAX": &d.GIDMax,
		"SYS_UID_MIN": &d.SysUIDMin, "SYS_UID_MAX": &d.SysUIDMax, "SYS_GID_MIN": &d.SysGIDMin, "SYS_GID_MAX": &d.SysGIDMax,
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if p, ok := fields[f[0]]; ok {
			if n, err := strconv.ParseUint(f[1], 10, 32); err == nil {
				*p = uint32(n)
			}
		}
	}
	if d.UIDMin > d.UIDMax || d.GIDMin > d.GIDMax || d.SysUIDMin > d.SysUIDMax || d.SysGIDMin > d.SysGIDMax {
		return DefaultLoginDefs()
	}
	return d
}

// DB holds the four account files of a root filesystem for editing. Lines
// it does not touch are written back unchanged.
type DB struct {
	Passwd, Shadow, Group, GShadow *Table
	Defs                           LoginDefs
}

// LoadDB reads passwd, shadow, group, gshadow and login.defs. Missing
// shadow files are empty tables (saved only if something is added).
func LoadDB(f fs.Filesystem) (*DB, error) {
	db := &DB{}
	var err error
	for _, x := range []struct {
		t    **Table
		path string
	}{{&db.Passwd, PasswdPath}, {&db.Shadow, ShadowPath}, {&db.Group, GroupPath}, {&db.GShadow, GShadowPath}} {
		if *x.t, err = Load(f, x.path); err != nil {
			return nil, err
		}
	}
	if len(db.Passwd.Lines) == 0 {
		return nil, fmt.Errorf("%s is missing or empty in the image", PasswdPath)
	}
	db.Defs = DefaultLoginDefs()
	if fh, err := f.Open("/etc/login.defs"); err == nil {
		b := make([]byte, min(fh.Size(), maxDBBytes))
		fh.ReadAt(b, 0)
		fh.Close()
		db.Defs = ParseLoginDefs(b)
	}
	return db, nil
}

// Save writes the four files back, keeping each file's mode and owner
// (new files: 0644 for passwd/group, 0640 root:shadow for the shadow
// files). Their modification time is mtime (zero: the filesystem default).
func (db *DB) Save(f fs.Filesystem, mtime time.Time) error {
	shadowGID := uint32(0)
	if g := db.Group.Find("shadow"); len(g) > 2 {
		if n, err := strconv.ParseUint(g[2], 10, 32); err == nil {
			shadowGID = uint32(n)
		}
	}
	for _, x := range []struct {
		t    *Table
		mode iofs.FileMode
		gid  uint32
	}{{db.Passwd, 0o644, 0}, {db.Shadow, 0o640, shadowGID}, {db.Group, 0o644, 0}, {db.GShadow, 0o640, shadowGID}} {
		attr := fs.Attr{Mode: x.mode, GID: x.gid, ModTime: mtime}
		if fi, err := f.Lstat(x.t.Path); err == nil {
			attr = fi.Attr(mtime)
		} else if len(x.t.Lines) == 0 {
			continue
		}
		if err := f.WriteFile(x.t.Path, bytes.NewReader(x.t.Bytes()), attr); err != nil {
			return fmt.Errorf("write %s: %w", x.t.Path, err)
		}
	}
	return nil
}

// ids returns the set of ids (third field) in a table.
func (t *Table) ids() map[uint32]bool {
	out := map[uint32]bool{}
	for _, l := range t.Lines {
		if len(l) > 2 {
			if n, err := strconv.ParseUint(l[2], 10, 32); err == nil {
				out[uint32(n)] = true
			}
		}
	}
	return out
}

// ErrNoFreeID is returned when an id range is exhausted.
var ErrNoFreeID = errors.New("no free id left in the range")

// NextUID returns the lowest free UID in [UID_MIN, UID_MAX] (for system
// users: the highest free one in [SYS_UID_MIN, SYS_UID_MAX], as useradd
// -r does) whose number is also free as a GID, so that the user's own
// group can share it; failing that, any free UID.
func (db *DB) NextUID(system bool) (uint32, error) {
	lo, hi := db.Defs.UIDMin, db.Defs.UIDMax
	if system {
		lo, hi = db.Defs.SysUIDMin, db.Defs.SysUIDMax
	}
	used, gused := db.Passwd.ids(), db.Group.ids()
	for _, needGID := range []bool{true, false} {
		if id, ok := scan(lo, hi, system, func(id uint32) bool { return !used[id] && (!needGID || !gused[id]) }); ok {
			return id, nil
		}
	}
	return 0, fmt.Errorf("uid %d-%d: %w", lo, hi, ErrNoFreeID)
}

// NextGID returns prefer when it is a free GID, else the next free one in
// the normal (or system) range.
func (db *DB) NextGID(system bool, prefer uint32) (uint32, error) {
	used := db.Group.ids()
	if prefer != 0 && !used[prefer] {
		return prefer, nil
	}
	lo, hi := db.Defs.GIDMin, db.Defs.GIDMax
	if system {
		lo, hi = db.Defs.SysGIDMin, db.Defs.SysGIDMax
	}
	if id, ok := scan(lo, hi, system, func(id uint32) bool { return !used[id] }); ok {
		return id, nil
	}
	return 0, fmt.Errorf("gid %d-%d: %w", lo, hi, ErrNoFreeID)
}

func scan(lo, hi uint32, down bool, free func(uint32) bool) (uint32, bool) {
	if down {
		for id := hi; id >= lo && id > 0; id-- {
			if free(id) {
				return id, true
			}
		}
		return 0, false
	}
	for id := lo; id <= hi; id++ {
		if free(id) {
			return id, true
		}
	}
	return 0, false
}

// GroupExists reports whether /etc/group has the group.
func (db *DB) GroupExists(name string) bool { return db.Group.Find(name) != nil }

// GroupID returns a group's GID.
func (db *DB) GroupID(name string) (uint32, bool) {
	g := db.Group.Find(name)
	if len(g) < 3 {
		return 0, false
	}
	n, err := strconv.ParseUint(g[2], 10, 32)
	return uint32(n), err == nil
}

// User is an entry of /etc/passwd.
type User struct {
	Name  string
	UID   uint32
	GID   uint32
	GECOS string
	Home  string
	Shell string
}

// LookupUser returns a passwd entry.
func (db *DB) LookupUser(name string) (User, bool) {
	l := db.Passwd.Find(name)
	if len(l) < 7 {
		return User{}, false
	}
	uid, err1 := strconv.ParseUint(l[2], 10, 32)
	gid, err2 := strconv.ParseUint(l[3], 10, 32)
	if err1 != nil || err2 != nil {
		return User{}, false
	}
	return User{Name: l[0], UID: uint32(uid), GID: uint32(gid), GECOS: l[4], Home: l[5], Shell: l[6]}, true
}

// Users lists every passwd entry that parses.
func (db *DB) Users() []User {
	var out []User
	for _, l := range db.Passwd.Lines {
		if u, ok := db.LookupUser(l[0]); ok {
			out = append(out, u)
		}
	}
	return out
}

// EnsureGroup returns the GID of group name, creating it (with a gshadow
// line) when missing: system groups in the system range, others in the
// normal one, preferring prefer as GID when free.
func (db *DB) EnsureGroup(name string, system bool, prefer uint32) (uint32, bool, error) {
	if gid, ok := db.GroupID(name); ok {
		return gid, false, nil
	}
	if !validName(name) {
		return 0, false, fmt.Errorf("group name %q is not valid", name)
	}
	gid, err := db.NextGID(system, prefer)
	if err != nil {
		return 0, false, err
	}
	db.Group.Lines = append(db.Group.Lines, []string{name, "x", strconv.FormatUint(uint64(gid), 10), ""})
	if db.GShadow.Find(name) == nil && (len(db.GShadow.Lines) > 0 || len(db.Shadow.Lines) > 0) {
		db.GShadow.Lines = append(db.GShadow.Lines, []string{name, "!", "", ""})
	}
	return gid, true, nil
}

// AddToGroup makes user a member of group in /etc/group and /etc/gshadow.
func (db *DB) AddToGroup(user, group string) error {
	g := db.Group.Find(group)
	if g == nil {
		return fmt.Errorf("group %q does not exist", group)
	}
	addMember(g, 3, user)
	if gs := db.GShadow.Find(group); gs != nil {
		addMember(gs, 3, user)
	}
	return nil
}

func addMember(line []string, field int, user string) {
	for len(line) <= field {
		return // malformed line: leave it alone
	}
	var members []string
	if line[field] != "" {
		members = strings.Split(line[field], ",")
	}
	if slices.Contains(members, user) {
		return
	}
	line[field] = strings.Join(append(members, user), ",")
}

// Groups lists the supplementary groups user is a member of.
func (db *DB) Groups(user string) []string {
	var out []string
	for _, l := range db.Group.Lines {
		if len(l) > 3 && slices.Contains(strings.Split(l[3], ","), user) {
			out = append(out, l[0])
		}
	}
	sort.Strings(out)
	return out
}

// NewUser describes an account to create or update.
type NewUser struct {
	Name string
	// UID is fixed when non-nil, else allocated.
	UID *uint32
	// System allocates from the system ranges (issue 7's service users).
	System bool
	GECOS  string
	Home   string
	Shell  string
	// PasswordHash is a crypt(3) hash; empty locks the password ("!").
	PasswordHash string
	// Groups are supplementary groups; each must exist.
	Groups []string
	// LastChange is the shadow "last password change" date.
	LastChange time.Time
	// UpdateShell/UpdateGECOS apply Shell/GECOS to an existing user too.
	UpdateShell, UpdateGECOS bool
}

// EnsureUser creates the user (with a primary group of the same name) or
// updates an existing one: password, shell, and group memberships.
// created reports a new account.
func (db *DB) EnsureUser(u NewUser) (user User, created bool, err error) {
	if !validName(u.Name) {
		return User{}, false, fmt.Errorf("user name %q is not valid", u.Name)
	}
	for _, g := range u.Groups {
		if !db.GroupExists(g) {
			return User{}, false, &MissingGroupError{Group: g}
		}
	}
	days := "" // unknown: aging disabled
	if !u.LastChange.IsZero() {
		days = strconv.FormatInt(u.LastChange.Unix()/86400, 10)
	}
	if existing, ok := db.LookupUser(u.Name); ok {
		l := db.Passwd.Find(u.Name)
		if u.UpdateShell && u.Shell != "" {
			l[6] = u.Shell
			existing.Shell = u.Shell
		}
		if u.UpdateGECOS {
			l[4] = u.GECOS
			existing.GECOS = u.GECOS
		}
		db.setPassword(u.Name, u.PasswordHash, days)
		for _, g := range u.Groups {
			db.AddToGroup(u.Name, g)
		}
		return existing, false, nil
	}
	var uid uint32
	if u.UID != nil {
		uid = *u.UID
		if db.Passwd.FindByID(uid) != nil {
			return User{}, false, fmt.Errorf("uid %d is already used by %q", uid, db.Passwd.FindByID(uid)[0])
		}
	} else if uid, err = db.NextUID(u.System); err != nil {
		return User{}, false, err
	}
	gid, _, err := db.EnsureGroup(u.Name, u.System, uid)
	if err != nil {
		return User{}, false, err
	}
	home, shell := u.Home, u.Shell
	if home == "" {
		home = "/home/" + u.Name
	}
	if shell == "" {
		shell = "/bin/sh"
	}
	if strings.ContainsAny(u.GECOS+home+shell, ":\n") {
		return User{}, false, fmt.Errorf("user %q: gecos, home and shell must not contain ':' or newlines", u.Name)
	}
	db.Passwd.Lines = append(db.Passwd.Lines, []string{u.Name, "x", strconv.FormatUint(uint64(uid), 10),
		strconv.FormatUint(uint64(gid), 10), u.GECOS, home, shell})
	hash := u.PasswordHash
	if hash == "" {
		hash = "!"
	}
	if u.System {
		db.Shadow.Lines = append(db.Shadow.Lines, []string{u.Name, hash, days, "", "", "", "", "", ""})
	} else {
		db.Shadow.Lines = append(db.Shadow.Lines, []string{u.Name, hash, days, "0", "99999", "7", "", "", ""})
	}
	for _, g := range u.Groups {
		db.AddToGroup(u.Name, g)
	}
	return User{Name: u.Name, UID: uid, GID: gid, GECOS: u.GECOS, Home: home, Shell: shell}, true, nil
}

// setPassword sets an existing user's hash, or locks the password when
// hash is empty (an already locked entry, "!..." or "*", is left as is).
func (db *DB) setPassword(name, hash, days string) {
	l := db.Shadow.Find(name)
	if l == nil {
		if hash == "" {
			hash = "!"
		}
		db.Shadow.Lines = append(db.Shadow.Lines, []string{name, hash, days, "0", "99999", "7", "", "", ""})
		return
	}
	for len(l) < 9 {
		l = append(l, "")
	}
	switch {
	case hash != "":
		l[1], l[2] = hash, days
	case strings.HasPrefix(l[1], "!") || strings.HasPrefix(l[1], "*"):
	default:
		l[1], l[2] = "!", days
	}
	for i, x := range db.Shadow.Lines {
		if x[0] == name {
			db.Shadow.Lines[i] = l
		}
	}
}

// MissingGroupError names a group that is not in the image.
type MissingGroupError struct{ Group string }

func (e *MissingGroupError) Error() string {
	return fmt.Sprintf("group %q does not exist in the base image", e.Group)
}

func validName(n string) bool {
	if n == "" || len(n) > 32 || n[0] == '-' {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c >= 'A' && c <= 'Z' || c == '.' || (c == '$' && i == len(n)-1)) {
			return false
		}
	}
	return true
}

// CopySkel creates home (mode) from skel the way adduser does: every
// file, directory and symlink of skel, owned by uid:gid. An existing
// home is left alone (returns false).
func CopySkel(f fs.Filesystem, skel, home string, mode iofs.FileMode, uid, gid uint32, mtime time.Time) (bool, error) {
	if _, err := f.Lstat(home); err == nil {
		return false, nil
	}
	if err := f.MkdirAll(fs.Dir(home), fs.Attr{Mode: 0o755, ModTime: mtime}); err != nil {
		return false, err
	}
	if err := f.MkdirAll(home, fs.Attr{Mode: mode, UID: uid, GID: gid, ModTime: mtime}); err != nil {
		return false, err
	}
	if _, err := f.Stat(skel); err != nil {
		return true, nil
	}
	return true, copyTree(f, skel, home, uid, gid, mtime, 0)
}

func copyTree(f fs.Filesystem, src, dst string, uid, gid uint32, mtime time.Time, depth int) error {
	if depth > 32 {
		return fmt.Errorf("%s: directory tree too deep", src)
	}
	entries, err := f.ReadDir(src)
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	for _, e := range entries {
		s, d := fs.Join(src, e.Name), fs.Join(dst, e.Name)
		attr := fs.Attr{Mode: e.Mode & (iofs.ModePerm | iofs.ModeSetgid | iofs.ModeSticky), UID: uid, GID: gid, ModTime: mtime}
		switch {
		case e.IsDir():
			if err := f.MkdirAll(d, attr); err != nil {
				return err
			}
			if err := copyTree(f, s, d, uid, gid, mtime, depth+1); err != nil {
				return err
			}
		case e.Mode&iofs.ModeSymlink != 0:
			if err := f.Symlink(e.Target, d, attr); err != nil {
				return err
			}
		case e.IsRegular():
			fh, err := f.Open(s)
			if err != nil {
				return err
			}
			err = f.WriteFile(d, fh, attr)
			fh.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}
