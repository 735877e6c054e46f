package spec

// SSH configures the OpenSSH server. Without an ssh block, sshd is enabled
// with key-only authentication:
//
//	ssh {
//	  enabled                 = true
//	  password_authentication = false
//	}
type SSH struct {
	Block
	// Enabled starts sshd at boot (default true).
	Enabled bool `hcl:"enabled" json:"enabled"`
	// PasswordAuthentication allows passwords (default false: keys only).
	PasswordAuthentication bool `hcl:"password_authentication" json:"password_authentication"`
	// PermitRootLogin is "no" (default), "prohibit-password" or "yes"
	// (extension).
	PermitRootLogin string `hcl:"permit_root_login" json:"permit_root_login"`
	// Port is the listening port (default 22; extension).
	Port int `hcl:"port" json:"port"`
}

func (s *SSH) setDefaults() {
	s.Enabled, s.PasswordAuthentication, s.PermitRootLogin, s.Port = true, false, "no", 22
}

func (s *SSH) check(c *checks) {
	checkEnum(c, &s.Block, "permit_root_login", s.PermitRootLogin, "no", "prohibit-password", "yes")
	if s.Known("port") && (s.Port < 1 || s.Port > 65535) {
		c.errorf(&s.Block, "port", "port %d is out of range (1-65535)", s.Port)
	}
	if s.PermitRootLogin == "yes" && s.PasswordAuthentication {
		c.warnf(&s.Block, "permit_root_login", "root may log in with a password; prefer keys (password_authentication = false)")
	}
}
