package abi

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cocoonhost/cocoon/internal/wasmbin"
)

// Version is the ABI version this package describes.
const Version = 1

// SupportedVersions are the ABI versions a host built with this package accepts.
var SupportedVersions = []int{1}

// Hooks is a set of the hooks a module implements.
type Hooks uint8

// The hooks of SPEC.md §3.
const (
	HookPre    Hooks = 1 << iota // cocoon_pre
	HookPost                     // cocoon_post
	HookStream                   // cocoon_chunk and cocoon_end
)

// String returns the hooks in h joined by "+", e.g. "pre+stream", or "none".
func (h Hooks) String() string {
	var parts []string
	for _, x := range []struct {
		h    Hooks
		name string
	}{{HookPre, "pre"}, {HookPost, "post"}, {HookStream, "stream"}} {
		if h&x.h != 0 {
			parts = append(parts, x.name)
			h &^= x.h
		}
	}
	if h != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint8(h)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// Import is a function a module imports.
type Import struct{ Module, Name string }

// ModuleInfo is what the host needs to know about a valid module.
type ModuleInfo struct {
	ABIVersion     int
	Hooks          Hooks
	MemoryMinPages uint32
	MemoryMaxPages uint32 // valid if HasMemoryMax
	HasMemoryMax   bool
	HasInitialize  bool     // exports _initialize, which the host calls after instantiation
	Imports        []Import // in the module's order
	Code           CodeStats

	// TableMinElements is the declared minimum of each table the module defines.
	TableMinElements []uint32
}

// ErrorCode identifies why a module was refused. Codes are stable and machine-readable.
type ErrorCode string

// The reasons Validate refuses a module.
const (
	ErrTooLarge              ErrorCode = "too_large"               // larger than MaxModuleBytes
	ErrNotWasm               ErrorCode = "not_wasm"                // not a WebAssembly core module
	ErrMalformed             ErrorCode = "malformed"               // bytes that do not decode
	ErrUnsupportedFeature    ErrorCode = "unsupported_feature"     // a WebAssembly proposal the host does not run
	ErrNoABIVersion          ErrorCode = "no_abi_version"          // no cocoon_abi_v<N> export
	ErrUnsupportedABIVersion ErrorCode = "unsupported_abi_version" // N not in SupportedVersions
	ErrMultipleABIVersions   ErrorCode = "multiple_abi_versions"   // several cocoon_abi_v<N> exports
	ErrNoMemory              ErrorCode = "no_memory"               // no memory exported as "memory"
	ErrImportedMemory        ErrorCode = "imported_memory"         // imports a memory
	ErrBadMemory             ErrorCode = "bad_memory"              // memory64, shared, several, or bad limits
	ErrBadTable              ErrorCode = "bad_table"               // more than MaxTables, or a minimum above the ceiling
	ErrUnknownImport         ErrorCode = "unknown_import"          // an import the host does not provide
	ErrBadImportSignature    ErrorCode = "bad_import_signature"    // a host function imported with another signature
	ErrBadExportSignature    ErrorCode = "bad_export_signature"    // an ABI export of the wrong kind or signature
	ErrUnknownExport         ErrorCode = "unknown_export"          // a cocoon_* export that is not in the ABI
	ErrNoHooks               ErrorCode = "no_hooks"                // no hook exported
	ErrIncompleteStream      ErrorCode = "incomplete_stream"       // cocoon_chunk without cocoon_end or vice versa
	ErrCommandModule         ErrorCode = "command_module"          // exports _start
	ErrMissingAlloc          ErrorCode = "missing_alloc"           // no cocoon_alloc export
	ErrFunctionTooLarge      ErrorCode = "function_too_large"      // a function body over MaxFunctionBytes
	ErrNestingTooDeep        ErrorCode = "nesting_too_deep"        // blocks nested deeper than MaxNestingDepth
	ErrTooManyBranches       ErrorCode = "too_many_branches"       // a function over MaxBranches
	ErrTooManyLocals         ErrorCode = "too_many_locals"         // a function over MaxFunctionLocals
	ErrFunctionTooComplex    ErrorCode = "function_too_complex"    // a function over MaxLocalBranches
	ErrBlockTypeTooLarge     ErrorCode = "block_type_too_large"    // a block type over MaxBlockTypeValues
)

// Error is why Validate refused a module. Message is precise and safe to show to the
// module's author: it names the export, import or section at fault, and quotes names
// from the module escaped and shortened.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ValueType is a WebAssembly value type.
type ValueType byte

// The value types that appear in ABI signatures.
const (
	I32 ValueType = 0x7f
	I64 ValueType = 0x7e
	F32 ValueType = 0x7d
	F64 ValueType = 0x7c
)

// String returns the type as the text format spells it, e.g. "i32".
func (v ValueType) String() string {
	switch wasmbin.ValType(v) {
	case wasmbin.I32:
		return "i32"
	case wasmbin.I64:
		return "i64"
	case wasmbin.F32:
		return "f32"
	case wasmbin.F64:
		return "f64"
	case wasmbin.V128:
		return "v128"
	case wasmbin.FuncRef:
		return "funcref"
	case wasmbin.ExternRef:
		return "externref"
	}
	return fmt.Sprintf("type(%#x)", byte(v))
}

// FuncType is a function signature.
type FuncType struct{ Params, Results []ValueType }

// String returns the signature like "(i32, i32) -> i64"; no results is "()", several
// are parenthesized.
func (t FuncType) String() string {
	list := func(vs []ValueType) string {
		s := make([]string, len(vs))
		for i, v := range vs {
			s[i] = v.String()
		}
		return strings.Join(s, ", ")
	}
	res := list(t.Results)
	if len(t.Results) != 1 {
		res = "(" + res + ")"
	}
	return "(" + list(t.Params) + ") -> " + res
}

func (t FuncType) equal(u FuncType) bool {
	return slices.Equal(t.Params, u.Params) && slices.Equal(t.Results, u.Results)
}

func fromWasm(t wasmbin.FuncType) FuncType {
	conv := func(vs []wasmbin.ValType) []ValueType {
		if len(vs) == 0 {
			return nil
		}
		out := make([]ValueType, len(vs))
		for i, v := range vs {
			out[i] = ValueType(v)
		}
		return out
	}
	return FuncType{Params: conv(t.Params), Results: conv(t.Results)}
}

func sig(params, results []ValueType) FuncType { return FuncType{Params: params, Results: results} }

// HostModule is the name of the module whose functions the host provides (SPEC.md §4).
const HostModule = "cocoon"

// HostFunctions are the functions of module "cocoon" (SPEC.md §4), by name.
var HostFunctions = map[string]FuncType{
	"log":    sig([]ValueType{I32, I32, I32}, nil),
	"reject": sig([]ValueType{I32, I32, I32}, nil),
	"config": sig([]ValueType{I32, I32}, []ValueType{I32}),
}

// Names of the exports of SPEC.md §3.
const (
	exportMemory     = "memory"
	exportMarker     = "cocoon_abi_v1"
	exportAlloc      = "cocoon_alloc"
	exportPre        = "cocoon_pre"
	exportPost       = "cocoon_post"
	exportChunk      = "cocoon_chunk"
	exportEnd        = "cocoon_end"
	exportInitialize = "_initialize"
	exportStart      = "_start"

	exportPrefix = "cocoon_"
	markerPrefix = "cocoon_abi_v"
)

// HookSignatures are the functions an ABI v1 module exports (SPEC.md §3), by name:
// the version marker, the allocator and the hooks.
var HookSignatures = map[string]FuncType{
	exportMarker: sig(nil, nil),
	exportAlloc:  sig([]ValueType{I32}, []ValueType{I32}),
	exportPre:    sig([]ValueType{I32, I32}, []ValueType{I64}),
	exportPost:   sig([]ValueType{I32, I32}, []ValueType{I64}),
	exportChunk:  sig([]ValueType{I32, I32}, []ValueType{I64}),
	exportEnd:    sig(nil, []ValueType{I64}),
}

// hookBits maps each hook export to the hook it implements; cocoon_chunk and
// cocoon_end count only together.
var hookBits = map[string]Hooks{exportPre: HookPre, exportPost: HookPost, exportChunk: HookStream, exportEnd: HookStream}

// maxPages32 is the number of pages a 32-bit memory can have.
const maxPages32 = 1 << 16

// Validate checks wasm, the raw bytes of an uploaded module, against ABI v1 (SPEC.md
// §2-§4 and §6) and the limits on function bodies (§7) without running anything, and
// returns what the host needs to know about it. It makes one pass over the sections and
// one over the instructions of the function bodies, stopping at the first fault; what
// it allocates is bounded by a small multiple of len(wasm), which it refuses beyond
// MaxModuleBytes before decoding anything. It takes about 10 ms for a 4 MiB Go guest.
// The error is always an *Error. When a module has several faults, the one reported is
// the first of: size, header, structure, function bodies in order, ABI version marker,
// imports in order, memory, exports in order, then missing exports.
func Validate(wasm []byte) (*ModuleInfo, error) {
	if len(wasm) > MaxModuleBytes {
		return nil, errorf(ErrTooLarge, "module is %d bytes; the limit is %d", len(wasm), MaxModuleBytes)
	}
	m, err := wasmbin.Decode(wasm)
	if err != nil {
		return nil, decodeError(err)
	}
	info := &ModuleInfo{}
	if info.Code, err = checkCode(m); err != nil {
		return nil, err
	}
	if info.ABIVersion, err = checkMarker(m); err != nil {
		return nil, err
	}
	if info.Imports, err = checkImports(m); err != nil {
		return nil, err
	}
	if err := checkMemory(m, info); err != nil {
		return nil, err
	}
	if err := checkTables(m, info); err != nil {
		return nil, err
	}
	if err := checkExports(m, info); err != nil {
		return nil, err
	}
	return info, nil
}

// checkMarker returns the version declared by the module's cocoon_abi_v<N> export.
func checkMarker(m *wasmbin.Module) (int, error) {
	var markers []wasmbin.Export
	var invalid string // a cocoon_abi_v... export that is not a marker, for the hint
	for _, e := range m.Exports {
		if !strings.HasPrefix(e.Name, markerPrefix) {
			continue
		}
		if markerVersion(e.Name) == "" {
			invalid = e.Name
			continue
		}
		markers = append(markers, e)
	}
	switch len(markers) {
	case 0:
		hint := ""
		if invalid != "" {
			hint = fmt.Sprintf(" (export %s is not one: the version is a decimal number without leading zeros)", wasmbin.Quote(invalid))
		}
		return 0, errorf(ErrNoABIVersion, "module does not declare an ABI version: export a function named %s%d%s", markerPrefix, Version, hint)
	case 1:
	default:
		more := ""
		if len(markers) > 2 {
			more = fmt.Sprintf(" and %d more", len(markers)-2)
		}
		return 0, errorf(ErrMultipleABIVersions, "module declares more than one ABI version (exports %s, %s%s); export exactly one %s<N>",
			wasmbin.Quote(markers[0].Name), wasmbin.Quote(markers[1].Name), more, markerPrefix)
	}
	e := markers[0]
	n := markerVersion(e.Name)
	v, err := strconv.Atoi(n)
	if err != nil || !slices.Contains(SupportedVersions, v) {
		if len(n) > maxVersionDigits { // keep the message short whatever the name
			n = n[:maxVersionDigits] + "..."
		}
		return 0, errorf(ErrUnsupportedABIVersion, "module targets ABI v%s; this host supports %s", n, versionList())
	}
	if err := checkFunc(m, e, HookSignatures[exportMarker]); err != nil {
		return 0, err
	}
	return v, nil
}

// maxVersionDigits is how many digits of an unsupported version an error shows.
const maxVersionDigits = 20

// markerVersion returns the decimal version in a marker name, or "" if name is not a
// marker.
func markerVersion(name string) string {
	n := strings.TrimPrefix(name, markerPrefix)
	if n == "" || n[0] == '0' || strings.TrimLeft(n, "0123456789") != "" {
		return ""
	}
	return n
}

func versionList() string {
	vs := make([]string, len(SupportedVersions))
	for i, v := range SupportedVersions {
		vs[i] = "v" + strconv.Itoa(v)
	}
	return strings.Join(vs, ", ")
}

// checkFunc checks that export e is a function with signature want.
func checkFunc(m *wasmbin.Module, e wasmbin.Export, want FuncType) error {
	if e.Kind != wasmbin.KindFunc {
		return errorf(ErrBadExportSignature, "export %s is a %s, want a function %s", wasmbin.Quote(e.Name), e.Kind, want)
	}
	if got := fromWasm(m.FuncType(e.Index)); !got.equal(want) {
		return errorf(ErrBadExportSignature, "export %s has signature %s, want %s", wasmbin.Quote(e.Name), got, want)
	}
	return nil
}

// checkImports checks every import against the functions the host provides and returns
// them.
func checkImports(m *wasmbin.Module) ([]Import, error) {
	imports := make([]Import, 0, len(m.Imports))
	for _, im := range m.Imports {
		name := wasmbin.Quote(im.Module) + "." + wasmbin.Quote(im.Name)
		switch im.Kind {
		case wasmbin.KindFunc:
		case wasmbin.KindMemory:
			return nil, errorf(ErrImportedMemory, "import %s is a memory: the module must define its own memory and export it as %q", name, exportMemory)
		default:
			return nil, errorf(ErrUnknownImport, "import %s is a %s: modules may import only functions", name, im.Kind)
		}
		var funcs map[string]FuncType
		switch im.Module {
		case HostModule:
			funcs = HostFunctions
		case WASIModule:
			funcs = WASIFunctions
		default:
			return nil, errorf(ErrUnknownImport, "import %s is not provided by the host: modules may import only from %q and %q",
				name, HostModule, WASIModule)
		}
		want, ok := funcs[im.Name]
		if !ok {
			return nil, errorf(ErrUnknownImport, "import %s is not provided by the host: module %q has no function %s",
				name, im.Module, wasmbin.Quote(im.Name))
		}
		if got := fromWasm(m.Type(im.Type)); !got.equal(want) {
			return nil, errorf(ErrBadImportSignature, "import %s has signature %s, want %s", name, got, want)
		}
		imports = append(imports, Import{Module: im.Module, Name: im.Name})
	}
	return imports, nil
}

// checkMemory checks that the module defines one 32-bit unshared memory and exports
// it as "memory", and records its limits in info. Imported memories were refused by
// checkImports.
func checkMemory(m *wasmbin.Module, info *ModuleInfo) error {
	i := slices.IndexFunc(m.Exports, func(e wasmbin.Export) bool { return e.Name == exportMemory })
	switch {
	case i >= 0 && m.Exports[i].Kind != wasmbin.KindMemory:
		return errorf(ErrBadExportSignature, "export %q is a %s, want the module's memory", exportMemory, m.Exports[i].Kind)
	case len(m.Memories) == 0:
		return errorf(ErrNoMemory, "module defines no memory: define one and export it as %q", exportMemory)
	case len(m.Memories) > 1:
		return errorf(ErrBadMemory, "module defines %d memories; ABI v1 modules have exactly one", len(m.Memories))
	case i < 0:
		for _, e := range m.Exports {
			if e.Kind == wasmbin.KindMemory {
				return errorf(ErrNoMemory, "module exports its memory as %s; export it as %q", wasmbin.Quote(e.Name), exportMemory)
			}
		}
		return errorf(ErrNoMemory, "module does not export its memory: export it as %q", exportMemory)
	}
	l := m.Memories[0]
	switch {
	case l.Is64:
		return errorf(ErrBadMemory, "memory is 64-bit (memory64); ABI v1 needs a 32-bit memory")
	case l.Shared:
		return errorf(ErrBadMemory, "memory is shared (threads); ABI v1 needs an unshared memory")
	case l.Min > maxPages32:
		return errorf(ErrBadMemory, "memory minimum of %d pages is above the %d pages a 32-bit memory can have", l.Min, maxPages32)
	case l.HasMax && l.Max > maxPages32:
		return errorf(ErrBadMemory, "memory maximum of %d pages is above the %d pages a 32-bit memory can have", l.Max, maxPages32)
	case l.HasMax && l.Max < l.Min:
		return errorf(ErrBadMemory, "memory maximum of %d pages is below its minimum of %d pages", l.Max, l.Min)
	}
	info.MemoryMinPages, info.MemoryMaxPages, info.HasMemoryMax = uint32(l.Min), uint32(l.Max), l.HasMax
	return nil
}

// checkTables checks that the module defines at most MaxTables tables, each with a
// minimum within CeilingLimits.TableElements, and records the minimums in info.
// Imported tables were refused by checkImports.
func checkTables(m *wasmbin.Module, info *ModuleInfo) error {
	if len(m.Tables) > MaxTables {
		return errorf(ErrBadTable, "module defines %d tables; the host allows at most %d", len(m.Tables), MaxTables)
	}
	for i, t := range m.Tables {
		if t.Min > uint64(CeilingLimits.TableElements) {
			return errorf(ErrBadTable, "table %d has a minimum of %d elements, above the ceiling of %d", i, t.Min, CeilingLimits.TableElements)
		}
		info.TableMinElements = append(info.TableMinElements, uint32(t.Min))
	}
	return nil
}

// checkExports checks the exports of SPEC.md §3 other than the marker and the memory,
// and records the hooks in info.
func checkExports(m *wasmbin.Module, info *ModuleInfo) error {
	var hasAlloc, hasChunk, hasEnd bool
	for _, e := range m.Exports {
		switch {
		case e.Name == exportStart:
			return errorf(ErrCommandModule, "module exports %q, so it is a WASI command; the host runs reactors (Go: build with -buildmode=c-shared; C/Rust: build a reactor)", exportStart)
		case e.Name == exportInitialize:
			if err := checkFunc(m, e, FuncType{}); err != nil {
				return err
			}
			info.HasInitialize = true
		case strings.HasPrefix(e.Name, markerPrefix):
			// checkMarker made sure there is exactly one marker, of a supported version.
			if markerVersion(e.Name) == "" {
				return unknownExport(e)
			}
		case strings.HasPrefix(e.Name, exportPrefix):
			if _, ok := HookSignatures[e.Name]; !ok {
				return unknownExport(e)
			}
			if err := checkFunc(m, e, HookSignatures[e.Name]); err != nil {
				return err
			}
			info.Hooks |= hookBits[e.Name]
			hasAlloc = hasAlloc || e.Name == exportAlloc
			hasChunk = hasChunk || e.Name == exportChunk
			hasEnd = hasEnd || e.Name == exportEnd
		}
	}
	switch {
	case !hasAlloc:
		return errorf(ErrMissingAlloc, "module does not export %s: export a function %s %s", exportAlloc, exportAlloc, HookSignatures[exportAlloc])
	case hasChunk && !hasEnd:
		return errorf(ErrIncompleteStream, "module exports %s without %s: the streaming hook needs both", exportChunk, exportEnd)
	case hasEnd && !hasChunk:
		return errorf(ErrIncompleteStream, "module exports %s without %s: the streaming hook needs both", exportEnd, exportChunk)
	case info.Hooks == 0:
		return errorf(ErrNoHooks, "module implements no hook: export %s, %s, or %s with %s", exportPre, exportPost, exportChunk, exportEnd)
	}
	return nil
}

func unknownExport(e wasmbin.Export) error {
	return errorf(ErrUnknownExport, "export %s is not part of ABI v%d: exports named %s* must be one of %s, %s, %s, %s, %s, %s",
		wasmbin.Quote(e.Name), Version, exportPrefix, exportMarker, exportAlloc, exportPre, exportPost, exportChunk, exportEnd)
}
