package host

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// slowInitModule is an ABI pre module whose _initialize counts down from n: work that
// succeeds, and takes as long as n loop iterations.
func slowInitModule(n int32) []byte {
	var m wasmtest.Module
	m.ABI()
	code := []byte{wasmtest.I32Const}
	code = append(code, wasmtest.S32(n)...)
	code = append(code, 0x21, 0, // local.set 0
		wasmtest.Loop, wasmtest.Empty,
		wasmtest.LocalGet, 0, wasmtest.I32Const, 0x7f, wasmtest.I32Add, // local 0 - 1
		0x22, 0, // local.tee 0
		wasmtest.BrIf, 0,
		wasmtest.End)
	init := m.FuncBody(nil, nil, [][2]byte{{1, wasmtest.I32}}, code)
	m.Export("_initialize", wasmtest.KindFunc, init)
	return m.Bytes()
}

// TestSnapshotWaitIsBounded is the first request through a module waiting for two
// initializations counted nowhere (SPEC.md §7.4), taken as far as a pipeline goes: an
// API key uploads pipelines of 16 pre modules (here one module under 16 configs)
// whose initializations take as long as their limit allows, and sends each pipeline
// one request. That request waited for all 32 initializations, up to 320 s with
// time_ms at its ceiling, holding its generation slot and counted in no module time;
// the client going away does not stop them. Now a request waits for snapshots at most
// maxSnapshotWait (here 1 ms, initializations taking far more) plus one module's two
// initializations: the first request takes the first module's snapshot only, and each
// later request at least one more, until all are taken.
func TestSnapshotWaitIsBounded(t *testing.T) {
	defer func(wait time.Duration) { maxSnapshotWait = wait }(maxSnapshotWait)
	maxSnapshotWait = time.Millisecond
	s := newTestSandbox(t)
	slow := compileBytes(t, s, slowInitModule(2_000_000))
	limits := abi.Limits{CallTimeout: abi.Duration(10 * time.Second)}
	var spec PipelineSpec
	for i := range abi.MaxStageModules {
		spec.Pre = append(spec.Pre, ModuleSpec{Module: slow, Config: fmt.Appendf(nil, "%d", i), Limits: limits})
	}
	p := pipeline(t, s, spec)
	taken := func() (n int) {
		for _, m := range p.pre {
			if m.snapshotTried.Load() {
				n++
			}
		}
		return n
	}
	request := func() {
		t.Helper()
		sess := p.NewSession(context.Background())
		defer sess.Close()
		for i := range p.pre {
			if _, err := sess.instance(StagePre, i); err != nil {
				t.Fatal(err)
			}
		}
	}
	request()
	if n := taken(); n != 1 {
		t.Fatalf("the first request took %d snapshots, want the first module's only", n)
	}
	for i := 2; taken() < len(p.pre); i++ {
		before := taken()
		request()
		if taken() == before || i > len(p.pre) {
			t.Fatalf("request %d: %d snapshots taken, %d before", i, taken(), before)
		}
	}
	for _, m := range p.pre {
		if m.snapshot == nil {
			t.Fatalf("no snapshot: %v", m.unsnapshotted)
		}
	}
}

// TestSnapshotWaitReadsNoSnapshotBeingTaken is requests that have waited
// maxSnapshotWait (here at once) running while another takes the module's snapshot:
// their instances initialize themselves and, closing, ask whether they may be kept for
// the snapshot. That read m.snapshot while snapshotOnce wrote it, a data race that
// -race reports; it must wait for snapshotTried.
func TestSnapshotWaitReadsNoSnapshotBeingTaken(t *testing.T) {
	defer func(wait time.Duration) { maxSnapshotWait = wait }(maxSnapshotWait)
	maxSnapshotWait = 0
	s := newTestSandbox(t)
	slow := compileBytes(t, s, slowInitModule(20_000_000))
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: slow, Limits: abi.Limits{CallTimeout: abi.Duration(10 * time.Second)}}}})
	m := p.pre[0]
	taken := make(chan *snapshot)
	go func() { taken <- s.snapshotOf(m) }()
	for !m.snapshotTried.Load() {
		sess := p.NewSession(context.Background())
		if _, err := sess.instance(StagePre, 0); err != nil {
			t.Fatal(err)
		}
		sess.Close()
	}
	if snap := <-taken; snap == nil {
		t.Fatalf("no snapshot: %v", m.unsnapshotted)
	}
}
