package deb

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/internal/compress"
)

// Package is a parsed .deb: its control metadata and where its data is.
type Package struct {
	// Path is the .deb file; r reads it.
	Path string
	r    io.ReaderAt
	// Control is the parsed control file.
	Control *Paragraph
	// ControlFiles are the other files of control.tar (md5sums,
	// conffiles, maintainer scripts, triggers...) by name, with their
	// mode.
	ControlFiles map[string]ControlFile
	// Data is the data.tar member; DataFormat its compression ("" for
	// none, gz, xz, zst, bz2).
	Data       Member
	DataFormat string
}

// ControlFile is one file of control.tar.
type ControlFile struct {
	Data []byte
	Mode int64
}

// Name, Version and Architecture are shorthands for control fields.
func (p *Package) Name() string         { return p.Control.Get("Package") }
func (p *Package) Version() string      { return p.Control.Get("Version") }
func (p *Package) Architecture() string { return p.Control.Get("Architecture") }

// InfoName is the package's name in /var/lib/dpkg/info: NAME, or
// NAME:ARCH for Multi-Arch: same packages.
func (p *Package) InfoName() string {
	if strings.EqualFold(p.Control.Get("Multi-Arch"), "same") {
		return p.Name() + ":" + p.Architecture()
	}
	return p.Name()
}

// Conffiles lists the package's configuration files.
func (p *Package) Conffiles() []string {
	var out []string
	for _, l := range strings.Split(string(p.ControlFiles["conffiles"].Data), "\n") {
		l = strings.TrimSpace(l)
		// dpkg ≥ 1.20 allows "remove-on-upgrade /path" flags.
		if f := strings.Fields(l); len(f) > 0 {
			l = f[len(f)-1]
		}
		if strings.HasPrefix(l, "/") {
			out = append(out, l)
		}
	}
	return out
}

// Maintainer scripts and other control files dpkg keeps in its info
// directory.
var infoFiles = []string{"preinst", "postinst", "prerm", "postrm", "config", "templates", "triggers", "shlibs", "symbols", "md5sums", "conffiles"}

