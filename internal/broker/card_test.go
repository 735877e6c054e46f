package broker_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/broker"
	"github.com/bakeryhq/bakery/internal/flash"
	"github.com/bakeryhq/bakery/internal/image"
	"github.com/bakeryhq/bakery/internal/testimage"
)

func TestCardCredentialsWriteOnlyTheWrapToken(t *testing.T) {
	bootTree := t.TempDir()
	if err := os.WriteFile(filepath.Join(bootTree, "config.txt"), []byte("arm_64bit=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := testimage.PiImage(t, testimage.Layout{BootMiB: 64, RootMiB: 32, BootTree: bootTree})
	f := newFakeVault(t)
	var logs bytes.Buffer
	b := newBroker(t, f, &logs)
	ips, err := broker.ParseNodeIPs([]string{"192.168.50.11+"})
	if err != nil {
		t.Fatal(err)
	}
	c := &broker.CardCredentials{Broker: b, IPs: ips, TTL: 72 * time.Hour, WrapTTL: 72 * time.Hour}
	im, err := image.Open(img, image.Options{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Customize(context.Background(), flash.Card{N: 3, Target: "/dev/sdd"}, im); err != nil {
		t.Fatal(err)
	}
	if err := im.Commit(); err != nil {
		t.Fatal(err)
	}
	im.Close()
	body, _ := f.last()
	if got := body["cidr_list"].([]any); got[0] != "192.168.50.13/32" {
		t.Errorf("card 3 bound to %v", got)
	}
	if !strings.Contains(body["metadata"].(string), `"card":"3"`) {
		t.Errorf("metadata %v", body["metadata"])
	}
	boot := testimage.Extract(t, img, 4<<20, 64<<20)
	testimage.FsckFat(t, boot)
	token := strings.TrimSpace(string(testimage.Mtype(t, boot, "/bakery/secret-id")))
	if !strings.HasPrefix(token, "hvs.") {
		t.Fatalf("boot:/bakery/secret-id = %q", token)
	}
	// It is a wrapping token for the role's creation path, usable once.
	if code, out := f.unwrap(t, token); code != 200 || !strings.Contains(out, "secret_id_accessor") {
		t.Fatalf("unwrap: %d %s", code, out)
	}
}
