package host

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero/experimental"

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
	mem, err := syscall.Mmap(-1, 0, int(reservedBytes), syscall.PROT_NONE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserving %d MiB of address space: %w", reservedBytes/abi.MiB, err)
	}
	return &mapping{mem: mem}, nil
}

// populateCheckBytes is how many bytes commit populates between two looks at the
// deadline: 256 pages, about 1-2 ms of page faults on a virtual machine.
const populateCheckBytes = abi.MiB

// commit makes the first size bytes readable and writable, and populates the new
// pages: it writes a zero to each, from Go, so that the kernel's page faults, several
// microseconds each on a virtual machine, happen here, where the Go scheduler can stop
// the goroutine for a garbage collection, and not in the module's native code, which
// it cannot stop until the next tick: faults in a 1 MiB fill of fresh memory held
// every stop-the-world of the host for up to 5 ms. Populating stops early, leaving the
// rest to fault when the module touches it, once the deadline has passed: the call
// then ends at its next tick.
func (m *mapping) commit(size uint64, deadline time.Time) error {
	if size <= m.committed {
		return nil
	}
	if err := syscall.Mprotect(m.mem[m.committed:size], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
		return err
	}
	page := uint64(os.Getpagesize())
	for off := m.committed; off < size; off += page {
		if (off-m.committed)%populateCheckBytes == 0 && time.Now().After(deadline) {
			break
		}
		m.mem[off] = 0
	}
	m.committed = size
	return nil
}

// release gives m back: zeroed to the pool when it is small and the pool has room,
// to the OS otherwise.
func (m *mapping) release() {
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
func newLimitedMemory(limit uint64, request *requestState, minBytes uint64, deadline *time.Time) (*limitedMemory, error) {
	mapping, err := acquireMapping()
	if err != nil {
		return nil, err
	}
	if err := mapping.commit(minBytes, *deadline); err != nil {
		mapping.release()
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
	case m.request.memory+grow > abi.RequestMemoryBytes:
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
