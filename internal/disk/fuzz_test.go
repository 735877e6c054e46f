package disk

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// seedMBR and seedGPT build small valid tables so the fuzzer starts from
// structures that get past the signature checks.
func seedMBR() []byte {
	b := make([]byte, 4<<10)
	b[446+4] = 0x0c
	binary.LittleEndian.PutUint32(b[446+8:], 1)
	binary.LittleEndian.PutUint32(b[446+12:], 3)
	b[462+4] = 0x83
	binary.LittleEndian.PutUint32(b[462+8:], 4)
	binary.LittleEndian.PutUint32(b[462+12:], 4)
	b[510], b[511] = 0x55, 0xaa
	return b
}

func seedGPT() []byte {
	const ss = 512
	b := make([]byte, 8<<10)
	b[446+4] = 0xee
	binary.LittleEndian.PutUint32(b[446+8:], 1)
	binary.LittleEndian.PutUint32(b[446+12:], uint32(len(b)/ss-1))
	b[510], b[511] = 0x55, 0xaa
	h := b[ss : ss+92]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], 0x00010000)
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[24:], 1)
	binary.LittleEndian.PutUint64(h[32:], uint64(len(b)/ss-1))
	binary.LittleEndian.PutUint64(h[40:], 3)
	binary.LittleEndian.PutUint64(h[48:], uint64(len(b)/ss-3))
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], 4)
	binary.LittleEndian.PutUint32(h[84:], 128)
	e := b[2*ss : 2*ss+128]
	copy(e[0:16], []byte{0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4})
	copy(e[16:32], []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	binary.LittleEndian.PutUint64(e[32:], 4)
	binary.LittleEndian.PutUint64(e[40:], 12)
	binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(b[2*ss:2*ss+4*128]))
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
	return b
}

// FuzzReadTable feeds arbitrary bytes to the MBR/GPT readers (ours and
// go-diskfs's behind our bounds checks). It must never panic, and whatever it
// accepts must describe partitions that lie inside the image or fail Validate.
func FuzzReadTable(f *testing.F) {
	f.Add(seedMBR())
	f.Add(seedGPT())
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := FromBytes("fuzz.img", b)
		tbl, err := d.ReadTable()
		if err != nil {
			return
		}
		_ = tbl.Validate(d.Size())
		for _, p := range tbl.Partitions {
			if p.Start < 0 || p.Size < 0 {
				t.Fatalf("negative partition geometry %+v", p)
			}
			if r, err := d.Region(p.Start, p.Size); err == nil {
				buf := make([]byte, 16)
				r.ReadAt(buf, r.Size()-1)
			}
		}
	})
}

func TestFuzzSeedsParse(t *testing.T) {
	for name, b := range map[string][]byte{"mbr": seedMBR(), "gpt": seedGPT()} {
		tbl, err := FromBytes(name, b).ReadTable()
		if err != nil {
			t.Fatalf("%s seed: %v", name, err)
		}
		if err := tbl.Validate(int64(len(b))); err != nil || len(tbl.Partitions) == 0 {
			t.Fatalf("%s seed: %+v %v", name, tbl, err)
		}
	}
}
