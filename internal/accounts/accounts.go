// Package accounts reads and edits the account databases of an image's root
// filesystem: /etc/passwd, /etc/group, /etc/shadow and /etc/gshadow.
package accounts

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
)

// maxDBBytes bounds how much of an account file we read from an image.
const maxDBBytes = 8 << 20

// Table is a colon-separated account file, kept line by line so that edits
// leave everything we did not touch byte-for-byte as it was.
type Table struct {
	Path  string
	Lines [][]string // fields of each non-empty line
}

// Load reads a colon-separated file; a missing file is an empty table.
func Load(f fs.Filesystem, path string) (*Table, error) {
	t := &Table{Path: path}
	b, err := fs.ReadLimited(f, path, maxDBBytes)
	if err != nil {
		if isNotExist(err) {
			return t, nil
		}
		return nil, err
	}
	return parseTable(path, b), nil
}

// parseTable splits a colon-separated file into its entries' fields.
func parseTable(path string, b []byte) *Table {
	t := &Table{Path: path}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		t.Lines = append(t.Lines, strings.Split(line, ":"))
	}
	return t
}

// Find returns the fields of the entry named name, or nil.
func (t *Table) Find(name string) []string {
	for _, l := range t.Lines {
		if l[0] == name {
			return l
		}
	}
	return nil
}

// FindByID returns the entry whose third field (uid or gid) is id.
func (t *Table) FindByID(id uint32) []string {
	s := strconv.FormatUint(uint64(id), 10)
	for _, l := range t.Lines {
		if len(l) > 2 && l[2] == s {
			return l
		}
	}
	return nil
}

// Bytes renders the table back to file content.
func (t *Table) Bytes() []byte {
	var b strings.Builder
	for _, l := range t.Lines {
		b.WriteString(strings.Join(l, ":"))
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// ResolveOwner turns "UID:GID", "user:group", "user" (its primary group) or
// ":group" into numeric ids, looking names up in the filesystem's own
// /etc/passwd and /etc/group (never the host's).
func ResolveOwner(f fs.Filesystem, spec string) (uid, gid uint32, err error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	var passwd, group *Table
	load := func() error {
		if passwd != nil {
			return nil
		}
		if passwd, err = Load(f, "/etc/passwd"); err != nil {
			return err
		}
		group, err = Load(f, "/etc/group")
		return err
	}
	primaryGID := uint32(0)
	if userPart != "" {
		if n, perr := strconv.ParseUint(userPart, 10, 32); perr == nil {
			uid = uint32(n)
		} else {
			if err := load(); err != nil {
				return 0, 0, err
			}
			e := passwd.Find(userPart)
			if e == nil || len(e) < 4 {
				return 0, 0, fmt.Errorf("owner %q: no user %q in the image's /etc/passwd", spec, userPart)
			}
			u, _ := strconv.ParseUint(e[2], 10, 32)
			g, _ := strconv.ParseUint(e[3], 10, 32)
			uid, primaryGID = uint32(u), uint32(g)
		}
	}
	gid = primaryGID
	if hasGroup && groupPart != "" {
		if n, perr := strconv.ParseUint(groupPart, 10, 32); perr == nil {
			gid = uint32(n)
		} else {
			if err := load(); err != nil {
				return 0, 0, err
			}
			e := group.Find(groupPart)
			if e == nil || len(e) < 3 {
				return 0, 0, fmt.Errorf("owner %q: no group %q in the image's /etc/group", spec, groupPart)
			}
			g, _ := strconv.ParseUint(e[2], 10, 32)
			gid = uint32(g)
		}
	} else if !hasGroup && userPart != "" {
		if _, perr := strconv.ParseUint(userPart, 10, 32); perr == nil {
			gid = uid
		}
	}
	return uid, gid, nil
}
