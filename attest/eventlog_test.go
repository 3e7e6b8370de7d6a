package attest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// bootEvents is a complete, sealed boot log.
func bootEvents() []Event {
	return []Event{
		HostBinaryEvent(sha256.Sum256([]byte("cocoon-host binary"))),
		ABIVersionEvent(1),
		SandboxPolicyEvent(sha256.Sum256([]byte("policy"))),
		BackendEvent("embedded"),
		ModelEvent("sha256:" + strings.Repeat("ab", 32)),
		GPUsEvent(nil),
		SealingEvent(SealingFile),
		SettlementKeyEvent(testSettlementKey),
		SettlementKeyOriginEvent(SettlementKeyGenerated),
		SealEvent(),
	}
}

// testSettlementKey is the settlement key bootEvents measures.
var testSettlementKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)).Public().(ed25519.PublicKey)

func TestEventDigestEncoding(t *testing.T) {
	// The documented encoding, built by hand.
	var want bytes.Buffer
	want.WriteString("\x00\x00\x00\x18cocoon-host event-log v1")
	want.WriteString("\x00\x00\x00\x0babi-version")
	want.WriteString("\x00\x00\x00\x04\x00\x00\x00\x01")
	if got, w := ABIVersionEvent(1).Digest(), sha512.Sum384(want.Bytes()); got != w {
		t.Fatalf("digest %x, want %x", got, w)
	}
	// Golden values, computed independently (Python hashlib): a change here breaks
	// every verifier in the field.
	golden := []struct {
		event Event
		hex   string
	}{
		{ABIVersionEvent(1), "6f4552731e282d17df5908b4f0333773e3a5c1a4977b9797fee4c7cc1b04ab12ffc9b112ad9b9b8266f6a53684c12a2d"},
		{SealEvent(), "3d90d5576e01433c112913b5afc9c23e30ac20506748404c9be2774170be835b1d03f120802e0598eb42237a80067046"},
	}
	for _, g := range golden {
		d := g.event.Digest()
		if got := hex.EncodeToString(d[:]); got != g.hex {
			t.Errorf("%s: digest %s, want %s", g.event, got, g.hex)
		}
	}
	// RTMR3 after extending those two from zero.
	v, err := Replay([]Event{ABIVersionEvent(1), SealEvent()})
	if got := hex.EncodeToString(v[:]); err != nil || got != "738d78ce12a87733c99a778eda8db3fb0690ba314162a816070db9ee8e5dde2f666a0a482703329051319a26a3fac88c" {
		t.Errorf("Replay = %s, %v", got, err)
	}
}

func TestExtendRTMR(t *testing.T) {
	var zero, digest [48]byte
	digest[0] = 1
	want := sha512.Sum384(append(zero[:], digest[:]...))
	if got := ExtendRTMR(zero, digest); got != want {
		t.Fatalf("ExtendRTMR = %x, want %x", got, want)
	}
	// Replay folds from zero in order.
	events := bootEvents()
	var v [48]byte
	for _, e := range events {
		v = sha512.Sum384(append(v[:], func() []byte { d := e.Digest(); return d[:] }()...))
	}
	got, err := Replay(events)
	if err != nil || got != v {
		t.Fatalf("Replay = %x, %v, want %x", got, err, v)
	}
}

func TestLogAppendExtendsRegister(t *testing.T) {
	var reg SimRegister
	l := NewLog(&reg)
	for _, e := range bootEvents() {
		if err := l.Append(e); err != nil {
			t.Fatalf("Append(%s): %v", e, err)
		}
	}
	rtmr3, _ := reg.Read()
	if rtmr3 != l.Digest() {
		t.Fatalf("register %x, log digest %x", rtmr3, l.Digest())
	}
	if err := VerifyLog(l.Events(), rtmr3); err != nil {
		t.Fatalf("VerifyLog: %v", err)
	}
	if !reflect.DeepEqual(l.Events(), bootEvents()) {
		t.Fatalf("Events() = %v", l.Events())
	}
}

