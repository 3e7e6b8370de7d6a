package attest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// EventType names what an event of the runtime event log measures. The set is closed:
// a verifier refuses a log with a type it does not know, because it could not say what
// was measured.
type EventType string

// The event types, in the order the host measures them at boot (eventOrder says which
// are required).
const (
	// EventHostBinary carries the SHA-256 of the host executable (32 bytes).
	EventHostBinary EventType = "host-binary"
	// EventABIVersion carries the module ABI version, a 4-byte big-endian integer.
	EventABIVersion EventType = "abi-version"
	// EventSandboxPolicy carries the SHA-256 of the sandbox policy (32 bytes).
	EventSandboxPolicy EventType = "sandbox-policy"
	// EventBackend carries the inference backend's identity, UTF-8 text such as
	// "embedded" or "openai".
	EventBackend EventType = "backend"
	// EventModel carries the model's identity, UTF-8 text: "sha256:<hex>" of the model
	// file for the embedded engine, "sha256-tree:<hex>" of the weights folder of a GPU
	// server whose host measured it (attest/weights), the served models' names (comma
	// separated) otherwise.
	EventModel EventType = "model"
	// EventGPUs carries the identity of every GPU the host attests (GPUsEvent): for
	// each, the SHA-256 of its device certificate chain, its driver and VBIOS versions
	// and its confidential-computing mode; no GPU at all for a host that attests none.
	// A host older than GPU attestation does not measure it.
	EventGPUs EventType = "gpus"
	// EventSealing carries the source of the host's root sealing secret, which seals
	// the secrets it keeps on the untrusted data disk and authenticates the records it
	// reads back: UTF-8 text, SealingSim, SealingFile or SealingNone.
	EventSealing EventType = "sealing"
	// EventSettlementKey carries the host's settlement key, a 32-byte ed25519 public
	// key: the key that signs receipts and escrow charges (settle/ESCROW.md). It is
	// measured only by a host that bills requests.
	EventSettlementKey EventType = "settlement-key"
	// EventSettlementKeyOrigin carries where the settlement key comes from, UTF-8 text:
	// SettlementKeyGenerated or SettlementKeyImported. It follows the settlement-key
	// event.
	EventSettlementKeyOrigin EventType = "settlement-key-origin"
	// EventBootSealed carries no data. Nothing may be measured after it: a quote whose
	// RTMR3 includes later extensions does not replay to a sealed log.
	EventBootSealed EventType = "boot-sealed"
)

// Origins of a settlement key, as the settlement-key-origin event measures them.
const (
	// SettlementKeyGenerated is a key generated inside a host process and only ever
	// stored sealed: nobody outside the host has seen it (as far as sealing protects it:
	// see EventSealing).
	SettlementKeyGenerated = "generated"
	// SettlementKeyImported is a key an earlier version of the host kept in plain text
	// on the data disk, sealed on its first start by this version so that escrows
	// opened with it stay chargeable. Whoever could read that disk may know it, and
	// could sign charges to those escrows outside the TD.
	SettlementKeyImported = "imported"
)

const (
	// eventDomain separates event digests from every other digest of the project.
	eventDomain = "cocoon-host event-log v1"
	// maxTextEvent bounds the text of backend and model events.
	maxTextEvent = 1024
	// MaxEventLogBytes bounds a serialised event log; ParseEventLog refuses larger input.
	MaxEventLogBytes = 64 << 10
	// maxParsedEvents bounds the events ParseEventLog accepts. A valid log has at most
	// one of each of the ten types; the bound is higher so that a log with an extra event
	// reaches VerifyLog and is refused with its own reason.
	maxParsedEvents = 16
)

// eventOrder is the documented order of a sealed log: each type at most once, in this
// order, every one but optionalEvents always. A log in another order, or without a
// required event, is refused: a verifier that accepted a log without a backend event
// could not say where prompts go, and one that accepted any order would accept logs
// no host writes.
var eventOrder = []EventType{EventHostBinary, EventABIVersion, EventSandboxPolicy, EventBackend, EventModel,
	EventGPUs, EventSealing, EventSettlementKey, EventSettlementKeyOrigin, EventBootSealed}

