package host

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// preCall runs one request through p's first pre module: an instance of it and a
// call of cocoon_pre.
func preCall(p *Pipeline) error {
	sess := p.NewSession(context.Background())
	defer sess.Close()
	inst, err := sess.instance(StagePre, 0)
	if err == nil {
		_, err = inst.call(hookPre, nil)
	}
	return err
}

func preOnce(t *testing.T, p *Pipeline) {
	t.Helper()
	if err := preCall(p); err != nil {
		t.Fatal(err)
	}
}

// snapshotBytesUsed is what s's snapshot images count against its budget.
func snapshotBytesUsed(s *Sandbox) uint64 {
	s.snapshots.mu.Lock()
	defer s.snapshots.mu.Unlock()
	return s.snapshots.used
}

// TestSnapshotBudgetIsNotTakenForGood is one tenant degrading the others through the
// sandbox's snapshot memory, which all pipelines share: an attacker with one API key
// uploads pipelines whose modules' images fill the budget (here 2.5 MiB, two images
// of 1 MiB), then an honest tenant's module, whose image fits in an empty budget,
// has its first request. Its snapshot did not fit then, and was decided once: the
// module was initialized per request for as long as its pipeline lived, even after the
// attacker deleted its pipelines and the budget was empty again. Now the honest
// module is snapshot at its first request after the room is back.
func TestSnapshotBudgetIsNotTakenForGood(t *testing.T) {
	const limit = 5 * abi.MiB / 2
	s, err := NewSandbox(context.Background(), NewSandboxConfig().WithSnapshotMemory(limit))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	filler := compileBytes(t, s, fillingModule(16, 1))
	var attacker []*Pipeline
	for i := range 2 {
		p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: filler, Config: []byte{byte('a' + i)}}}})
		preOnce(t, p)
		if p.pre[0].snapshot == nil {
			t.Fatalf("attacker pipeline %d: no snapshot: %v", i, p.pre[0].unsnapshotted)
		}
		attacker = append(attacker, p)
	}

	honest := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compileBytes(t, s, fillingModule(16, 2))}}})
	m := honest.pre[0]
	preOnce(t, honest)
	if _, full := errors.AsType[*snapshotBudgetError](m.unsnapshotted); s.snapshotOf(m) != nil || !full {
		t.Fatalf("with the budget full: snapshot %v, because %v; want none, for the budget", s.snapshotOf(m) != nil, m.unsnapshotted)
	}
	for range 3 { // answered all the same, each from its own initialization
		preOnce(t, honest)
	}
	if m.takenSnapshot() != nil {
		t.Fatal("a snapshot was taken with the budget full")
	}

	// The attacker deletes its pipelines: once they are collected their room is back,
	// and the honest module's next request takes its snapshot.
	attacker = nil
	for deadline := time.Now().Add(10 * time.Second); snapshotBytesUsed(s) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes of snapshots still counted after the attacker's pipelines went away", snapshotBytesUsed(s))
		}
		runtime.GC()
	}
	var wg sync.WaitGroup // the retake with requests beside it, which do not wait for it
	for range 8 {
		wg.Go(func() {
			if err := preCall(honest); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if s.snapshotOf(m) == nil {
		t.Fatal("the budget is empty again, and the honest module is still initialized per request")
	}
	preOnce(t, honest) // from the snapshot, and its instance is kept
	if len(m.idle.free) == 0 {
		t.Error("instances of the retaken snapshot are not kept")
	}
	if used := snapshotBytesUsed(s); used != abi.MiB {
		t.Errorf("the budget counts %d bytes, want the honest image's %d", used, abi.MiB)
	}
}

// BenchmarkSnapshotBudgetFull is what a tenant whose module found the snapshot memory
// full pays per request: the SDK's Go prompt template run from its snapshot
// ("snapshot") and initialized per request ("full", what it gets while the budget has
// no room for it), in the same run.
func BenchmarkSnapshotBudgetFull(b *testing.B) {
	s := newTestSandbox(b)
	m := compileBytes(b, s, wasmtest.Plugin(b, "prompt-template/go/prompt-template.wasm"))
	spec := PipelineSpec{Pre: []ModuleSpec{{Module: m, Config: []byte(`{"system":"Be brief.","user_template":"Say: {{content}}"}`)}}}
	full := pipeline(b, s, spec)
	full.pre[0].snapshotOnce.Do(func() {}) // never taken, as when the budget had no room
	for _, bb := range []struct {
		name string
		p    *Pipeline
	}{{"snapshot", pipeline(b, s, spec)}, {"full", full}} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bb.p.Run(context.Background(), []byte(testRequest), storyteller, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSnapshotBudgetIsShared is the same attacker keeping its pipelines: one API key
// registers pipelines whose images (512 KiB each) would fill the budget of 8 MiB and
// sends each a request. Its snapshots now keep at most its share of the budget
// (1/snapshotOwnerShare, 1 MiB: two), its other modules are initialized per request, and
// another owner's module, uploaded afterwards, is snapshot at its first request. Nor
// can the attacker squat a pipeline it expects others to upload (a published example
// with its default config): registered first by the attacker, whose share is full, it
// is snapshot once the honest owner registers it too.
func TestSnapshotBudgetIsShared(t *testing.T) {
	const limit = 8 * abi.MiB
	ctx := context.Background()
	s, err := NewSandbox(ctx, NewSandboxConfig().WithSnapshotMemory(limit))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(ctx) })
	store, err := OpenStore(ctx, s, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenRegistry(s, store, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	add := func(owner string, module []byte, config int, request bool) *Pipeline {
		t.Helper()
		mod, err := store.Put(ctx, module)
		if err != nil {
			t.Fatal(err)
		}
		e, _, err := r.Add(parse(t, fmt.Sprintf(`{"abi_version":1,"model":"m","pre":[{"module":%q,"config":{"n":%d}}]}`, mod.Hash, config)), owner)
		if err != nil {
			t.Fatal(err)
		}
		if request {
			preOnce(t, e.Pipeline)
		}
		return e.Pipeline
	}
	var snapshots int
	for i := range 2 * snapshotOwnerShare {
		if p := add("key:attacker", fillingModule(8, 1), i, true); s.snapshotOf(p.pre[0]) != nil {
			snapshots++
		}
	}
	if used := snapshotBytesUsed(s); snapshots != 2 || used > limit/snapshotOwnerShare {
		t.Errorf("one owner's %d pipelines took %d snapshots, %d KiB; want two, within %d KiB", 2*snapshotOwnerShare, snapshots, used>>10, limit/snapshotOwnerShare>>10)
	}
	honest := add("key:honest", fillingModule(8, 2), 0, true)
	if m := honest.pre[0]; s.snapshotOf(m) == nil {
		t.Fatalf("another owner's module got no snapshot: %v", m.unsnapshotted)
	}

	squatted := add("key:attacker", fillingModule(8, 3), 0, true)
	if s.snapshotOf(squatted.pre[0]) != nil {
		t.Fatal("the attacker's share is full, and its squatted pipeline was snapshot")
	}
	if add("key:honest", fillingModule(8, 3), 0, true) != squatted {
		t.Fatal("the same manifest made another pipeline")
	}
	if m := squatted.pre[0]; s.snapshotOf(m) == nil {
		t.Fatalf("the honest owner registered the squatted pipeline, and it has no snapshot: %v", m.unsnapshotted)
	}
}
