package proxy

import (
	"container/heap"
	"crypto/sha256"
	"net/http"
	"sync"

	"github.com/cocoonhost/cocoon/settle"
)

// maxKeyRoutes bounds the idempotency keys a proxy remembers the host of (about 150
// bytes each): more than an app retries within a day.
const maxKeyRoutes = 1 << 16

// keyRoute names an app request's idempotency key for keyRoutes: the SHA-256 of the
// app's credential (its Authorization header) and the SHA-256 of that and the key.
type keyRoute struct {
	cred, key [sha256.Size]byte
}

// keyRoutes remembers, for each idempotency key the proxy sent to a billing host, that
// host's URL: the only one whose ledger knows the key, so the only one to which a retry
// under the key cannot charge a second time. Routing by price and load (or by a hash
// of the key over the cheapest hosts) would send a retry elsewhere as soon as prices
// or the hosts in routing changed. A key is remembered under the app's credential too,
// as each host keeps keys per account.
//
// When full (maxKeyRoutes keys) it forgets the oldest key of the credential that holds
// the most: an app sending many keys forgets its own first, and cannot push another
// app's keys out while it holds more than that app (one global first-in-first-out
// order let one app's flood evict every other app's keys, whose retries then went to
// whichever host routing picked and were charged again). Cost: O(log credentials) per
// key learnt. It is safe for concurrent use.
type keyRoutes struct {
	mu    sync.Mutex
	hosts map[keyRoute]string // the host's URL
	creds map[[sha256.Size]byte]*credKeys
	most  credHeap // the credentials, the one holding the most keys first
	total int
}

// credKeys are the keys one credential has in keyRoutes, oldest first.
type credKeys struct {
	cred  [sha256.Size]byte
	keys  []keyRoute // keys[head:] are remembered
	head  int
	index int // in keyRoutes.most
}

func (c *credKeys) len() int { return len(c.keys) - c.head }

// credHeap is a max-heap of credentials by the number of keys they hold.
type credHeap []*credKeys

func (h credHeap) Len() int           { return len(h) }
func (h credHeap) Less(i, j int) bool { return h[i].len() > h[j].len() }
func (h credHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *credHeap) Push(x any) {
	c := x.(*credKeys)
	c.index = len(*h)
	*h = append(*h, c)
}
func (h *credHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// routeKey names an app request's idempotency key for keyRoutes; ok is false without
// one.
func routeKey(r *http.Request) (k keyRoute, ok bool) {
	key := r.Header.Get(settle.IdempotencyKeyHeader)
	if key == "" {
		return k, false
	}
	k.cred = sha256.Sum256([]byte(r.Header.Get("Authorization")))
	k.key = sha256.Sum256(append(k.cred[:], key...))
	return k, true
}

// host is the URL of the host that k was sent to, "" if none.
func (kr *keyRoutes) host(k keyRoute) string {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	return kr.hosts[k]
}

// remember records that k was sent to the host at url.
func (kr *keyRoutes) remember(k keyRoute, url string) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.hosts == nil {
		kr.hosts, kr.creds = map[keyRoute]string{}, map[[sha256.Size]byte]*credKeys{}
	}
	if _, ok := kr.hosts[k]; ok {
		kr.hosts[k] = url
		return
	}
	if kr.total == maxKeyRoutes {
		kr.forgetOldest(kr.most[0])
	}
	c := kr.creds[k.cred]
	if c == nil {
		c = &credKeys{cred: k.cred}
		kr.creds[k.cred] = c
		heap.Push(&kr.most, c)
	}
	c.keys = append(c.keys, k)
	heap.Fix(&kr.most, c.index)
	kr.hosts[k] = url
	kr.total++
}

// forgetOldest forgets c's oldest key, and c once it holds none.
func (kr *keyRoutes) forgetOldest(c *credKeys) {
	delete(kr.hosts, c.keys[c.head])
	c.keys[c.head] = keyRoute{}
	c.head++
	kr.total--
	if c.len() == 0 {
		heap.Remove(&kr.most, c.index)
		delete(kr.creds, c.cred)
		return
	}
	if c.head > len(c.keys)/2 { // keep the slice's dead prefix at most its live part
		c.keys, c.head = append(c.keys[:0], c.keys[c.head:]...), 0
	}
	heap.Fix(&kr.most, c.index)
}
