package host

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
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

// TestMemoryReturnsToTheOS: after requests that wrote 1 GiB of module memory in all,
// the host's resident memory comes back near where it was. Memory buffers used to be
// pooled in the Go heap or left to its garbage collector, and after a 2 GB request
// the host kept it.
func TestMemoryReturnsToTheOS(t *testing.T) {
	s := newTestSandbox(t)
	big := ModuleSpec{Module: hostileModule(t, s, "memory_total"), Limits: abi.Limits{MemoryPages: 4096, CallTimeout: abi.Duration(10 * time.Second)}}
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{big, big}}) // 512 MiB, the request's total
	small := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(t, s, "spec_example")}}})
	for range 100 { // the pool of small memories, warm
		if _, err := small.Run(context.Background(), []byte(testRequest), storyteller, nil); err != nil {
			t.Fatal(err)
		}
	}
	baseline := rss(t)

	var peak uint64
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			peak = max(peak, rss(t))
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	var requests sync.WaitGroup
	for range 2 { // 2 requests of 512 MiB at once: 1 GiB
		requests.Go(func() {
			if _, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil); err != nil {
				t.Error(err)
			}
		})
	}
	requests.Wait()
	close(done)
	sampler.Wait()
	after := rss(t)
	t.Logf("RSS: %d MiB before, %d MiB at the peak, %d MiB after", baseline/abi.MiB, peak/abi.MiB, after/abi.MiB)
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
