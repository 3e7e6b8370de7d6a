package host

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cocoonhost/cocoon/abi"
)

// ModuleSpec places a compiled module in a pipeline with its config and limits.
type ModuleSpec struct {
	Module *Module
	// Config is handed to the module through cocoon.config; at most abi.MaxConfigBytes.
	Config []byte
	// Limits override abi.DefaultLimits field by field; zero fields keep the default.
	Limits abi.Limits
}

// PipelineSpec lists a pipeline's modules in the order they run.
type PipelineSpec struct {
	Pre  []ModuleSpec
	Post []ModuleSpec
	// Owners are whom the snapshots of the pipeline's modules count against, each
	// the first of them with room for it when it is taken: one owner's keep at most a
	// share of the sandbox's snapshot memory (snapshotOwnerShare). None for a
	// pipeline that is the host's only one. The registry changes them as owners add
	// and delete the pipeline (Pipeline.setOwners).
	Owners []string
}

// Pipeline is a checked, ready-to-run list of compiled modules. It is immutable and safe
// for concurrent use: every request runs in its own Session with fresh instances.
type Pipeline struct {
	sandbox *Sandbox
	pre     []*stageModule
	post    []*stageModule
	// owners is PipelineSpec.Owners, as the registry updates them; its stage modules
	// share it, allocated apart: a pointer into p from them would keep p reachable
	// from its cleanup's argument, and p would never be collected.
	owners *atomic.Pointer[[]string]
}

// setOwners replaces the owners whom snapshots not taken yet count against; those
// taken stay counted against theirs.
func (p *Pipeline) setOwners(owners []string) { p.owners.Store(&owners) }

// ownerList is the owners of m's pipeline now (PipelineSpec.Owners).
func (m *stageModule) ownerList() []string { return *m.owners.Load() }

// stageModule is a module at its place in a pipeline, with its effective limits.
type stageModule struct {
	module *Module
	stage  Stage
	index  int
	owners *atomic.Pointer[[]string] // its pipeline's
	config []byte
	limits abi.Limits
	// snapshot is the state initialization reaches, which instances start from; nil
	// if it could not be taken (unsnapshotted says why), and instances then run
	// initialization themselves. It is taken at the first instantiation whose request
	// has not yet waited maxSnapshotWait for snapshots (Sandbox.snapshotFor).
	snapshotOnce  sync.Once
	snapshotTried atomic.Bool // set once snapshotOnce ran takeSnapshot
	snapshot      *snapshot
	unsnapshotted error
	// retaken is the snapshot taken by a later request when the first did not fit in
	// the sandbox's snapshot memory (Sandbox.retakeSnapshot); retaking is held while
	// one is taken, retakeFailed set once one failed for another reason.
	retaken      atomic.Pointer[snapshot]
	retaking     sync.Mutex
	retakeFailed atomic.Bool
	idle         idleInstances
}

func (m *stageModule) has(h abi.Hooks) bool { return m.module.Info.Hooks&h != 0 }

// NewPipeline checks spec and returns a pipeline that runs on s. Errors are *Error with
// CodeInvalidPipeline naming the module at fault: more than abi.MaxStageModules
// modules in a stage, a module in a stage whose hooks it lacks, limits above
// abi.CeilingLimits, a memory or table minimum above the module's limit, a config over
// abi.MaxConfigBytes, or memory and table minimums that together pass
// abi.RequestMemoryBytes. It does no compilation (modules come compiled), and runs no
// module: each module's snapshot (snapshot.go) is taken when its first request needs
// it, so building a pipeline, which the registry does under its lock, stays cheap
// whatever a module's initialization costs.
func (s *Sandbox) NewPipeline(spec PipelineSpec) (*Pipeline, error) {
	p := &Pipeline{sandbox: s, owners: new(atomic.Pointer[[]string])}
	p.setOwners(spec.Owners)
	var minimum uint64 // bytes of memory and tables the modules need at start
	for _, st := range []struct {
		stage Stage
		specs []ModuleSpec
		out   *[]*stageModule
	}{{StagePre, spec.Pre, &p.pre}, {StagePost, spec.Post, &p.post}} {
		if len(st.specs) > abi.MaxStageModules {
			return nil, &Error{Code: CodeInvalidPipeline, Status: statusOf(CodeInvalidPipeline),
				Message: fmt.Sprintf("%d %s modules, over the limit of %d", len(st.specs), st.stage, abi.MaxStageModules)}
		}
		for i, ms := range st.specs {
			m, err := newStageModule(st.stage, i, ms, p.owners)
			if err != nil {
				return nil, &Error{Code: CodeInvalidPipeline, Status: statusOf(CodeInvalidPipeline),
					Message: fmt.Sprintf("%s module %d: %v", st.stage, i+1, err)}
			}
			*st.out = append(*st.out, m)
			minimum += m.minimumBytes()
		}
	}
	if minimum > abi.RequestMemoryBytes {
		return nil, &Error{Code: CodeInvalidPipeline, Status: statusOf(CodeInvalidPipeline),
			Message: fmt.Sprintf("the modules need %s of memory and tables at start, over %s", formatBytes(minimum), requestTotalText)}
	}
	var idle []*idleInstances
	for _, m := range append(p.pre[:len(p.pre):len(p.pre)], p.post...) {
		idle = append(idle, &m.idle)
	}
	runtime.AddCleanup(p, closeIdle, idle)
	return p, nil
}

