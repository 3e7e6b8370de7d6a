package host

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host/internal/meter"
)

// CodeCompileBusy refuses an upload while the compile pool has no room for it: the
// module would compile on an idle host, so the client should retry (429, Retry-After).
const CodeCompileBusy ErrorCode = "compile_busy"

// ReasonCompileTooCostly refines CodeInvalidModule: the module's estimated compile cost
// is over MaxCompileMemory or MaxCompileCPU, so no host with these limits compiles it.
const ReasonCompileTooCostly = "compile_too_costly"

// The most one compile may cost, by the estimate of EstimateCompile (SPEC.md §7); a
// module over either is refused at upload. The estimate of the 4 MiB Go guest is 89 MiB
// and 7.5 s (it takes 72 MiB and 1.8 s), so both admit Go guests up to the 16 MiB
// module limit, and refuse what grows faster than its size (RATIONALE.md, "Compile
// limits").
const (
	MaxCompileMemory = 384 << 20
	MaxCompileCPU    = 30 * time.Second
)

// DefaultCompileMemory is the default memory budget of the compile pool: compiles run
// together only while their estimates fit in it.
const DefaultCompileMemory = 512 << 20

// CompileCost is what compiling a module is estimated to cost.
type CompileCost struct {
	// Memory is the peak memory the compile adds to the host's, in bytes.
	Memory int64
	// CPU is its processor time on the machine the estimate was measured on (2 cores
	// of an AMD EPYC VM); wazero compiles on one goroutine.
	CPU time.Duration
}

// The coefficients of EstimateCompile, measured by BenchmarkCompileCost with generated
// modules that push each count to its limit (compile_cost_test.go), on this project's
// 2-core machine while other work loaded it: each is the largest cost per unit seen,
// with a margin, so the estimate bounds what each of those modules needed.
// TestCompileEstimateBoundsMeasured checks that it still does.
const (
	// Working memory of the compiler, which it reuses from one function to the next,
	// in bytes: it grows with the largest function's counts.
	workPerInstruction = 500
	workPerCall        = 1700
	workPerBranch      = 7800
	workPerLocalBranch = 190
	workPerLocal       = 64
	// Memory kept for the compiled module and for its copies (the metered one, wazero's
	// decoded one), in bytes: it grows with the module's totals.
	keptPerModuleByte  = 6
	keptPerInstruction = 20
	keptPerCall        = 90
	keptPerLocal       = 10
	keptPerFunction    = 700 // metering adds a call depth count and a metering point to each
	compileMemoryBase  = 4 << 20
	// Processor time, in nanoseconds per unit. Instructions and calls cost a little
	// more in larger functions: those terms grow with the largest function times the
	// total.
	cpuPerModuleByte    = 15
	cpuPerInstruction   = 1600
	cpuPerInstruction2  = 0.0046
	cpuPerCall2         = 0.06
	cpuPerLabel         = 18_000
	cpuPerDominatorStep = 16
	cpuPerReadStep      = 20
	cpuPerLocalBranch   = 2400
	cpuPerLocal         = 60
	cpuPerFunction      = 15_000
	cpuPerGlobalUse     = 90 // per function and global: each function tracks every global
)

// EstimateCompile estimates what Sandbox.Compile costs for a module of size bytes with
// these code statistics (from abi.Validate): a sum of the counts, each times the worst
// cost per unit measured with wazero v1.12.0 and the host's metering (RATIONALE.md,
// "Compile limits"). It bounds what compiling every module that stresses one count to
// the limits of abi costs, and overestimates real guests, most of all their processor
// time (a 4 MiB Go guest: 89 MiB estimated for 72 measured, 7.5 s for 1.8). It takes
// half a microsecond.
func EstimateCompile(size int, c abi.CodeStats) CompileCost {
	mem, cpu := costTerms(size, c)
	return CompileCost{Memory: int64(sum(mem)), CPU: time.Duration(min(sum(cpu), math.MaxInt64))}
}

// costTerm is one count of a module times its cost per unit.
type costTerm struct {
	what string // the count for messages, with %d for n
	n    int64
	cost float64
}

func sum(terms []costTerm) float64 {
	total := 0.0
	for _, t := range terms {
		total += t.cost
	}
	return total
}

