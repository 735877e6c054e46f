package bmap

import (
	"bytes"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// maxDepth bounds element nesting; real files nest three deep.
const maxDepth = 16

// ParseFile reads and verifies a .bmap file.
func ParseFile(path string) (*Bmap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open bmap: %w", err)
	}
	defer f.Close()
	b, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("bmap %s: %w", path, err)
	}
	return b, nil
}

// Parse reads a .bmap document (at most MaxFileSize bytes), checks it for
// consistency and verifies its file checksum the way bmaptool does.
func Parse(r io.Reader) (*Bmap, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: file is larger than %d bytes", ErrInvalid, MaxFileSize)
	}
	return ParseBytes(data)
}

// rawBmap holds the text of each element before interpretation.
type rawBmap struct {
	version string
	fields  map[string]string
	ranges  []rawRange
}

type rawRange struct {
	text   string
	chksum string
	sha1   string
}

// scalarFields are the root's children that hold one value.
var scalarFields = map[string]bool{
	"ImageSize": true, "BlockSize": true, "BlocksCount": true, "MappedBlocksCount": true,
	"ChecksumType": true, "BmapFileChecksum": true, "BmapFileSHA1": true,
}

// ParseBytes is Parse on a document in memory.
func ParseBytes(data []byte) (*Bmap, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: file is larger than %d bytes", ErrInvalid, MaxFileSize)
	}
	raw, err := scan(data)
	if err != nil {
		return nil, err
	}
	b, err := interpret(raw)
	if err != nil {
		return nil, err
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if b.ChecksumType != "" {
		if err := verifyFileChecksum(data, b.ChecksumType, b.FileChecksum); err != nil {
			return nil, err
		}
	}
	b.Complete = bytes.Contains(data, []byte(completeMarker))
	return b, nil
}

// scan walks the XML tokens, collecting the known elements and refusing
// duplicates, deep nesting and too many ranges as it goes.
func scan(data []byte) (*rawBmap, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	raw := &rawBmap{fields: map[string]string{}}
	var (
		stack    []string // element names from the root down
		text     strings.Builder
		cur      *rawRange
		sawRoot  bool
		inBlocks bool
	)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: XML: %v", ErrInvalid, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= maxDepth {
				return nil, fmt.Errorf("%w: elements nested more than %d deep", ErrInvalid, maxDepth)
			}
			name := t.Name.Local
			parent := ""
			if len(stack) > 0 {
				parent = stack[len(stack)-1]
			}
			stack = append(stack, name)
			switch {
			case len(stack) == 1:
				if name != "bmap" || sawRoot {
					return nil, fmt.Errorf("%w: root element is <%s>, want <bmap>", ErrInvalid, name)
				}
				sawRoot = true
				raw.version = attr(t, "version")
			case len(stack) == 2 && scalarFields[name]:
				if _, dup := raw.fields[name]; dup {
					return nil, fmt.Errorf("%w: <%s> appears twice", ErrInvalid, name)
				}
				text.Reset()
			case len(stack) == 2 && name == "BlockMap":
				if inBlocks || raw.ranges != nil {
					return nil, fmt.Errorf("%w: <BlockMap> appears twice", ErrInvalid)
				}
				inBlocks = true
				raw.ranges = []rawRange{}
			case len(stack) == 3 && parent == "BlockMap" && name == "Range":
				if len(raw.ranges) >= MaxRanges {
					return nil, fmt.Errorf("%w: more than %d ranges", ErrInvalid, MaxRanges)
				}
				cur = &rawRange{chksum: attr(t, "chksum"), sha1: attr(t, "sha1")}
				text.Reset()
			case len(stack) == 3 && scalarFields[parent], cur != nil:
				return nil, fmt.Errorf("%w: unexpected <%s> inside <%s>", ErrInvalid, name, parent)
			}
		case xml.CharData:
			if len(stack) == 2 && scalarFields[stack[1]] || cur != nil {
				if text.Len()+len(t) > 4096 {
					return nil, fmt.Errorf("%w: text of <%s> is too long", ErrInvalid, stack[len(stack)-1])
				}
				text.Write(t)
			}
		case xml.EndElement:
			name := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch {
			case len(stack) == 1 && scalarFields[name]:
				raw.fields[name] = strings.TrimSpace(text.String())
			case len(stack) == 1 && name == "BlockMap":
				inBlocks = false
			case len(stack) == 2 && cur != nil && name == "Range":
				cur.text = strings.TrimSpace(text.String())
				raw.ranges = append(raw.ranges, *cur)
				cur = nil
			}
		}
	}
	if !sawRoot {
		return nil, fmt.Errorf("%w: no <bmap> element", ErrInvalid)
	}
	return raw, nil
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// interpret turns element text into numbers, following bmaptool's rules for
// which checksum elements each format version uses.
func interpret(raw *rawBmap) (*Bmap, error) {
	major, minor, err := parseVersion(raw.version)
	if err != nil {
		return nil, err
	}
	b := &Bmap{Version: raw.version}
	for _, f := range []struct {
		name string
		dst  *int64
	}{
		{"ImageSize", &b.ImageSize}, {"BlockSize", &b.BlockSize},
		{"BlocksCount", &b.BlocksCount}, {"MappedBlocksCount", &b.MappedBlocksCount},
	} {
		s, ok := raw.fields[f.name]
		if !ok {
			return nil, fmt.Errorf("%w: <%s> is missing", ErrInvalid, f.name)
		}
		if *f.dst, err = parseCount(s); err != nil {
			return nil, fmt.Errorf("%w: <%s>: %v", ErrInvalid, f.name, err)
		}
	}
	// Format 1.4 is 2.0 released under the wrong number (see bmaptool's
	// BmapCreate.py); 1.3 had SHA1 only; earlier versions no checksums.
	var rangeAttr, fileField string
	switch {
	case major > 1 || minor == 4:
		ct, ok := raw.fields["ChecksumType"]
		if !ok {
			return nil, fmt.Errorf("%w: format %s needs <ChecksumType>", ErrInvalid, raw.version)
		}
		b.ChecksumType = strings.ToLower(ct)
		rangeAttr, fileField = "chksum", "BmapFileChecksum"
	case minor == 3:
		b.ChecksumType = SHA1
		rangeAttr, fileField = "sha1", "BmapFileSHA1"
	}
	if b.ChecksumType != "" {
		if hexLen(b.ChecksumType) == 0 {
			return nil, fmt.Errorf("%w: unsupported checksum type %q (want sha1, sha256 or sha512)", ErrInvalid, b.ChecksumType)
		}
		cs, ok := raw.fields[fileField]
		if !ok {
			return nil, fmt.Errorf("%w: format %s needs <%s>", ErrInvalid, raw.version, fileField)
		}
		b.FileChecksum = cs
	}
	if raw.ranges == nil {
		return nil, fmt.Errorf("%w: <BlockMap> is missing", ErrInvalid)
	}
	b.Ranges = make([]BlockRange, 0, len(raw.ranges))
	for i, rr := range raw.ranges {
		r, err := parseRange(rr.text)
		if err != nil {
			return nil, fmt.Errorf("%w: range %d %q: %v", ErrInvalid, i+1, rr.text, err)
		}
		switch rangeAttr {
		case "chksum":
			r.Checksum = rr.chksum
		case "sha1":
			r.Checksum = rr.sha1
		}
		b.Ranges = append(b.Ranges, r)
	}
	return b, nil
}

