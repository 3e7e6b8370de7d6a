package host

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/proctest"
	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// rss returns the resident set size of this process, from /proc/self/statm.
func rss(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	fields := strings.Fields(string(b))
	pages, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * uint64(os.Getpagesize())
}

// TestMemoryReturnsToTheOS: after requests that held 1 GiB of module memory at once,
// the host's resident memory comes back near where it was. Memory buffers used to be
// pooled in the Go heap or left to its garbage collector, and after a 2 GB request
// the host kept it.
//
// The requests hold their memory at once but run one after the other: each is a
// session whose instance writes all of its 64 MiB (four times warmMaxBytes, so none of
// it may stay pooled), and all of them stay open until the last has run. Making memory
// resident costs this VM 4-17 µs of processor time a page in page faults, 2 s for
// 512 MiB under load; run at once, as this test did with two requests of 512 MiB, the
// requests shared the processors with each other on top of the machine's load and ran
// past the request's module time of 10 s, which is wall time (abi.RequestModuleTime),
// before they had written what the test measures.
func TestMemoryReturnsToTheOS(t *testing.T) {
	s := newTestSandbox(t)
	const pages = 1024 // 64 MiB
	// memory.grow to 64 MiB, then memory.fill(0, 1, 64 MiB). The memory grows in the
	// call: a module whose memory is large from the start has a snapshot of it, which
	// the host keeps resident (within WithSnapshotMemory), and which is not what this
	// test is about.
	fill := slices.Concat([]byte{wasmtest.I32Const}, wasmtest.S32(pages-1), []byte{0x40, 0, wasmtest.Drop, wasmtest.I32Const, 0, wasmtest.I32Const, 1, wasmtest.I32Const},
		wasmtest.S32(pages*abi.PageSize), []byte{0xfc, 0x0b, 0, wasmtest.I32Const, 0})
	big := ModuleSpec{Module: compileBytes(t, s, callingModule(1, nil, 0, nil, fill)), Limits: abi.Limits{MemoryPages: pages, CallTimeout: abi.Duration(10 * time.Second)}}
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{big}})
	small := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(t, s, "spec_example")}}})
	for range 100 { // the pool of small memories, warm
		if _, err := small.Run(context.Background(), []byte(testRequest), storyteller, nil); err != nil {
			t.Fatal(err)
		}
	}
	baseline := rss(t)

	requests := make([]*Session, 1024*abi.MiB/(pages*abi.PageSize)) // 1 GiB
	for i := range requests {
		requests[i] = p.NewSession(context.Background())
		defer requests[i].Close() // if the test stops early; closing twice is harmless
		inst, err := requests[i].instance(StagePre, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := inst.call(hookPre, []byte(testRequest)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	peak := rss(t)
	for _, r := range requests {
		r.Close()
	}
	after := rss(t)
	t.Logf("RSS: %d MiB before, %d MiB with the %d requests' memory, %d MiB after", baseline/abi.MiB, peak/abi.MiB, len(requests), after/abi.MiB)
	if peak < baseline+768*abi.MiB {
		t.Fatalf("the requests took RSS from %d MiB to only %d MiB: the test does not measure what it should", baseline/abi.MiB, peak/abi.MiB)
	}
	if after > baseline+warmBudgetBytes {
		t.Errorf("RSS after the requests is %d MiB, %d MiB over the %d MiB before them", after/abi.MiB, (after-baseline)/abi.MiB, baseline/abi.MiB)
	}
}

// TestMemoryIsZeroWhenReused: a pooled memory is zero when the next instance gets it,
// however much of it the last one wrote.
func TestMemoryIsZeroWhenReused(t *testing.T) {
	request := &requestState{}
	for range 3 {
		deadline := time.Now().Add(time.Minute)
		m, err := newLimitedMemory(4*abi.PageSize, request, abi.PageSize, &deadline, nil)
		if err != nil {
			t.Fatal(err)
		}
		buf := m.Reallocate(abi.PageSize)
		grown := m.Reallocate(3 * abi.PageSize)
		if buf == nil || grown == nil || &buf[0] != &grown[0] {
			t.Fatal("growing moved or refused the memory")
		}
		for i, c := range grown {
			if c != 0 {
				t.Fatalf("byte %d of a fresh memory is %#x", i, c)
			}
		}
		for i := range grown {
			grown[i] = 0xa5
		}
		if m.Reallocate(5*abi.PageSize) != nil || !strings.Contains(m.refusal, "its limit of 4 pages") {
			t.Errorf("growth past the limit: refusal %q", m.refusal)
		}
		m.Free()
	}
	if request.memory != 0 {
		t.Errorf("the request still counts %d bytes after every memory was freed", request.memory)
	}
}

// BenchmarkMemoryCycle measures getting a memory of one page, growing it to two and
// giving it back: what every instance of a small module costs beyond wazero.
func BenchmarkMemoryCycle(b *testing.B) {
	request := &requestState{}
	deadline := time.Now().Add(time.Hour)
	for b.Loop() {
		m, err := newLimitedMemory(reservedBytes, request, abi.PageSize, &deadline, nil)
		if err != nil {
			b.Fatal(err)
		}
		m.Reallocate(2 * abi.PageSize)
		m.Free()
	}
}

// BenchmarkCommit measures making 64 MiB of a fresh mapping resident, as a memory's
// growth does: by commit, and, as the baseline, by writing a zero to each page, as
// commit did before it used MADV_POPULATE_WRITE. cpu-ns/op is the process's processor
// time, which the machine's load does not stretch:
//
//	go test -run '^$' -bench Commit -benchtime 20x ./host/
func BenchmarkCommit(b *testing.B) {
	const size = 64 * abi.MiB
	for _, bc := range []struct {
		name   string
		commit func(m *mapping) error
	}{
		{"zeroes", func(m *mapping) error {
			if err := syscall.Mprotect(m.mem[:size], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
				return err
			}
			for off := 0; off < size; off += os.Getpagesize() {
				m.mem[off] = 0
			}
			return nil
		}},
		{"commit", func(m *mapping) error { return m.commit(size, time.Now().Add(time.Hour)) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cpu := proctest.CPU()
			for b.Loop() {
				m, err := reserveMapping()
				if err == nil {
					err = bc.commit(m)
				}
				if err != nil {
					b.Fatal(err)
				}
				m.unmap()
			}
			b.ReportMetric(float64(proctest.CPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
