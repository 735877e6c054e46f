// Package bundletest makes release mirrors for tests: tiny ELF "binaries"
// for each architecture, packed the way HashiCorp (zip, SHA256SUMS, PGP
// signature) and Prometheus (tar.gz, sha256sums.txt) publish them, served
// over HTTP from a test server, signed by a PGP key made for the test.
package bundletest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/bakeryhq/bakery/internal/bundle"
)

// ELF returns a minimal ELF executable header for arch (with an
// .ARM.attributes section naming ARMv6 or ARMv7 for armhf), followed by
// payload so different products have different bytes.
func ELF(a bundle.Arch, payload string) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	switch a.Name {
	case "arm64", "amd64":
		machine := uint16(183) // EM_AARCH64
		if a.Name == "amd64" {
			machine = 62 // EM_X86_64
		}
		b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		binary.Write(&b, le, uint16(2))  // ET_EXEC
		binary.Write(&b, le, machine)    // e_machine
		binary.Write(&b, le, uint32(1))  // e_version
		binary.Write(&b, le, uint64(0))  // e_entry
		binary.Write(&b, le, uint64(0))  // e_phoff
		binary.Write(&b, le, uint64(0))  // e_shoff
		binary.Write(&b, le, uint32(0))  // e_flags
		binary.Write(&b, le, uint16(64)) // e_ehsize
		binary.Write(&b, le, uint16(56)) // e_phentsize
		binary.Write(&b, le, uint16(0))  // e_phnum
		binary.Write(&b, le, uint16(64)) // e_shentsize
		binary.Write(&b, le, uint16(0))  // e_shnum
		binary.Write(&b, le, uint16(0))  // e_shstrndx
	case "armhf":
		cpu := byte(6)
		if a.ARM >= 7 {
			cpu = 10
		}
		attrs := []byte{'A'}
		sub := []byte("aeabi\x00")
		sub = append(sub, 1, 7, 0, 0, 0, 6, cpu)
		attrs = binary.LittleEndian.AppendUint32(attrs, uint32(4+len(sub)))
		attrs = append(attrs, sub...)
		shstr := []byte("\x00.ARM.attributes\x00.shstrtab\x00")
		attrOff := uint32(52)
		strOff := attrOff + uint32(len(attrs))
		shOff := (strOff + uint32(len(shstr)) + 3) &^ 3
		b.Write([]byte{0x7f, 'E', 'L', 'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		binary.Write(&b, le, uint16(2))          // ET_EXEC
		binary.Write(&b, le, uint16(40))         // EM_ARM
		binary.Write(&b, le, uint32(1))          // e_version
		binary.Write(&b, le, uint32(0))          // e_entry
		binary.Write(&b, le, uint32(0))          // e_phoff
		binary.Write(&b, le, shOff)              // e_shoff
		binary.Write(&b, le, uint32(0x05000400)) // EABI5, hard float
		binary.Write(&b, le, uint16(52))
		binary.Write(&b, le, uint16(32))
		binary.Write(&b, le, uint16(0))
		binary.Write(&b, le, uint16(40))
		binary.Write(&b, le, uint16(3)) // null, .ARM.attributes, .shstrtab
		binary.Write(&b, le, uint16(2))
		b.Write(attrs)
		b.Write(shstr)
		for uint32(b.Len()) < shOff {
			b.WriteByte(0)
		}
		sh := func(name, typ, off, size uint32) {
			for _, v := range []uint32{name, typ, 0, 0, off, size, 0, 0, 1, 0} {
				binary.Write(&b, le, v)
			}
		}
		sh(0, 0, 0, 0)
		sh(1, 0x70000003, attrOff, uint32(len(attrs)))
		sh(17, 3, strOff, uint32(len(shstr)))
	default:
		panic("bundletest: no ELF for " + a.Name)
	}
	b.WriteString("\n" + payload + "\n")
	return b.Bytes()
}

// Key is a PGP key made for a test.
type Key struct {
	Entity *openpgp.Entity
	// Armored is the public key, armored (what pgp_key_file holds).
	Armored []byte
}

// NewKey makes a signing key.
func NewKey(t testing.TB, name string) *Key {
	t.Helper()
	e, err := openpgp.NewEntity(name, "test", name+"@example.com", &packet.Config{RSABits: 2048, Time: func() time.Time { return time.Unix(1700000000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return &Key{Entity: e, Armored: buf.Bytes()}
}

// Sign makes a binary detached signature.
func (k *Key) Sign(t testing.TB, data []byte) []byte {
	t.Helper()
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, k.Entity, bytes.NewReader(data), &packet.Config{Time: func() time.Time { return time.Unix(1700000100, 0) }}); err != nil {
		t.Fatal(err)
	}
	return sig.Bytes()
}

// Mirror serves release files at /{name}/{version}/{file}.
type Mirror struct {
	Server *httptest.Server
	Key    *Key
	mu     sync.Mutex
	files  map[string][]byte
	// Requests counts GETs per path.
	Requests map[string]int
}

// NewMirror starts a mirror signed by a fresh key.
func NewMirror(t testing.TB) *Mirror {
	t.Helper()
	m := &Mirror{Key: NewKey(t, "Test Releases"), files: map[string][]byte{}, Requests: map[string]int{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		b, ok := m.files[r.URL.Path]
		m.Requests[r.URL.Path]++
		m.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Unix(1700000000, 0), bytes.NewReader(b))
	}))
	t.Cleanup(m.Server.Close)
	return m
}

// Template is the mirror's URL template.
func (m *Mirror) Template() string { return m.Server.URL + "/{name}/{version}/{file}" }

// Put stores a file.
func (m *Mirror) Put(release, version, file string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files["/"+release+"/"+version+"/"+file] = data
}

// Get returns a stored file.
func (m *Mirror) Get(release, version, file string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files["/"+release+"/"+version+"/"+file]
}

// Count returns how many times a file was requested.
func (m *Mirror) Count(release, version, file string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Requests["/"+release+"/"+version+"/"+file]
}

// Release publishes name@version for the given architectures the way
// the vendor does. binaryArch, when not nil, overrides the architecture
// the packed binary is built for (to test mismatches).
func (m *Mirror) Release(t testing.TB, name, version string, arches []bundle.Arch, binaryArch func(bundle.Arch) bundle.Arch) {
	t.Helper()
	prod, err := bundle.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, a := range arches {
		files := bundle.ReleaseFiles(prod, version, a)
		ba := a
		if binaryArch != nil {
			ba = binaryArch(a)
		}
		bin := ELF(ba, prod.Binary+" "+version+" "+a.String())
		var archive []byte
		if prod.Vendor == bundle.VendorHashiCorp {
			archive = zipOf(t, map[string][]byte{prod.Binary: bin, "LICENSE.txt": []byte("license\n")})
		} else {
			top := strings.TrimSuffix(files.Archive, ".tar.gz")
			archive = tarGzOf(t, top, map[string][]byte{prod.Binary: bin, "LICENSE": []byte("license\n"), "NOTICE": []byte("notice\n")})
		}
		m.Put(prod.Release, version, files.Archive, archive)
		h := sha256.Sum256(archive)
		sums[files.Archive] = hex.EncodeToString(h[:])
	}
	var names []string
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	var list bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&list, "%s  %s\n", sums[n], n)
	}
	files := bundle.ReleaseFiles(prod, version, arches[0])
	m.Put(prod.Release, version, files.Sums, list.Bytes())
	if files.Sig != "" {
		m.Put(prod.Release, version, files.Sig, m.Key.Sign(t, list.Bytes()))
	}
}

func zipOf(t testing.TB, files map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := &zip.FileHeader{Name: n, Method: zip.Deflate, Modified: time.Unix(1700000000, 0)}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(files[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarGzOf(t testing.TB, top string, files map[string][]byte) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: top + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1700000000, 0)})
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: top + "/" + n, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(files[n])), ModTime: time.Unix(1700000000, 0)})
		tw.Write(files[n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	return buf.Bytes()
}
