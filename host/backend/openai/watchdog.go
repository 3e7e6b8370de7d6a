package openai

import (
	"context"
	"io"
	"math"
	"sync/atomic"
	"time"
)

// Which timeout a watchdog fired.
const (
	notFired int32 = iota
	firstByteFired
	idleFired
)

// watchdog cancels a request when the server stays silent too long: firstByte from the
// start to the first byte of the body, then idle between reads. Reads only store a
// timestamp; the timer callback compares it with the deadline and re-arms itself, so a
// busy stream costs no timer operations.
type watchdog struct {
	start     time.Time
	firstByte time.Duration // 0: none
	idle      time.Duration // 0: none
	cancel    context.CancelFunc
	timer     *time.Timer // nil if both timeouts are off

	last    atomic.Int64 // time since start of the last read with data; -1 before the first
	paused  atomic.Bool  // the caller is busy with what it read: not the server's silence
	stopped atomic.Bool
	kind    atomic.Int32
}

func startWatchdog(firstByte, idle time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{start: time.Now(), firstByte: max(firstByte, 0), idle: max(idle, 0), cancel: cancel}
	w.last.Store(-1)
	if step := w.step(); step > 0 {
		// Assign the timer before it can fire: check reads it.
		w.timer = time.AfterFunc(math.MaxInt64, w.check)
		w.timer.Reset(step)
	}
	return w
}

// step is the shortest enabled timeout, 0 if none is. check looks at least that often,
// so when the first byte starts the idle clock, the idle deadline is not missed.
func (w *watchdog) step() time.Duration {
	if w.firstByte == 0 || w.idle != 0 && w.idle < w.firstByte {
		return w.idle
	}
	return w.firstByte
}

func (w *watchdog) check() {
	if w.stopped.Load() {
		return
	}
	limit, since, kind := w.idle, time.Duration(w.last.Load()), idleFired
	if since < 0 {
		limit, since, kind = w.firstByte, 0, firstByteFired
	}
	if limit == 0 || w.paused.Load() {
		w.timer.Reset(w.step())
		return
	}
	if wait := since + limit - time.Since(w.start); wait > 0 {
		w.timer.Reset(min(wait, w.step()))
		return
	}
	w.kind.CompareAndSwap(notFired, kind)
	w.cancel()
}

// alive records a sign of life from the server.
func (w *watchdog) alive() { w.last.Store(int64(time.Since(w.start))) }

// pause stops the clock while the caller handles data; resume restarts it from now.
func (w *watchdog) pause() { w.paused.Store(true) }

func (w *watchdog) resume() {
	w.alive()
	w.paused.Store(false)
}

// fired returns which timeout cancelled the request, or notFired.
func (w *watchdog) fired() int32 { return w.kind.Load() }

func (w *watchdog) stop() {
	w.stopped.Store(true)
	if w.timer != nil {
		w.timer.Stop()
	}
}

// watchedBody reports every read with data to its watchdog.
type watchedBody struct {
	io.ReadCloser
	dog *watchdog
}

func (b watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.dog.alive()
	}
	return n, err
}

// idleBody calls the caller's idle hook (backend.WithIdle) before every read of the
// body: the stream reader reads only when it has emitted every delta of what it read
// before, and the read may wait for the server. The watchdog is paused from the end of
// each read to the start of the next: the caller's time, in idle and in emitting what
// was read, is not the server's silence. An error of idle comes out of Read as an
// emitError, which Generate returns as the caller's own. ended, when set, is set once
// a read reached the end of the body: no read after it waits.
type idleBody struct {
	r     io.Reader
	idle  func() error
	dog   *watchdog
	ended *bool
}

func (b idleBody) Read(p []byte) (int, error) {
	if err := b.call(); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	b.dog.pause()
	if err == io.EOF && b.ended != nil {
		*b.ended = true
	}
	return n, err
}

// call calls idle with the watchdog paused.
func (b idleBody) call() error {
	b.dog.pause()
	defer b.dog.resume()
	if err := b.idle(); err != nil {
		return emitError{err}
	}
	return nil
}
