package guest

// GCThreshold is how many bytes a module may allocate before the SDK runs the garbage
// collector after a hook call (see "Memory and garbage collection" in the package documentation).
const GCThreshold = 4 << 20
