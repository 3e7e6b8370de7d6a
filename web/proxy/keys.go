package proxy

import (
	"crypto/sha256"
	"net/http"
	"sync"

	"github.com/cocoonhost/cocoon/settle"
)

// maxKeyRoutes bounds the idempotency keys a proxy remembers the host of (about 100
// bytes each): more than an app retries within a day.
const maxKeyRoutes = 1 << 16

// keyRoutes remembers, for each idempotency key the proxy sent to a billing host, that
// host's URL: the only one whose ledger knows the key, so the only one to which a retry
// under the key cannot charge a second time. Routing by price and load (or by a hash
// of the key over the cheapest hosts) would send a retry elsewhere as soon as prices
// or the hosts in routing changed. A key is remembered under the app's credential too,
// as each host keeps keys per account. When full it forgets the key it learnt first.
// It is safe for concurrent use.
type keyRoutes struct {
	mu    sync.Mutex
	hosts map[[sha256.Size]byte]string // the host's URL
	order [][sha256.Size]byte          // the keys in the order learnt, a ring once full
	next  int                          // where the ring's next key goes
}

// routeKey names an app request's idempotency key for keyRoutes, "" without one: the
// SHA-256 of the app's credential and the key.
func routeKey(r *http.Request) (k [sha256.Size]byte, ok bool) {
	key := r.Header.Get(settle.IdempotencyKeyHeader)
	if key == "" {
		return k, false
	}
	return sha256.Sum256([]byte(r.Header.Get("Authorization") + "\x00" + key)), true
}

// host is the URL of the host that k was sent to, "" if none.
func (kr *keyRoutes) host(k [sha256.Size]byte) string {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	return kr.hosts[k]
}

// remember records that k was sent to the host at url.
func (kr *keyRoutes) remember(k [sha256.Size]byte, url string) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.hosts == nil {
		kr.hosts = map[[sha256.Size]byte]string{}
	}
	if _, ok := kr.hosts[k]; !ok {
		if len(kr.order) < maxKeyRoutes {
			kr.order = append(kr.order, k)
		} else {
			delete(kr.hosts, kr.order[kr.next])
			kr.order[kr.next] = k
			kr.next = (kr.next + 1) % maxKeyRoutes
		}
	}
	kr.hosts[k] = url
}
