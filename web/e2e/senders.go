package e2e

import (
	"bytes"
	"sync"
)

// maxPreparedRoutes bounds the routes a Senders prepares for: a client sends to a few
// pipelines of a few hosts. Beyond it, a request to a new route is sealed as
// SealRequest does, with nothing prepared for the next.
const maxPreparedRoutes = 64

// Senders takes a client's encapsulation off its requests' critical path: when it
// seals a request to a route (a suite, a method and a path), it starts preparing,
// in a goroutine it owns, the HPKE sender of the next request to that route and key,
// so that the next Seal finds the encapsulation done. The host's key, the suite and
// the route (HPKE's info binds method and path) are all known before the next body is.
//
// What it keeps: at most one prepared sender per route, for the key it was prepared
// for, and at most one preparation running per route; at most maxPreparedRoutes
// routes. A prepared sender seals exactly one request: Seal takes it out before using
// it, so no encapsulation, and no answer key exported from it, is ever used twice. A
// prepared sender for a key other than the one a Seal is given (the host restarted
// with new keys) is discarded, never used.
//
// What it costs: the same CPU as sealing inline (one encapsulation per request,
// ML-KEM-768+X25519 about 0.1 ms), spent while the previous request is in flight
// rather than before the next is sent; plus the memory of one sender per route. The
// first request to a route, and one that finds its preparation still running, pays
// the encapsulation inline.
//
// Close ends it: it waits for the preparations running and drops the prepared
// senders. Safe for concurrent use; the zero value is not usable, NewSenders is.
type Senders struct {
	// prepareSender is a preparation's encapsulation: newSender, except in tests that
	// hold a preparation running.
	prepareSender func(s Suite, pub []byte, method, path string) (*sender, error)

	mu     sync.Mutex
	routes map[route]*preparation
	closed bool
	// running counts the preparation goroutines, which Close waits for.
	running sync.WaitGroup
}

// route is what an HPKE sender is bound to besides the key: the suite (its KEM) and
// the info's method and path.
type route struct {
	kem          uint16
	method, path string
}

// preparation is a route's sender prepared for pub, or being prepared (snd nil).
type preparation struct {
	pub []byte
	snd *sender
}

// NewSenders returns a Senders with nothing prepared.
func NewSenders() *Senders {
	return &Senders{prepareSender: newSender, routes: map[route]*preparation{}}
}

// Seal is SealRequest, with the encapsulation prepared ahead when a previous Seal to
// the same suite, key, method and path left one ready; it then starts preparing the
// next one for that route and key, unless one is being prepared or p is closed. It
// fails as SealRequest does.
func (p *Senders) Seal(s Suite, pub []byte, method, path string, req Request) ([]byte, *Client, error) {
	plain, err := requestPlaintext(req)
	if err != nil {
		return nil, nil, err
	}
	snd := p.take(route{s.KEMID(), method, path}, s, pub)
	if snd == nil {
		if snd, err = newSender(s, pub, method, path); err != nil {
			return nil, nil, err
		}
	}
	return snd.seal(plain)
}

// take returns the sender prepared for rt and pub, removed so that no other request
// gets it (nil when none is ready), and starts preparing the next one. A sender
// prepared for another key is dropped.
func (p *Senders) take(rt route, s Suite, pub []byte) *sender {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	prep, ok := p.routes[rt]
	if ok && bytes.Equal(prep.pub, pub) {
		if prep.snd == nil {
			return nil // its preparation is running: seal inline, it will be ready for the next
		}
		delete(p.routes, rt)
		p.prepare(rt, s, pub)
		return prep.snd
	}
	if !ok && len(p.routes) >= maxPreparedRoutes {
		return nil
	}
	// A new route, or a sender for a key that changed: replace it, so that the old
	// sender is never used and a preparation for the old key finds itself replaced.
	p.prepare(rt, s, pub)
	return nil
}

// prepare starts preparing rt's next sender for pub; p.mu is held.
func (p *Senders) prepare(rt route, s Suite, pub []byte) {
	prep := &preparation{pub: bytes.Clone(pub)}
	p.routes[rt] = prep
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		snd, err := p.prepareSender(s, prep.pub, rt.method, rt.path)
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case p.routes[rt] != prep:
			// Replaced (a key change) or dropped (Close) meanwhile: never used.
		case err != nil:
			delete(p.routes, rt) // Seal reports the error inline
		default:
			prep.snd = snd
		}
	}()
}

// Prepared returns how many senders are ready for a next request: at most one per
// route.
func (p *Senders) Prepared() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, prep := range p.routes {
		if prep.snd != nil {
			n++
		}
	}
	return n
}

// Close waits for the preparations running and drops every prepared sender. Seal
// still works after it, encapsulating inline and preparing nothing.
func (p *Senders) Close() {
	p.mu.Lock()
	p.closed = true
	clear(p.routes)
	p.mu.Unlock()
	p.running.Wait()
}
