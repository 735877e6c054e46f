package nfs

// space is what FSSTAT reports about the host filesystem under the layers.
type space struct {
	avail, free, total uint64
	files, freeFiles   uint64
}