// minimumBytes is what an instance of m holds from its start: its memory minimum and
// its tables' minimums, as they count against abi.RequestMemoryBytes.
func (m *stageModule) minimumBytes() uint64 {
	return uint64(m.module.Info.MemoryMinPages)*abi.PageSize + m.tableBytes()
}

// tableBytes is what m's tables count against abi.RequestMemoryBytes: their minimums,
// which they keep (a module with a snapshot cannot grow a table).
func (m *stageModule) tableBytes() uint64 {
	var n uint64
	for _, elements := range m.module.Info.TableMinElements {
		n += uint64(elements) * abi.TableElementBytes
	}
	return n
}

func newStageModule(stage Stage, index int, ms ModuleSpec, owners *atomic.Pointer[[]string]) (*stageModule, error) {
	if ms.Module == nil {
		return nil, fmt.Errorf("no module")
	}
	m := &stageModule{module: ms.Module, stage: stage, index: index, owners: owners, config: ms.Config, limits: ms.Limits.WithDefaults()}
	switch {
	case stage == StagePre && !m.has(abi.HookPre):
		return nil, fmt.Errorf("%s implements %s but not cocoon_pre", ms.Module.Hash, ms.Module.Info.Hooks)
	case stage == StagePost && !m.has(abi.HookPost|abi.HookStream):
		return nil, fmt.Errorf("%s implements %s but neither cocoon_post nor cocoon_chunk", ms.Module.Hash, ms.Module.Info.Hooks)
	case len(ms.Config) > abi.MaxConfigBytes:
		return nil, fmt.Errorf("config of %d bytes is over the limit of %d", len(ms.Config), abi.MaxConfigBytes)
	}
	if err := ms.Limits.Check(); err != nil {
		return nil, err
	}
	if min := ms.Module.Info.MemoryMinPages; min > m.limits.MemoryPages {
		return nil, fmt.Errorf("%s needs %d memory pages at start, over its memory limit of %d", ms.Module.Hash, min, m.limits.MemoryPages)
	}
	for i, min := range ms.Module.Info.TableMinElements {
		if min > m.limits.TableElements {
			return nil, fmt.Errorf("%s needs %d elements in table %d at start, over its table limit of %d", ms.Module.Hash, min, i, m.limits.TableElements)
		}
	}
	return m, nil
}

// Session runs one request through a pipeline: it instantiates each module on first use
// and keeps that instance for the rest of the request, so a post module sees all chunks
// of its stream. A Session is not safe for concurrent use; Close it when the request
// ends.
type Session struct {
	p       *Pipeline
	ctx     context.Context
	request requestState
	pre     []*instance
	post    []*instance
}

// NewSession starts a request. ctx bounds the whole request: cancelling it stops a
// running module with CodeCancelled. The request's modules share the totals of
// SPEC.md §7.2: abi.RequestModuleTime of module time, abi.RequestMemoryBytes of memory.
func (p *Pipeline) NewSession(ctx context.Context) *Session {
	return &Session{p: p, ctx: ctx, pre: make([]*instance, len(p.pre)), post: make([]*instance, len(p.post))}
}

// Logs returns what the modules logged so far in this request.
func (s *Session) Logs() []LogRecord { return s.request.records }

// Close releases the request's instances.
func (s *Session) Close() {
	closeAll(s.pre)
	closeAll(s.post)
}

// closeAll closes the instances and forgets them.
func closeAll(insts []*instance) {
	for i, inst := range insts {
		if inst != nil {
			inst.close()
			insts[i] = nil
		}
	}
}