// optionalEvents may be absent from a sealed log: gpus and sealing on a host older than
// their measurement, the settlement key and its origin (which go together) on a host
// that does not bill.
var optionalEvents = []EventType{EventGPUs, EventSealing, EventSettlementKey, EventSettlementKeyOrigin}

// The values the sealing and settlement-key-origin events may carry.
var (
	sealingSources       = []string{SealingSim, SealingFile, SealingNone}
	settlementKeyOrigins = []string{SettlementKeyGenerated, SettlementKeyImported}
)

// Errors of the event log and of its verification. Each names one reason a log is
// refused, so that a verifier can say precisely what is wrong.
var (
	ErrUnknownEvent   = errors.New("event log: unknown event type")
	ErrEventData      = errors.New("event log: event data invalid for its type")
	ErrEventDigest    = errors.New("event log: event digest does not match its type and data")
	ErrDuplicateEvent = errors.New("event log: event type measured twice")
	ErrEventAfterSeal = errors.New("event log: event measured after boot-sealed")
	ErrNotSealed      = errors.New("event log: log does not end with boot-sealed")
	ErrEventOrder     = errors.New("event log: event out of the documented order")
	ErrMissingEvent   = errors.New("event log: a required event is missing")
	ErrRTMR3Mismatch  = errors.New("event log: replay does not match RTMR3")
	ErrLogEncoding    = errors.New("event log: malformed encoding")
)

// Event is one entry of the runtime event log. Data holds the exact bytes measured.
type Event struct {
	Type EventType
	Data []byte
}

// HostBinaryEvent measures the SHA-256 of the host executable.
func HostBinaryEvent(sha256 [32]byte) Event {
	return Event{Type: EventHostBinary, Data: sha256[:]}
}

// ABIVersionEvent measures the module ABI version the host implements.
func ABIVersionEvent(version uint32) Event {
	return Event{Type: EventABIVersion, Data: binary.BigEndian.AppendUint32(nil, version)}
}

// SandboxPolicyEvent measures the SHA-256 of the sandbox policy.
func SandboxPolicyEvent(sha256 [32]byte) Event {
	return Event{Type: EventSandboxPolicy, Data: sha256[:]}
}

// BackendEvent measures the inference backend's identity.
func BackendEvent(identity string) Event {
	return Event{Type: EventBackend, Data: []byte(identity)}
}

// ModelEvent measures the model's identity.
func ModelEvent(identity string) Event {
	return Event{Type: EventModel, Data: []byte(identity)}
}

// SettlementKeyEvent measures the host's settlement key.
func SettlementKeyEvent(key ed25519.PublicKey) Event {
	return Event{Type: EventSettlementKey, Data: append([]byte(nil), key...)}
}

// SealingEvent measures the source of the host's root sealing secret (see Sealer).
func SealingEvent(source string) Event {
	return Event{Type: EventSealing, Data: []byte(source)}
}

// SettlementKeyOriginEvent measures where the settlement key comes from.
func SettlementKeyOriginEvent(origin string) Event {
	return Event{Type: EventSettlementKeyOrigin, Data: []byte(origin)}
}

// SealEvent ends the boot measurements.
func SealEvent() Event {
	return Event{Type: EventBootSealed}
}

// Digest returns the value extended into RTMR3 for e:
//
//	SHA-384( u32be(len(D)) || D || u32be(len(T)) || T || u32be(len(data)) || data )
//
// where D is the ASCII string "cocoon-host event-log v1", T the event type as ASCII
// (for example "host-binary") and data the event's Data; u32be is a 4-byte
// big-endian length.
func (e Event) Digest() [48]byte {
	h := sha512.New384()
	writeFields(h, []byte(eventDomain), []byte(e.Type), e.Data)
	var d [48]byte
	h.Sum(d[:0])
	return d
}