var (
	pkgNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	versionRE = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$`)
	archRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// Open reads a .deb's structure and control data. The data is read
// later, by Install.
func Open(path string) (*Package, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	p, err := Parse(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	p.Path = path
	return p, f, nil
}

// Parse reads a .deb of the given size from r.
func Parse(r io.ReaderAt, size int64) (*Package, error) {
	members, err := ReadMembers(r, size)
	if err != nil {
		return nil, err
	}
	if len(members) < 3 || members[0].Name != "debian-binary" {
		return nil, fmt.Errorf("%w: the first member must be debian-binary", ErrFormat)
	}
	ver := make([]byte, min(members[0].Size, 16))
	if _, err := r.ReadAt(ver, members[0].Offset); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if !bytes.HasPrefix(ver, []byte("2.")) {
		return nil, fmt.Errorf("%w: format version %q (want 2.x)", ErrFormat, bytes.TrimSpace(ver))
	}
	p := &Package{r: r, ControlFiles: map[string]ControlFile{}}
	var control *Member
	haveData := false
	for i := range members[1:] {
		m := members[1+i]
		switch {
		case strings.HasPrefix(m.Name, "control.tar"):
			if control != nil {
				return nil, fmt.Errorf("%w: two control members", ErrFormat)
			}
			control = &members[1+i]
		case strings.HasPrefix(m.Name, "data.tar"):
			if haveData {
				return nil, fmt.Errorf("%w: two data members", ErrFormat)
			}
			format, err := memberFormat(m.Name, "data.tar")
			if err != nil {
				return nil, err
			}
			p.Data, p.DataFormat, haveData = m, format, true
		case strings.HasPrefix(m.Name, "_"):
			// Reserved for signatures and the like; ignored by dpkg too.
		default:
			return nil, fmt.Errorf("%w: unexpected member %q", ErrFormat, m.Name)
		}
	}
	if control == nil || !haveData {
		return nil, fmt.Errorf("%w: missing control.tar or data.tar", ErrFormat)
	}
	if control.Size > maxControlBytes {
		return nil, fmt.Errorf("%w: control.tar is %d bytes (limit %d)", ErrFormat, control.Size, maxControlBytes)
	}
	format, err := memberFormat(control.Name, "control.tar")
	if err != nil {
		return nil, err
	}
	if err := p.readControl(io.NewSectionReader(r, control.Offset, control.Size), format); err != nil {
		return nil, err
	}
	return p, nil
}

func memberFormat(name, prefix string) (string, error) {
	switch strings.TrimPrefix(name, prefix) {
	case "":
		return compress.None, nil
	case ".gz":
		return compress.Gzip, nil
	case ".xz":
		return compress.Xz, nil
	case ".zst":
		return compress.Zstd, nil
	case ".bz2":
		return compress.Bzip2, nil
	}
	return "", fmt.Errorf("%w: member %s has an unsupported compression", ErrFormat, name)
}

// readControl reads control.tar into memory (bounded) and parses the
// control file.
func (p *Package) readControl(r io.Reader, format string) error {
	dec, err := compress.ReaderFor(r, format)
	if err != nil {
		return fmt.Errorf("%w: control.tar: %v", ErrFormat, err)
	}
	defer dec.Close()
	tr := tar.NewReader(io.LimitReader(dec, maxControlBytes))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: control.tar: %v", ErrFormat, err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if h.Typeflag == tar.TypeDir || name == "." {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return fmt.Errorf("%w: control.tar: %s is not a regular file", ErrFormat, h.Name)
		}
		if strings.Contains(name, "/") || name == ".." {
			return fmt.Errorf("%w: control.tar: unexpected path %q", ErrFormat, h.Name)
		}
		if h.Size > maxControlFile {
			return fmt.Errorf("%w: control.tar: %s is %d bytes (limit %d)", ErrFormat, name, h.Size, maxControlFile)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxControlFile+1))
		if err != nil {
			return fmt.Errorf("%w: control.tar: %s: %v", ErrFormat, name, err)
		}
		p.ControlFiles[name] = ControlFile{Data: b, Mode: h.Mode}
	}
	cf, ok := p.ControlFiles["control"]
	if !ok {
		return fmt.Errorf("%w: control.tar has no control file", ErrFormat)
	}
	delete(p.ControlFiles, "control")
	para, err := ParseParagraph(cf.Data)
	if err != nil {
		return fmt.Errorf("%w: control: %v", ErrFormat, err)
	}
	p.Control = para
	for _, f := range []struct {
		name string
		re   *regexp.Regexp
	}{{"Package", pkgNameRE}, {"Version", versionRE}, {"Architecture", archRE}} {
		v := para.Get(f.name)
		if v == "" {
			return fmt.Errorf("%w: control: no %s field", ErrFormat, f.name)
		}
		if !f.re.MatchString(v) {
			return fmt.Errorf("%w: control: %s %q is not valid", ErrFormat, f.name, v)
		}
	}
	return nil
}

// Field is one field of a deb822 paragraph; Value keeps continuation
// lines (with their leading space) after the first line's value.
type Field struct {
	Name  string
	Value string
}

// Paragraph is a deb822 paragraph (a control file, one status entry),
// fields in their original order.
type Paragraph struct {
	Fields []Field
}

// Get returns a field's value ("" when absent); names are
// case-insensitive.
func (p *Paragraph) Get(name string) string {
	for _, f := range p.Fields {
		if strings.EqualFold(f.Name, name) {
			return strings.TrimSpace(f.Value)
		}
	}
	return ""
}

// Has reports whether the paragraph has the field.
func (p *Paragraph) Has(name string) bool {
	for _, f := range p.Fields {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// Set replaces a field's value, or inserts the field after the field
// named after (appending when after is absent).
func (p *Paragraph) Set(name, value, after string) {
	for i, f := range p.Fields {
		if strings.EqualFold(f.Name, name) {
			p.Fields[i].Value = value
			return
		}
	}
	for i, f := range p.Fields {
		if strings.EqualFold(f.Name, after) {
			p.Fields = append(p.Fields[:i+1], append([]Field{{Name: name, Value: value}}, p.Fields[i+1:]...)...)
			return
		}
	}
	p.Fields = append(p.Fields, Field{Name: name, Value: value})
}

// Delete removes a field.
func (p *Paragraph) Delete(name string) {
	out := p.Fields[:0]
	for _, f := range p.Fields {
		if !strings.EqualFold(f.Name, name) {
			out = append(out, f)
		}
	}
	p.Fields = out
}

// Bytes renders the paragraph, without the blank separator line.
func (p *Paragraph) Bytes() []byte {
	var b bytes.Buffer
	for _, f := range p.Fields {
		b.WriteString(f.Name)
		b.WriteString(":")
		if f.Value != "" && !strings.HasPrefix(f.Value, "\n") {
			b.WriteString(" ")
		}
		b.WriteString(f.Value)
		b.WriteString("\n")
	}
	return b.Bytes()
}

var fieldNameRE = regexp.MustCompile(`^[!-9;-~][!-9;-~]*$`)

// ParseParagraph parses one deb822 paragraph.
func ParseParagraph(b []byte) (*Paragraph, error) {
	paras, err := ParseParagraphs(b)
	if err != nil {
		return nil, err
	}
	if len(paras) != 1 {
		return nil, fmt.Errorf("want one paragraph, found %d", len(paras))
	}
	return paras[0], nil
}

// ParseParagraphs parses a deb822 file (the dpkg status file): paragraphs
// separated by blank lines.
func ParseParagraphs(b []byte) ([]*Paragraph, error) {
	var out []*Paragraph
	var cur *Paragraph
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), maxControlFile)
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		if strings.TrimSpace(l) == "" {
			cur = nil
			continue
		}
		if strings.HasPrefix(l, "#") && cur == nil {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			if cur == nil || len(cur.Fields) == 0 {
				return nil, fmt.Errorf("line %d: continuation line without a field", line)
			}
			last := &cur.Fields[len(cur.Fields)-1]
			last.Value += "\n" + l
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || !fieldNameRE.MatchString(name) {
			return nil, fmt.Errorf("line %d: %q is not a field", line, truncate(l, 60))
		}
		if cur == nil {
			cur = &Paragraph{}
			out = append(out, cur)
		}
		if cur.Has(name) {
			return nil, fmt.Errorf("line %d: field %s repeated", line, name)
		}
		cur.Fields = append(cur.Fields, Field{Name: name, Value: strings.TrimLeft(value, " \t")})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// sortedInfoFiles lists the control files to copy into dpkg's info
// directory, in a stable order.
func (p *Package) sortedInfoFiles() []string {
	var out []string
	for _, n := range infoFiles {
		if _, ok := p.ControlFiles[n]; ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
