package units

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"2GiB": 2 << 30, "2G": 2 << 30, "512MiB": 512 << 20, "1.5GiB": 3 << 29, "4096": 4096,
		"1MB": 1000000, "10 KiB": 10240, "6GiB": 6 << 30,
	} {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GiB", "2XB", "-1", "1e99G"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", bad)
		}
	}
	if Format(2<<30) != "2GiB" || Format(1536<<20) != "1536MiB" || Format(1500) != "1.5KiB" {
		t.Errorf("Format: %s %s %s", Format(2<<30), Format(1536<<20), Format(1500))
	}
}