// Validate reports whether e's type is known and its data has the shape that type
// requires.
func (e Event) Validate() error {
	switch e.Type {
	case EventHostBinary, EventSandboxPolicy:
		if len(e.Data) != 32 {
			return fmt.Errorf("%w: %s needs a 32-byte SHA-256, got %d bytes", ErrEventData, e.Type, len(e.Data))
		}
	case EventSettlementKey:
		if len(e.Data) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: %s needs a 32-byte ed25519 public key, got %d bytes", ErrEventData, e.Type, len(e.Data))
		}
	case EventABIVersion:
		if len(e.Data) != 4 {
			return fmt.Errorf("%w: %s needs a 4-byte version, got %d bytes", ErrEventData, e.Type, len(e.Data))
		}
	case EventBackend, EventModel:
		if len(e.Data) == 0 || len(e.Data) > maxTextEvent || !utf8.Valid(e.Data) {
			return fmt.Errorf("%w: %s needs 1 to %d bytes of UTF-8 text", ErrEventData, e.Type, maxTextEvent)
		}
	case EventSealing:
		if !slices.Contains(sealingSources, string(e.Data)) {
			return fmt.Errorf("%w: %s needs one of %s", ErrEventData, e.Type, strings.Join(sealingSources, ", "))
		}
	case EventSettlementKeyOrigin:
		if !slices.Contains(settlementKeyOrigins, string(e.Data)) {
			return fmt.Errorf("%w: %s needs one of %s", ErrEventData, e.Type, strings.Join(settlementKeyOrigins, ", "))
		}
	case EventGPUs:
		if _, err := decodeGPUIdentities(e.Data); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrEventData, e.Type, err)
		}
	case EventBootSealed:
		if len(e.Data) != 0 {
			return fmt.Errorf("%w: %s carries no data, got %d bytes", ErrEventData, e.Type, len(e.Data))
		}
	default:
		return fmt.Errorf("%w %q", ErrUnknownEvent, e.Type)
	}
	return nil
}

// Value renders e's data for its type: "sha256:<hex>" for the host binary and the
// sandbox policy, the decimal ABI version, the GPUs as GPUIdentity.String writes them
// joined by "; " ("none" for no GPU), the text of text events as measured (which
// may hold any printable or unprintable UTF-8: quote it before a terminal shows it),
// the hex of the settlement key, "" for boot-sealed, and hex for data that does not
// validate.
func (e Event) Value() string {
	switch e.Type {
	case EventHostBinary, EventSandboxPolicy:
		return "sha256:" + hex.EncodeToString(e.Data)
	case EventABIVersion:
		if len(e.Data) == 4 {
			return strconv.FormatUint(uint64(binary.BigEndian.Uint32(e.Data)), 10)
		}
	case EventBackend, EventModel, EventSealing, EventSettlementKeyOrigin:
		return string(e.Data)
	case EventGPUs:
		if ids, err := decodeGPUIdentities(e.Data); err == nil {
			return gpuIdentitiesText(ids)
		}
	case EventBootSealed:
		if len(e.Data) == 0 {
			return ""
		}
	}
	return hex.EncodeToString(e.Data)
}

// String renders e for a human: its type and its Value, text quoted.
func (e Event) String() string {
	switch e.Type {
	case EventBackend, EventModel, EventSealing, EventSettlementKeyOrigin:
		return string(e.Type) + " " + strconv.Quote(e.Value())
	case EventBootSealed:
		return string(e.Type)
	}
	if e.Validate() != nil {
		return fmt.Sprintf("%q %x", e.Type, e.Data)
	}
	return string(e.Type) + " " + e.Value()
}

// ExtendRTMR returns the value of a TDX runtime measurement register holding old after
// extending it with digest, as the TDX module computes it: SHA-384(old || digest).
func ExtendRTMR(old, digest [48]byte) [48]byte {
	h := sha512.New384()
	h.Write(old[:])
	h.Write(digest[:])
	var v [48]byte
	h.Sum(v[:0])
	return v
}

// Replay returns the RTMR3 value that extending a register of 48 zero bytes with each
// event's digest, in order, produces. It fails on an event that does not validate.
func Replay(events []Event) ([48]byte, error) {
	var v [48]byte
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return [48]byte{}, fmt.Errorf("event %d: %w", i, err)
		}
		v = ExtendRTMR(v, e.Digest())
	}
	return v, nil
}

// VerifyLog checks a log against the RTMR3 value of a verified quote: every event is
// known and well formed, no type is measured twice, the events are in the documented
// order (eventOrder) with every required one present, the log ends with boot-sealed
// and nothing follows it, and the replay equals rtmr3. The error wraps the first
// failing check's Err value.
func VerifyLog(events []Event, rtmr3 [48]byte) error {
	if err := checkSequence(events, true); err != nil {
		return err
	}
	got, err := Replay(events)
	if err != nil {
		return err
	}
	if got != rtmr3 {
		return fmt.Errorf("%w: replay %x, quote %x", ErrRTMR3Mismatch, got, rtmr3)
	}
	return nil
}

