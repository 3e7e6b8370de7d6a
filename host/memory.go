package host

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"

	"github.com/cocoonhost/cocoon/abi"
)

// Linear memories live outside the Go heap, in mappings of their own: each reserves
// the address space of the largest memory a module may have (abi.CeilingLimits) with
// PROT_NONE and makes pages readable and writable only as the memory grows, so growth
// never copies and a wild access beyond the memory faults. When an instance closes,
// its mapping goes back to a pool if it is small (zeroed, and kept resident, because
// zeroing 64 KiB costs less than faulting it in again) and is unmapped otherwise, so
// that the memory of a big request goes back to the OS at once instead of waiting for
// the garbage collector and its heap goal, which a 2 GB request had inflated for good.

// reservedBytes is the address space each mapping reserves: a memory of the
// ceiling's size fits in any mapping, so any pooled mapping serves any module.
var reservedBytes = uint64(abi.CeilingLimits.MemoryPages) * abi.PageSize

// Bounds of the pool of zeroed, resident mappings.
const (
	// warmMaxBytes: a mapping whose memory grew past this is unmapped rather than
	// zeroed and pooled. A Go guest's memory is 3-8 MiB, a C module's 128 KiB.
	warmMaxBytes = 16 * abi.MiB
	// warmBudgetBytes bounds the resident bytes the pool keeps in all.
	warmBudgetBytes = 64 * abi.MiB
)

// mapping is one reservation. Its first committed bytes are readable, writable and,
// unless a deadline cut the populating short, resident; its first dirty bytes may have
// been written since it was last zeroed.
type mapping struct {
	mem       []byte // the whole reservation
	committed uint64
	dirty     uint64
	// image, if not nil, is the memory image its first bytes map: it goes back to
	// that image's pool, not to the warm pool.
	image *imageMappings
	// charged is what it keeps resident while pooled (resetAndCharge), counted in
	// warmPool.bytes.
	charged uint64
}

var warmPool struct {
	sync.Mutex
	free  []*mapping
	bytes uint64 // committed bytes of the mappings in free, or on their way there
}

// acquireMapping returns a pooled mapping, zero up to its committed bytes and PROT_NONE
// after them, or a new one.
func acquireMapping() (*mapping, error) {
	warmPool.Lock()
	if n := len(warmPool.free); n > 0 {
		m := warmPool.free[n-1]
		warmPool.free = warmPool.free[:n-1]
		warmPool.bytes -= m.committed
		warmPool.Unlock()
		return m, nil
	}
	warmPool.Unlock()
	return reserveMapping()
}

// reserveMapping returns a new mapping, PROT_NONE throughout.
func reserveMapping() (*mapping, error) {
	mem, err := syscall.Mmap(-1, 0, int(reservedBytes), syscall.PROT_NONE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserving %d MiB of address space: %w", reservedBytes/abi.MiB, err)
	}
	return &mapping{mem: mem}, nil
}

// memoryImage is the content of a linear memory, held in a sealed memfd: a file in
// the host's own memory that nothing can change once sealed (not even the host), and
// that no one outside the process can open. Instances map it copy-on-write, so a
// fresh instance costs a page fault for each page it touches (a read maps the image's
// page, a write copies it: a few microseconds each on a virtual machine), not a copy
// of the memory. The file holds only the pages that are not zero. Mappings of the
// image go back to a pool of its own when their instance closes, reset to the image
// (imageMappings.put), so that the next instance costs no system call to map it, and
// finds the pages its memory grew by last time resident and zero.
type memoryImage struct {
	*imageMappings
}

// imageMappings is the memfd of a memoryImage and its pool of mappings. It is apart
// from memoryImage, so that memoryImage's cleanup, which closes it, can run.
type imageMappings struct {
	fd   int
	size uint64 // a multiple of abi.PageSize
	// content is a read-only shared mapping of the memfd, which put copies from.
	content []byte

	// budget counts size until close: the memfd holds the pages that are not zero,
	// and a page for each other page an instance touches (a read of a hole in a
	// memfd allocates the page).
	budget *snapshotBudget
	owner  string // whom budget counts size for

	mu   sync.Mutex
	free []*mapping // each maps the image, as it is, and is zero after it
}

// maxImageMappings bounds the mappings the pool of one image keeps: as many as
// instances of it may run at once on a machine of a few cores.
const maxImageMappings = 8

// snapshotBudgetError: an image of size bytes does not fit in what is left of the
// sandbox's snapshot memory (WithSnapshotMemory). size is the room
// Sandbox.retakeSnapshot waits for; callers find it with errors.AsType.
type snapshotBudgetError struct{ size uint64 }

