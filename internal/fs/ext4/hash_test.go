package ext4

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDxHashMatchesDebugfs checks every hash variant (signed and unsigned
// legacy, half_md4 and tea) against e2fsprogs' own implementation, with the
// default and an explicit seed, for names crossing the 16- and 32-byte
// block boundaries and names with high-bit bytes.
func TestDxHashMatchesDebugfs(t *testing.T) {
	needTools(t)
	img := makeImage(t, mkfsOpts{size: "4M"})
	names := []string{"a", "hello", "lost+found", "conf-00042.d", "héllo-wörld.conf", strings.Repeat("x", 15),
		strings.Repeat("y", 16), strings.Repeat("z", 17), strings.Repeat("q", 31), strings.Repeat("r", 32),
		strings.Repeat("s", 33), strings.Repeat("\xff\x80abc", 20), strings.Repeat("n", 255)}
	seeds := map[string][4]uint32{
		"":                                     {},
		"21784506-d86a-41c8-b1cb-bc7eecc39f3f": uuidSeed("21784506-d86a-41c8-b1cb-bc7eecc39f3f"),
	}
	var script strings.Builder
	type want struct {
		name    string
		version uint8
		seed    string
	}
	var order []want
	for seedStr := range seeds {
		for v := uint8(0); v <= 5; v++ {
			for _, n := range names {
				arg := ""
				if seedStr != "" {
					arg = "-s " + seedStr
				}
				fmt.Fprintf(&script, "dx_hash -h %d %s %s\n", v, arg, n)
				order = append(order, want{n, v, seedStr})
			}
		}
	}
	cmdFile := filepath.Join(t.TempDir(), "cmds")
	os.WriteFile(cmdFile, []byte(script.String()), 0o644)
	out, err := exec.Command("debugfs", "-f", cmdFile, img).Output()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`Hash of .* is (0x[0-9a-f]+) \(minor (0x[0-9a-f]+)\)`)
	matches := re.FindAllStringSubmatch(string(out), -1)
	if len(matches) != len(order) {
		t.Fatalf("got %d hashes from debugfs, want %d", len(matches), len(order))
	}
	for i, w := range order {
		major, _ := strconv.ParseUint(matches[i][1], 0, 32)
		minor, _ := strconv.ParseUint(matches[i][2], 0, 32)
		gotMajor, gotMinor, _ := dxHash([]byte(w.name), w.version, seeds[w.seed])
		if gotMajor != uint32(major) || gotMinor != uint32(minor) {
			t.Errorf("dxHash(%q, v%d, seed %q) = %#x/%#x, debugfs says %#x/%#x", w.name, w.version, w.seed, gotMajor, gotMinor, major, minor)
		}
	}
}

// uuidSeed turns a UUID string into the s_hash_seed words.
func uuidSeed(s string) [4]uint32 {
	hex := strings.ReplaceAll(s, "-", "")
	var b [16]byte
	for i := range b {
		v, _ := strconv.ParseUint(hex[2*i:2*i+2], 16, 8)
		b[i] = byte(v)
	}
	var out [4]uint32
	for i := range out {
		out[i] = get32(b[:], 4*i)
	}
	return out
}
