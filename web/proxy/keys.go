package proxy

import (
	"cmp"
	"container/heap"
	"crypto/sha256"
	"net/http"
	"sync"

	"github.com/cocoonhost/cocoon/settle"
)

// maxKeyRoutes bounds the idempotency keys each of a proxy's two key memories
// (keyMemory) remembers the host of (about 150 bytes each): more than an app retries
// within a day.
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
	// max is the bound; 0 means maxKeyRoutes (a test sets a small one).
	max   int
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
	if kr.total == cmp.Or(kr.max, maxKeyRoutes) {
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

// chargeProof is what one attempt at a billing host proves about whether the host
// admitted the request, and so may have charged it and keeps its idempotency key in its
// ledger. keyMemory keeps the key's route by it.
type chargeProof int

const (
	// chargeUnknown: the host received the request and no answer verified as the
	// host's for this request says what it did (the connection broke, the answer did not
	// verify, it is a server error, which may follow admission, or a refusal a relay
	// could have forged or replayed): it may have charged it.
	chargeUnknown chargeProof = iota
	// chargeAdmitted: a verified answer the host gives only after admission (a 2xx,
	// any answer with a receipt) or about the key itself (409: in progress or completed;
	// 422: used for another request), so its ledger holds the key.
	chargeAdmitted
	// chargeRefused: the host refused the request before admission (a 4xx without a
	// receipt, other than 409 and 422: a credential it does not accept, 402, 400, 413,
	// 429...) in an answer verified as its own for this request (received over RA-TLS,
	// or signed over this request's body): it charged nothing and its ledger has no
	// record of this attempt.
	chargeRefused
)

// proveCharge classifies a whole answer of status, with a receipt or not, that is the
// host's (its signature verified, or it came over RA-TLS). forThisRequest reports whether the answer is the host's own
// answer to this request rather than one a relay could put in its place; it is called
// (a signature verification) only for a refusal it would turn into chargeRefused.
func proveCharge(status int, receipt bool, forThisRequest func() bool) chargeProof {
	switch {
	case status < 400 || receipt || status == http.StatusConflict || status == http.StatusUnprocessableEntity:
		return chargeAdmitted
	case status >= 500 || !forThisRequest():
		return chargeUnknown // a server error may follow admission; a replayable refusal proves nothing
	}
	return chargeRefused
}

// keyMemory is where the proxy remembers which billing host each idempotency key was
// sent to (see keyRoutes), in two bounded memories and a list of the keys in flight.
// A key is in flight from the start of an attempt at a billing host to its end, and
// its retries meanwhile go to that host; then its route is kept by what the attempt
// proved (chargeProof): admitted, in admitted; unknown, in unproven; refused, nowhere,
// as the host charged nothing and has no record of it.
//
// The two memories are bounded apart so that requests the host refused cannot push
// out the routes of requests it admitted. A credential the host refuses (a made-up
// API key: a 401 that costs the sender nothing) gets, over RA-TLS, a verified refusal
// and is kept nowhere; but a sealed request's 401 is a plaintext, unsigned refusal
// (web/E2E.md §4), which a relay could forge in place of an answer the host charged, so
// over plain HTTP its route goes to unproven. Such a flood can push out only unproven
// routes: those of requests whose outcome no verified answer told (a connection that
// broke after the request was sent, a 5xx), never those of requests a host admitted. Keys in flight are
// bounded by the requests in flight, each of which holds its body already.
//
// Cost: a map lookup per request with a key; per attempt at a billing host with a key,
// two map updates under a mutex and keyRoutes.remember. It is safe for concurrent use.
type keyMemory struct {
	admitted, unproven keyRoutes

	mu       sync.Mutex
	inflight map[keyRoute]inflightRoute
}

// inflightRoute is a key's host while attempts are under way there, and how many.
type inflightRoute struct {
	url      string
	attempts int
}

// host is the URL of the billing host that k was sent to, "" if none: where its
// request was admitted, else where it is in flight, else where its charge is unknown.
func (m *keyMemory) host(k keyRoute) string {
	if url := m.admitted.host(k); url != "" {
		return url
	}
	m.mu.Lock()
	in, ok := m.inflight[k]
	m.mu.Unlock()
	if ok {
		return in.url
	}
	return m.unproven.host(k)
}

// begin records that an attempt to send k's request to the host at url starts; end
// must follow it.
func (m *keyMemory) begin(k keyRoute, url string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inflight == nil {
		m.inflight = map[keyRoute]inflightRoute{}
	}
	in := m.inflight[k]
	m.inflight[k] = inflightRoute{url: url, attempts: in.attempts + 1}
}

// end records how the attempt that begin started ended: proof, for a request the host
// received whole (sent).
func (m *keyMemory) end(k keyRoute, url string, sent bool, proof chargeProof) {
	switch { // before the key leaves flight, so that no lookup finds it nowhere meanwhile
	case !sent || proof == chargeRefused:
	case proof == chargeAdmitted:
		m.admitted.remember(k, url)
	default:
		m.unproven.remember(k, url)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if in := m.inflight[k]; in.attempts > 1 {
		m.inflight[k] = inflightRoute{url: in.url, attempts: in.attempts - 1}
	} else {
		delete(m.inflight, k)
	}
}
