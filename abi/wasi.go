package abi

import (
	"crypto/sha256"
	"time"
)

// WASIModule is the name of the WASI module the host provides (SPEC.md §6).
const WASIModule = "wasi_snapshot_preview1"

// The environment every instance sees (SPEC.md §6). The host's WASI uses these values
// and the attested sandbox policy is derived from them, so the measured policy changes
// whenever what modules see does.
const (
	// ClockEpochUnix is the first reading of the realtime clock, in seconds since the
	// Unix epoch: 2022-01-01T00:00:00Z.
	ClockEpochUnix = 1_640_995_200
	// ClockStep is how far each reading of either clock advances it.
	ClockStep = time.Millisecond
	// ClockResolution is what clock_res_get reports for both clocks.
	ClockResolution = time.Nanosecond
	// RandomSeedText names random_get's stream: ChaCha8 (math/rand/v2) seeded with
	// the SHA-256 of this text (RandomSeed).
	RandomSeedText = "cocoon abi v1 random_get"
)

// RandomSeed is the seed of every instance's random stream: sha256(RandomSeedText).
func RandomSeed() [32]byte { return sha256.Sum256([]byte(RandomSeedText)) }

// WASIFunctions are the functions of wasi_snapshot_preview1 a module may import, by
// name, with their exact signatures: the whole of wasi_snapshot_preview1, as wazero
// v1.12.0 lists it. The host implements each with the semantics of SPEC.md §6.
var WASIFunctions = map[string]FuncType{
	"args_get":                sig(i32s(2), i32s(1)),
	"args_sizes_get":          sig(i32s(2), i32s(1)),
	"clock_res_get":           sig(i32s(2), i32s(1)),
	"clock_time_get":          sig([]ValueType{I32, I64, I32}, i32s(1)),
	"environ_get":             sig(i32s(2), i32s(1)),
	"environ_sizes_get":       sig(i32s(2), i32s(1)),
	"fd_advise":               sig([]ValueType{I32, I64, I64, I32}, i32s(1)),
	"fd_allocate":             sig([]ValueType{I32, I64, I64}, i32s(1)),
	"fd_close":                sig(i32s(1), i32s(1)),
	"fd_datasync":             sig(i32s(1), i32s(1)),
	"fd_fdstat_get":           sig(i32s(2), i32s(1)),
	"fd_fdstat_set_flags":     sig(i32s(2), i32s(1)),
	"fd_fdstat_set_rights":    sig([]ValueType{I32, I64, I64}, i32s(1)),
	"fd_filestat_get":         sig(i32s(2), i32s(1)),
	"fd_filestat_set_size":    sig([]ValueType{I32, I64}, i32s(1)),
	"fd_filestat_set_times":   sig([]ValueType{I32, I64, I64, I32}, i32s(1)),
	"fd_pread":                sig([]ValueType{I32, I32, I32, I64, I32}, i32s(1)),
	"fd_prestat_dir_name":     sig(i32s(3), i32s(1)),
	"fd_prestat_get":          sig(i32s(2), i32s(1)),
	"fd_pwrite":               sig([]ValueType{I32, I32, I32, I64, I32}, i32s(1)),
	"fd_read":                 sig(i32s(4), i32s(1)),
	"fd_readdir":              sig([]ValueType{I32, I32, I32, I64, I32}, i32s(1)),
	"fd_renumber":             sig(i32s(2), i32s(1)),
	"fd_seek":                 sig([]ValueType{I32, I64, I32, I32}, i32s(1)),
	"fd_sync":                 sig(i32s(1), i32s(1)),
	"fd_tell":                 sig(i32s(2), i32s(1)),
	"fd_write":                sig(i32s(4), i32s(1)),
	"path_create_directory":   sig(i32s(3), i32s(1)),
	"path_filestat_get":       sig(i32s(5), i32s(1)),
	"path_filestat_set_times": sig([]ValueType{I32, I32, I32, I32, I64, I64, I32}, i32s(1)),
	"path_link":               sig(i32s(7), i32s(1)),
	"path_open":               sig([]ValueType{I32, I32, I32, I32, I32, I64, I64, I32, I32}, i32s(1)),
	"path_readlink":           sig(i32s(6), i32s(1)),
	"path_remove_directory":   sig(i32s(3), i32s(1)),
	"path_rename":             sig(i32s(6), i32s(1)),
	"path_symlink":            sig(i32s(5), i32s(1)),
	"path_unlink_file":        sig(i32s(3), i32s(1)),
	"poll_oneoff":             sig(i32s(4), i32s(1)),
	"proc_exit":               sig(i32s(1), nil),
	"proc_raise":              sig(i32s(1), i32s(1)),
	"random_get":              sig(i32s(2), i32s(1)),
	"sched_yield":             sig(nil, i32s(1)),
	"sock_accept":             sig(i32s(3), i32s(1)),
	"sock_recv":               sig(i32s(6), i32s(1)),
	"sock_send":               sig(i32s(5), i32s(1)),
	"sock_shutdown":           sig(i32s(2), i32s(1)),
}

// i32s returns n i32s: most WASI parameters are pointers, lengths and descriptors, and
// every WASI result but proc_exit's is an i32 errno.
func i32s(n int) []ValueType {
	vs := make([]ValueType, n)
	for i := range vs {
		vs[i] = I32
	}
	return vs
}
