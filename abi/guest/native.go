//go:build !wasip1

package guest

// SetTestConfig sets what [Config] returns, so that code reading the config can be
// unit-tested natively. It exists only in native (non-wasip1) builds: in a module the
// host provides the config.
func SetTestConfig(b []byte) {
	config.Lock()
	defer config.Unlock()
	config.b = b
	config.loaded = true
}
