package host

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
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
// run beside them: the p99 latency of b.N well-behaved requests (the "wat" pipeline of
// BenchmarkRun) alone, then of b.N more while another goroutine runs one attack of the
// hostile suite over and over, for each attack in turn, in the same run. It reports
// the ratio under each attack, and the p99s and ratio under the worst. The attacker
// takes one of the machine's two cores, as it would take one of the host's generation
// slots.
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
	p99 := func() time.Duration {
		ds := make([]time.Duration, 0, b.N)
		for range b.N {
			start := time.Now()
			if _, err := benign.Run(context.Background(), req, storyteller, nil); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[min(len(ds)-1, len(ds)*99/100)]
	}
	alone := p99()
	var worst time.Duration
	for _, a := range attacks {
		attack := pipeline(b, s, a.spec)
		stop := make(chan struct{})
		var attacker sync.WaitGroup
		attacker.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := attack.Run(context.Background(), []byte(testRequest), storyteller, nil); err == nil {
					b.Errorf("attack %s succeeded", a.name)
					return
				}
			}
		})
		time.Sleep(20 * time.Millisecond) // the attack is under way
		hostile := p99()
		close(stop)
		attacker.Wait()
		b.ReportMetric(float64(hostile)/float64(alone), "ratio-"+a.name)
		worst = max(worst, hostile)
	}
	b.ReportMetric(float64(alone.Microseconds()), "p99-alone-µs")
	b.ReportMetric(float64(worst.Microseconds()), "p99-hostile-µs")
	b.ReportMetric(float64(worst)/float64(alone), "p99-ratio")
}