// checkSequence checks events as the start of a log, or with sealed a whole log: each
// event valid and measured once, nothing after boot-sealed, the types in eventOrder,
// and once boot-sealed is there, every type but optionalEvents before it and the
// settlement key with its origin or neither. The error wraps ErrEventData,
// ErrUnknownEvent, ErrEventAfterSeal, ErrDuplicateEvent, ErrEventOrder,
// ErrMissingEvent or, with sealed, ErrNotSealed.
func checkSequence(events []Event, sealed bool) error {
	seen := make(map[EventType]bool, len(events))
	last := 0
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		if seen[EventBootSealed] {
			return fmt.Errorf("%w: event %d (%s)", ErrEventAfterSeal, i, e.Type)
		}
		if seen[e.Type] {
			return fmt.Errorf("%w: event %d (%s)", ErrDuplicateEvent, i, e.Type)
		}
		rank := slices.Index(eventOrder, e.Type) // Validate knows only these types
		if rank < last {
			return fmt.Errorf("%w: event %d (%s) comes after %s; the order is %s", ErrEventOrder, i, e.Type, eventOrder[last], orderText())
		}
		last = rank
		seen[e.Type] = true
	}
	if !seen[EventBootSealed] {
		if sealed {
			return ErrNotSealed
		}
		return nil
	}
	for _, t := range eventOrder {
		if !seen[t] && !slices.Contains(optionalEvents, t) {
			return fmt.Errorf("%w: the log measures no %s event", ErrMissingEvent, t)
		}
	}
	if seen[EventSettlementKey] != seen[EventSettlementKeyOrigin] {
		return fmt.Errorf("%w: %s and %s are measured together or not at all", ErrMissingEvent, EventSettlementKey, EventSettlementKeyOrigin)
	}
	return nil
}

// orderText lists eventOrder for an error message.
func orderText() string {
	names := make([]string, len(eventOrder))
	for i, t := range eventOrder {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// Register is a runtime measurement register: RTMR3 of a TD, or a simulation of it.
type Register interface {
	// Extend replaces the register's value v with SHA-384(v || digest).
	Extend(digest [48]byte) error
	// Read returns the register's current value.
	Read() ([48]byte, error)
}

// SimRegister simulates RTMR3 in memory, for hosts without TDX. Its zero value is a
// register of 48 zero bytes, as RTMR3 is when a TD starts. It is safe for concurrent
// use.
type SimRegister struct {
	mu    sync.Mutex
	value [48]byte
}

// Extend implements Register. It never fails.
func (r *SimRegister) Extend(digest [48]byte) error {
	r.mu.Lock()
	r.value = ExtendRTMR(r.value, digest)
	r.mu.Unlock()
	return nil
}

// Read implements Register. It never fails.
func (r *SimRegister) Read() ([48]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.value, nil
}

// Log is the append-only runtime event log of one host process. Each appended event is
// extended into the log's register under the same lock, so the log and the register
// never disagree about order. It is safe for concurrent use.
type Log struct {
	mu     sync.Mutex
	reg    Register
	events []Event
}

// NewLog returns an empty log that extends reg.
func NewLog(reg Register) *Log {
	return &Log{reg: reg}
}

// Append validates e, extends the register with its digest and records it. It refuses
// an event after boot-sealed (ErrEventAfterSeal), a type already measured
// (ErrDuplicateEvent), a type that comes before one already measured in the documented
// order (ErrEventOrder), and boot-sealed while a required event is missing
// (ErrMissingEvent): the log a host writes is always one VerifyLog accepts. When the
// register fails, e is not recorded and the error is returned: the register may then
// hold a value the log cannot replay, which a verifier will detect, so the host should
// stop.
func (l *Log) Append(e Event) error {
	if err := e.Validate(); err != nil {
		return err
	}
	e.Data = bytes.Clone(e.Data)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := checkSequence(append(slices.Clip(l.events), e), false); err != nil {
		return err
	}
	if err := l.reg.Extend(e.Digest()); err != nil {
		return fmt.Errorf("extend RTMR3 with %s: %w", e.Type, err)
	}
	l.events = append(l.events, e)
	return nil
}

// Seal appends the boot-sealed event.
func (l *Log) Seal() error {
	return l.Append(SealEvent())
}

// Events returns a copy of the events appended so far.
func (l *Log) Events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Event, len(l.events))
	for i, e := range l.events {
		out[i] = Event{Type: e.Type, Data: bytes.Clone(e.Data)}
	}
	return out
}

