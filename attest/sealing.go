package attest

// Sealing sources: where a host's root sealing secret comes from, as the sealing event
// measures it.
const (
	// SealingSim is the simulator's root sealing secret, a file in its directory on the
	// data disk (seal.SimRootFile). It protects nothing against whoever can read that
	// disk, exactly like sim quotes prove nothing: it exists so that the same code runs
	// without TDX.
	SealingSim = "sim"
	// SealingFile is a root sealing secret read from a file in memory-backed storage
	// (tmpfs or ramfs) that the TD image provisions at boot, typically released by a
	// key broker against this TD's quote. On TDX such memory is private to the TD.
	SealingFile = "file"
	// SealingNone is a host without a root sealing secret: it can persist no secret and
	// authenticate nothing it reads back, so it keeps what needs either in memory only
	// and refuses what cannot do without (billing, whose key must survive a restart).
	SealingNone = "none"
)
