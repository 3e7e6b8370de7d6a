package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host/internal/meter"
)

// Pre-initialized snapshots (RATIONALE.md, "Snapshots"). Under SPEC.md §6 a module's
// initialization (its start section, then _initialize) sees nothing that differs from
// one instantiation to the next: the clock starts at the same time and steps the same
// way, the random stream has a fixed seed, there is no environment, no file and no
// input, and cocoon.config gives the stage's fixed config. WebAssembly code is itself
// deterministic here (the same native code runs on the same machine, with no threads).
// So the state initialization reaches is the same every time, and the host computes
// it once per stage module, at its first request (snapshotOf): it initializes an instance
// twice, under exactly a request's environment and the stage's limits, checks that
// both reached the same state, and keeps that state. Each request's instance then
// starts from it: its memory a copy-on-write view of the captured memory, its mutable
// globals set to the captured values, its clock, random stream and log counts where
// initialization left them, and initialization's log records copied into the
// request's. No code runs.
//
// The module's identity is unchanged (the hash of its uploaded bytes); a snapshot is,
// like compiled code, something the host derives from it, and it lives in the host's
// memory only, never on disk, within the sandbox's snapshot memory
// (WithSnapshotMemory).

// moduleInit is what a module's compiled form needs done to initialize an instance,
// learnt by meter.InstrumentDetached: the compiled module writes no memory and runs
// nothing when instantiated.
type moduleInit struct {
	// data holds the active data segments, written before the module is instantiated.
	data []meter.DataSegment
	// globals are the module's mutable globals and the names they are exported under.
	globals []moduleGlobal
	// unsnapshottable says why the state after initialization cannot be captured
	// with memory and globals alone; empty if it can.
	unsnapshottable string
}

type moduleGlobal struct {
	export string
	typ    byte
}

// newModuleInit keeps what d says about initialization. It copies the data segments'
// bytes, which alias the uploaded module, and refuses segments that do not fit in the
// module's initial memory of minPages (which WebAssembly would refuse at every
// instantiation).
func newModuleInit(d *meter.Detached, minPages uint32) (moduleInit, error) {
	mi := moduleInit{data: make([]meter.DataSegment, len(d.Data))}
	for i, seg := range d.Data {
		if end := uint64(seg.Offset) + uint64(len(seg.Bytes)); end > uint64(minPages)*abi.PageSize {
			return moduleInit{}, fmt.Errorf("data segment %d (%d bytes at %d) does not fit in the module's initial memory of %d pages",
				i, len(seg.Bytes), seg.Offset, minPages)
		}
		mi.data[i] = meter.DataSegment{Offset: seg.Offset, Bytes: bytes.Clone(seg.Bytes)}
	}
	for _, g := range d.Globals {
		mi.globals = append(mi.globals, moduleGlobal{export: meter.GlobalExport(g.Index), typ: g.Type})
		if g.Type != byte(api.ValueTypeI32) && g.Type != byte(api.ValueTypeI64) &&
			g.Type != byte(api.ValueTypeF32) && g.Type != byte(api.ValueTypeF64) && mi.unsnapshottable == "" {
			mi.unsnapshottable = fmt.Sprintf("mutable global %d holds a vector or a reference", g.Index)
		}
	}
	if d.ChangesTables && mi.unsnapshottable == "" {
		mi.unsnapshottable = "its code can change a table or drop a segment"
	}
	if len(mi.globals) > maxSnapshotGlobals && mi.unsnapshottable == "" {
		mi.unsnapshottable = fmt.Sprintf("it has %d mutable globals, more than the %d a snapshot restores", len(mi.globals), maxSnapshotGlobals)
	}
	return mi, nil
}

// maxSnapshotGlobals bounds the mutable globals restore sets, each found by its name
// (about 33 ns each among 1,024: BenchmarkSnapshotGlobals; RATIONALE.md has the
// command): a module with a million of them made every request's instance take 0.4 s
// to restore. Real guests have at most a few dozen (Go 8,
// AssemblyScript 28); a module with more is initialized per request, where wazero
// creates its globals within the time limit to instantiate.
const maxSnapshotGlobals = 1024

