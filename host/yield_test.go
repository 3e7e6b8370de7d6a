package host

import (
	"context"
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
)

// TestYieldWaitIsNotModuleTime is the load of web's BenchmarkLoad in small: a call of
// about 10 ms of work, under a limit of 500 ms, while eight CPU-bound goroutines per
// processor run beside it (as generations of the embedded model do). Every millisecond
// the call yields, and then waits behind them, each running 10 ms before Go preempts
// it: counted as the module's time, those waits took the call past its limit (about
// 80 ms a yield). The limit is twice the default: the time the operating system gives
// other processes while the call runs does count, and with other test binaries on the
// same two cores (go test ./...) 250 ms was once not enough for the 10 ms.
func TestYieldWaitIsNotModuleTime(t *testing.T) {
	s := newTestSandbox(t)
	iterations := binary.LittleEndian.AppendUint32(nil, 10_000_000)
	p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: hostileModule(t, s, "burn"), Config: iterations,
		Limits: abi.Limits{CallTimeout: abi.Duration(500 * time.Millisecond)}}}})
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

// TestRefill: the fuel quantum doubles, up to maxFuelQuantum, while ticks come less
// than tickEvery/2 apart (code the points overcharge, like a Go guest's: 600 ticks a
// request at a fixed quantum), stays while they come about tickEvery apart, and is back
// at fuelQuantum at the first tick more than 2*tickEvery after the last, so that code
// the points undercharge, run after cheap code, gets one long interval, not more.
func TestRefill(t *testing.T) {
	start := time.Unix(0, 0)
	inst := &instance{ticked: start, quantum: fuelQuantum}
	now := start
	for _, tt := range []struct {
		after time.Duration // since the previous tick
		want  uint64
	}{
		{time.Microsecond, 2 * fuelQuantum},
		{time.Microsecond, 4 * fuelQuantum},
		{2 * time.Microsecond, 8 * fuelQuantum},
		{time.Microsecond, maxFuelQuantum},
		{time.Microsecond, maxFuelQuantum},
		{tickEvery, maxFuelQuantum},
		{2*tickEvery + time.Microsecond, fuelQuantum},
		{tickEvery, fuelQuantum},
		{time.Millisecond, fuelQuantum},
		{tickEvery/2 - 1, 2 * fuelQuantum},
	} {
		now = now.Add(tt.after)
		if got := inst.refill(now); got != tt.want {
			t.Fatalf("a tick %s after the previous one gave %d points, want %d", tt.after, got, tt.want)
		}
	}
}