func (e *snapshotBudgetError) Error() string {
	return "the host's memory for snapshots is full: no room for " + formatBytes(e.size)
}

// newMemoryImage writes content, whose length is a multiple of abi.PageSize, to a new
// sealed memfd, and counts its size against budget for the first of owners with room
// for it (snapshotBudget.reserve), failing with *snapshotBudgetError if it does not fit:
// all of it, because a page of the image that is zero, which the memfd does not hold,
// becomes one it holds as soon as an instance reads it. It costs a write of the pages
// that are not zero. When the image becomes unreachable, its
// descriptor is closed, its pooled mappings unmapped and its size given back to
// budget; the mappings instances hold stay valid.
func newMemoryImage(content []byte, budget *snapshotBudget, owners []string) (*memoryImage, error) {
	owner, ok := budget.reserve(owners, uint64(len(content)))
	if !ok {
		return nil, &snapshotBudgetError{uint64(len(content))}
	}
	fd, err := unix.MemfdCreate("cocoon-snapshot", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		budget.release(owner, uint64(len(content)))
		return nil, fmt.Errorf("creating a memfd: %w", err)
	}
	img := &memoryImage{&imageMappings{fd: fd, size: uint64(len(content)), budget: budget, owner: owner}}
	runtime.AddCleanup(img, (*imageMappings).close, img.imageMappings)
	if err := unix.Ftruncate(fd, int64(len(content))); err != nil {
		return nil, fmt.Errorf("sizing the memfd: %w", err)
	}
	page := os.Getpagesize()
	for off := 0; off < len(content); {
		if allZero(content[off : off+page]) {
			off += page
			continue
		}
		end := off + page
		for end < len(content) && !allZero(content[end:end+page]) {
			end += page
		}
		if _, err := unix.Pwrite(fd, content[off:end], int64(off)); err != nil {
			return nil, fmt.Errorf("writing the memfd: %w", err)
		}
		off = end
	}
	const seals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return nil, fmt.Errorf("sealing the memfd: %w", err)
	}
	if img.content, err = unix.Mmap(fd, 0, len(content), unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mapping the memfd: %w", err)
	}
	return img, nil
}

// allZero reports whether the page b is all zero.
func allZero(b []byte) bool { return bytes.Equal(b, zeroPage[:len(b)]) }

var zeroPage = make([]byte, os.Getpagesize())

func (im *imageMappings) close() {
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, m := range im.free {
		m.uncharge()
		m.unmap()
	}
	im.free = nil
	if im.content != nil {
		_ = unix.Munmap(im.content)
	}
	unix.Close(im.fd)
	im.budget.release(im.owner, im.size)
}