// instance returns the request's instance of the i-th module of stage, creating it.
func (s *Session) instance(stage Stage, i int) (*instance, error) {
	insts, mods := s.pre, s.p.pre
	if stage == StagePost {
		insts, mods = s.post, s.p.post
	}
	if insts[i] == nil {
		inst, err := s.p.sandbox.instantiate(s.ctx, mods[i], &s.request)
		if err != nil {
			return nil, err
		}
		insts[i] = inst
	}
	return insts[i], nil
}

// Pre passes the request JSON through every pre module in order (SPEC.md §5) and returns
// what the backend should get. The request must be a JSON object; what comes out of the
// last module (or the request itself, without pre modules) must be a chat request. A
// module's rejection comes back as *Error with CodeRejected and the module's status and
// message. The pre modules' instances are closed when it returns: their memory is free
// for the rest of the request.
func (s *Session) Pre(request []byte) ([]byte, error) {
	defer closeAll(s.pre)
	orig, err := parseRequest(request)
	if err != nil {
		return nil, err
	}
	if len(s.p.pre) == 0 {
		if err := CheckChatRequest(request); err != nil {
			return nil, err
		}
	}
	for i := range s.p.pre {
		inst, err := s.instance(StagePre, i)
		if err != nil {
			return nil, err
		}
		out, err := inst.call(hookPre, request)
		if err != nil {
			return nil, err
		}
		if request, err = checkRequest(out, orig, i == len(s.p.pre)-1); err != nil {
			return nil, inst.errorf(CodeInvalidOutput, "cocoon_pre returned %v", err)
		}
	}
	return request, nil
}

// Chunk passes one text delta through every post module's cocoon_chunk and returns what
// to send to the client now (possibly nothing). Modules without stream hooks are not
// called: use Streamable to know whether a pipeline can stream.
func (s *Session) Chunk(delta string) (string, error) {
	if len(s.p.post) == 0 {
		return delta, nil // no copies on a bare relay's path of every token
	}
	return s.streamFrom(0, []byte(delta), false)
}

// End flushes what post modules held back (cocoon_end, chained as SPEC.md §5 says) and
// returns the text to send last.
func (s *Session) End() (string, error) {
	return s.streamFrom(0, nil, true)
}

// streamFrom feeds text through post modules i and on; with end set it also flushes
// each, passing module i's flushed text to module i+1 before flushing that one.
func (s *Session) streamFrom(i int, text []byte, end bool) (string, error) {
	for ; i < len(s.p.post); i++ {
		var err error
		if text, err = s.streamModule(i, text, end); err != nil {
			return "", err
		}
	}
	return string(text), nil
}

// streamModule feeds text to post module i's cocoon_chunk and, with end set, appends
// what its cocoon_end flushes.
func (s *Session) streamModule(i int, text []byte, end bool) ([]byte, error) {
	if !s.p.post[i].has(abi.HookStream) {
		return nil, fmt.Errorf("post module %d has no stream hooks: check Pipeline.Streamable", i+1)
	}
	inst, err := s.instance(StagePost, i)
	if err != nil {
		return nil, err
	}
	if len(text) > 0 {
		if text, err = inst.call(hookChunk, text); err != nil {
			return nil, err
		}
	}
	if end {
		flushed, err := inst.call(hookEnd, nil)
		if err != nil {
			return nil, err
		}
		text = append(text, flushed...)
	}
	return text, nil
}

// Streamable reports whether every post module has stream hooks, so deltas can go to the
// client as they come. Otherwise a streaming request is answered in one delta at the end.
func (p *Pipeline) Streamable() bool {
	for _, m := range p.post {
		if !m.has(abi.HookStream) {
			return false
		}
	}
	return true
}

// Post passes a chat.completion JSON through every post module in order: cocoon_post
// where the module has it, else the message contents through cocoon_chunk and
// cocoon_end (SPEC.md §5). The usage the modules return is replaced by the input's: a
// module cannot change what a request is billed.
func (s *Session) Post(response []byte) ([]byte, error) {
	orig, err := parseResponse(response)
	if err != nil {
		return nil, err
	}
	for i, m := range s.p.post {
		if !m.has(abi.HookPost) {
			if response, err = mapContents(response, func(content []byte) ([]byte, error) {
				return s.streamModule(i, content, true)
			}); err != nil {
				return nil, err
			}
			continue
		}
		inst, err := s.instance(StagePost, i)
		if err != nil {
			return nil, err
		}
		out, err := inst.call(hookPost, response)
		if err != nil {
			return nil, err
		}
		if response, err = checkResponse(out, orig); err != nil {
			return nil, inst.errorf(CodeInvalidOutput, "cocoon_post returned %v", err)
		}
	}
	return response, nil
}
