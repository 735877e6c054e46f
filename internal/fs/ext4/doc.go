// Package ext4 reads and writes ext2, ext3 and ext4 filesystems inside disk
// images, in pure Go and entirely in user space, so that bakery can edit
// images without root, loop devices or mounting, on Linux and macOS alike.
//
// # Why not go-diskfs
//
// go-diskfs (already a dependency for partition tables) has an ext4 writer,
// but probes against images made by mkfs.ext4 -d showed it damages them in
// ways e2fsck reports: inserting into a hash-indexed directory corrupts the
// index (upstream issue #307), Remove leaves unattached inodes and bitmap
// differences, large files are allocated over the resize inode's reserved
// GDT blocks, nested Mkdir fails, and replacing a file does not truncate
// it. This package is written from the on-disk format documentation
// (docs.kernel.org/filesystems/ext4) instead; no third-party source is
// copied. Every kind of change is checked in the tests with e2fsck -fn and
// debugfs on images made by the real mke2fs.
//
// # Design
//
// Open reads only the superblock, the root inode and (for writing) the
// journal superblock. Group descriptors and bitmaps are loaded per group on
// first use, so the cost of a session grows with what it changes, not with
// the image size.
//
// Reading walks inodes, extent trees (any depth) or classic
// direct/indirect block maps, linear and hash-indexed directories (lookups
// go through the htree index), inline data and extended attributes. All
// sizes, offsets and counts taken from the image are bounds-checked;
// structural problems are reported as errors wrapping fs.ErrCorrupt.
//
// Writing is transactional. Metadata changes are never written to the
// device before Close: they accumulate in a cache of dirty metadata blocks,
// the in-memory superblock counters and per-directory models, and each
// mutating call records how to undo its changes, so a call that fails (no
// space, a failing reader, a corrupt structure) is rolled back completely.
// File data is the exception: it is written straight to blocks that are
// free in the committed filesystem (through fs.ThroughWriter when the device
// offers it, in chunks of 4 MiB), so large files never sit in memory.
// Blocks freed during a session are released only at Close, so data
// written early can never land on blocks the committed filesystem still
// uses, and a replaced file's old content stays intact until the new one is
// in place. Close serialises the directory models, applies the pending
// frees, refreshes bitmap and descriptor checksums and writes each dirty
// block once; the caller's device buffer makes that atomic.
//
// Directories that change are held as models of their leaf blocks. A
// linear directory keeps its layout; when it outgrows its first block it is
// converted to a hash-indexed one, like the kernel does. A hash-indexed
// directory is rebuilt hash-sorted when first changed in a session (as
// e2fsck -D would), then inserts go to the leaf covering the name's hash,
// splitting full leaves and growing the index to a second (or, with
// large_dir, third) level. Blocks for new leaves and index nodes are
// allocated when the entry is added, so Close never allocates. The index
// itself (dx root, nodes, tails) is generated at Close.
//
// Allocation is deterministic: inodes take the lowest free number from the
// parent's group on, data blocks the first free run from the start of the
// inode's flex group on, and nothing depends on the clock or randomness
// (generation numbers are 0), so the same edits of the same image give the
// same bytes. Format builds a filesystem the same way, laying out the groups
// like mke2fs and creating the resize inode, journal and lost+found with the
// writer itself.
//
// Supported for reading and writing: block sizes 1024 to 65536 (Format
// makes 1024, 2048 and 4096), 32- and 64-bit descriptors, extents and
// block maps, flex_bg, sparse_super and sparse_super2, meta_bg,
// resize_inode, uninit_bg and metadata_csum (with or without
// metadata_csum_seed), huge_file, dir_nlink, extra_isize, large_file,
// large_dir, filetype, orphan_file and a clean internal journal. Inline
// data is read; a changed inline directory is moved to a block first, a
// replaced inline file becomes a regular one, and new files are never
// inline. Read only: encrypted and case-folded directories (raw names are
// listed), bigalloc, quota and project quota, mmp; values kept in EA inodes
// are listed, but inodes referencing them are not removed. A journal that
// needs recovery, orphans awaiting cleanup, an unclean or erroneous state,
// or read-only-compatible features we cannot maintain make the filesystem
// read-only with an error saying why; unknown incompatible features refuse
// the open.
//
// # Growing
//
// Grow enlarges a filesystem offline, as resize2fs does, after the caller
// enlarged its partition: it extends the last group, adds groups and
// consumes reserved GDT blocks (rebuilding the resize inode the way e2fsck
// checks it) when the descriptor table needs more blocks. New groups'
// bitmaps and inode tables go into the new space (with flex_bg packed at
// the start of each flex group's first new group, like mke2fs). With group
// checksums, new groups are INODE_UNINIT without ITABLE_ZEROED and, unless
// they hold other groups' metadata or are the last group, BLOCK_UNINIT, so
// only descriptors, a few bitmaps and the superblock and descriptor
// backups are written: growing to 1 TiB writes a few MiB and leaves the
// inode tables as holes, which the kernel zeroes lazily after mounting.
// Without group checksums the new tables are zeroed. The result is
// deterministic and checked with e2fsck, dumpe2fs, debugfs and resize2fs
// -P in the tests. Refused with an error naming the reason: shrinking, an
// unclean filesystem (journal needing recovery, orphans, errors),
// bigalloc, sparse_super2, mmp, quota and other features the writer cannot
// maintain, meta_bg growth that needs new descriptor blocks, growth past
// the descriptor blocks plus reserved GDT blocks, and sizes that do not
// fit 32-bit block numbers without the 64bit feature.
//
// # Used extents
//
// UsedExtents lists the byte ranges the filesystem relies on, for flashing
// onto media that may hold old data: the boot area and superblock, every
// block the bitmaps mark as used (BLOCK_UNINIT groups computed from their
// metadata), except inode table blocks nothing reads. Those are the tables
// of groups without ITABLE_ZEROED beyond their last live inode (all of an
// INODE_UNINIT group's): the kernel zeroes them lazily and neither it nor
// e2fsck reads past bg_itable_unused. Tables flagged ITABLE_ZEROED must
// read as zeros and are listed, as are all tables without group checksums.
package ext4

import "github.com/bakeryhq/bakery/internal/fs"

var (
	_ fs.Filesystem = (*FS)(nil)
	_ fs.Linker     = (*FS)(nil)
	_ fs.Mknoder    = (*FS)(nil)
	_ fs.Xattrer    = (*FS)(nil)
	_ fs.UsedMapper = (*FS)(nil)
)
