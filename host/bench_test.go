package host

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
)

// request4KiB is a chat request of about 4 KiB, the size the README's figures use.
func request4KiB() []byte {
	b, _ := json.Marshal(map[string]any{
		"model": "m",
		"messages": []map[string]string{
			{"role": "system", "content": "You are a storyteller."},
			{"role": "user", "content": strings.Repeat("Tell me a story about a cat and a dog. ", 100)},
		},
	})
	return b
}

// BenchmarkRun measures what the sandbox adds to a request: fresh instances, the
// calls, the copies and the host's JSON checks. "no-modules" is the same request through
// an empty pipeline, the baseline; "wat" runs the SPEC.md example as pre and a
// stream-and-post module as post.
func BenchmarkRun(b *testing.B) {
	s := newTestSandbox(b)
	req := request4KiB()
	for _, bc := range []struct {
		name string
		spec PipelineSpec
	}{
		{"no-modules", PipelineSpec{}},
		{"wat", PipelineSpec{
			Pre:  []ModuleSpec{{Module: compile(b, s, "spec_example")}},
			Post: []ModuleSpec{{Module: compile(b, s, "hold")}},
		}},
	} {
		p := pipeline(b, s, bc.spec)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(req)))
			for b.Loop() {
				if _, err := p.Run(context.Background(), req, storyteller, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInstantiate measures a fresh instance of a small module, the per-request
// cost of isolation.
func BenchmarkInstantiate(b *testing.B) {
	s := newTestSandbox(b)
	p := pipeline(b, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(b, s, "spec_example")}}})
	b.ReportAllocs()
	for b.Loop() {
		sess := p.NewSession(context.Background())
		if _, err := sess.instance(StagePre, 0); err != nil {
			b.Fatal(err)
		}
		sess.Close()
	}
}

// BenchmarkIsolation measures what hostile modules cost the well-behaved requests that
// run beside them. For each attack of the hostile suite in turn, it alternates windows
// of well-behaved requests (the "wat" pipeline of BenchmarkRun) alone and windows of
// them while another goroutine runs the attack over and over, ten of each, b.N
// requests in all of each kind, so that the machine's other load weighs on both alike.
// The attacker takes one of the machine's two cores, as it would take one of the
// host's generation slots. The same is measured with a control in the attacker's
// place: Go code keeping the core busy, which is what any busy neighbour costs on this
// machine at this time (on a machine with other load, the operating system then has
// one core fewer to share). It reports the p99 alone, under the control, and under the
// worst attack, the worst attack's ratio to alone, and the ratio of each.
func BenchmarkIsolation(b *testing.B) {
	s := newTestSandbox(b)
	req := request4KiB()
	benign := pipeline(b, s, PipelineSpec{
		Pre:  []ModuleSpec{{Module: compile(b, s, "spec_example")}},
		Post: []ModuleSpec{{Module: compile(b, s, "hold")}},
	})
	fast := abi.Limits{CallTimeout: abi.Duration(250 * time.Millisecond)}
	big := ModuleSpec{Module: hostileModule(b, s, "memory_total"), Limits: abi.Limits{MemoryPages: 4096, CallTimeout: abi.Duration(10 * time.Second)}}
	attacks := []struct {
		name string
		spec PipelineSpec
	}{
		{"fill", PipelineSpec{Pre: []ModuleSpec{{Module: hostileModule(b, s, "fill"), Limits: fast}}}},
		{"copy", PipelineSpec{Pre: []ModuleSpec{{Module: hostileModule(b, s, "copy"), Limits: fast}}}},
		{"random", PipelineSpec{Pre: []ModuleSpec{{Module: hostileModule(b, s, "random"), Limits: fast}}}},
		{"host-calls", PipelineSpec{Pre: []ModuleSpec{{Module: hostileModule(b, s, "host_calls"), Limits: fast, Config: []byte("c")}}}},
		{"straight-line", PipelineSpec{Pre: []ModuleSpec{{Module: compileBytes(b, s, straightLineModule(25_000)), Limits: fast}}}},
		{"table", PipelineSpec{Pre: []ModuleSpec{{Module: hostileModule(b, s, "table_grow"), Limits: fast}}}},
		{"memory-total", PipelineSpec{Pre: []ModuleSpec{big, big, big}}},
		{"heavy-frames", PipelineSpec{Pre: []ModuleSpec{{Module: compileBytes(b, s, heavyFramesModule(1000, 9000)), Limits: fast}}}},
	}
	runs := []struct {
		name string
		run  func() error
	}{{"control", burnCPU}} // what any busy neighbour costs, on this machine at this time
	for _, a := range attacks {
		p := pipeline(b, s, a.spec)
		runs = append(runs, struct {
			name string
			run  func() error
		}{a.name, func() error {
			if _, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil); err == nil {
				return fmt.Errorf("attack %s succeeded", a.name)
			}
			return nil
		}})
	}
	const windows = 10
	window := func(n int, into []time.Duration) []time.Duration {
		for range n {
			start := time.Now()
			if _, err := benign.Run(context.Background(), req, storyteller, nil); err != nil {
				b.Fatal(err)
			}
			into = append(into, time.Since(start))
		}
		return into
	}
	var allAlone []time.Duration
	var control, worst time.Duration
	for _, r := range runs {
		attacker := startAttacker(b, r.run)
		var alone, hostile []time.Duration
		for i := range windows {
			n := b.N/windows + min(1, b.N%windows/(i+1)) // b.N in all
			alone = window(n, alone)
			attacker.resume()
			hostile = window(n, hostile)
			attacker.pause()
		}
		attacker.stop()
		b.ReportMetric(float64(p99(hostile))/float64(p99(alone)), "ratio-"+r.name)
		allAlone = append(allAlone, alone...)
		if r.name == "control" {
			control = p99(hostile)
		} else {
			worst = max(worst, p99(hostile))
		}
	}
	b.ReportMetric(float64(p99(allAlone).Microseconds()), "p99-alone-µs")
	b.ReportMetric(float64(control.Microseconds()), "p99-control-µs")
	b.ReportMetric(float64(worst.Microseconds()), "p99-hostile-µs")
	b.ReportMetric(float64(worst)/float64(p99(allAlone)), "p99-ratio")
}

