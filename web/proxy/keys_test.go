package proxy

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"testing"

	"github.com/cocoonhost/cocoon/settle"
)

// TestKeyRoutesBounded: the proxy remembers the host of at most maxKeyRoutes keys, and
// forgets the key it learnt first; a key sent again to another host (after a refusal
// before admission) names that host.
func TestKeyRoutesBounded(t *testing.T) {
	var kr keyRoutes
	key := func(i int) keyRoute { return keyRoute{key: sha256.Sum256(fmt.Append(nil, i))} }
	for i := range maxKeyRoutes + 1 {
		kr.remember(key(i), "http://a")
	}
	kr.remember(key(maxKeyRoutes), "http://b")
	switch {
	case len(kr.hosts) != maxKeyRoutes:
		t.Fatalf("%d keys remembered, want at most %d", len(kr.hosts), maxKeyRoutes)
	case kr.host(key(0)) != "":
		t.Fatal("the first key is still remembered")
	case kr.host(key(1)) != "http://a" || kr.host(key(maxKeyRoutes)) != "http://b":
		t.Fatalf("keys 1 and %d: %q, %q", maxKeyRoutes, kr.host(key(1)), kr.host(key(maxKeyRoutes)))
	}
}

// TestKeyRoutesFloodForgetsItsOwn performs one app's flood of idempotency keys through
// a proxy that another app uses too: the flooding app sends maxKeyRoutes keys (each
// to a billing host: cheap requests, or ones the host refuses). The other app's keys
// must stay remembered, or their retries go wherever routing then points and are
// charged a second time. The flood forgets its own keys, oldest first; and among
// several apps over the bound, the one holding the most keys gives one up.
func TestKeyRoutesFloodForgetsItsOwn(t *testing.T) {
	var kr keyRoutes
	route := func(auth, key string) keyRoute {
		r, _ := http.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
		r.Header.Set("Authorization", auth)
		r.Header.Set(settle.IdempotencyKeyHeader, key)
		k, _ := routeKey(r)
		return k
	}
	const victimKeys = 100
	for i := range victimKeys {
		kr.remember(route("Bearer victim", fmt.Sprint("order-", i)), "http://charged")
	}
	for i := range 2 * maxKeyRoutes {
		kr.remember(route("Bearer flood", fmt.Sprint(i)), "http://a")
	}
	for i := range victimKeys {
		if got := kr.host(route("Bearer victim", fmt.Sprint("order-", i))); got != "http://charged" {
			t.Fatalf("another app's flood of keys made the proxy forget the victim's key order-%d (%q): its retry would be routed anew and charged twice", i, got)
		}
	}
	switch {
	case len(kr.hosts) != maxKeyRoutes || kr.total != maxKeyRoutes:
		t.Fatalf("%d keys remembered (total %d), want %d", len(kr.hosts), kr.total, maxKeyRoutes)
	case kr.host(route("Bearer flood", fmt.Sprint(2*maxKeyRoutes-1))) != "http://a":
		t.Fatal("the flood's newest key is forgotten")
	case kr.host(route("Bearer flood", fmt.Sprint(maxKeyRoutes))) != "":
		t.Fatal("the flood's oldest keys are still remembered")
	}
	// Many credentials with one key each, over the bound: the one holding the most (the
	// flood) still gives up its oldest, and a credential whose keys are all forgotten is
	// forgotten too.
	for i := range maxKeyRoutes / 2 {
		kr.remember(route(fmt.Sprint("Bearer sybil-", i), "k"), "http://a")
	}
	if got := kr.host(route("Bearer victim", "order-0")); got != "http://charged" {
		t.Fatalf("a flood of one key per credential made the proxy forget the victim's key (%q)", got)
	}
	if len(kr.creds) != len(kr.most) || len(kr.creds) != 2+maxKeyRoutes/2 || len(kr.hosts) != maxKeyRoutes {
		t.Fatalf("%d credentials, %d in the heap, %d keys", len(kr.creds), len(kr.most), len(kr.hosts))
	}
}

// TestRouteKey: a key is remembered per app credential, as hosts keep keys per account.
func TestRouteKey(t *testing.T) {
	req := func(auth, key string) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if key != "" {
			r.Header.Set(settle.IdempotencyKeyHeader, key)
		}
		return r
	}
	if _, ok := routeKey(req("Bearer x", "")); ok {
		t.Error("a request without a key has a route key")
	}
	a, _ := routeKey(req("Bearer x", "k"))
	b, _ := routeKey(req("Bearer y", "k"))
	c, _ := routeKey(req("Bearer x", "k"))
	if a == b || a != c || a.cred == b.cred || a.cred != c.cred {
		t.Error("route keys do not follow the credential and the key")
	}
}

// BenchmarkKeyRoutesRemember is what a billing request with an idempotency key adds to
// the proxy once its key memory is full: one key learnt and one forgotten, sent by one
// app or by one of 4,096. go test -run '^$' -bench KeyRoutesRemember ./web/proxy/
func BenchmarkKeyRoutesRemember(b *testing.B) {
	for _, creds := range []int{1, 4096} {
		b.Run(fmt.Sprint("credentials=", creds), func(b *testing.B) {
			var kr keyRoutes
			route := func(i int) keyRoute {
				return keyRoute{cred: sha256.Sum256(fmt.Append(nil, i%creds)), key: sha256.Sum256(fmt.Append(nil, i))}
			}
			for i := range maxKeyRoutes {
				kr.remember(route(i), "http://a")
			}
			routes := make([]keyRoute, 1024)
			for i := range routes {
				routes[i] = route(maxKeyRoutes + i)
			}
			b.ResetTimer()
			for i := range b.N {
				k := routes[i%len(routes)]
				k.key[0], k.key[1], k.key[2] = byte(i>>10), byte(i>>18), byte(i>>26)
				kr.remember(k, "http://a")
			}
		})
	}
}

