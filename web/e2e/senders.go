package e2e

import (
	"bytes"
	"crypto/hpke"
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
// What it keeps: per route, the key it prepares for (parsed once: for ML-KEM-768 that
// is about a fifth of an encapsulation) and at most one prepared sender, with at most
// one preparation running; at most maxPreparedRoutes routes. A prepared sender seals
// exactly one request: Seal takes it out before using it, so no encapsulation, and no
// answer key exported from it, is ever used twice. A prepared sender for a key other
// than the one a Seal is given (the host restarted with new keys) is discarded, never
// used.
//
// What it costs: the same CPU as sealing inline, less the key's parsing (one
// encapsulation per request, ML-KEM-768+X25519 about 0.1 ms), spent while the
// previous request is in flight rather than before the next is sent: on a machine
// whose cores are all busy it delays that request instead. Plus the memory of one
// sender per route. The first request to a route, and one that finds its preparation
// still running, pays the encapsulation inline.
//
// Close ends it: it waits for the preparations running and drops the prepared
// senders. Safe for concurrent use; the zero value is not usable, NewSenders is.
type Senders struct {
	// prepareSender is a preparation's encapsulation: newSender, except in tests that
	// hold a preparation running.
	prepareSender func(s Suite, pk hpke.PublicKey, method, path string) (*sender, error)

	mu     sync.Mutex
	routes map[route]*preparation
	closed bool
	// running counts the preparation goroutines, which Close waits for.
	running sync.WaitGroup
}

// route is what an HPKE sender is bound to besides the key: the suite (its KEM id) and
// the info's method and path.
type route struct {
	kem          uint16
	method, path string
}

// preparation is a route's suite and key and the sender prepared for it: nil while its
// preparation runs, or once a Seal took it.
type preparation struct {
	suite Suite
	pub   []byte
	pk    hpke.PublicKey
	snd   *sender
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
	rt := route{s.KEMID(), method, path}
	snd, pk := p.take(rt, pub)
	if snd != nil {
		return snd.seal(plain)
	}
	if pk == nil { // a new route or key
		if pk, err = s.publicKey(pub); err != nil {
			return nil, nil, err
		}
		p.replace(rt, s, pub, pk)
	}
	if snd, err = newSender(s, pk, method, path); err != nil {
		return nil, nil, err
	}
	return snd.seal(plain)
}

// take returns the sender prepared for rt and pub, taken out so that no other request
// gets it, and starts preparing the next. When none is ready it returns the parsed
// key if rt is kept for pub (its preparation is running), else nil.
func (p *Senders) take(rt route, pub []byte) (*sender, hpke.PublicKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prep, ok := p.routes[rt]
	switch {
	case !ok || !bytes.Equal(prep.pub, pub):
		return nil, nil
	case prep.snd == nil:
		return nil, prep.pk // running: it will be ready for the next request
	}
	snd := prep.snd
	prep.snd = nil
	p.prepare(rt, prep)
	return snd, nil
}

// replace keeps rt for pub, whose parsed key is pk, in place of what it was kept for
// (a sender for another key is dropped unused) and starts preparing its next sender;
// not when p is closed or keeps maxPreparedRoutes other routes.
func (p *Senders) replace(rt route, s Suite, pub []byte, pk hpke.PublicKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.routes[rt]; p.closed || !ok && len(p.routes) >= maxPreparedRoutes {
		return
	}
	prep := &preparation{suite: s, pub: bytes.Clone(pub), pk: pk}
	p.routes[rt] = prep
	p.prepare(rt, prep)
}

// prepare starts preparing prep's next sender; p.mu is held and prep.snd is nil.
func (p *Senders) prepare(rt route, prep *preparation) {
	if p.closed {
		return
	}
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		snd, err := p.prepareSender(prep.suite, prep.pk, rt.method, rt.path)
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case p.routes[rt] != prep:
			// Replaced (a key change) or dropped (Close) meanwhile: never used.
		case err != nil:
			delete(p.routes, rt) // the next Seal encapsulates inline and reports it
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
