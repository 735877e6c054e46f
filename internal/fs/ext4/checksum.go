package ext4

import "hash/crc32"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c continues a raw CRC32C the way ext4 and jbd2 chain them: no pre- or
// post-inversion, the caller supplies the seed (~0 for the superblock).
// hash/crc32 inverts on entry and exit, so undo both.
func crc32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// crc16 is the CRC-16/ARC used by the older uninit_bg (gdt_csum) group
// descriptor checksum (reflected polynomial 0x8005).
func crc16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc ^= uint16(b)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