// Digest returns the replay of the events appended so far: the value RTMR3 holds when
// nothing else extended it. Boot evidence binds it in REPORTDATA.
func (l *Log) Digest() [48]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, _ := Replay(l.events) // Append validated every event.
	return d
}

// MarshalJSON encodes the log as EncodeEventLog does.
func (l *Log) MarshalJSON() ([]byte, error) {
	return EncodeEventLog(l.Events())
}

// wireEvent is the JSON form of an event. Digest is redundant (it follows from Type and
// Data) and is there for readers; ParseEventLog checks it.
type wireEvent struct {
	Type   EventType `json:"type"`
	Data   string    `json:"data"`
	Digest string    `json:"digest"`
}

type wireLog struct {
	Events []wireEvent `json:"events"`
}

// EncodeEventLog returns the JSON form of events served with the evidence:
//
//	{"events":[{"type":"host-binary","data":"<hex>","digest":"<hex SHA-384>"}, ...]}
//
// data is the lowercase hex of the measured bytes and digest that of Event.Digest.
func EncodeEventLog(events []Event) ([]byte, error) {
	w := wireLog{Events: make([]wireEvent, len(events))}
	for i, e := range events {
		d := e.Digest()
		w.Events[i] = wireEvent{Type: e.Type, Data: hex.EncodeToString(e.Data), Digest: hex.EncodeToString(d[:])}
	}
	return json.Marshal(w)
}

// SettlementKeyOf returns the settlement key events measure (EventSettlementKey), nil
// when they measure none: a host that does not bill. Give it the events of a log that
// verified (VerifyEvidence replayed it to the quote), so that the key is the attested
// host's.
func SettlementKeyOf(events []Event) ed25519.PublicKey {
	if i := slices.IndexFunc(events, func(e Event) bool { return e.Type == EventSettlementKey }); i >= 0 {
		return ed25519.PublicKey(events[i].Data)
	}
	return nil
}

// ParseEventLog decodes the JSON form EncodeEventLog produces. It refuses input larger
// than MaxEventLogBytes, unknown fields, trailing data, more events than there are
// types, events that do not validate, and digests that do not match their event. It
// does not check order, duplicates or the seal: VerifyLog does, so that each refusal
// has its own reason.
func ParseEventLog(b []byte) ([]Event, error) {
	var w wireLog
	if err := decodeStrict(b, MaxEventLogBytes, &w, ErrLogEncoding, "log"); err != nil {
		return nil, err
	}
	if w.Events == nil {
		return nil, fmt.Errorf("%w: no events field", ErrLogEncoding)
	}
	if len(w.Events) > maxParsedEvents {
		return nil, fmt.Errorf("%w: %d events, at most %d", ErrLogEncoding, len(w.Events), maxParsedEvents)
	}
	events := make([]Event, len(w.Events))
	for i, we := range w.Events {
		data, err := decodeHex(we.Data, -1)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d data: %v", ErrLogEncoding, i, err)
		}
		digest, err := decodeHex(we.Digest, 48)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d digest: %v", ErrLogEncoding, i, err)
		}
		if len(data) == 0 {
			data = nil // as the event constructors leave it
		}
		e := Event{Type: we.Type, Data: data}
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		if d := e.Digest(); !bytes.Equal(d[:], digest) {
			return nil, fmt.Errorf("%w: event %d (%s)", ErrEventDigest, i, e.Type)
		}
		events[i] = e
	}
	return events, nil
}

// decodeHex decodes lowercase hex of n bytes (any length when n < 0). Only the
// canonical lowercase form is accepted, so that one log has one encoding.
func decodeHex(s string, n int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if hex.EncodeToString(b) != s {
		return nil, errors.New("hex must be lowercase")
	}
	if n >= 0 && len(b) != n {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), n)
	}
	return b, nil
}
