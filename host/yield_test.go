package host

import (
	"context"
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestYieldWaitIsNotModuleTime is the load of web's BenchmarkLoad in small: a call of
// about 10 ms of work, under its limit of 250 ms, while eight CPU-bound goroutines per
// processor run beside it (as generations of the embedded model do). Every millisecond
// the call yields, and then waits behind them, each running 10 ms before Go preempts
// it: counted as the module's time, those waits took the call past its limit.
func TestYieldWaitIsNotModuleTime(t *testing.T) {
	s := newTestSandbox(t)
	iterations := binary.LittleEndian.AppendUint32(nil, 10_000_000)
	p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: hostileModule(t, s, "burn"), Config: iterations}}})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 8 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			x := 0
			for !stop.Load() {
				for i := range 1 << 20 {
					x += i
				}
			}
			sink.Add(int64(x))
		})
	}
	sess := p.NewSession(context.Background())
	_, err := sess.Chunk("x")
	sess.Close()
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("a call of 10 ms of work failed beside busy goroutines: %v", err)
	}
}
