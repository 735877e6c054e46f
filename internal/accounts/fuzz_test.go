package accounts

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDB edits account files as an image may hold them (short lines,
// odd ids, duplicate names, no trailing newline): errors are fine, panics
// are not, and what is written back must parse to the same entries.
func FuzzDB(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n"),
		[]byte("root:x:0:\nsudo:x:27:pi\npi:x:1000:\n"), []byte("UID_MIN 1000\nUID_MAX 60000\n"), "pi")
	f.Add([]byte("root\nops:x\n::::::\n"), []byte("sudo\nops:x:notanumber\n"), []byte("UID_MIN 70000\n"), "ops")
	f.Fuzz(func(t *testing.T, passwd, group, defs []byte, name string) {
		db := &DB{Passwd: parseTable(PasswdPath, passwd), Shadow: parseTable(ShadowPath, passwd),
			Group: parseTable(GroupPath, group), GShadow: parseTable(GShadowPath, group), Defs: ParseLoginDefs(defs)}
		db.Users()
		db.Groups(name)
		db.NextUID(false)
		db.NextGID(true, 0)
		db.EnsureGroup("sudo", true, 27)
		u := NewUser{Name: name, Groups: []string{"sudo"}, Shell: "/bin/bash", UpdateShell: true, UpdateGECOS: true,
			LastChange: time.Unix(1700000000, 0)}
		if _, _, err := db.EnsureUser(u); err != nil {
			return
		}
		db.AddToGroup(name, "sudo")
		for _, tb := range []*Table{db.Passwd, db.Shadow, db.Group, db.GShadow} {
			out := tb.Bytes()
			again := parseTable(tb.Path, out)
			if !bytes.Equal(again.Bytes(), out) {
				t.Fatalf("%s does not survive a write and a read:\n%q\n%q", tb.Path, out, again.Bytes())
			}
		}
	})
}
