package host

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// chunkOnce runs one request through p that sends a single delta to its post module,
// and returns the module's output and the request's log records.
func chunkOnce(p *Pipeline) (string, []LogRecord, error) {
	sess := p.NewSession(context.Background())
	defer sess.Close()
	out, err := sess.Chunk("x")
	return out, sess.Logs(), err
}

// freshInit returns a pipeline like spec whose modules are initialized per request,
// as before snapshots: the reference a snapshot must equal.
func freshInit(t *testing.T, s *Sandbox, spec PipelineSpec) *Pipeline {
	t.Helper()
	p := pipeline(t, s, spec)
	for _, m := range append(p.pre, p.post...) {
		m.snapshotOnce.Do(func() {}) // never taken: every instance is initialized
	}
	return p
}

// TestSnapshotIsolation is the cross-request attack on snapshots: testdata/snapshot.wat
// overwrites, in every request, the data segment, the page its initialization grew
// into, the random bytes initialization kept, and its globals. Every request, eight at
// a time, must see what a fresh initialization gives: the same bytes as an instance
// initialized per request (which also checks that the snapshot restored the clock
// and the random stream where initialization left them), and the values the module
// was written to produce.
func TestSnapshotIsolation(t *testing.T) {
	s := newTestSandbox(t)
	spec := PipelineSpec{Post: []ModuleSpec{{Module: compile(t, s, "snapshot")}}}
	p := pipeline(t, s, spec)
	if m := p.post[0]; s.snapshotOf(m) == nil {
		t.Fatalf("no snapshot: %v", m.unsnapshotted)
	}
	want, wantLogs, err := chunkOnce(freshInit(t, s, spec))
	if err != nil {
		t.Fatal(err)
	}

	// The reference is what the module was written to produce.
	w := []byte(want)
	random := make([]byte, 32)
	rand.NewChaCha8(abi.RandomSeed()).Read(random)
	epoch := uint64(abi.ClockEpochUnix * int64(time.Second))
	for _, c := range []struct {
		what      string
		got, want []byte
	}{
		{"data segment", w[0:16], []byte("data segment....")},
		{"page written by init", w[16:32], []byte("heap by init....")},
		{"clock read by init", w[32:40], binary.LittleEndian.AppendUint64(nil, epoch)},
		{"count (start, then _initialize)", w[40:44], []byte{2, 0, 0, 0}},
		{"memory pages", w[44:48], []byte{4, 0, 0, 0}},
		{"random bytes read by init", w[48:64], random[:16]},
		{"clock read after init", w[64:72], binary.LittleEndian.AppendUint64(nil, epoch+uint64(abi.ClockStep))},
		{"random bytes read after init", w[72:88], random[16:]},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Fatalf("fresh instance: %s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if len(wantLogs) != 1 || wantLogs[0].Message != "initialized" {
		t.Fatalf("fresh instance logged %v, want initialization's record", wantLogs)
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				got, logs, err := chunkOnce(p)
				if err != nil {
					t.Error(err)
					return
				}
				if got != want {
					t.Errorf("request saw %q, want the state after initialization %q", got, want)
					return
				}
				if len(logs) != 1 || logs[0] != wantLogs[0] {
					t.Errorf("request logged %v, want initialization's %v", logs, wantLogs)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestSnapshotMemory: a snapshot's pages count against the request's memory, as the
// memory initialization grew to does, and a stage whose limit is below what
// initialization grows to fails as it would without snapshots.
func TestSnapshotMemory(t *testing.T) {
	s := newTestSandbox(t)
	m := compile(t, s, "snapshot")
	p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: m}}})
	sess := p.NewSession(context.Background())
	if _, err := sess.instance(StagePost, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := sess.request.memory, uint64(4*abi.PageSize); got != want {
		t.Errorf("request memory = %d, want the snapshot's %d", got, want)
	}
	sess.Close()
	if sess.request.memory != 0 {
		t.Errorf("request memory = %d after close, want 0", sess.request.memory)
	}

	// The request's total: a snapshot of 4 pages does not fit where 3 are left.
	sess = p.NewSession(context.Background())
	sess.request.memory = abi.RequestMemoryBytes - 3*abi.PageSize
	_, err := sess.instance(StagePost, 0)
	sess.Close()
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeMemoryLimit || !strings.Contains(e.Message, requestTotalText) {
		t.Errorf("got %v, want memory_limit naming the request's total", err)
	}

	small := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: m, Limits: abi.Limits{MemoryPages: 3}}}})
	if s.snapshotOf(small.post[0]) != nil {
		t.Fatal("a snapshot was taken past the stage's memory limit")
	}
	if _, _, err := chunkOnce(small); !errors.As(err, &e) || e.Code != CodeMemoryLimit || !strings.Contains(e.Message, "during instantiation") && !strings.Contains(e.Message, "instantiation failed") {
		t.Errorf("got %v, want memory_limit during instantiation", err)
	}
}

