// Package abi is the contract between the Cocoon host and the WebAssembly modules its
// clients upload, as specified by SPEC.md in this directory (ABI version 1).
//
// A module declares the ABI version it was built for by exporting cocoon_abi_v<N>,
// exports its memory, an allocator (cocoon_alloc) and one or more hooks (cocoon_pre,
// cocoon_post, cocoon_chunk with cocoon_end), and may import only the host functions of
// module "cocoon" (HostFunctions) and the WASI functions of wasi_snapshot_preview1
// (WASIFunctions). HookSignatures lists the exports and their signatures.
//
// Validate checks an uploaded module against that contract before anything runs it and
// reports the first violation as an *Error with a stable Code and a message for the
// module's author. Limits, DefaultLimits and CeilingLimits bound what a module may use
// while serving a request (SPEC.md §7.1), and the constants beside them are the host's
// fixed limits (§7.2: a request's memory, module time and output, log records, tables,
// call depth). The environment a module sees is here too (ClockEpochUnix, ClockStep,
// RandomSeed): the host runs with these values and the attested sandbox policy is
// derived from them.
//
// The package imports only the standard library and its own internal decoder, so that
// hosts, tools and tests can depend on it alone. The Go SDK for writing modules lives in
// github.com/cocoonhost/cocoon/abi/guest.
package abi