// costTerms returns the terms of the memory (in bytes) and processor (in nanoseconds)
// estimates of EstimateCompile.
func costTerms(size int, c abi.CodeStats) (memory, cpu []costTerm) {
	m, t := c.Max, c.Total
	n := func(v int) float64 { return float64(v) }
	memory = []costTerm{
		{"the compiler itself", 0, compileMemoryBase},
		{"the largest function's %d instructions", int64(m.Instructions), workPerInstruction * n(m.Instructions)},
		{"the largest function's %d calls", int64(m.Calls), workPerCall * n(m.Calls)},
		{"the largest function's %d blocks and branches", int64(m.Branches), workPerBranch * n(m.Branches)},
		{"the largest function's %d locals times branches", m.LocalBranches, workPerLocalBranch * float64(m.LocalBranches)},
		{"the largest function's %d locals", int64(m.Locals), workPerLocal * n(m.Locals)},
		{"its %d bytes", int64(size), keptPerModuleByte * n(size)},
		{"its %d instructions", int64(t.Instructions), keptPerInstruction * n(t.Instructions)},
		{"its %d calls", int64(t.Calls), keptPerCall * n(t.Calls)},
		{"its %d locals", int64(t.Locals), keptPerLocal * n(t.Locals)},
		{"its %d functions", int64(c.Functions), keptPerFunction * n(c.Functions)},
	}
	cpu = []costTerm{
		{"its %d bytes", int64(size), cpuPerModuleByte * n(size)},
		{"its %d instructions", int64(t.Instructions), cpuPerInstruction*n(t.Instructions) +
			cpuPerInstruction2*n(m.Instructions)*n(t.Instructions)},
		{"its %d calls", int64(t.Calls), cpuPerCall2 * n(m.Calls) * n(t.Calls)},
		{"its %d br_table labels", int64(t.Labels), cpuPerLabel * n(t.Labels)},
		{"the depth of its control flow", 0, cpuPerDominatorStep * float64(t.DominatorWork)},
		{"its reads after runs of branches", 0, cpuPerReadStep * float64(t.ReadWork)},
		{"its %d locals times branches", t.LocalBranches, cpuPerLocalBranch * float64(t.LocalBranches)},
		{"its %d locals", int64(t.Locals), cpuPerLocal * n(t.Locals)},
		{"its %d functions", int64(c.Functions), cpuPerFunction * n(c.Functions)},
		{"its %d globals in each function", int64(c.Globals), cpuPerGlobalUse * n(c.Functions) * n(c.Globals)},
	}
	return memory, cpu
}

// largestTerm returns what the largest of terms counts.
func largestTerm(terms []costTerm) string {
	top := terms[0]
	for _, t := range terms[1:] {
		if t.cost > top.cost {
			top = t
		}
	}
	if !strings.Contains(top.what, "%d") {
		return top.what
	}
	return fmt.Sprintf(top.what, top.n)
}

// compileCall runs one compile of s: abi.Validate, the estimate, a place in the pool,
// then metering and wazero's compiler in that place. wait says whether to wait for the
// pool (start-up) or to refuse when it is full (uploads).
func (s *Sandbox) compile(ctx context.Context, wasm []byte, wait bool) (*Module, error) {
	info, err := abi.Validate(wasm)
	if err != nil {
		e := invalidModule(err.Error())
		var abiErr *abi.Error
		if errors.As(err, &abiErr) {
			e.Reason = string(abiErr.Code)
		}
		return nil, e
	}
	cost, err := checkCompileCost(len(wasm), info.Code)
	if err != nil {
		return nil, err
	}
	release, err := s.compiles.acquire(ctx, cost, wait)
	if err != nil {
		return nil, err
	}
	defer release()
	metered, err := meter.InstrumentDetached(wasm)
	if err != nil {
		e := invalidModule("module cannot be metered: " + err.Error())
		e.Reason = string(abi.ErrUnsupportedFeature)
		return nil, e
	}
	init, err := newModuleInit(metered, info.MemoryMinPages)
	if err != nil {
		return nil, invalidModule(err.Error())
	}
	compiled, err := s.runtime.CompileModule(ctx, metered.Wasm)
	if err != nil {
		return nil, invalidModule("module does not compile: " + firstLine(err.Error()))
	}
	return &Module{Hash: HashOf(wasm), Size: len(wasm), Info: *info, compiled: compiled, init: init}, nil
}

func invalidModule(msg string) *Error {
	return &Error{Code: CodeInvalidModule, Status: statusOf(CodeInvalidModule), Message: msg}
}