// get returns a mapping whose first im.size bytes are a private copy-on-write view of
// the image, and which is zero after them: a pooled one, or a new one.
func (im *imageMappings) get() (*mapping, error) {
	im.mu.Lock()
	if n := len(im.free); n > 0 {
		m := im.free[n-1]
		im.free = im.free[:n-1]
		im.mu.Unlock()
		m.uncharge()
		return m, nil
	}
	im.mu.Unlock()
	m, err := reserveMapping()
	if err != nil {
		return nil, err
	}
	_, err = unix.MmapPtr(im.fd, 0, unsafe.Pointer(&m.mem[0]), uintptr(im.size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED)
	if err != nil {
		m.unmap()
		return nil, fmt.Errorf("mapping the snapshot: %w", err)
	}
	m.committed, m.dirty, m.image = im.size, im.size, im
	return m, nil
}

// put resets m to the image and pools it, or unmaps it when the pool is full or what
// it would keep resident does not fit in the warm pool's budget (resetAndCharge).
func (im *imageMappings) put(m *mapping) {
	m.uncharge() // a kept instance's mapping (idleInstances) was charged already
	im.mu.Lock()
	room := len(im.free) < maxImageMappings
	im.mu.Unlock()
	if !room || !im.resetAndCharge(m) {
		m.unmap()
		return
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if len(im.free) >= maxImageMappings {
		m.uncharge()
		m.unmap()
		return
	}
	im.free = append(im.free, m)
}

// resetAndCharge resets m to the image (reset) and zeroes the pages its memory grew
// into, and charges what m then keeps resident (the pages the instance wrote, now
// copies of the image's, and those grown into) to the warm pool's budget, which bounds
// what all pooled memories keep: a module whose requests write all of a large snapshot
// would otherwise keep that much resident in every pooled mapping. It reports false,
// charging nothing, when that does not fit or m cannot be reset.
func (im *imageMappings) resetAndCharge(m *mapping) bool {
	written, err := im.reset(m)
	grown := m.committed - im.size
	if err != nil || grown > warmMaxBytes {
		return false
	}
	resident := written + grown
	warmPool.Lock()
	room := warmPool.bytes+resident <= warmBudgetBytes
	if room {
		warmPool.bytes += resident
	}
	warmPool.Unlock()
	if !room {
		return false
	}
	clear(m.mem[im.size:m.dirty])
	m.dirty, m.charged = im.size, resident
	return true
}

// uncharge gives back to the warm pool's budget what m was charged.
func (m *mapping) uncharge() {
	if m.charged == 0 {
		return
	}
	warmPool.Lock()
	warmPool.bytes -= m.charged
	warmPool.Unlock()
	m.charged = 0
}

// copyResetBytes: an image this small is reset by copying all of it, which costs less
// than reading its page map (a system call of several microseconds).
const copyResetBytes = 128 * abi.KiB

// reset makes the first im.size bytes of m the image's again: it copies the image over
// each page the instance wrote, which are the mapping's anonymous pages (a written page
// of a private file mapping is a copy of its own; the others still map the sealed
// image), so that the next instance writing the same pages, as the next request through
// a module mostly does, takes no page fault. It finds them in /proc/self/pagemap, which
// costs a read of 8 bytes per page of the image; where that cannot be read, it drops
// them instead (MADV_DONTNEED: the next access maps the image again). Either way the
// memory is the image's, exactly. It returns how many bytes of m's are copies.
func (im *imageMappings) reset(m *mapping) (written uint64, err error) {
	if im.size <= copyResetBytes {
		copy(m.mem[:im.size], im.content)
		return im.size, nil
	}
	page := uint64(os.Getpagesize())
	entries := make([]byte, 8*(im.size/page))
	if err := readPagemap(uintptr(unsafe.Pointer(&m.mem[0])), entries); err != nil {
		return 0, unix.Madvise(m.mem[:im.size], unix.MADV_DONTNEED)
	}
	const present, swapped, fileOrShared = 1 << 63, 1 << 62, 1 << 61
	for i := uint64(0); i < im.size/page; {
		e := binary.LittleEndian.Uint64(entries[8*i:])
		if e&(present|swapped) == 0 || e&fileOrShared != 0 {
			i++
			continue
		}
		end := i + 1
		for ; end < im.size/page; end++ {
			e := binary.LittleEndian.Uint64(entries[8*end:])
			if e&(present|swapped) == 0 || e&fileOrShared != 0 {
				break
			}
		}
		copy(m.mem[i*page:end*page], im.content[i*page:end*page])
		written += (end - i) * page
		i = end
	}
	return written, nil
}

// pagemap is /proc/self/pagemap, opened at the first readPagemap.
var pagemap = sync.OnceValues(func() (*os.File, error) { return os.Open("/proc/self/pagemap") })

// readPagemap reads the pagemap entries of the pages from addr into entries, 8 bytes
// each.
func readPagemap(addr uintptr, entries []byte) error {
	f, err := pagemap()
	if err != nil {
		return err
	}
	_, err = f.ReadAt(entries, int64(addr/uintptr(os.Getpagesize()))*8)
	return err
}

// populateCheckBytes is how many bytes commit populates between two looks at the
// deadline: 256 pages, about 0.3 ms on a virtual machine.
const populateCheckBytes = abi.MiB

// commit makes the first size bytes readable and writable, and populates the new
// pages, here, where the Go scheduler can stop the goroutine for a garbage collection,
// and not in the module's native code, which it cannot stop until the next tick:
// faults in a 1 MiB fill of fresh memory held every stop-the-world of the host for up
// to 5 ms. It populates them with madvise(MADV_POPULATE_WRITE), a system call per MiB:
// a page fault costs this VM 4-17 µs, mostly the trap itself, so writing a zero to each
// page took 1 s of processor time for 256 MiB, and a request of 512 MiB ran past its
// module time of 10 s on a loaded machine; the system call takes a tenth of that
// (BenchmarkCommit; RATIONALE.md has the command and the figures).
// Where the kernel has no MADV_POPULATE_WRITE (before Linux 5.14) it writes the
// zeroes. Populating stops early, leaving the rest to fault when the module touches
// it, once the deadline has passed: the call then ends at its next tick.
func (m *mapping) commit(size uint64, deadline time.Time) error {
	if size <= m.committed {
		return nil
	}
	if err := syscall.Mprotect(m.mem[m.committed:size], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
		return err
	}
	for off := m.committed; off < size && !time.Now().After(deadline); off += populateCheckBytes {
		populate(m.mem[off:min(off+populateCheckBytes, size)])
	}
	m.committed = size
	return nil
}

// populate makes the pages of b, readable and writable, resident.
func populate(b []byte) {
	if unix.Madvise(b, unix.MADV_POPULATE_WRITE) == nil {
		return
	}
	for off := 0; off < len(b); off += os.Getpagesize() {
		b[off] = 0
	}
}

// release gives m back: zeroed to the pool when it is small and the pool has room,
// to the OS otherwise.
func (m *mapping) release() {
	if m.image != nil {
		m.image.put(m)
		return
	}
	if m.committed <= warmMaxBytes {
		warmPool.Lock()
		room := warmPool.bytes+m.committed <= warmBudgetBytes
		if room {
			warmPool.bytes += m.committed
		}
		warmPool.Unlock()
		if room {
			// Only what was handed out can have been written; clearing 64 KiB
			// takes well under a microsecond.
			clear(m.mem[:m.dirty])
			m.dirty = 0
			warmPool.Lock()
			warmPool.free = append(warmPool.free, m)
			warmPool.Unlock()
			return
		}
	}
	m.unmap()
}

func (m *mapping) unmap() {
	// Munmap fails only for an invalid range, which m.mem is not.
	_ = syscall.Munmap(m.mem)
}

// memoryLimitText names a module's memory limit in a refusal.
func memoryLimitText(pages uint32) string {
	return fmt.Sprintf("its limit of %d pages (%s)", pages, formatBytes(uint64(pages)*abi.PageSize))
}

// requestTotalText names the request's memory total in a refusal.
var requestTotalText = fmt.Sprintf("the request's total of %s for all its modules", formatBytes(abi.RequestMemoryBytes))

// limitedMemory backs one instance's linear memory (experimental.LinearMemory). It
// refuses to grow past the module's limit or past what is left of the request's
// memory (abi.RequestMemoryBytes), and remembers why it refused: that is how a memory
// bomb is told apart from any other trap and named in the error.
type limitedMemory struct {
	limit   uint64 // the module's memory limit in bytes
	request *requestState
	// deadline is that of the instance's running call: populating new pages stops
	// at it (mapping.commit).
	deadline *time.Time
	mapping  *mapping
	size     uint64
	// refusal says which limit refused the last growth, for the error message.
	refusal string
}

// newLimitedMemory reserves a memory of minBytes for a module with the given limit and
// counts it against the request's memory, which the caller checked it fits in. It is
// done before wazero instantiates the module, because wazero panics when the first
// allocation fails. deadline is where the instance keeps its running call's deadline.
// With an image, the memory is a copy-on-write view of it, and minBytes must be its
// size; without, it is zero.
func newLimitedMemory(limit uint64, request *requestState, minBytes uint64, deadline *time.Time, image *memoryImage) (*limitedMemory, error) {
	var mapping *mapping
	var err error
	if image != nil {
		mapping, err = image.get()
	} else if mapping, err = acquireMapping(); err == nil {
		err = mapping.commit(minBytes, *deadline)
	}
	if err != nil {
		if mapping != nil {
			mapping.release()
		}
		return nil, err
	}
	mapping.dirty = minBytes
	request.memory += minBytes
	return &limitedMemory{limit: limit, request: request, deadline: deadline, mapping: mapping, size: minBytes}, nil
}

// Allocate implements experimental.MemoryAllocator; each instance has its own.
func (m *limitedMemory) Allocate(_, _ uint64) experimental.LinearMemory { return m }

// Reallocate implements experimental.LinearMemory: it grows the memory to size bytes,
// or returns nil to refuse. wazero calls it first with the module's minimum, which
// newLimitedMemory reserved, then on every memory.grow.
func (m *limitedMemory) Reallocate(size uint64) []byte {
	grow := size - min(size, m.size)
	switch {
	case size > m.limit:
		m.refusal = memoryLimitText(uint32(m.limit / abi.PageSize))
		return nil
	case !m.request.fits(grow):
		m.refusal = requestTotalText
		return nil
	}
	if err := m.mapping.commit(size, *m.deadline); err != nil {
		m.refusal = fmt.Sprintf("what the host could commit (%v)", err)
		return nil
	}
	m.request.memory += grow
	m.size = max(m.size, size)
	m.mapping.dirty = max(m.mapping.dirty, size)
	return m.mapping.mem[:size:size]
}

// Free implements experimental.LinearMemory. wazero calls it when the instance closes;
// the host calls it too, after an instantiation that failed before wazero could. Only
// the first call does anything.
func (m *limitedMemory) Free() {
	if m.mapping == nil {
		return
	}
	m.request.memory -= m.size
	m.mapping.release()
	m.mapping, m.size = nil, 0
}