// TestSnapshotFallsBack: what cannot be snapshot is initialized per request, with the
// outcome it had before snapshots.
func TestSnapshotFallsBack(t *testing.T) {
	s := newTestSandbox(t)
	t.Run("initialization traps", func(t *testing.T) {
		p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: compile(t, s, "snapshot"), Config: []byte("T")}}})
		if s.snapshotOf(p.post[0]) != nil {
			t.Fatal("snapshot of a failed initialization")
		}
		var e *Error
		if _, _, err := chunkOnce(p); !errors.As(err, &e) || e.Code != CodeTrap || !strings.Contains(e.Message, "during instantiation") {
			t.Errorf("got %v, want a trap during instantiation", err)
		}
	})
	t.Run("code changes a table", func(t *testing.T) {
		p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: compile(t, s, "snapshot_table")}}})
		if m := p.post[0]; s.snapshotOf(m) != nil || m.unsnapshotted == nil || !strings.Contains(m.unsnapshotted.Error(), "table") {
			t.Fatalf("snapshot = %v, reason %v; want none, for the table", m.snapshot != nil, m.unsnapshotted)
		}
		for range 2 {
			out, _, err := chunkOnce(p)
			if err != nil || out != "\x07\x00\x00\x00" {
				t.Fatalf("got %q, %v; want a fresh initialization's 7", out, err)
			}
		}
	})
	t.Run("initialization drops a segment", func(t *testing.T) {
		m := hostileModule(t, s, "drop_segments")
		for _, c := range []struct{ config, want, trap string }{
			{"d", "", "out of bounds memory access"},
			{"e", "", "invalid table access"},
			{"", "secret!!", ""},
		} {
			p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: m, Config: []byte(c.config)}}})
			for range 2 {
				out, _, err := chunkOnce(p)
				var e *Error
				if c.trap == "" && (err != nil || out != c.want) ||
					c.trap != "" && (!errors.As(err, &e) || e.Code != CodeTrap || !strings.Contains(e.Message, c.trap)) {
					t.Fatalf("config %q: got %q, %v; want %q or a trap %q", c.config, out, err, c.want, c.trap)
				}
			}
			if m := p.post[0]; m.snapshot != nil {
				t.Fatalf("config %q: a snapshot of a module that drops a segment", c.config)
			}
		}
	})
}

// TestSnapshotExamples: the example modules, in every language, are served from
// snapshots, and answer as modules initialized per request do.
func TestSnapshotExamples(t *testing.T) {
	s := newTestSandbox(t)
	for _, path := range []string{"prompt-template/go/prompt-template.wasm", "prompt-template/c/prompt-template.wasm"} {
		t.Run(path, func(t *testing.T) {
			m := compileBytes(t, s, wasmtest.Plugin(t, path))
			spec := PipelineSpec{Pre: []ModuleSpec{{Module: m, Config: []byte(`{"system":"Be brief.","user_template":"Say: {{content}}"}`)}}}
			p := pipeline(t, s, spec)
			if s.snapshotOf(p.pre[0]) == nil {
				t.Fatalf("no snapshot: %v", p.pre[0].unsnapshotted)
			}
			want, err := freshInit(t, s, spec).Run(context.Background(), []byte(testRequest), storyteller, nil)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				got, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Request, want.Request) || !strings.Contains(string(got.Request), "Say: Tell me a story") {
					t.Fatalf("snapshot made %s, fresh initialization %s", got.Request, want.Request)
				}
			}
		})
	}
}

// TestDataSegmentOutsideMemory: a data segment that does not fit in the initial memory,
// which fails every instantiation, is refused at upload.
func TestDataSegmentOutsideMemory(t *testing.T) {
	s := newTestSandbox(t)
	var m wasmtest.Module
	m.ABI()
	m.Data(make([]byte, abi.PageSize+1))
	_, err := s.Compile(context.Background(), m.Bytes())
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalidModule || !strings.Contains(e.Message, "data segment 0") {
		t.Errorf("got %v, want invalid_module naming data segment 0", err)
	}
}