// checkCompileCost refuses a module of size bytes with code c whose estimated cost is
// over MaxCompileMemory or MaxCompileCPU, naming the count that costs the most.
func checkCompileCost(size int, c abi.CodeStats) (CompileCost, error) {
	memory, cpu := costTerms(size, c)
	cost := CompileCost{Memory: int64(sum(memory)), CPU: time.Duration(min(sum(cpu), math.MaxInt64))}
	var msg string
	switch {
	case cost.Memory > MaxCompileMemory:
		msg = fmt.Sprintf("compiling the module would take an estimated %d MiB of memory, most of it for %s; the limit is %d MiB",
			cost.Memory>>20, largestTerm(memory), MaxCompileMemory>>20)
	case cost.CPU > MaxCompileCPU:
		msg = fmt.Sprintf("compiling the module would take an estimated %.1f s of processor time, most of it for %s; the limit is %.0f s",
			cost.CPU.Seconds(), largestTerm(cpu), MaxCompileCPU.Seconds())
	default:
		return cost, nil
	}
	e := invalidModule(msg)
	e.Reason = ReasonCompileTooCostly
	return cost, e
}

// compilePool bounds the compiles running at once, and the memory their estimates add up
// to. A compile that does not fit waits (start-up) or is refused with CodeCompileBusy
// (uploads): uploads never queue, as generations never do (RATIONALE.md).
type compilePool struct {
	slots  int
	budget int64

	mu      sync.Mutex
	running []poolEntry   // the compiles holding a place
	changed chan struct{} // closed and replaced whenever a place is released
}

type poolEntry struct {
	memory int64
	end    time.Time // when the compile is estimated to end
}

// compilePoolConfig is the part of SandboxConfig about the compile pool; zero fields
// take the defaults.
type compilePoolConfig struct {
	slots  int
	memory int64
}

// WithCompilePool bounds the modules the sandbox compiles at once to slots, and the
// memory their estimated costs add up to (see EstimateCompile) to memory bytes; a
// compile that does not fit is refused with CodeCompileBusy. The defaults are half the
// processors (at least one: a compile takes a processor, and requests need the rest)
// and DefaultCompileMemory. memory is raised to MaxCompileMemory if below, so that
// every module that may compile at all fits in an idle pool.
func (c SandboxConfig) WithCompilePool(slots int, memory int64) SandboxConfig {
	c.compiles = compilePoolConfig{slots: slots, memory: memory}
	return c
}

func newCompilePool(c compilePoolConfig) *compilePool {
	if c.slots <= 0 {
		c.slots = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if c.memory <= 0 {
		c.memory = DefaultCompileMemory
	}
	return &compilePool{slots: c.slots, budget: max(c.memory, MaxCompileMemory), changed: make(chan struct{})}
}

// acquire takes a place for a compile of the given cost, and returns the function that
// gives it back. When the pool has no room, it waits for a place if wait is set (until
// ctx is done), and otherwise fails at once with an *Error of CodeCompileBusy.
// cost.Memory must be at most MaxCompileMemory (checkCompileCost), which fits in an
// idle pool.
func (p *compilePool) acquire(ctx context.Context, cost CompileCost, wait bool) (release func(), err error) {
	for {
		p.mu.Lock()
		used := int64(0)
		for _, e := range p.running {
			used += e.memory
		}
		if len(p.running) < p.slots && used+cost.Memory <= p.budget {
			entry := poolEntry{memory: cost.Memory, end: time.Now().Add(cost.CPU)}
			p.running = append(p.running, entry)
			p.mu.Unlock()
			return sync.OnceFunc(func() { p.release(entry) }), nil
		}
		if !wait {
			err := p.busy(cost)
			p.mu.Unlock()
			return nil, err
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *compilePool) release(entry poolEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, e := range p.running {
		if e == entry {
			p.running = append(p.running[:i], p.running[i+1:]...)
			break
		}
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// busy is the error of a compile that finds no room; p.mu is held. Retry-After is
// when the first running compile is estimated to end, at least a second from now.
func (p *compilePool) busy(cost CompileCost) *Error {
	first := p.running[0].end
	for _, e := range p.running {
		if e.end.Before(first) {
			first = e.end
		}
	}
	e := &Error{Code: CodeCompileBusy, Status: http.StatusTooManyRequests,
		RetryAfter: max(1, int(math.Ceil(time.Until(first).Seconds()))),
		Message: fmt.Sprintf("the host is compiling other modules (%d at once, %d MiB of memory, and this one needs an estimated %d MiB): retry shortly",
			p.slots, p.budget>>20, cost.Memory>>20)}
	return e
}
