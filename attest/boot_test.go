package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

func bootTestHost(t *testing.T) (*Host, *x509.CertPool) {
	t.Helper()
	sim, roots := newTestSim(t)
	h, err := Boot(context.Background(), sim, "embedded", "sha256:"+strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	return h, roots
}

// Boot evidence verifies, replays to RTMR3, binds the keys and log, and measures what
// Boot documents.
func TestBootEvidence(t *testing.T) {
	h, roots := bootTestHost(t)
	ev := h.BootEvidence()
	if ev.Mode != ModeSim {
		t.Errorf("mode %q", ev.Mode)
	}
	q, err := VerifyQuote(ev.Quote, VerifyOptions{TrustedRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	events, err := ParseEventLog(ev.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyLog(events, q.RTMRs[3]); err != nil {
		t.Fatal(err)
	}
	digest, _ := Replay(events)
	want, err := BootReportData(ev.HostKey, ev.TLSKey, digest)
	if err != nil {
		t.Fatal(err)
	}
	if q.ReportData != want {
		t.Error("REPORTDATA is not BootReportData of the served fields")
	}

	exe, _ := os.Executable()
	f, _ := os.Open(exe)
	hash := sha256.New()
	io.Copy(hash, f)
	f.Close()
	wantEvents := []Event{HostBinaryEvent([32]byte(hash.Sum(nil))), ABIVersionEvent(1),
		SandboxPolicyEvent(sha256.Sum256(SandboxPolicy())), BackendEvent("embedded"),
		ModelEvent("sha256:" + strings.Repeat("ab", 32)), SealEvent()}
	if fmt.Sprint(events) != fmt.Sprint(wantEvents) {
		t.Errorf("events\n%v\nwant\n%v", events, wantEvents)
	}
}

func TestPipelineEvidence(t *testing.T) {
	h, roots := bootTestHost(t)
	manifest := []byte(`{"abi_version":1,"model":"m","pre":[],"post":[]}`)
	nonce := bytes.Repeat([]byte{7}, 16)
	ev, err := h.PipelineEvidence(context.Background(), nonce, manifest)
	if err != nil {
		t.Fatal(err)
	}
	q, err := VerifyQuote(ev.Quote, VerifyOptions{TrustedRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := PipelineReportData(nonce, sha256.Sum256(manifest), h.PublicKey())
	if q.ReportData != want {
		t.Error("REPORTDATA does not bind nonce, manifest and host key")
	}
	if ev.PipelineID != fmt.Sprintf("%x", sha256.Sum256(manifest)) || !bytes.Equal(ev.Manifest, manifest) || !bytes.Equal(ev.Nonce, nonce) {
		t.Errorf("pipeline fields: %q %s %x", ev.PipelineID, ev.Manifest, ev.Nonce)
	}
	if _, err := h.PipelineEvidence(context.Background(), nonce[:15], manifest); !errors.Is(err, ErrReportDataInput) {
		t.Errorf("short nonce: %v", err)
	}
}

func TestSignResponse(t *testing.T) {
	h, _ := bootTestHost(t)
	r := SignedResponse{RequestSHA256: sha256.Sum256([]byte("req")), ContentSHA256: sha256.Sum256([]byte("out")),
		PipelineID: "abc", PromptTokens: 3, CompletionTokens: 5}
	v, ok := strings.CutPrefix(h.SignResponse(r), "ed25519=")
	if !ok {
		t.Fatalf("no ed25519= prefix")
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Verify(h.PublicKey(), sig) {
		t.Error("signature does not verify")
	}
	r.CompletionTokens++
	if r.Verify(h.PublicKey(), sig) {
		t.Error("signature verifies over other usage")
	}
}

// Bad measurements fail before RTMR3 is touched.
func TestBootRefusesBadIdentity(t *testing.T) {
	sim, _ := newTestSim(t)
	if _, err := Boot(context.Background(), sim, "", "m"); !errors.Is(err, ErrEventData) {
		t.Errorf("empty backend: %v", err)
	}
	if v, _ := sim.RTMR3().Read(); v != ([48]byte{}) {
		t.Error("RTMR3 extended by a failed boot")
	}
}

func TestSandboxPolicyCanonical(t *testing.T) {
	p := SandboxPolicy()
	var v map[string]any
	if err := json.Unmarshal(p, &v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{"policy":"cocoon-host sandbox policy v1","abi_version":1,"default_limits":{"memory_pages":1024,"time_ms":250,`, `"determinism":{"clock":`} {
		if !bytes.Contains(p, []byte(want)) {
			t.Errorf("policy %s lacks %s", p, want)
		}
	}
}