// TestProveCharge: only a refusal before admission that is the host's own answer to
// this request proves that nothing was charged; an answer after admission, or about
// the key, proves the host knows the key; anything else may have been charged.
func TestProveCharge(t *testing.T) {
	for _, c := range []struct {
		name           string
		status         int
		receipt, bound bool
		want           chargeProof
	}{
		{"answered", http.StatusOK, true, false, chargeAdmitted},
		{"answered without a receipt", http.StatusOK, false, false, chargeAdmitted},
		{"failed after admission", http.StatusBadRequest, true, false, chargeAdmitted},
		{"key in progress", http.StatusConflict, false, true, chargeAdmitted},
		{"key used for another request", http.StatusUnprocessableEntity, false, true, chargeAdmitted},
		{"credential refused, for this request", http.StatusUnauthorized, false, true, chargeRefused},
		{"credential refused, replayable", http.StatusUnauthorized, false, false, chargeUnknown},
		{"no escrow, for this request", http.StatusPaymentRequired, false, true, chargeRefused},
		{"over capacity, replayable", http.StatusTooManyRequests, false, false, chargeUnknown},
		{"bad request, for this request", http.StatusBadRequest, false, true, chargeRefused},
		{"server error", http.StatusServiceUnavailable, false, true, chargeUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			asked := false
			got := proveCharge(c.status, c.receipt, func() bool { asked = true; return c.bound })
			if got != c.want {
				t.Fatalf("proveCharge(%d, receipt %v, bound %v) = %d, want %d", c.status, c.receipt, c.bound, got, c.want)
			}
			if asked && c.want == chargeAdmitted {
				t.Error("a signature checked for an answer that needs none")
			}
		})
	}
}

// TestKeyMemory: a key's retries go to its host while an attempt there is in flight
// (a duplicate sent meanwhile goes nowhere else), then by what the attempt proved:
// admitted and unknown are kept, in memories bounded apart, and refused or never sent
// is forgotten once no attempt is in flight.
func TestKeyMemory(t *testing.T) {
	key := func(i int) keyRoute {
		return keyRoute{cred: sha256.Sum256(fmt.Append(nil, i)), key: sha256.Sum256(fmt.Append(nil, i))}
	}
	var m keyMemory
	m.admitted.max, m.unproven.max = 2, 2
	for i, c := range []struct {
		sent  bool
		proof chargeProof
		want  string
	}{
		{true, chargeAdmitted, "http://a"},
		{true, chargeUnknown, "http://a"},
		{true, chargeRefused, ""},
		{false, chargeUnknown, ""},
	} {
		k := key(i)
		m.begin(k, "http://a")
		m.begin(k, "http://a") // a duplicate in flight
		if got := m.host(k); got != "http://a" {
			t.Fatalf("case %d: a key in flight routes to %q", i, got)
		}
		m.end(k, "http://a", c.sent, c.proof)
		if got := m.host(k); got != "http://a" {
			t.Fatalf("case %d: a key with an attempt still in flight routes to %q", i, got)
		}
		m.end(k, "http://a", c.sent, c.proof)
		if got := m.host(k); got != c.want {
			t.Fatalf("case %d: after its attempts the key routes to %q, want %q", i, got, c.want)
		}
	}
	if len(m.inflight) != 0 {
		t.Fatalf("%d keys still in flight", len(m.inflight))
	}
	// Unknown outcomes beyond the bound push out unknown ones only.
	for i := 10; i < 20; i++ {
		m.begin(key(i), "http://b")
		m.end(key(i), "http://b", true, chargeUnknown)
	}
	if m.host(key(0)) != "http://a" || m.host(key(19)) != "http://b" || len(m.unproven.hosts) != 2 {
		t.Fatalf("after a flood of unknown outcomes: admitted %q, newest %q, %d unknown kept", m.host(key(0)), m.host(key(19)), len(m.unproven.hosts))
	}
}

// BenchmarkKeyMemoryAttempt is what an attempt at a billing host with an app's
// idempotency key adds to the proxy, its memory full: the key put in flight, then
// remembered as admitted (one key learnt, one forgotten).
// go test -run '^$' -bench KeyMemoryAttempt ./web/proxy/
func BenchmarkKeyMemoryAttempt(b *testing.B) {
	var m keyMemory
	route := func(i int) keyRoute {
		return keyRoute{cred: sha256.Sum256(fmt.Append(nil, i%4096)), key: sha256.Sum256(fmt.Append(nil, i))}
	}
	for i := range maxKeyRoutes {
		m.admitted.remember(route(i), "http://a")
	}
	k := route(maxKeyRoutes)
	b.ResetTimer()
	for i := range b.N {
		k.key[0], k.key[1], k.key[2], k.key[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		m.begin(k, "http://a")
		m.end(k, "http://a", true, chargeAdmitted)
	}
}