// fillingModule is a pre module with a memory of pages pages, which its
// initialization and every call of cocoon_pre fill with value.
func fillingModule(pages int, value byte) []byte {
	var m wasmtest.Module
	m.Memory(0, uint64(pages), 0)
	m.Export("memory", wasmtest.KindMemory, 0)
	m.ExportFunc("cocoon_abi_v1", nil, nil)
	m.ExportFunc("cocoon_alloc", []byte{wasmtest.I32}, []byte{wasmtest.I32})
	fill := slices.Concat([]byte{wasmtest.I32Const, 0, wasmtest.I32Const}, wasmtest.S32(int32(value)),
		[]byte{wasmtest.I32Const}, wasmtest.S32(int32(pages*abi.PageSize)), []byte{0xfc, 11, 0}) // memory.fill(0, value, all)
	init := m.FuncBody(nil, nil, nil, fill)
	m.Export("_initialize", wasmtest.KindFunc, init)
	pre := m.FuncBody([]byte{wasmtest.I32, wasmtest.I32}, []byte{wasmtest.I64}, nil, append(fill, 0x42, 0))
	m.Export("cocoon_pre", wasmtest.KindFunc, pre)
	return m.Bytes()
}

// TestSnapshotPoolsAreBounded: a module whose requests write every page of a large
// snapshot leaves every pooled mapping of it and every kept instance with that many
// pages of its own. What all of them keep resident is bounded by the warm pool's
// budget, however many stage modules and requests there are (the images themselves,
// read while resetting, add one more budget's worth here).
func TestSnapshotPoolsAreBounded(t *testing.T) {
	s := newTestSandbox(t)
	// 16 MiB of memory, all written by initialization and by every request.
	const pages = 256
	module := compileBytes(t, s, fillingModule(pages, 1))
	var pipelines []*Pipeline
	for range 4 {
		p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: module, Limits: abi.Limits{MemoryPages: pages, CallTimeout: abi.Duration(5 * time.Second)}}}})
		if s.snapshotOf(p.pre[0]) == nil {
			t.Fatalf("no snapshot: %v", p.pre[0].unsnapshotted)
		}
		pipelines = append(pipelines, p)
	}
	before := rss(t)
	var wg sync.WaitGroup
	for _, p := range pipelines {
		for range 8 {
			wg.Go(func() {
				if err := preCall(p); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	// 4 stage modules, 8 instances each, 16 MiB written by each: 512 MiB if kept.
	if grown := rss(t) - before; grown > 3*warmBudgetBytes {
		t.Errorf("the pools keep %d MiB resident, over three times the warm budget of %d MiB", grown>>20, warmBudgetBytes>>20)
	}
	warmPool.Lock()
	charged := warmPool.bytes
	warmPool.Unlock()
	if charged > warmBudgetBytes {
		t.Errorf("%d MiB charged to the warm pool, over its budget of %d MiB", charged>>20, warmBudgetBytes>>20)
	}
}

// TestNewPipelineRunsNoModule: building a pipeline, which the registry does under the
// lock every request's lookup takes, does not run a module's initialization, which
// may take its whole time limit: that waits for the pipeline's first request.
func TestNewPipelineRunsNoModule(t *testing.T) {
	s := newTestSandbox(t)
	// An initialization that ran would take all of its limit of 10 s of module time,
	// and so at least 10 s of wall time; building the pipeline takes milliseconds,
	// and a loaded machine makes that seconds at worst.
	spec := PipelineSpec{Pre: []ModuleSpec{{Module: compileBytes(t, s, initLoopModule()), Limits: tenSeconds}}}
	start := time.Now()
	p := pipeline(t, s, spec)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("NewPipeline took %v: it ran the module's initialization", took)
	}
	if p.pre[0].snapshot != nil || p.pre[0].unsnapshotted != nil {
		t.Fatal("a snapshot was attempted before the first request")
	}
}

// initLoopModule is the smallest ABI module whose _initialize loops forever.
func initLoopModule() []byte {
	var m wasmtest.Module
	m.ABI()
	loop := m.FuncBody(nil, nil, nil, []byte{wasmtest.Loop, wasmtest.Empty, 0x0c, 0, wasmtest.End}) // loop br 0 end
	m.Export("_initialize", wasmtest.KindFunc, loop)
	return m.Bytes()
}

// TestSnapshotSeesRequestMemory is the attack of testdata/hostile/init_grow.wat on a
// snapshot taken in a request of its own: the module's initialization grows its
// memory, which a request whose first two post modules hold all but 16 pages of its
// 512 MiB refuses. An instance started from the snapshot (17 pages) must behave as a
// fresh initialization in that request does, whose growth returns -1, and not fail
// with memory_limit or see a growth succeed; and every later request, from kept
// instances too, the same.
func TestSnapshotSeesRequestMemory(t *testing.T) {
	s := newTestSandbox(t)
	m := hostileModule(t, s, "init_grow")
	// Ten seconds a call: growing 511 MiB a page at a time is slow under the race
	// detector, and time is not what this is about.
	spec := PipelineSpec{Post: []ModuleSpec{
		{Module: m, Limits: abi.Limits{MemoryPages: abi.CeilingLimits.MemoryPages, CallTimeout: tenSeconds.CallTimeout}},
		{Module: m, Limits: abi.Limits{MemoryPages: abi.CeilingLimits.MemoryPages - 16, CallTimeout: tenSeconds.CallTimeout}},
		{Module: m, Limits: tenSeconds},
	}}
	refused := string(binary.LittleEndian.AppendUint32(nil, 0xffffffff))
	want, _, err := chunkOnce(freshInit(t, s, spec))
	if err != nil || want != refused {
		t.Fatalf("fresh initialization: %q, %v; want the growth refused (%q)", want, err, refused)
	}
	p := pipeline(t, s, spec)
	for i := range 3 {
		got, _, err := chunkOnce(p)
		if err != nil || got != want {
			t.Fatalf("request %d: %q, %v; want %q as without snapshots", i, got, err, want)
		}
	}
	if s.snapshotOf(p.post[2]) == nil {
		t.Fatalf("the module has no snapshot: %v", p.post[2].unsnapshotted)
	}
	// Alone in a request, the growth succeeds, from the snapshot as without.
	alone := PipelineSpec{Post: []ModuleSpec{{Module: m, Limits: tenSeconds}}}
	for _, p := range []*Pipeline{freshInit(t, s, alone), pipeline(t, s, alone)} {
		if got, _, err := chunkOnce(p); err != nil || got != "\x01\x00\x00\x00" {
			t.Fatalf("alone: %q, %v; want the growth from 1 page", got, err)
		}
	}
}

// TestPooledMemoryIsolation is the attack of testdata/hostile/spy.wat on the pools
// memories go back to: painters fill every page they have, alone and in the same
// request as a spy, while spies, and modules served from snapshots
// (testdata/snapshot.wat, two pipelines of one module), run beside them, interleaved
// on eight goroutines; and that of testdata/hostile/grown_spy.wat on one module's
// snapshot, whose requests paint and spy by turns, growing past the snapshot or not.
// Every spy must find its memory zero and its data segment as it was, and every
// snapshot's request must answer as a fresh initialization does.
func TestPooledMemoryIsolation(t *testing.T) {
	s := newTestSandbox(t)
	spy := hostileModule(t, s, "spy")
	snap := compile(t, s, "snapshot")
	// Time is not what this is about: scans of 4 MiB, eight at a time, take long
	// under the race detector.
	painter := ModuleSpec{Module: spy, Config: []byte("P"), Limits: tenSeconds}
	spying := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: spy, Limits: tenSeconds}}})
	painting := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{painter}})
	// The painter's output (nothing) is the spy's input: the spy still runs.
	both := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{painter, {Module: spy, Limits: tenSeconds}}})
	snapSpec := PipelineSpec{Post: []ModuleSpec{{Module: snap}}}
	want, _, err := chunkOnce(freshInit(t, s, snapSpec))
	if err != nil {
		t.Fatal(err)
	}
	snapshots := []*Pipeline{pipeline(t, s, snapSpec), pipeline(t, s, snapSpec)}
	// One stage module that paints and spies by turns, from its snapshot.
	grown := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: hostileModule(t, s, "grown_spy"), Limits: tenSeconds}}})
	if grown.sandbox.snapshotOf(grown.post[0]) == nil {
		t.Fatalf("grown_spy has no snapshot: %v", grown.post[0].unsnapshotted)
	}
	clean := "\x00\x00\x00\x00initial content."
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				op := "PQGs"[(g+i)%4 : (g+i)%4+1]
				sess := grown.NewSession(context.Background())
				got, err := sess.Chunk(op)
				sess.Close()
				if want := map[bool]string{true: "pp", false: clean}[op == "P" || op == "Q"]; err != nil || got != want {
					t.Errorf("grown_spy %q: got %q (%v), want %q", op, got, err, want)
				}
				switch (g + i) % 4 {
				case 0:
					if _, _, err := chunkOnce(painting); err != nil {
						t.Error(err)
					}
				case 1, 2:
					p := spying
					if g%2 == 0 {
						p = both
					}
					if got, _, err := chunkOnce(p); err != nil || got != "\x00\x00\x00\x00" {
						t.Errorf("a spy found %q words not zero (%v)", got, err)
					}
				case 3:
					if got, _, err := chunkOnce(snapshots[g%2]); err != nil || got != want {
						t.Errorf("a snapshot's request saw %q (%v), want %q", got, err, want)
					}
				}
			}
		})
	}
	wg.Wait()
}