func TestLogAppendRefuses(t *testing.T) {
	tests := []struct {
		name   string
		before []Event
		event  Event
		want   error
	}{
		{"after seal", bootEvents(), BackendEvent("x"), ErrEventAfterSeal},
		{"second seal", bootEvents(), SealEvent(), ErrEventAfterSeal},
		{"duplicate", []Event{BackendEvent("a")}, BackendEvent("b"), ErrDuplicateEvent},
		// A host writes only logs a verifier accepts: in the documented order, and
		// sealed only once every required event is there.
		{"ABI version after the sandbox policy", []Event{bootEvents()[0], bootEvents()[2]}, bootEvents()[1], ErrEventOrder},
		{"backend after the model", append(bootEvents()[:3:3], bootEvents()[4]), bootEvents()[3], ErrEventOrder},
		{"sealing after the settlement key", append(bootEvents()[:6:6], bootEvents()[7]), SealingEvent(SealingFile), ErrEventOrder},
		{"gpus after sealing", append(bootEvents()[:5:5], bootEvents()[6]), GPUsEvent(nil), ErrEventOrder},
		{"sealed without a backend", bootEvents()[:3], SealEvent(), ErrMissingEvent},
		{"sealed with a settlement key but no origin", bootEvents()[:8], SealEvent(), ErrMissingEvent},
		{"unknown type", nil, Event{Type: "debug-shell"}, ErrUnknownEvent},
		{"short hash", nil, Event{Type: EventHostBinary, Data: []byte{1}}, ErrEventData},
		{"empty backend", nil, BackendEvent(""), ErrEventData},
		{"invalid utf-8", nil, ModelEvent("\xff"), ErrEventData},
		{"seal with data", nil, Event{Type: EventBootSealed, Data: []byte{0}}, ErrEventData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reg SimRegister
			l := NewLog(&reg)
			for _, e := range tt.before {
				if err := l.Append(e); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := reg.Read()
			if err := l.Append(tt.event); !errors.Is(err, tt.want) {
				t.Fatalf("Append = %v, want %v", err, tt.want)
			}
			if after, _ := reg.Read(); after != before || len(l.Events()) != len(tt.before) {
				t.Fatal("a refused event changed the register or the log")
			}
		})
	}
}

type failingRegister struct{ SimRegister }

func (*failingRegister) Extend([48]byte) error { return errors.New("device gone") }

func TestLogRegisterFailure(t *testing.T) {
	l := NewLog(&failingRegister{})
	if err := l.Append(BackendEvent("x")); err == nil || !strings.Contains(err.Error(), "device gone") {
		t.Fatalf("Append = %v, want the register's error", err)
	}
	if len(l.Events()) != 0 {
		t.Fatal("event recorded although the register failed")
	}
}

