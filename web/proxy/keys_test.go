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
	key := func(i int) [sha256.Size]byte { return sha256.Sum256(fmt.Append(nil, i)) }
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
	if a == b || a != c {
		t.Error("route keys do not follow the credential and the key")
	}
}
