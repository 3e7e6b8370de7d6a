package nvidia

import (
	"crypto/sha512"
	"crypto/x509"
	"sync"
	"time"
)

// Cache remembers, across Verify calls, the device chains and RIMs that verified, so
// that evidence from a GPU seen before costs the report's one ECDSA verification and a
// comparison of its measurements instead of ten P-384 verifications (NVIDIA's sample) and
// two XML canonicalizations (BenchmarkVerifyNVIDIACached against BenchmarkVerifyNVIDIA).
//
// An entry is keyed by the exact bytes (SHA-384 of the PEM chain or the RIM file) and
// by the roots pool they were verified under (the pointer: a pool given to one call is
// not taken for another), and is used only while the time of the call lies within the
// validity of every certificate of the verified chain; otherwise the bytes are verified
// again. Only what verified is remembered, at most maxCacheEntries of each kind (then
// the cache starts over), so a stranger's garbage neither fills it nor is ever served
// from it. Safe for concurrent use; the zero value is not: use NewCache.
type Cache struct {
	mu     sync.Mutex
	chains map[cacheKey]cachedChain
	rims   map[cacheKey]*RIM
}

// maxCacheEntries bounds each map of a Cache: a host serves a handful of GPUs and two
// RIMs per driver and VBIOS.
const maxCacheEntries = 256

type cacheKey struct {
	roots  *x509.CertPool // nil: the pinned root
	digest [sha512.Size384]byte
}

type validity struct{ notBefore, notAfter time.Time }

// validityOf is when every certificate of chain is valid.
func validityOf(chain []*x509.Certificate) validity {
	v := validity{notBefore: chain[0].NotBefore, notAfter: chain[0].NotAfter}
	for _, c := range chain[1:] {
		if c.NotBefore.After(v.notBefore) {
			v.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(v.notAfter) {
			v.notAfter = c.NotAfter
		}
	}
	return v
}

func (v validity) covers(now time.Time) bool {
	return !now.Before(v.notBefore) && !now.After(v.notAfter)
}

type cachedChain struct {
	certs, chain []*x509.Certificate // as served; as verified, leaf to root
	validity
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{chains: map[cacheKey]cachedChain{}, rims: map[cacheKey]*RIM{}}
}

// chain returns the verified chain of the PEM chainPEM under roots, if remembered and
// valid at now.
func (c *Cache) chain(roots *x509.CertPool, chainPEM []byte, now time.Time) (cachedChain, bool) {
	if c == nil {
		return cachedChain{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.chains[cacheKey{roots, sha512.Sum384(chainPEM)}]
	return e, ok && e.covers(now)
}

func (c *Cache) putChain(roots *x509.CertPool, chainPEM []byte, certs, chain []*x509.Certificate) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.chains) >= maxCacheEntries {
		clear(c.chains)
	}
	c.chains[cacheKey{roots, sha512.Sum384(chainPEM)}] = cachedChain{certs, chain, validityOf(chain)}
}

// rim returns ParseRIM(xml, opts), remembered when it verified before under the same
// roots and opts.Now lies within its signer's validity.
func (c *Cache) rim(xml []byte, opts RIMOptions) (*RIM, error) {
	if c == nil {
		return ParseRIM(xml, opts)
	}
	key := cacheKey{opts.Roots, sha512.Sum384(xml)}
	c.mu.Lock()
	cached, ok := c.rims[key]
	c.mu.Unlock()
	if ok && cached.usableUnder(opts.Roots, opts.Now) == nil {
		return cached, nil
	}
	rim, err := ParseRIM(xml, opts)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rims) >= maxCacheEntries {
		clear(c.rims)
	}
	c.rims[key] = rim
	return rim, nil
}