func TestVerifyLog(t *testing.T) {
	sealed := bootEvents()
	replay := func(events []Event) [48]byte {
		v, err := Replay(events)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	afterSeal := append(bootEvents(), Event{Type: EventModel, Data: []byte("other")})
	duplicate := append(bootEvents()[:2], append([]Event{ABIVersionEvent(2)}, bootEvents()[2:]...)...)
	reordered := bootEvents()
	reordered[0], reordered[1] = reordered[1], reordered[0]
	unknown := append([]Event{{Type: "debug-shell"}}, bootEvents()...)
	without := func(types ...EventType) []Event {
		return slices.DeleteFunc(bootEvents(), func(e Event) bool { return slices.Contains(types, e.Type) })
	}
	modelFirst := bootEvents()
	modelFirst[3], modelFirst[4] = modelFirst[4], modelFirst[3]
	keyFirst := bootEvents()
	keyFirst[5], keyFirst[6] = keyFirst[6], keyFirst[5]
	tests := []struct {
		name   string
		events []Event
		rtmr3  [48]byte
		want   error
	}{
		{"valid", sealed, replay(sealed), nil},
		// Each of these has an RTMR3 that matches its replay: the structure alone
		// must refuse it.
		{"event after seal", afterSeal, replay(afterSeal), ErrEventAfterSeal},
		{"not sealed", sealed[:5], replay(sealed[:5]), ErrNotSealed},
		{"duplicate", duplicate, replay(duplicate), ErrDuplicateEvent},
		{"unknown type", unknown, [48]byte{}, ErrUnknownEvent},
		{"rtmr3 of another log", sealed, replay(reordered), ErrRTMR3Mismatch},
		{"rtmr3 extended after the log", sealed, ExtendRTMR(replay(sealed), [48]byte{}), ErrRTMR3Mismatch},
		{"empty", nil, [48]byte{}, ErrNotSealed},
		// The documented order, and the full set of boot events.
		{"model before backend", modelFirst, replay(modelFirst), ErrEventOrder},
		{"settlement key before sealing", keyFirst, replay(keyFirst), ErrEventOrder},
		{"no sandbox policy", without(EventSandboxPolicy), replay(without(EventSandboxPolicy)), ErrMissingEvent},
		{"no backend", without(EventBackend), replay(without(EventBackend)), ErrMissingEvent},
		{"no sandbox policy and no backend", without(EventSandboxPolicy, EventBackend), replay(without(EventSandboxPolicy, EventBackend)), ErrMissingEvent},
		{"no host binary", without(EventHostBinary), replay(without(EventHostBinary)), ErrMissingEvent},
		{"settlement key without its origin", without(EventSettlementKeyOrigin), replay(without(EventSettlementKeyOrigin)), ErrMissingEvent},
		{"origin without a settlement key", without(EventSettlementKey), replay(without(EventSettlementKey)), ErrMissingEvent},
		{"a host that does not bill", without(EventSettlementKey, EventSettlementKeyOrigin), replay(without(EventSettlementKey, EventSettlementKeyOrigin)), nil},
		{"a host before sealing was measured", without(EventSealing), replay(without(EventSealing)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyLog(tt.events, tt.rtmr3)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("VerifyLog = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEventLogJSONRoundTrip(t *testing.T) {
	var reg SimRegister
	l := NewLog(&reg)
	for _, e := range bootEvents() {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	b, err := l.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), `{"events":[{"type":"host-binary","data":"`) {
		t.Fatalf("encoding = %s", b)
	}
	got, err := ParseEventLog(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, bootEvents()) {
		t.Fatalf("round trip = %v", got)
	}
}

func TestParseEventLogRefuses(t *testing.T) {
	seal := SealEvent().Digest()
	sealHex := hex.EncodeToString(seal[:])
	abi := ABIVersionEvent(1).Digest()
	tests := []struct {
		name, in string
		want     error
	}{
		{"not json", `{`, ErrLogEncoding},
		{"no events", `{}`, ErrLogEncoding},
		{"unknown field", `{"events":[],"extra":1}`, ErrLogEncoding},
		{"trailing data", `{"events":[]} {}`, ErrLogEncoding},
		{"bad hex", `{"events":[{"type":"boot-sealed","data":"zz","digest":"` + sealHex + `"}]}`, ErrLogEncoding},
		{"uppercase hex", `{"events":[{"type":"abi-version","data":"0000000A","digest":"` + hex.EncodeToString(abi[:]) + `"}]}`, ErrLogEncoding},
		{"short digest", `{"events":[{"type":"boot-sealed","data":"","digest":"00"}]}`, ErrLogEncoding},
		{"wrong digest", `{"events":[{"type":"abi-version","data":"00000002","digest":"` + hex.EncodeToString(abi[:]) + `"}]}`, ErrEventDigest},
		{"unknown type", `{"events":[{"type":"debug","data":"","digest":"` + sealHex + `"}]}`, ErrUnknownEvent},
		{"bad data", `{"events":[{"type":"abi-version","data":"00","digest":"` + sealHex + `"}]}`, ErrEventData},
		{"too large", `{"events":[` + strings.Repeat(" ", MaxEventLogBytes) + `]}`, ErrLogEncoding},
		{"too many events", `{"events":[` + strings.TrimSuffix(strings.Repeat(`{"type":"boot-sealed","data":"","digest":"`+sealHex+`"},`, maxParsedEvents+1), ",") + `]}`, ErrLogEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseEventLog([]byte(tt.in)); !errors.Is(err, tt.want) {
				t.Fatalf("ParseEventLog = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzParseEventLog(f *testing.F) {
	valid, err := EncodeEventLog(bootEvents())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{"events":[]}`))
	f.Add([]byte(`{"events":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := ParseEventLog(b)
		if err != nil {
			return
		}
		// Whatever parses is valid, and encodes back to something that parses to
		// the same events.
		for _, e := range events {
			if err := e.Validate(); err != nil {
				t.Fatalf("parsed an invalid event: %v", err)
			}
		}
		again, err := EncodeEventLog(events)
		if err != nil {
			t.Fatal(err)
		}
		events2, err := ParseEventLog(again)
		if err != nil || !reflect.DeepEqual(events, events2) {
			t.Fatalf("re-encoding changed the log: %v", err)
		}
	})
}