// manyGlobalsModule is a post module with n mutable i32 globals, whose _initialize
// sets the last to 7 and whose cocoon_chunk returns that global's 4 bytes.
func manyGlobalsModule(n int) []byte {
	var m wasmtest.Module
	m.Memory(0, 1, 0)
	m.Export("memory", wasmtest.KindMemory, 0)
	m.ExportFunc("cocoon_abi_v1", nil, nil)
	alloc := m.FuncBody([]byte{wasmtest.I32}, []byte{wasmtest.I32}, nil, []byte{wasmtest.I32Const, 0x80, 0x08}) // 1024
	m.Export("cocoon_alloc", wasmtest.KindFunc, alloc)
	for range n {
		m.Global(wasmtest.I32, true, []byte{wasmtest.I32Const, 0})
	}
	last := wasmtest.U32(uint64(n - 1))
	initialize := m.FuncBody(nil, nil, nil, slices.Concat([]byte{wasmtest.I32Const, 7, 0x24}, last)) // global.set
	m.Export("_initialize", wasmtest.KindFunc, initialize)
	chunk := m.FuncBody([]byte{wasmtest.I32, wasmtest.I32}, []byte{wasmtest.I64}, nil, slices.Concat(
		[]byte{wasmtest.I32Const, 0, 0x23}, last, // global.get
		[]byte{0x36, 2, 0, 0x42, 4})) // i32.store at 0, i64.const 4 (4 bytes at 0)
	m.Export("cocoon_chunk", wasmtest.KindFunc, chunk)
	m.Export("cocoon_end", wasmtest.KindFunc, m.FuncBody(nil, []byte{wasmtest.I64}, nil, []byte{0x42, 0}))
	return m.Bytes()
}

