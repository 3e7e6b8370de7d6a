// Package weights measures a model's weights folder into one digest, the model identity
// a host records in its event log when its inference server reads weights from that
// folder (cocoon-host serve --model-weights), and that a reviewer recomputes from the
// published weights with `cocoon weights DIR`.
//
// # Format (version 1)
//
// Every regular file under the folder, at any depth, is measured; the folder must hold at
// least one, and anything else (a symbolic link, a device, a socket) is an error, so that
// what is measured is exactly what a reader of the folder gets. Each file is read in
// chunks of ChunkSize bytes (the last one shorter; an empty file has none):
//
//	chunk  = SHA-256(0x00 || bytes)
//	file   = SHA-256(0x01 || uint64be(size) || chunk_1 || ... || chunk_n)
//	entry  = uint32be(len(path)) || path || file
//	root   = SHA-256("cocoon model weights v1\n" || entry_1 || ... || entry_m)
//
// where path is the file's path relative to the folder, with "/" between its elements,
// and entries are in increasing byte order of path. The model identity is
// "sha256-tree:" followed by root in lowercase hex. Chunks are hashed independently, so
// a large file is measured by every processor at once.
//
// # Cost
//
// Reading and hashing every byte: about 0.7 s per GB on one processor of this
// project's machines when the files are in the page cache, 0.4 s on two (see
// BenchmarkMeasure and README.md); on a cold disk the disk's read rate bounds it.
package weights

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
)

// ChunkSize is the size of the chunks files are hashed in.
const ChunkSize = 4 << 20

// Prefix starts a model identity measured by this package.
const Prefix = "sha256-tree:"

// domain starts the root's input, naming the format and its version.
const domain = "cocoon model weights v1\n"

// Leaf and node tags of the hash tree: a chunk's hash never equals a file's.
const (
	tagChunk = 0x00
	tagFile  = 0x01
)

// Digest is a folder's root.
type Digest [sha256.Size]byte

// String returns the model identity: Prefix and the root in lowercase hex.
func (d Digest) String() string { return Prefix + hex.EncodeToString(d[:]) }

// Measured is the result of Measure.
type Measured struct {
	Root  Digest
	Files int
	Bytes int64
}

// file is one regular file of the folder.
type file struct {
	path   string // relative, "/"-separated
	size   int64
	chunks [][sha256.Size]byte
}

// Measure computes the root of dir as the package doc specifies, hashing chunks on
// workers goroutines at once (0 means one per processor). It reads every byte of every
// file once. It fails on a folder without regular files, on anything but a regular file
// or a folder inside it, and when a file changes size while it is read.
func Measure(dir string, workers int) (Measured, error) {
	files, err := list(dir)
	if err != nil {
		return Measured{}, err
	}
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	type job struct {
		f     *file
		index int
	}
	jobs := make(chan job)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range workers {
		wg.Go(func() {
			buf := make([]byte, ChunkSize)
			for j := range jobs {
				if err := hashChunk(dir, j.f, j.index, buf); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, f := range files {
		for i := range f.chunks {
			jobs <- job{f, i}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return Measured{}, firstErr
	}
	root := sha256.New()
	root.Write([]byte(domain))
	m := Measured{Files: len(files)}
	for _, f := range files {
		h := sha256.New()
		h.Write([]byte{tagFile})
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(f.size)))
		for _, c := range f.chunks {
			h.Write(c[:])
		}
		root.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f.path))))
		root.Write([]byte(f.path))
		root.Write(h.Sum(nil))
		m.Bytes += f.size
	}
	copy(m.Root[:], root.Sum(nil))
	return m, nil
}

// list returns dir's regular files in the order of the root, with room for their
// chunks' hashes.
func list(dir string) ([]*file, error) {
	var files []*file
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("weights: %w", err)
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("weights: %s is not a regular file (%v): a weights folder holds files and folders only", path, d.Type())
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("weights: %w", err)
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return fmt.Errorf("weights: %w", err)
		}
		n := (info.Size() + ChunkSize - 1) / ChunkSize
		files = append(files, &file{path: filepath.ToSlash(rel), size: info.Size(), chunks: make([][sha256.Size]byte, n)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("weights: %s holds no files", dir)
	}
	// WalkDir visits in lexical order of each folder's names, which is not the byte
	// order of whole paths ("a/b" against "a.b"): sort.
	slices.SortFunc(files, func(a, b *file) int {
		switch {
		case a.path < b.path:
			return -1
		case a.path > b.path:
			return 1
		}
		return 0
	})
	return files, nil
}

// errChanged reports a file whose size changed while it was measured.
var errChanged = errors.New("changed while it was measured")

// hashChunk hashes chunk index of f into f.chunks, reading it into buf.
func hashChunk(dir string, f *file, index int, buf []byte) error {
	fh, err := os.Open(filepath.Join(dir, filepath.FromSlash(f.path)))
	if err != nil {
		return fmt.Errorf("weights: %w", err)
	}
	defer fh.Close()
	off := int64(index) * ChunkSize
	n := min(ChunkSize, f.size-off)
	if _, err := fh.ReadAt(buf[:n], off); err != nil {
		if errors.Is(err, io.EOF) {
			err = errChanged
		}
		return fmt.Errorf("weights: %s: %w", f.path, err)
	}
	if index == len(f.chunks)-1 {
		// The last chunk must end the file: one that grew is not the file listed.
		var probe [1]byte
		if k, _ := fh.ReadAt(probe[:], f.size); k != 0 {
			return fmt.Errorf("weights: %s: %w", f.path, errChanged)
		}
	}
	h := sha256.New()
	h.Write([]byte{tagChunk})
	h.Write(buf[:n])
	h.Sum(f.chunks[index][:0])
	return nil
}
