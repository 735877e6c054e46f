package flash

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/testimage"
)

// TestCustomizeHostnameAndPut flashes three cards, each with its own
// hostname and credential file, and checks them with debugfs and mtools.
func TestCustomizeHostnameAndPut(t *testing.T) {
	testimage.Need(t, "debugfs", "mcopy", "e2fsck", "fsck.fat")
	img := sparsePiImage(t, "mbr")
	st, _ := os.Stat(img)
	src, err := OpenSource(context.Background(), img, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for n := 1; n <= 3; n++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("cred-%d.json", n)), []byte(fmt.Sprintf(`{"secret_id":"s-%d"}`, n)), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("-----BEGIN CERTIFICATE-----\n"), 0o644)
	host, err := Hostname("node-{n}")
	if err != nil {
		t.Fatal(err)
	}
	put1, _ := ParsePut("boot:/bakery/cred.json="+filepath.Join(dir, "cred-{n}.json"), DefaultPutMode)
	put2, _ := ParsePut("root:/etc/bakery/ca.pem="+filepath.Join(dir, "ca.pem"), DefaultPutMode)
	// Two image files and, where loop devices work, a block device: the
	// image engine opens it while bakery holds it exclusively.
	var targets, files []string
	for n := 1; n <= 3; n++ {
		p := filepath.Join(dir, fmt.Sprintf("card%d", n))
		garbage(t, p, st.Size(), uint64(n))
		targets, files = append(targets, p), append(files, p)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("losetup", "-f", "--show", files[2]).Output(); err == nil {
			dev := strings.TrimSpace(string(out))
			t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
			targets[2] = dev
		}
	}
	opts := testOptions()
	opts.Customizers = []Customizer{host, put1, put2}
	res := Flash(context.Background(), src, targets, opts)
	mustOK(t, res)
	for i, target := range files {
		n := i + 1
		if !res[i].Customized {
			t.Fatalf("card %d not customised", n)
		}
		if problems := fsckTarget(t, target); problems != "" {
			t.Fatalf("card %d: %s", n, problems)
		}
		boot := testimage.Extract(t, target, 4<<20, dirtyBootMiB<<20)
		root := testimage.Extract(t, target, (4+dirtyBootMiB)<<20, dirtyRootMiB<<20)
		name := fmt.Sprintf("node-%d", n)
		if got := testimage.Debugfs(t, root, "cat /etc/hostname"); got != name+"\n" {
			t.Errorf("card %d /etc/hostname = %q", n, got)
		}
		if hosts := testimage.Debugfs(t, root, "cat /etc/hosts"); !strings.Contains(hosts, "127.0.1.1\t"+name+"\n") || strings.Contains(hosts, "raspberrypi") {
			t.Errorf("card %d /etc/hosts = %q", n, hosts)
		}
		if got := testimage.Debugfs(t, root, "cat /etc/bakery/ca.pem"); got != "-----BEGIN CERTIFICATE-----\n" {
			t.Errorf("card %d ca.pem = %q", n, got)
		}
		if stat := testimage.Debugfs(t, root, "stat /etc/bakery/ca.pem"); !strings.Contains(stat, "Mode:  0600") {
			t.Errorf("card %d ca.pem mode: %s", n, stat)
		}
		if got := string(testimage.Mtype(t, boot, "/bakery/cred.json")); got != fmt.Sprintf(`{"secret_id":"s-%d"}`, n) {
			t.Errorf("card %d cred.json = %q", n, got)
		}
		meta := string(testimage.Mtype(t, boot, "/meta-data"))
		if !strings.Contains(meta, `local-hostname: "`+name+`"`) || !strings.Contains(meta, `instance-id: "bakery-`+name+`"`) || strings.Contains(meta, "golden-1") {
			t.Errorf("card %d meta-data = %q", n, meta)
		}
		user := testimage.Mtype(t, boot, "/user-data")
		if !strings.Contains(string(user), `hostname: "`+name+`"`) || strings.Contains(string(user), "golden") {
			t.Errorf("card %d user-data = %q", n, user)
		}
		if _, err := exec.LookPath("cloud-init"); err == nil {
			ud := filepath.Join(t.TempDir(), "user-data")
			os.WriteFile(ud, user, 0o644)
			if out, err := exec.Command("cloud-init", "schema", "--config-file", ud).CombinedOutput(); err != nil {
				t.Errorf("cloud-init schema rejects card %d user-data: %v\n%s", n, err, out)
			}
		}
	}
}

// TestCustomizeFailureLeavesIncomplete: a customiser error un-marks the
// card, so a half-customised card never looks finished.
func TestCustomizeFailureLeavesIncomplete(t *testing.T) {
	img := sparsePiImage(t, "mbr")
	st, _ := os.Stat(img)
	src, err := OpenSource(context.Background(), img, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "card")
	garbage(t, target, st.Size(), 1)
	put, _ := ParsePut("boot:/x="+filepath.Join(t.TempDir(), "missing-{n}"), DefaultPutMode)
	opts := testOptions()
	opts.Customizers = []Customizer{put}
	res := Flash(context.Background(), src, []string{target}, opts)
	if res[0].OK || !res[0].Incomplete || !strings.Contains(res[0].Error, "customise") {
		t.Fatalf("%+v", res[0])
	}
	if !headIsZero(t, target) {
		t.Fatal("a card whose customisation failed has a partition table")
	}
}
