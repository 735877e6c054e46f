package bmap

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
)

// hashChunk is the read size while hashing ranges.
const hashChunk = 4 << 20

// Generate maps the image file's data (SEEK_DATA/SEEK_HOLE) together with
// extraMapped, byte ranges that must be written even where the file has
// holes (filesystem metadata that has to read as zeros, partition tables),
// and hashes every range with SHA256. blockSize 0 means DefaultBlockSize.
func Generate(ctx context.Context, imagePath string, extraMapped []Range, blockSize int) (*Bmap, error) {
	f, err := os.Open(imagePath)
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	defer f.Close()
	b, err := scanFile(f, extraMapped, blockSize)
	if err != nil {
		return nil, fmt.Errorf("bmap %s: %w", imagePath, err)
	}
	if err := b.Hash(ctx, f, SHA256); err != nil {
		return nil, fmt.Errorf("bmap %s: %w", imagePath, err)
	}
	return b, nil
}

// Scan is Generate without the checksums, for callers that hash the data
// while they stream it anyway.
func Scan(imagePath string, extraMapped []Range, blockSize int) (*Bmap, error) {
	f, err := os.Open(imagePath)
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	defer f.Close()
	b, err := scanFile(f, extraMapped, blockSize)
	if err != nil {
		return nil, fmt.Errorf("bmap %s: %w", imagePath, err)
	}
	return b, nil
}

func scanFile(f *os.File, extraMapped []Range, blockSize int) (*Bmap, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	size := st.Size()
	if size == 0 {
		return nil, fmt.Errorf("image is empty")
	}
	data, err := DataRanges(f, size)
	if err != nil {
		return nil, err
	}
	return FromRanges(size, int64(blockSize), append(data, extraMapped...))
}

// Hash computes the checksum of every range from the image's bytes, with
// one worker per CPU.
func (b *Bmap) Hash(ctx context.Context, image io.ReaderAt, checksumType string) error {
	if _, err := NewHash(checksumType); err != nil {
		return err
	}
	b.ChecksumType = checksumType
	b.Version = "2.0"
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, hashChunk)
			for i := range jobs {
				sum, err := b.hashRange(ctx, image, b.Ranges[i], checksumType, buf)
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					cancel()
					continue
				}
				b.Ranges[i].Checksum = sum
			}
		}()
	}
feed:
	for i := range b.Ranges {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	return ctx.Err()
}

func (b *Bmap) hashRange(ctx context.Context, image io.ReaderAt, r BlockRange, checksumType string, buf []byte) (string, error) {
	h, _ := NewHash(checksumType)
	br := b.ByteRange(r)
	for off := br.Off; off < br.End(); {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := min(int64(len(buf)), br.End()-off)
		if _, err := image.ReadAt(buf[:n], off); err != nil {
			return "", fmt.Errorf("read blocks %d-%d at byte %d: %w", r.First, r.Last, off, err)
		}
		h.Write(buf[:n])
		off += n
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
