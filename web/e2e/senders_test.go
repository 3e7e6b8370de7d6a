package e2e

import (
	"bytes"
	"crypto/hpke"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// encOf returns the encapsulated key of an envelope.
func encOf(env []byte) []byte {
	return env[headerSize : headerSize+int(env[3])<<8|int(env[4])]
}

// sealOpen seals the test request with p to k's key of suite s and checks that k opens
// it and that the answer opens; it returns the envelope's encapsulated key.
func sealOpen(t *testing.T, p *Senders, k *HostKeys, s Suite) []byte {
	t.Helper()
	env, c, err := p.Seal(s, k.Public().Key(s), http.MethodPost, testPath, testRequest())
	if err != nil {
		t.Fatal(err)
	}
	o, err := k.OpenRequest(http.MethodPost, testPath, env)
	if err != nil {
		t.Fatalf("the host does not open the request: %v", err)
	}
	if _, body, err := c.OpenBody(200, o.SealBody(200, http.Header{}, []byte("answer"))); err != nil || string(body) != "answer" {
		t.Fatalf("answer %q, %v", body, err)
	}
	return bytes.Clone(encOf(env))
}

// ready returns the sender prepared for the test route, once its preparation ended.
func ready(p *Senders, s Suite) *sender {
	p.running.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if prep := p.routes[route{s.KEMID(), http.MethodPost, testPath}]; prep != nil {
		return prep.snd
	}
	return nil
}

// TestSendersNeverReuse: requests sealed one after the other to the same key and
// route, the later ones with the encapsulation prepared by the one before, each have
// an encapsulation of their own: no two share an enc, so no two share keys.
func TestSendersNeverReuse(t *testing.T) {
	k := testKeys(t)
	for _, s := range suites {
		t.Run(s.Name, func(t *testing.T) {
			p := NewSenders()
			defer p.Close()
			seen := map[string]bool{}
			for i := range 4 {
				prepared := ready(p, s)
				if (prepared != nil) != (i > 0) {
					t.Fatalf("request %d: prepared sender %v, want one after the first request", i, prepared != nil)
				}
				enc := sealOpen(t, p, k, s)
				if prepared != nil && !bytes.Equal(enc, prepared.enc) {
					t.Errorf("request %d did not use the sender prepared for it", i)
				}
				if seen[string(enc)] {
					t.Fatalf("request %d reuses the encapsulation of an earlier one", i)
				}
				seen[string(enc)] = true
			}
		})
	}
}

// TestSendersConcurrent: requests sealed at once on one route never share an
// encapsulation, and at most one preparation runs per route.
func TestSendersConcurrent(t *testing.T) {
	k := testKeys(t)
	p := NewSenders()
	defer p.Close()
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 8 {
				env, _, err := p.Seal(X25519, k.Public().X25519, http.MethodPost, testPath, testRequest())
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := k.OpenRequest(http.MethodPost, testPath, env); err != nil {
					t.Error(err)
				}
				mu.Lock()
				if seen[string(encOf(env))] {
					t.Error("two requests share an encapsulation")
				}
				seen[string(encOf(env))] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if p.Close(); len(p.routes) != 0 {
		t.Errorf("%d routes kept after Close", len(p.routes))
	}
}

// TestSendersKeyChange: once the host's key changed (it restarted), the sender
// prepared for the old key is discarded: the request sealed to the new key opens
// with it, and the old key's sender is never used.
func TestSendersKeyChange(t *testing.T) {
	old, restarted := testKeys(t), testKeys(t)
	for _, s := range suites {
		t.Run(s.Name, func(t *testing.T) {
			p := NewSenders()
			defer p.Close()
			sealOpen(t, p, old, s)
			stale := ready(p, s)
			if stale == nil {
				t.Fatal("nothing prepared for the old key")
			}
			enc := sealOpen(t, p, restarted, s) // fails to open if sealed with the old key's sender
			if bytes.Equal(enc, stale.enc) {
				t.Fatal("the request to the new key used the sender prepared for the old key")
			}
			if next := ready(p, s); next == nil || bytes.Equal(next.enc, stale.enc) {
				t.Fatal("the old key's sender is still kept")
			}
			sealOpen(t, p, restarted, s)
		})
	}
}

// TestSendersBound: no more than maxPreparedRoutes routes are prepared for; a request
// to a route beyond them is sealed inline.
func TestSendersBound(t *testing.T) {
	k := testKeys(t)
	p := NewSenders()
	defer p.Close()
	for i := range maxPreparedRoutes + 8 {
		path := testPath + "?n=" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		env, _, err := p.Seal(X25519, k.Public().X25519, http.MethodPost, path, testRequest())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.OpenRequest(http.MethodPost, path, env); err != nil {
			t.Fatal(err)
		}
	}
	p.running.Wait()
	if len(p.routes) != maxPreparedRoutes {
		t.Errorf("%d routes prepared, want the bound %d", len(p.routes), maxPreparedRoutes)
	}
}

// TestSendersCloseJoins: Close returns only once the preparation running ended, and
// the sender it made is dropped, not kept for a request after Close.
func TestSendersCloseJoins(t *testing.T) {
	k := testKeys(t)
	p := NewSenders()
	block := make(chan struct{})
	p.prepareSender = func(s Suite, pk hpke.PublicKey, method, path string) (*sender, error) {
		<-block
		return newSender(s, pk, method, path)
	}
	// The first request is sealed inline and starts the preparation of the next,
	// which runs until block is closed.
	sealOpen(t, p, k, X25519)
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a preparation was running")
	case <-time.After(100 * time.Millisecond):
	}
	close(block)
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return within 2 s of the preparation's end")
	}
	if len(p.routes) != 0 {
		t.Errorf("Close kept %d prepared senders", len(p.routes))
	}
	sealOpen(t, p, k, X25519)
	if p.running.Wait(); len(p.routes) != 0 {
		t.Errorf("after Close %d routes were prepared for; want none", len(p.routes))
	}
}

// BenchmarkSenders is what preparing the encapsulation ahead gains and what it does
// not: each iteration seals a request and then waits inFlight, as a client waits for
// its answer, inline (SealRequest) and prepared (Senders.Seal, the next encapsulation
// made during the wait). seal-ns/req is the sealing's time on the request's critical
// path (the wall-time gain); cpu-ns/req is the process's CPU time per request
// (getrusage), which preparing ahead does not lower: the encapsulation still runs,
// only elsewhere in time.
func BenchmarkSenders(b *testing.B) {
	const inFlight = time.Millisecond
	k := testKeys(b)
	for _, s := range suites {
		pub := k.Public().Key(s)
		for _, mode := range []string{"inline", "prepared"} {
			b.Run(s.Name+"/"+mode, func(b *testing.B) {
				p := NewSenders()
				defer p.Close()
				seal := func() ([]byte, *Client, error) {
					return SealRequest(s, pub, http.MethodPost, testPath, testRequest())
				}
				if mode == "prepared" {
					seal = func() ([]byte, *Client, error) {
						return p.Seal(s, pub, http.MethodPost, testPath, testRequest())
					}
				}
				var sealing time.Duration
				cpu0 := cpuTime(b)
				for b.Loop() {
					t0 := time.Now()
					if _, _, err := seal(); err != nil {
						b.Fatal(err)
					}
					sealing += time.Since(t0)
					time.Sleep(inFlight)
				}
				b.ReportMetric(float64(sealing.Nanoseconds())/float64(b.N), "seal-ns/req")
				b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/req")
			})
		}
	}
}

// cpuTime is the CPU time the process used so far, user and system.
func cpuTime(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
