package ext4

import (
	"fmt"
	"strings"
)

// Feature bits (superblock s_feature_compat, _incompat, _ro_compat).
const (
	compatDirPrealloc   = 0x1
	compatImagicInodes  = 0x2
	compatHasJournal    = 0x4
	compatExtAttr       = 0x8
	compatResizeInode   = 0x10
	compatDirIndex      = 0x20
	compatLazyBG        = 0x40
	compatExcludeInode  = 0x80
	compatExcludeBitmap = 0x100
	compatSparseSuper2  = 0x200
	compatFastCommit    = 0x400
	compatStableInodes  = 0x800
	compatOrphanFile    = 0x1000

	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64Bit       = 0x80
	incompatMMP         = 0x100
	incompatFlexBG      = 0x200
	incompatEAInode     = 0x400
	incompatDirData     = 0x1000
	incompatCsumSeed    = 0x2000
	incompatLargeDir    = 0x4000
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000
	incompatCasefold    = 0x20000

	roCompatSparseSuper   = 0x1
	roCompatLargeFile     = 0x2
	roCompatBtreeDir      = 0x4
	roCompatHugeFile      = 0x8
	roCompatGdtCsum       = 0x10
	roCompatDirNlink      = 0x20
	roCompatExtraIsize    = 0x40
	roCompatHasSnapshot   = 0x80
	roCompatQuota         = 0x100
	roCompatBigalloc      = 0x200
	roCompatMetadataCsum  = 0x400
	roCompatReplica       = 0x800
	roCompatReadonly      = 0x1000
	roCompatProject       = 0x2000
	roCompatSharedBlocks  = 0x4000
	roCompatVerity        = 0x8000
	roCompatOrphanPresent = 0x10000
)

type featureName struct {
	kind int // 0 compat, 1 incompat, 2 ro_compat
	bit  uint32
	name string
}

// featureNames uses mke2fs's spelling so that error messages and
// FormatParams.Features read like dumpe2fs output.
var featureNames = []featureName{
	{0, compatDirPrealloc, "dir_prealloc"},
	{0, compatImagicInodes, "imagic_inodes"},
	{0, compatHasJournal, "has_journal"},
	{0, compatExtAttr, "ext_attr"},
	{0, compatResizeInode, "resize_inode"},
	{0, compatDirIndex, "dir_index"},
	{0, compatLazyBG, "lazy_bg"},
	{0, compatExcludeInode, "snapshot_exclude_inode"},
	{0, compatExcludeBitmap, "snapshot_exclude_bitmap"},
	{0, compatSparseSuper2, "sparse_super2"},
	{0, compatFastCommit, "fast_commit"},
	{0, compatStableInodes, "stable_inodes"},
	{0, compatOrphanFile, "orphan_file"},
	{1, incompatCompression, "compression"},
	{1, incompatFiletype, "filetype"},
	{1, incompatRecover, "needs_recovery"},
	{1, incompatJournalDev, "journal_dev"},
	{1, incompatMetaBG, "meta_bg"},
	{1, incompatExtents, "extent"},
	{1, incompat64Bit, "64bit"},
	{1, incompatMMP, "mmp"},
	{1, incompatFlexBG, "flex_bg"},
	{1, incompatEAInode, "ea_inode"},
	{1, incompatDirData, "dirdata"},
	{1, incompatCsumSeed, "metadata_csum_seed"},
	{1, incompatLargeDir, "large_dir"},
	{1, incompatInlineData, "inline_data"},
	{1, incompatEncrypt, "encrypt"},
	{1, incompatCasefold, "casefold"},
	{2, roCompatSparseSuper, "sparse_super"},
	{2, roCompatLargeFile, "large_file"},
	{2, roCompatBtreeDir, "btree_dir"},
	{2, roCompatHugeFile, "huge_file"},
	{2, roCompatGdtCsum, "uninit_bg"},
	{2, roCompatDirNlink, "dir_nlink"},
	{2, roCompatExtraIsize, "extra_isize"},
	{2, roCompatHasSnapshot, "snapshot"},
	{2, roCompatQuota, "quota"},
	{2, roCompatBigalloc, "bigalloc"},
	{2, roCompatMetadataCsum, "metadata_csum"},
	{2, roCompatReplica, "replica"},
	{2, roCompatReadonly, "read-only"},
	{2, roCompatProject, "project"},
	{2, roCompatSharedBlocks, "shared_blocks"},
	{2, roCompatVerity, "verity"},
	{2, roCompatOrphanPresent, "orphan_present"},
}

// describeFeatures names the bits of mask, with FEATURE_x_0x.. for bits no
// tool has a name for.
func describeFeatures(kind int, mask uint32) string {
	var names []string
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if mask&bit == 0 {
			continue
		}
		name := ""
		for _, f := range featureNames {
			if f.kind == kind && f.bit == bit {
				name = f.name
			}
		}
		if name == "" {
			name = fmt.Sprintf("FEATURE_%c%d", "CIR"[kind], bitIndex(bit))
		}
		names = append(names, name)
	}
	return strings.Join(names, ", ")
}

func bitIndex(bit uint32) int {
	n := 0
	for bit > 1 {
		bit >>= 1
		n++
	}
	return n
}

// Incompat features we can read. Anything else makes the layout unknowable.
const incompatReadable = incompatFiletype | incompatRecover | incompatMetaBG | incompatExtents |
	incompat64Bit | incompatMMP | incompatFlexBG | incompatEAInode | incompatCsumSeed |
	incompatLargeDir | incompatInlineData | incompatEncrypt | incompatCasefold

// Incompat features whose presence still lets us write (inline data,
// encryption and casefolding are refused per directory/file instead).
const incompatWritable = incompatFiletype | incompatMetaBG | incompatExtents | incompat64Bit |
	incompatFlexBG | incompatCsumSeed | incompatLargeDir | incompatInlineData | incompatEncrypt |
	incompatCasefold | incompatEAInode

// Read-only-compatible features we maintain correctly when writing.
const roCompatWritable = roCompatSparseSuper | roCompatLargeFile | roCompatBtreeDir |
	roCompatHugeFile | roCompatGdtCsum | roCompatDirNlink | roCompatExtraIsize |
	roCompatMetadataCsum | roCompatVerity

// roCompatKnown are ro_compat bits we recognise (for messages: known but not
// writable vs. unknown).
const roCompatKnown = roCompatWritable | roCompatHasSnapshot | roCompatQuota | roCompatBigalloc |
	roCompatReplica | roCompatReadonly | roCompatProject | roCompatSharedBlocks | roCompatOrphanPresent