// TestSnapshotGlobals: restoring a snapshot sets every mutable global, found by its
// name. A module with a million of them made each request's instance take 0.4 s of the
// host's time to restore, counted nowhere: now a snapshot restores at most
// maxSnapshotGlobals (a module with more is initialized per request), and restoring
// a kept instance counts against the request's module time as any instantiation.
func TestSnapshotGlobals(t *testing.T) {
	s := newTestSandbox(t)
	for _, n := range []int{maxSnapshotGlobals, maxSnapshotGlobals + 1} {
		p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: compileBytes(t, s, manyGlobalsModule(n))}}})
		for range 3 {
			if got, _, err := chunkOnce(p); err != nil || got != "\x07\x00\x00\x00" {
				t.Fatalf("%d globals: got %q, %v; want the 7 initialization set", n, got, err)
			}
		}
		m := p.post[0]
		if n > maxSnapshotGlobals {
			if m.snapshot != nil || m.unsnapshotted == nil || !strings.Contains(m.unsnapshotted.Error(), "mutable globals") {
				t.Fatalf("%d globals: snapshot %v, reason %v; want none, for the globals", n, m.snapshot != nil, m.unsnapshotted)
			}
			continue
		}
		if m.snapshot == nil || len(m.idle.free) == 0 {
			t.Fatalf("%d globals: no snapshot (%v) or no kept instance", n, m.unsnapshotted)
		}
		sess := p.NewSession(context.Background())
		_, err := sess.instance(StagePost, 0)
		moduleTime := sess.request.moduleTime
		sess.Close()
		if err != nil || moduleTime <= 0 {
			t.Errorf("restoring a kept instance: %v, module time %v; want it counted", err, moduleTime)
		}
	}
}

