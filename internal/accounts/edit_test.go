package accounts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/fs/ext4"
	"github.com/bakeryhq/bakery/internal/testimage"
)

const (
	basePasswd = "root:x:0:0:root:/root:/bin/bash\nsystemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\npi:x:1000:1000:,,,:/home/pi:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	baseShadow = "root:*:19800:0:99999:7:::\nsystemd-network:!*:19800::::::\npi:$6$salt$hash:19800:0:99999:7:::\nnobody:*:19800:0:99999:7:::\n"
	baseGroup  = "root:x:0:\nadm:x:4:pi\nshadow:x:42:\nsudo:x:27:pi\nsystemd-network:x:998:\nusers:x:100:\npi:x:1000:\n1001grp:x:1001:\nnogroup:x:65534:\n"
	baseGShad  = "root:*::\nadm:*::pi\nshadow:*::\nsudo:*::pi\nsystemd-network:!*::\nusers:*::\npi:!::\n1001grp:!::\nnogroup:*::\n"
)

func openTree(t *testing.T, files map[string]string) (fs.Filesystem, func() string) {
	t.Helper()
	testimage.Need(t, "mkfs.ext4", "e2fsck", "debugfs")
	tree := t.TempDir()
	for p, c := range files {
		full := filepath.Join(tree, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		mode := os.FileMode(0o644)
		if strings.Contains(p, "shadow") {
			mode = 0o640
		}
		if err := os.WriteFile(full, []byte(c), mode); err != nil {
			t.Fatal(err)
		}
	}
	img := testimage.Ext4Tree(t, tree, "32M")
	f, err := ext4.Open(testimage.Device(t, img), fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return f, func() string {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		testimage.E2fsck(t, img)
		return img
	}
}

func TestEnsureUserMatchesPwck(t *testing.T) {
	f, finish := openTree(t, map[string]string{
		"etc/passwd": basePasswd, "etc/shadow": baseShadow, "etc/group": baseGroup, "etc/gshadow": baseGShad,
		"etc/login.defs":     "UID_MIN 1000\nUID_MAX 60000\n",
		"etc/skel/.bashrc":   "# bashrc\n",
		"etc/skel/.config/x": "x\n",
	})
	db, err := LoadDB(f)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	ops, created, err := db.EnsureUser(NewUser{Name: "ops", Shell: "/bin/bash", Home: "/home/ops", Groups: []string{"sudo", "adm"}, LastChange: when})
	if err != nil || !created {
		t.Fatalf("ops: %v %v", created, err)
	}
	// 1000 is pi's; 1001 is free as a UID but taken as a GID, so 1002.
	if ops.UID != 1002 || ops.GID != 1002 {
		t.Errorf("ops got %d:%d, want 1002:1002", ops.UID, ops.GID)
	}
	if _, _, err := db.EnsureUser(NewUser{Name: "bad", Groups: []string{"wheel"}}); err == nil || err.Error() != `group "wheel" does not exist in the base image` {
		t.Errorf("missing group: %v", err)
	}
	// An existing user with a hash and no new one gets locked.
	if _, created, err := db.EnsureUser(NewUser{Name: "pi", LastChange: when}); err != nil || created {
		t.Fatal(err)
	}
	svc, _, err := db.EnsureUser(NewUser{Name: "consul", System: true, Home: "/var/lib/consul", Shell: "/usr/sbin/nologin"})
	if err != nil || svc.UID != 999 {
		t.Errorf("system user: %+v %v", svc, err)
	}
	if _, err := CopySkel(f, "/etc/skel", ops.Home, 0o700, ops.UID, ops.GID, when); err != nil {
		t.Fatal(err)
	}
	if err := db.Save(f, when); err != nil {
		t.Fatal(err)
	}
	img := finish()

	shadow := testimage.Debugfs(t, img, "cat /etc/shadow")
	for _, want := range []string{"ops:!:20090:0:99999:7:::\n", "pi:!:20090:", "consul:!:::::::\n"} {
		if !strings.Contains(shadow, want) {
			t.Errorf("shadow lacks %q:\n%s", want, shadow)
		}
	}
	group := testimage.Debugfs(t, img, "cat /etc/group")
	for _, want := range []string{"sudo:x:27:pi,ops\n", "adm:x:4:pi,ops\n", "ops:x:1002:\n", "consul:x:999:\n"} {
		if !strings.Contains(group, want) {
			t.Errorf("group lacks %q:\n%s", want, group)
		}
	}
	if st := testimage.Debugfs(t, img, "stat /home/ops/.config/x"); !strings.Contains(st, "User:  1002   Group:  1002") {
		t.Errorf("skel copy not owned by ops:\n%s", st)
	}
	if st := testimage.Debugfs(t, img, "stat /etc/shadow"); !strings.Contains(st, "Mode:  0640") {
		t.Errorf("shadow mode changed:\n%s", st)
	}

	// pwck and grpck (shadow-utils) judge the files' consistency.
	if _, err := exec.LookPath("pwck"); err == nil {
		dump := t.TempDir()
		os.MkdirAll(filepath.Join(dump, "etc"), 0o755)
		for _, p := range []string{"passwd", "shadow", "group", "gshadow"} {
			os.WriteFile(filepath.Join(dump, "etc", p), []byte(testimage.Debugfs(t, img, "cat /etc/"+p)), 0o600)
		}
		for _, tool := range []string{"pwck", "grpck"} {
			out, err := exec.Command(tool, "-r", "-R", dump).CombinedOutput()
			// pwck -r exits 2 when only home directories are missing in
			// the dump, and shells are not there either; anything about the
			// entries themselves fails.
			for _, line := range strings.Split(string(out), "\n") {
				if line != "" && !strings.Contains(line, "directory") && !strings.Contains(line, "does not exist") && !strings.Contains(line, "no changes") {
					t.Errorf("%s: %v: %s", tool, err, line)
				}
			}
		}
	}
}

func TestParseLoginDefs(t *testing.T) {
	d := ParseLoginDefs([]byte("# comment\nUID_MIN\t 2000\nSYS_UID_MAX 499\nGID_MAX x\n"))
	if d.UIDMin != 2000 || d.SysUIDMax != 499 || d.GIDMax != 60000 {
		t.Errorf("%+v", d)
	}
	if d := ParseLoginDefs([]byte("UID_MIN 7000\nUID_MAX 10\n")); d != DefaultLoginDefs() {
		t.Errorf("inverted range accepted: %+v", d)
	}
}
