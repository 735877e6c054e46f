package ext4

// Directory index hash functions. An htree orders the entries of a
// directory by a 32-bit hash of their names; which function is used is
// recorded in the dx root (legacy, half_md4 or tea) and the superblock says
// whether name bytes are treated as signed or unsigned chars.

const (
	hashLegacy           = 0
	hashHalfMD4          = 1
	hashTea              = 2
	hashLegacyUnsigned   = 3
	hashHalfMD4Unsigned  = 4
	hashTeaUnsigned      = 5
	hashSipHash          = 6
	htreeEOF32           = 0x7fffffff
	teaDelta             = 0x9E3779B9
	halfMD4K2            = 0x5A827999 // 013240474631
	halfMD4K3            = 0x6ED9EBA1 // 015666365641
	defaultHashSeed0     = 0x67452301
	defaultHashSeed1     = 0xefcdab89
	defaultHashSeed2     = 0x98badcfe
	defaultHashSeed3     = 0x10325476
	flagsSignedHash      = 0x1
	flagsUnsignedHash    = 0x2
	legacyHashStart0     = 0x12a3fe2d
	legacyHashStart1     = 0x37abe8f9
	legacyHashMultiplier = 7152373
)

// dxHash returns the major and minor hash of name. version already includes
// the unsigned adjustment (3..5 for unsigned chars).
func dxHash(name []byte, version uint8, seed [4]uint32) (major, minor uint32, ok bool) {
	buf := [4]uint32{defaultHashSeed0, defaultHashSeed1, defaultHashSeed2, defaultHashSeed3}
	if seed != [4]uint32{} {
		buf = seed
	}
	var hash uint32
	switch version {
	case hashLegacy, hashLegacyUnsigned:
		hash = legacyHash(name, version == hashLegacyUnsigned)
	case hashHalfMD4, hashHalfMD4Unsigned:
		unsigned := version == hashHalfMD4Unsigned
		var in [8]uint32
		p := name
		for n := len(p); n > 0; n -= 32 {
			str2hashbuf(p, n, in[:], unsigned)
			halfMD4Transform(&buf, &in)
			if len(p) > 32 {
				p = p[32:]
			} else {
				p = nil
			}
		}
		minor = buf[2]
		hash = buf[1]
	case hashTea, hashTeaUnsigned:
		unsigned := version == hashTeaUnsigned
		var in [4]uint32
		p := name
		for n := len(p); n > 0; n -= 16 {
			str2hashbuf(p, n, in[:], unsigned)
			teaTransform(&buf, &in)
			if len(p) > 16 {
				p = p[16:]
			} else {
				p = nil
			}
		}
		hash = buf[0]
		minor = buf[1]
	default:
		return 0, 0, false
	}
	hash &^= 1
	if hash == htreeEOF32<<1 {
		hash = (htreeEOF32 - 1) << 1
	}
	return hash, minor, true
}

func legacyHash(name []byte, unsigned bool) uint32 {
	var hash uint32
	hash0, hash1 := uint32(legacyHashStart0), uint32(legacyHashStart1)
	for _, c := range name {
		v := int32(int8(c))
		if unsigned {
			v = int32(c)
		}
		hash = hash1 + (hash0 ^ uint32(v*legacyHashMultiplier))
		if hash&0x80000000 != 0 {
			hash -= 0x7fffffff
		}
		hash1 = hash0
		hash0 = hash
	}
	return hash0 << 1
}

// str2hashbuf packs up to len(out)*4 bytes of msg into out, padding with a
// value derived from the remaining length, as the kernel does.
func str2hashbuf(msg []byte, length int, out []uint32, unsigned bool) {
	num := len(out)
	pad := uint32(length) | uint32(length)<<8
	pad |= pad << 16
	val := pad
	if length > num*4 {
		length = num * 4
	}
	o := 0
	for i := 0; i < length; i++ {
		c := int32(int8(msg[i]))
		if unsigned {
			c = int32(msg[i])
		}
		val = uint32(c) + (val << 8)
		if i%4 == 3 {
			out[o] = val
			o++
			val = pad
			num--
		}
	}
	num--
	if num >= 0 {
		out[o] = val
		o++
	}
	for num--; num >= 0; num-- {
		out[o] = pad
		o++
	}
}

func rol32(x uint32, s uint) uint32 { return x<<s | x>>(32-s) }

func halfMD4Transform(buf *[4]uint32, in *[8]uint32) {
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	round := func(fn func(x, y, z uint32) uint32, a *uint32, b, c, d, x uint32, s uint) {
		*a += fn(b, c, d) + x
		*a = rol32(*a, s)
	}
	// Round 1
	round(f, &a, b, c, d, in[0], 3)
	round(f, &d, a, b, c, in[1], 7)
	round(f, &c, d, a, b, in[2], 11)
	round(f, &b, c, d, a, in[3], 19)
	round(f, &a, b, c, d, in[4], 3)
	round(f, &d, a, b, c, in[5], 7)
	round(f, &c, d, a, b, in[6], 11)
	round(f, &b, c, d, a, in[7], 19)
	// Round 2
	round(g, &a, b, c, d, in[1]+halfMD4K2, 3)
	round(g, &d, a, b, c, in[3]+halfMD4K2, 5)
	round(g, &c, d, a, b, in[5]+halfMD4K2, 9)
	round(g, &b, c, d, a, in[7]+halfMD4K2, 13)
	round(g, &a, b, c, d, in[0]+halfMD4K2, 3)
	round(g, &d, a, b, c, in[2]+halfMD4K2, 5)
	round(g, &c, d, a, b, in[4]+halfMD4K2, 9)
	round(g, &b, c, d, a, in[6]+halfMD4K2, 13)
	// Round 3
	round(h, &a, b, c, d, in[3]+halfMD4K3, 3)
	round(h, &d, a, b, c, in[7]+halfMD4K3, 9)
	round(h, &c, d, a, b, in[2]+halfMD4K3, 11)
	round(h, &b, c, d, a, in[6]+halfMD4K3, 15)
	round(h, &a, b, c, d, in[1]+halfMD4K3, 3)
	round(h, &d, a, b, c, in[5]+halfMD4K3, 9)
	round(h, &c, d, a, b, in[0]+halfMD4K3, 11)
	round(h, &b, c, d, a, in[4]+halfMD4K3, 15)
	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

func teaTransform(buf *[4]uint32, in *[4]uint32) {
	var sum uint32
	b0, b1 := buf[0], buf[1]
	a, b, c, d := in[0], in[1], in[2], in[3]
	for range 16 {
		sum += teaDelta
		b0 += ((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >> 5) + b)
		b1 += ((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >> 5) + d)
	}
	buf[0] += b0
	buf[1] += b1
}
