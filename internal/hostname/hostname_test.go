package hostname

import "testing"

func TestValid(t *testing.T) {
	for _, ok := range []string{"node-1", "n1.lab.example", "A1"} {
		if err := Valid(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "node_1", "-a", "a-", "a..b", string(make([]byte, 64))} {
		if Valid(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHosts(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// Replaced where it stands; duplicates dropped.
		{"127.0.0.1\tlocalhost\n::1\t\tlocalhost\n\n127.0.1.1\t\traspberrypi\n127.0.1.1 old2\n",
			"127.0.0.1\tlocalhost\n::1\t\tlocalhost\n\n127.0.1.1\tnode-1 n\n"},
		// Added after localhost.
		{"127.0.0.1 localhost\n::1 localhost\n", "127.0.0.1 localhost\n127.0.1.1\tnode-1 n\n::1 localhost\n"},
		{"", "127.0.1.1\tnode-1 n\n"},
	} {
		if got := Hosts(c.in, "node-1", "n"); got != c.want {
			t.Errorf("Hosts(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