// initialize runs the module's initialization in a fresh instance: the data segments
// are already in memory; the start function, then _initialize.
func (inst *instance) initialize(ctx context.Context) error {
	for _, name := range [...]string{meter.StartExport, "_initialize"} {
		if fn := inst.mod.ExportedFunction(name); fn != nil {
			if err := fn.CallWithStack(ctx, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// snapshot is the state of a stage module's instance right after initialization.
type snapshot struct {
	memory *memoryImage
	state  initState
}

// initState is what initialization leaves in an instance, the memory aside.
type initState struct {
	globals []uint64 // in the order of moduleInit.globals
	clock   fakeClock
	random  []byte // the ChaCha8 stream's state, nil if initialization read none
	// records are what initialization logged; logged and logRecords count them
	// against the module's limits.
	records            []LogRecord
	logged, logRecords int
}

func (a *initState) equal(b *initState) bool {
	return slices.Equal(a.globals, b.globals) && a.clock == b.clock && bytes.Equal(a.random, b.random) &&
		slices.Equal(a.records, b.records) && a.logged == b.logged && a.logRecords == b.logRecords
}

// errNondeterministic: two initializations of one stage module reached different
// states, which SPEC.md §6 rules out; the module is then initialized per request.
var errNondeterministic = errors.New("two initializations reached different states")

// takeSnapshot initializes m twice, each in an instance of its own as a request would
// (the stage's limits and config, SPEC.md §6's environment, its own memory total), and
// returns the state both reached. It costs two initializations, a comparison of the
// two memories, a write of the pages that are not zero to a memfd and, while it runs,
// the memory of the two instances, outside the Go heap: the memories are compared
// and captured where they are, not copied (a module of 256 MiB would have grown the
// heap by 512 MiB, and the garbage collector's goal with it). It fails, and the module is
// initialized per request as before, when the module cannot be snapshot
// (moduleInit.unsnapshottable), when initialization fails (a trap, a limit, a
// rejection: every request then fails the same way), or when the two states differ.
func (s *Sandbox) takeSnapshot(m *stageModule) (*snapshot, error) {
	if why := m.module.init.unsnapshottable; why != "" {
		return nil, fmt.Errorf("the module cannot be snapshot: %s", why)
	}
	first, memory, state, err := s.initOnce(m)
	if err != nil {
		return nil, err
	}
	defer first.close()
	if size := uint64(len(memory)); !s.snapshots.fits(m.ownerList(), size) {
		return nil, &snapshotBudgetError{size} // not worth the second initialization
	}
	second, memory2, state2, err := s.initOnce(m)
	if err != nil {
		return nil, err
	}
	defer second.close()
	if !bytes.Equal(memory, memory2) || !state.equal(state2) {
		return nil, errNondeterministic
	}
	img, err := newMemoryImage(memory, s.snapshots, m.ownerList())
	if err != nil {
		return nil, err
	}
	return &snapshot{memory: img, state: *state}, nil
}

// DefaultSnapshotMemory is the default bound on what a sandbox's snapshots keep in
// memory (WithSnapshotMemory): about 180 Go guests' (5.5 MiB each), 8,000 C modules'
// (128 KiB).
const DefaultSnapshotMemory = 1 << 30

// WithSnapshotMemory bounds the bytes all of the sandbox's snapshots keep in memory
// (the sizes of their images) to bytes, DefaultSnapshotMemory if 0 or less. A snapshot lives as long as its pipeline, and a pipeline costs its owner
// only one request to fill: without a bound, a small module whose initialization
// writes 256 MiB, in many pipelines (one per config), would hold the host's memory
// for good. What counts against one owner is at most 1/snapshotOwnerShare of it. A stage
// module whose snapshot does not fit when its first request takes it is initialized
// per request until a request finds room for it (Sandbox.retakeSnapshot).
// `cocoon-host serve --snapshot-memory` sets it.
func (c SandboxConfig) WithSnapshotMemory(bytes int64) SandboxConfig {
	c.snapshotMemory = bytes
	return c
}

// snapshotOwnerShare: the snapshots counted against one owner (PipelineSpec.Owners)
// keep at most 1/snapshotOwnerShare of the sandbox's snapshot memory (128 MiB of the
// default: about 23 Go guests). A snapshot counts against the first owner of its
// pipeline, when it is taken, that has room for it: an owner whose share is full
// cannot keep a pipeline another owner also registered from being snapshot. Pipelines cost an API key nothing to keep, and a
// snapshot is taken at a stage module's first request: without a share, one key's
// pipelines, uploaded and sent one request each, held the whole budget for as long as
// the key kept them, and every other tenant's modules were initialized per request
// (the SDK's Go guests 7.7 times slower a request: BenchmarkSnapshotBudgetFull).
const snapshotOwnerShare = 8

// snapshotBudget counts the bytes the sandbox's snapshot images keep, in all and by
// owner.
type snapshotBudget struct {
	limit, ownerLimit uint64
	mu                sync.Mutex
	used              uint64
	byOwner           map[string]uint64 // only owners that have some counted
}

func newSnapshotBudget(limit int64) *snapshotBudget {
	if limit <= 0 {
		limit = DefaultSnapshotMemory
	}
	return &snapshotBudget{limit: uint64(limit), ownerLimit: uint64(limit) / snapshotOwnerShare, byOwner: map[string]uint64{}}
}

// reserve counts n more bytes for the first of owners whose share has room for them,
// and returns it; false, counting nothing, if they do not fit. With no owners (a
// pipeline built with none: the host's only one, as `cocoon run` builds it), only the
// total bounds them, and the owner returned is "".
func (b *snapshotBudget) reserve(owners []string, n uint64) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	owner, ok := b.roomLocked(owners, n)
	if !ok {
		return "", false
	}
	b.used += n
	if owner != "" {
		b.byOwner[owner] += n
	}
	return owner, true
}

// fits reports whether reserve(owners, n) would succeed now.
func (b *snapshotBudget) fits(owners []string, n uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.roomLocked(owners, n)
	return ok
}

// roomLocked returns the owner reserve would count n bytes for.
func (b *snapshotBudget) roomLocked(owners []string, n uint64) (string, bool) {
	if b.used+n > b.limit {
		return "", false
	}
	if len(owners) == 0 {
		return "", true
	}
	for _, owner := range owners {
		if b.byOwner[owner]+n <= b.ownerLimit {
			return owner, true
		}
	}
	return "", false
}

// release gives back n bytes that reserve counted for owner.
func (b *snapshotBudget) release(owner string, n uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if owner == "" {
		return
	}
	if b.byOwner[owner] -= n; b.byOwner[owner] == 0 {
		delete(b.byOwner, owner)
	}
}

// snapshotOf returns m's snapshot, taking it at the first call (takeSnapshot), or nil
// when it cannot be taken. Calls during the first wait for it: the first request
// through a stage module pays for two initializations, once. A snapshot that did not
// fit in the sandbox's snapshot memory is taken again once it fits
// (retakeSnapshot).
func (s *Sandbox) snapshotOf(m *stageModule) *snapshot {
	m.snapshotOnce.Do(func() {
		m.snapshot, m.unsnapshotted = s.takeSnapshot(m)
		m.snapshotTried.Store(true)
	})
	if m.snapshot != nil {
		return m.snapshot
	}
	return s.retakeSnapshot(m)
}

// maxSnapshotWait bounds the time a request waits for snapshots to be taken
// (SPEC.md §7.4): once it has waited that long, it takes no more, and its instances of
// modules whose snapshot is not taken yet initialize themselves, as a request's
// instances do without snapshots. A variable for tests.
var maxSnapshotWait = abi.RequestModuleTime

// snapshotFor is snapshotOf for an instance of m in request, whose time waiting for
// snapshots it counts: a request that has waited maxSnapshotWait takes none, and gets
// nil for a module whose snapshot is not taken yet (a later request takes it). The
// time is not the request's module time, so that a first request is not failed by
// work done for every later one; without a bound, a first request through a pipeline of
// 32 modules whose initializations take just under their limit (10 s at most each)
// held its generation slot for 640 s of initializations counted nowhere, which the
// client going away does not stop, once per pipeline an API key uploads. With it, a
// request waits at most maxSnapshotWait plus one module's two initializations, and
// every request takes at least one snapshot not taken yet, so the pipeline gets all of
// them.
func (s *Sandbox) snapshotFor(m *stageModule, request *requestState) *snapshot {
	if snap := m.takenSnapshot(); snap != nil || request.snapshotWait >= maxSnapshotWait {
		return snap // taken already, not timed; or not taken or retaken here
	}
	start := time.Now()
	snap := s.snapshotOf(m)
	request.snapshotWait += time.Since(start)
	return snap
}

// takenSnapshot is m's snapshot once snapshotOf took it, at the first request or a
// later one; nil before, or if it has none. It does not wait for a snapshot being
// taken: m.snapshot is read only once snapshotTried says snapshotOnce wrote it.
func (m *stageModule) takenSnapshot() *snapshot {
	if !m.snapshotTried.Load() {
		return nil
	}
	if m.snapshot != nil {
		return m.snapshot
	}
	return m.retaken.Load()
}

// retakeSnapshot returns the snapshot of m, whose first one did not fit in the
// sandbox's snapshot memory, taking it if it fits now; nil while it does not. The
// budget is shared by every tenant's pipelines: decided once, a tenant that filled it
// first (pipelines are cheap to upload, and their images stay until they are deleted)
// left every module whose first request came then initialized per request for as long
// as its pipeline lives, even after the filler's pipelines were deleted. It costs a
// look at the budget per request while the snapshot does not fit; when it does, one
// request pays for two initializations again (a second request meanwhile initializes
// its own instance rather than waiting), and if that attempt fails for another reason
// (initialization is deterministic, so only a time limit could) there is no other.
func (s *Sandbox) retakeSnapshot(m *stageModule) *snapshot {
	if snap := m.retaken.Load(); snap != nil {
		return snap
	}
	full, ok := errors.AsType[*snapshotBudgetError](m.unsnapshotted)
	if !ok || m.retakeFailed.Load() || !s.snapshots.fits(m.ownerList(), full.size) || !m.retaking.TryLock() {
		return nil
	}
	defer m.retaking.Unlock()
	if snap := m.retaken.Load(); snap != nil {
		return snap
	}
	snap, err := s.takeSnapshot(m)
	if err != nil {
		if _, full := errors.AsType[*snapshotBudgetError](err); !full { // filled again meanwhile: tried when it fits
			m.retakeFailed.Store(true)
		}
		return nil
	}
	m.retaken.Store(snap)
	return snap
}

// initOnce initializes a fresh instance of m and returns it, its memory (a view, valid
// until the caller closes the instance) and its state.
func (s *Sandbox) initOnce(m *stageModule) (*instance, []byte, *initState, error) {
	var request requestState
	inst, err := s.instantiateFrom(context.Background(), m, &request, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	mem := inst.mod.Memory()
	memory, _ := mem.Read(0, mem.Size())
	st := &initState{clock: inst.clock, records: request.records, logged: inst.logged, logRecords: inst.records}
	for _, g := range m.module.init.globals {
		st.globals = append(st.globals, inst.mod.ExportedGlobal(g.export).Get())
	}
	if inst.random != nil {
		if st.random, err = inst.random.MarshalBinary(); err != nil {
			inst.close()
			return nil, nil, nil, err
		}
	}
	return inst, memory, st, nil
}

// restore brings a fresh instance of a snapshot's module, whose memory maps the
// snapshot's, to the snapshot's state: the memory's size, the globals, the clock, the
// random stream and the logs.
func (inst *instance) restore(snap *snapshot) error {
	mem := inst.mod.Memory()
	if pages := uint32(snap.memory.size/abi.PageSize) - mem.Size()/abi.PageSize; pages > 0 {
		// The memory was reserved at the snapshot's size (newLimitedMemory); this
		// only tells wazero.
		if _, ok := mem.Grow(pages); !ok {
			inst.growthRefused = fmt.Sprintf("the memory of %d pages initialization left was refused: past %s",
				snap.memory.size/abi.PageSize, inst.memory.refusal)
			return errAbort
		}
	}
	st := &snap.state
	for i, g := range inst.spec.module.init.globals {
		inst.mod.ExportedGlobal(g.export).(api.MutableGlobal).Set(st.globals[i])
	}
	inst.clock = st.clock
	if st.random != nil {
		inst.random = new(rand.ChaCha8)
		if err := inst.random.UnmarshalBinary(st.random); err != nil {
			return err
		}
	}
	inst.logged, inst.records = st.logged, st.logRecords
	inst.request.records = append(inst.request.records, st.records...)
	return nil
}

// idleInstances keeps the instances of a stage module that ended their request in a
// state the host can reset exactly to the snapshot, so that the next request takes one
// instead of instantiating the module again (which, for a Go guest, is mostly wazero
// filling a table of a few thousand functions). An instance qualifies when its module
// has a snapshot, its instantiation and every call it made returned normally (a call
// stopped part-way may leave the metering's depth global, or anything, half-done), it
// did not exit, and its memory did not grow past the snapshot's (wazero cannot shrink
// a memory). Then, what differs from the snapshot is its memory, which put resets
// (imageMappings.reset), and its mutable globals, fuel, clock, random stream and logs,
// which adopt and restore set again; its tables and segments are the snapshot's,
// because a module with a snapshot has no instruction that changes them
// (moduleInit.unsnapshottable).
type idleInstances struct {
	mu   sync.Mutex
	free []*instance
}

// maxIdleInstances bounds the instances one stage module keeps: about what a machine
// of a few cores runs at once.
const maxIdleInstances = 8

// takeFor returns a kept instance for an instance that starts from snap, or nil: none
// when snap is nil (the instance initializes itself).
func (q *idleInstances) takeFor(snap *snapshot) *instance {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.free)
	if n == 0 || snap == nil {
		return nil
	}
	inst := q.free[n-1]
	q.free = q.free[:n-1]
	inst.memory.mapping.uncharge()
	return inst
}

// put resets inst and keeps it, if it qualifies and there is room; it reports
// whether it did. inst's memory and tables stop counting against its request.
func (q *idleInstances) put(inst *instance) bool {
	snap := inst.spec.takenSnapshot()
	if snap == nil || !inst.ready || inst.broken != nil || inst.exited || inst.memory.size != snap.memory.size ||
		inst.memory.mapping.image != snap.memory.imageMappings { // it initialized itself (Sandbox.instantiate)
		return false
	}
	q.mu.Lock()
	room := len(q.free) < maxIdleInstances
	q.mu.Unlock()
	if !room || !inst.memory.mapping.image.resetAndCharge(inst.memory.mapping) {
		return false
	}
	inst.request.memory -= inst.memory.size + inst.tableBytes
	// Kept, the memory counts against a request of its own, which wazero's closing
	// of the runtime (Sandbox.Close) or closeIdle frees it from.
	inst.memory.request, inst.request, inst.ctx = &requestState{memory: inst.memory.size}, nil, nil
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.free) >= maxIdleInstances {
		inst.mod.Close(context.Background()) // its mapping goes to the image's pool
		inst.memory.Free()
		return true
	}
	q.free = append(q.free, inst)
	return true
}

// adopt makes inst, new for a request, the owner of idle's module and memory.
func (inst *instance) adopt(idle *instance) {
	inst.mod, inst.memory, inst.alloc, inst.hooks, inst.fuel = idle.mod, idle.memory, idle.alloc, idle.hooks, idle.fuel
	inst.tableBytes, inst.ready = idle.tableBytes, true
	inst.memory.request, inst.memory.deadline = inst.request, &inst.deadline
	inst.request.memory += inst.memory.size + inst.tableBytes
	if inst.fuel != nil {
		inst.fuel.Set(0) // as in a new instance: the first metering point ticks
	}
}

// closeIdle closes the kept instances of a pipeline that is gone.
func closeIdle(idle []*idleInstances) {
	for _, q := range idle {
		q.mu.Lock()
		for _, inst := range q.free {
			inst.mod.Close(context.Background())
			inst.memory.Free()
		}
		q.free = nil
		q.mu.Unlock()
	}
}