// BenchmarkSnapshotGlobals measures restore, which sets each of a module's mutable
// globals found by its name, for a module with one global and one with
// maxSnapshotGlobals: the difference over maxSnapshotGlobals-1 is the cost of a global,
// which bounds what the most a snapshot restores costs a request (RATIONALE.md).
//
//	go test -run '^$' -bench BenchmarkSnapshotGlobals -benchtime 20000x ./host/
func BenchmarkSnapshotGlobals(b *testing.B) {
	s := newTestSandbox(b)
	for _, n := range []int{1, maxSnapshotGlobals} {
		b.Run(fmt.Sprintf("globals=%d", n), func(b *testing.B) {
			p := pipeline(b, s, PipelineSpec{Post: []ModuleSpec{{Module: compileBytes(b, s, manyGlobalsModule(n))}}})
			if _, _, err := chunkOnce(p); err != nil {
				b.Fatal(err)
			}
			m := p.post[0]
			snap := s.snapshotOf(m)
			if snap == nil {
				b.Fatalf("%d globals: no snapshot: %v", n, m.unsnapshotted)
			}
			sess := p.NewSession(context.Background())
			defer sess.Close()
			inst, err := sess.instance(StagePost, 0)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := inst.restore(snap); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSnapshotImagesAreBounded: a snapshot lives as long as its pipeline, and one
// request fills it. A module whose initialization writes its whole memory, in pipelines
// that differ only by config, kept an image per pipeline for good, and nothing bounded
// them: a few such pipelines of 16 modules of 256 MiB filled the host's memory. Now
// the images of a sandbox fit in its snapshot memory (WithSnapshotMemory): here 2.5
// MiB, two images of 1 MiB. They count whole, zero pages too: a request that touches a
// page of the image the memfd does not hold makes it hold one, so an image of zeros
// costs as much once requests have run (here each request writes every page). A
// stage module whose image does not fit is initialized per request and answers all the
// same; and the images of pipelines that are gone give their room back.
func TestSnapshotImagesAreBounded(t *testing.T) {
	const limit = 5 * abi.MiB / 2
	for _, value := range []byte{1, 0} {
		s, err := NewSandbox(context.Background(), NewSandboxConfig().WithSnapshotMemory(limit))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		module := compileBytes(t, s, fillingModule(16, value))
		var pipelines []*Pipeline
		for i := range 4 {
			p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: module, Config: []byte{byte('a' + i)}}}})
			for range 2 {
				if err := preCall(p); err != nil {
					t.Fatalf("filled with %d, pipeline %d: %v", value, i, err)
				}
			}
			m := p.pre[0]
			if _, full := errors.AsType[*snapshotBudgetError](m.unsnapshotted); m.snapshot == nil && !full {
				t.Fatalf("filled with %d, pipeline %d: no snapshot, because %v", value, i, m.unsnapshotted)
			}
			pipelines = append(pipelines, p)
		}
		var taken, held int64
		for _, p := range pipelines {
			if snap := p.pre[0].snapshot; snap != nil {
				var st unix.Stat_t
				if err := unix.Fstat(snap.memory.fd, &st); err != nil {
					t.Fatal(err)
				}
				taken, held = taken+1, held+st.Blocks*512
			}
		}
		if taken != 2 || held > limit {
			t.Errorf("filled with %d: %d snapshots of 1 MiB whose memfds hold %d KiB, want 2 within %d KiB", value, taken, held>>10, limit>>10)
		}
		// The pipelines are gone: their kept instances are closed, then their images.
		pipelines = nil
		for deadline := time.Now().Add(10 * time.Second); ; {
			runtime.GC()
			s.snapshots.mu.Lock()
			used := s.snapshots.used
			s.snapshots.mu.Unlock()
			if used == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("filled with %d: %d bytes of snapshots still counted after their pipelines went away", value, used)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestSnapshotAllocatesNoCopy: taking a snapshot compares and captures the memories of
// its two initializations where they are, outside the Go heap. Copied, a module that
// fills 64 MiB in its initialization added 128 MiB to the heap, and a module of 256 MiB
// in each of many new pipelines grew the garbage collector's goal for good.
func TestSnapshotAllocatesNoCopy(t *testing.T) {
	s := newTestSandbox(t)
	const pages = 1024 // 64 MiB
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compileBytes(t, s, fillingModule(pages, 1)),
		Limits: abi.Limits{MemoryPages: pages, CallTimeout: tenSeconds.CallTimeout}}}})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	snap := s.snapshotOf(p.pre[0])
	runtime.ReadMemStats(&after)
	if snap == nil {
		t.Fatalf("no snapshot: %v", p.pre[0].unsnapshotted)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 8*abi.MiB {
		t.Errorf("taking a snapshot of 64 MiB allocated %d MiB on the Go heap", allocated>>20)
	}
}