// burnCPU keeps a core busy for 250 ms, in Go: the control of BenchmarkIsolation.
func burnCPU() error {
	x := 0
	for start := time.Now(); time.Since(start) < 250*time.Millisecond; {
		for i := range 1000 {
			x += i * i
		}
	}
	sink.Add(int64(x))
	return nil
}

var sink atomic.Int64

// p99 returns the 99th percentile of ds, which it sorts.
func p99(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*99/100)]
}

// attacker runs an attack over and over on its own goroutine while it is resumed; an
// error from the attack fails the benchmark.
type attacker struct {
	mu                         sync.Mutex
	cond                       *sync.Cond
	running, enabled, stopping bool
	wg                         sync.WaitGroup
}

func startAttacker(b *testing.B, attack func() error) *attacker {
	a := &attacker{}
	a.cond = sync.NewCond(&a.mu)
	a.wg.Go(func() {
		for {
			a.mu.Lock()
			for !a.enabled && !a.stopping {
				a.cond.Wait()
			}
			if a.stopping {
				a.mu.Unlock()
				return
			}
			a.running = true
			a.mu.Unlock()
			err := attack()
			a.mu.Lock()
			a.running = false
			a.cond.Broadcast()
			a.mu.Unlock()
			if err != nil {
				b.Error(err)
			}
		}
	})
	return a
}

// resume lets the attack run and returns once it is under way.
func (a *attacker) resume() {
	a.mu.Lock()
	a.enabled = true
	a.cond.Broadcast()
	for !a.running {
		a.cond.Wait()
	}
	a.mu.Unlock()
}

// pause waits for the attack under way to end, and starts no other.
func (a *attacker) pause() {
	a.mu.Lock()
	a.enabled = false
	for a.running {
		a.cond.Wait()
	}
	a.mu.Unlock()
}

func (a *attacker) stop() {
	a.mu.Lock()
	a.stopping = true
	a.cond.Broadcast()
	a.mu.Unlock()
	a.wg.Wait()
}
