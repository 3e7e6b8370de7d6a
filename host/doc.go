// Package host runs client-supplied WebAssembly modules for Cocoon pipelines, under the
// ABI of package abi (abi/SPEC.md).
//
// The pieces, in the order a host uses them:
//
//   - Sandbox owns the wazero runtime and the host's imports. Sandbox.Compile validates
//     a module with abi.Validate (the upload limits of SPEC.md §7.3 included), estimates
//     what compiling it costs (EstimateCompile) and compiles it to native code once, in
//     a bounded compile pool; that is the slow step and it happens at upload, never on
//     the request path. Native code stays in memory: nothing compiled is read back from
//     a disk.
//   - Store keeps uploaded modules content-addressed ("sha256:" of the raw bytes) under
//     a data directory, checks each file against its hash, and recompiles them at start.
//   - CheckChatRequest is the one check of a chat request the host serves: the client's
//     body before the pre modules, and what the last pre module returns.
//   - Sandbox.NewPipeline checks a list of pre and post modules with their configs and
//     limits and returns an immutable Pipeline, safe for concurrent requests.
//   - Manifest is what a client uploads to make a pipeline; its canonical form's sha256
//     is the pipeline id, the same on any host. Registry keeps pipelines durably under
//     the data directory, with their owners authenticated by an HMAC.
//   - Pipeline.Run executes one request: pre modules in order, a caller-supplied
//     GenerateFunc (the inference backend), then the post modules on each streamed delta
//     and at the end, or on the whole chat.completion. Session gives the same steps one
//     at a time, for callers that drive a stream themselves.
//
// Time limits: at upload the sandbox compiles an instrumented copy of each module
// (package meter) that charges fuel for its work (instructions, and the bytes or
// elements of every bulk instruction) and calls back into the host whenever about
// 10 µs of work is done, and before every 256 KiB a fill or copy writes; the host ends the
// call there when its time is up or its request is gone. Every host function, WASI's
// included (the host's own, wasi.go), checks the same at its start. This costs about
// 1 ns per loop iteration, where wazero's own termination check costs about 29. The
// copy also counts the call depth, and tells the host about every refused growth of
// memory or tables.
//
// Security properties, each covered by tests (hostile_test.go performs the attacks of the
// hostile-module suite, snapshot_test.go those on snapshots): a module has no
// filesystem, network or environment, sees a fake clock and a deterministic random
// stream, and every request gets an instance in the state right after initialization (a
// new one, or one reset to that state), so nothing of one request is visible to the
// next. Every limit of SPEC.md §7 (memory, tables, time
// per call, input, output, logs, call depth, and the request's totals of memory, module
// time and output) fails only the request that exceeds it, with an *Error whose code
// says which (SPEC.md §9.1 says which code wins when several apply); the host and
// concurrent requests carry on. Linear memories live in mappings of their own, outside
// the Go heap (memory.go): small ones are zeroed and pooled, large ones go back to the
// OS when their instance closes. Error messages are safe to show clients; the full
// cause of a failure, which may hold the module's stack trace, goes to the request's
// logs for the pipeline owner.
//
// Snapshots (snapshot.go): initialization (the start section and _initialize) is
// deterministic under SPEC.md §6, so the host runs it once per stage module, at its
// first request (twice in fact, to check that), and every request's instance starts
// from the state it reached: memory mapped copy-on-write from a sealed memfd, globals,
// clock, random stream and logs restored. A module that cannot be snapshot is
// initialized per request.
//
// Costs: an instance of a small C, Rust or WAT module takes a few microseconds (a kept
// instance reset to its snapshot); a Go wasip1 module's takes about a millisecond
// (wazero instantiating it; its runtime no longer starts per instance). The first
// request through a stage module waits for two initializations (about 10 ms for a Go
// guest). README.md has
// measured figures and the benchmark that produced them.
package host
