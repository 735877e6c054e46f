package spec

import (
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
)

// User is a login account to create (or, for an existing name such as
// root, to update):
//
//	user "ops" {
//	  groups              = ["sudo", "adm"]
//	  ssh_authorized_keys = [file("keys/ops.pub")]
//	  sudo                = "nopasswd"
//	}
type User struct {
	Block
	Name string `hcl:"name,label" json:"name"`
	// Groups are supplementary groups; each must exist in the base image.
	Groups []string `hcl:"groups" json:"groups,omitempty"`
	// SSHAuthorizedKeys are authorized_keys lines (options allowed).
	SSHAuthorizedKeys []string `hcl:"ssh_authorized_keys" json:"ssh_authorized_keys,omitempty"`
	// PasswordHash is a crypt(3) hash ("$6$...", "$y$..."); without one
	// the password is locked. Treated as secret.
	PasswordHash string `hcl:"password_hash,sensitive" json:"password_hash,omitempty"`
	// Sudo is "nopasswd", "password" or "none" (default).
	Sudo string `hcl:"sudo" json:"sudo"`
	// Shell is the login shell (default /bin/bash).
	Shell string `hcl:"shell" json:"shell"`
	// UID is fixed when set; otherwise the next free UID is used.
	UID *int `hcl:"uid" json:"uid,omitempty"`
	// Home defaults to /home/NAME.
	Home string `hcl:"home" json:"home"`
	// GECOS is the full-name field of passwd (extension).
	GECOS string `hcl:"gecos" json:"gecos,omitempty"`
}

// Sudo settings.
const (
	SudoNone     = "none"
	SudoPassword = "password"
	SudoNopasswd = "nopasswd"
)

var (
	userNameRE     = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
	groupNameRE    = regexp.MustCompile(`^[a-z_][a-z0-9_-]*\$?$`)
	passwordHashRE = regexp.MustCompile(`^\$(1|2[abxy]|5|6|7|y|gy|sha1|md5)\$[./A-Za-z0-9$=,+-]+$`)
)

func (u *User) setDefaults() {
	u.Sudo = SudoNone
	u.Shell = "/bin/bash"
}

func (u *User) check(c *checks) {
	b := &u.Block
	if !userNameRE.MatchString(u.Name) || len(u.Name) > 32 {
		c.errorf(b, "", "user name %q is not valid: use lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters", u.Name)
	}
	if !b.IsSet("home") {
		u.Home = "/home/" + u.Name
		if u.Name == "root" {
			u.Home = "/root"
		}
	} else if b.Known("home") {
		checkAbsPath(c, b, "home", u.Home)
	}
	if b.Known("shell") {
		checkAbsPath(c, b, "shell", u.Shell)
	}
	checkEnum(c, b, "sudo", u.Sudo, SudoNopasswd, SudoPassword, SudoNone)
	if u.Sudo == SudoPassword && b.Known("sudo") && !b.IsSet("password_hash") {
		c.errorf(b, "sudo", `sudo = "password" needs a password_hash: without one the password is locked and sudo could never be used`)
	}
	seen := map[string]bool{}
	for i, g := range u.Groups {
		key := elemKey("groups", i)
		if !groupNameRE.MatchString(g) || len(g) > 32 {
			c.errorf(b, key, "group name %q is not valid", g)
		} else if seen[g] {
			c.errorf(b, key, "group %q is listed twice", g)
		}
		seen[g] = true
	}
	for i, k := range u.SSHAuthorizedKeys {
		key := elemKey("ssh_authorized_keys", i)
		line := strings.TrimSpace(k)
		if strings.Contains(line, "\n") {
			c.errorf(b, key, "ssh_authorized_keys[%d] holds several lines; give one key per list element (split(\"\\n\", trimspace(file(...))) does that)", i)
			continue
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil {
			c.errorf(b, key, "ssh_authorized_keys[%d] is not an SSH public key; want a line such as \"ssh-ed25519 AAAA... you@host\"", i)
		}
	}
	if b.Known("password_hash") && !passwordHashRE.MatchString(u.PasswordHash) {
		// Never quote the value: it is secret.
		c.errorf(b, "password_hash", `password_hash is not a crypt(3) hash such as "$6$..." or "$y$..." (make one with: mkpasswd -m sha-512, or openssl passwd -6); plain passwords are not accepted`)
	} else if b.Known("password_hash") && strings.HasPrefix(u.PasswordHash, "$1$") {
		c.warnf(b, "password_hash", "password_hash uses MD5 ($1$), which is weak; prefer $6$ (SHA-512) or $y$ (yescrypt)")
	}
	if u.UID != nil && (*u.UID < 0 || *u.UID > 60000) {
		c.errorf(b, "uid", "uid %d is out of range (0-60000)", *u.UID)
	}
}

func checkUIDs(c *checks, users []User) {
	seen := map[int]*User{}
	for i := range users {
		u := &users[i]
		if u.UID == nil {
			continue
		}
		if prev, dup := seen[*u.UID]; dup {
			c.errorf(&u.Block, "uid", "uid %d is also given to user %q", *u.UID, prev.Name)
		}
		seen[*u.UID] = u
	}
}