func parseVersion(v string) (major, minor int, err error) {
	ma, mi, ok := strings.Cut(v, ".")
	if ok {
		major, err = strconv.Atoi(ma)
		if err == nil {
			minor, err = strconv.Atoi(mi)
		}
	}
	if !ok || err != nil || major < 1 || minor < 0 {
		return 0, 0, fmt.Errorf("%w: version %q (want MAJOR.MINOR)", ErrInvalid, v)
	}
	if major > 2 {
		return 0, 0, fmt.Errorf("%w: format version %s is newer than the 2.x we support", ErrInvalid, v)
	}
	return major, minor, nil
}

// parseCount parses a non-negative decimal number of at most 18 digits.
func parseCount(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// parseRange parses "FIRST-LAST" or "BLOCK", with optional spaces around
// the dash as bmaptool allows.
func parseRange(s string) (BlockRange, error) {
	a, b, isRange := strings.Cut(s, "-")
	first, err := parseCount(strings.TrimSpace(a))
	if err != nil {
		return BlockRange{}, err
	}
	last := first
	if isRange {
		if last, err = parseCount(strings.TrimSpace(b)); err != nil {
			return BlockRange{}, err
		}
		if first > last {
			return BlockRange{}, errors.New("first block is after the last")
		}
	}
	return BlockRange{First: first, Last: last}, nil
}

// verifyFileChecksum does what bmaptool's _verify_bmap_checksum does: find
// the first occurrence of the stated checksum in the file, replace it with
// as many ASCII zeros as the digest has hex digits, hash the whole file and
// compare the hex digest with the stated checksum.
func verifyFileChecksum(data []byte, checksumType, stated string) error {
	n := hexLen(checksumType)
	if len(stated) != n {
		return fmt.Errorf("%w: file checksum %q is not %d hex digits of %s", ErrInvalid, stated, n, checksumType)
	}
	if _, err := hex.DecodeString(stated); err != nil {
		return fmt.Errorf("%w: file checksum %q is not hex", ErrInvalid, stated)
	}
	pos := bytes.Index(data, []byte(stated))
	if pos < 0 {
		// The element text was written with character references; bmaptool
		// would fail the same way.
		return fmt.Errorf("%w: file checksum text not found verbatim in the file", ErrInvalid)
	}
	h, err := NewHash(checksumType)
	if err != nil {
		return err
	}
	h.Write(data[:pos])
	h.Write(bytes.Repeat([]byte{'0'}, n))
	h.Write(data[pos+n:])
	got := hex.EncodeToString(h.Sum(nil))
	if got != stated {
		return fmt.Errorf("%w: calculated %s, file says %s", ErrChecksum, got, stated)
	}
	return nil
}
