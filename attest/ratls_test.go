package attest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// ratlsHost boots a simulated host and returns it with its sim root.
func ratlsHost(t *testing.T) (*Host, *x509.Certificate) {
	t.Helper()
	sim, _ := newTestSim(t)
	h, err := Boot(context.Background(), sim, "embedded", "sha256:"+strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	return h, sim.Root()
}

// serveTLS serves an empty 200 over TLS with cfg and returns the https base URL.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	// httptest's StartTLS would add its own certificate; the listener serves cfg's only.
	ts.Listener = tls.NewListener(ts.Listener, cfg)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	ts.Start()
	t.Cleanup(ts.Close)
	return "https://" + ts.Listener.Addr().String()
}

// get makes one request through a client that verifies with v.
func get(v *RATLSVerifier, url string) error {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: v.TLSConfig()}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// selfSigned issues a certificate for a fresh key carrying exts.
func selfSigned(t *testing.T, exts []pkix.Extension) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), ExtraExtensions: exts}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func newVerifier(t *testing.T, opts EvidenceOptions) *RATLSVerifier {
	t.Helper()
	v, err := NewRATLSVerifier(Policy{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A handshake with an attested host passes only with the sim root trusted, and pins the
// host's keys.
func TestRATLSHandshake(t *testing.T) {
	h, root := ratlsHost(t)
	url := serveTLS(t, h.TLSConfig(time.Hour))

	v := newVerifier(t, EvidenceOptions{SimRoot: root})
	if err := get(v, url); err != nil {
		t.Fatalf("trusted sim root: %v", err)
	}
	ev, r, ok := v.Pinned()
	if !ok || !r.OK() || string(ev.HostKey) != string(h.PublicKey()) || !strings.Contains(r.String(), "ok   RA-TLS key: ") {
		t.Errorf("pinned %t, host key %x (want %x), report:\n%s", ok, ev.HostKey, h.PublicKey(), r)
	}

	untrusted := newVerifier(t, EvidenceOptions{})
	err := get(untrusted, url)
	if !errors.Is(err, ErrRATLS) || !strings.Contains(err.Error(), "evidence mode: simulated evidence, refused") {
		t.Errorf("untrusted sim root: %v", err)
	}
	if _, _, ok := untrusted.Pinned(); ok {
		t.Error("a refused handshake pinned a key")
	}
}

// Certificates that must be refused, each with its own reason.
func TestRATLSRefuses(t *testing.T) {
	h, root := ratlsHost(t)
	evJSON, err := json.Marshal(h.BootEvidence())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  *tls.Config
		opts EvidenceOptions
		want string
	}{
		{"swapped key: another key with this host's evidence", selfSigned(t, []pkix.Extension{{Id: OIDEvidence, Value: evJSON}}), EvidenceOptions{},
			"the certificate's key is not the TLS key the evidence binds"},
		{"garbage extension", selfSigned(t, []pkix.Extension{{Id: OIDEvidence, Value: []byte("garbage")}}), EvidenceOptions{},
			"the certificate's evidence: evidence: malformed encoding"},
		{"truncated evidence", selfSigned(t, []pkix.Extension{{Id: OIDEvidence, Value: evJSON[:len(evJSON)/2]}}), EvidenceOptions{},
			"evidence: malformed encoding"},
		{"evidence with a garbage quote", selfSigned(t, []pkix.Extension{{Id: OIDEvidence, Value: []byte(`{"mode":"sim","quote":"Z2FyYmFnZQ==","event_log":[],"host_key":""}`)}}),
			EvidenceOptions{}, "quote signature chain: quote: truncated"},
		{"no extension", selfSigned(t, nil), EvidenceOptions{}, "the certificate carries no evidence"},
		{"expired certificate", h.TLSConfig(time.Hour), EvidenceOptions{Now: time.Now().Add(2 * time.Hour)}, "not now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.SimRoot = root
			v := newVerifier(t, tt.opts)
			err := get(v, serveTLS(t, tt.cfg))
			if !errors.Is(err, ErrRATLS) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want ErrRATLS with %q", err, tt.want)
			}
			if _, _, ok := v.Pinned(); ok {
				t.Error("a refused handshake pinned a key")
			}
		})
	}
}

// Once pinned, a verifier accepts the pinned key in a rotated certificate and refuses
// another host's key even when its evidence verifies under the same trusted root.
func TestRATLSPin(t *testing.T) {
	dir := t.TempDir()
	hosts := make([]*Host, 2)
	var root *x509.Certificate
	for i := range hosts {
		sim, err := NewSim(dir) // the second Sim loads the first one's root
		if err != nil {
			t.Fatal(err)
		}
		if hosts[i], err = Boot(context.Background(), sim, "embedded", "m"); err != nil {
			t.Fatal(err)
		}
		root = sim.Root()
	}
	v := newVerifier(t, EvidenceOptions{SimRoot: root})
	if err := get(v, serveTLS(t, hosts[0].TLSConfig(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := get(v, serveTLS(t, hosts[0].TLSConfig(time.Hour))); err != nil {
		t.Errorf("the pinned key in another certificate: %v", err)
	}
	if err := get(newVerifier(t, EvidenceOptions{SimRoot: root}), serveTLS(t, hosts[1].TLSConfig(time.Hour))); err != nil {
		t.Fatalf("the second host does not verify on its own: %v", err)
	}
	err := get(v, serveTLS(t, hosts[1].TLSConfig(time.Hour)))
	if !errors.Is(err, ErrRATLS) || !strings.Contains(err.Error(), "changed from the key verified before") {
		t.Errorf("another host after pinning: %v", err)
	}
}

// The rotator keeps its certificate until a third of its validity is left, then issues
// a new one for the same key.
func TestRATLSRotation(t *testing.T) {
	h, _ := ratlsHost(t)
	now := time.Now()
	r := &certRotator{host: h, validity: 3 * time.Hour, now: func() time.Time { return now }}
	first, err := r.get(nil)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(119 * time.Minute)
	if c, _ := r.get(nil); c != first {
		t.Error("re-issued with more than a third of the validity left")
	}
	now = now.Add(2 * time.Minute)
	second, err := r.get(nil)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || !second.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Error("not re-issued within a third of expiry")
	}
	if string(second.Leaf.RawSubjectPublicKeyInfo) != string(first.Leaf.RawSubjectPublicKeyInfo) {
		t.Error("rotation changed the key")
	}
}

func TestNewRATLSVerifierRefuses(t *testing.T) {
	if _, err := NewRATLSVerifier(Policy{}, EvidenceOptions{PipelineID: testPipelineID(), Nonce: testNonce(1)}); err == nil {
		t.Error("pipeline options accepted")
	}
	if _, err := NewRATLSVerifier(Policy{MRTD: []string{"00"}}, EvidenceOptions{}); !errors.Is(err, ErrPolicy) {
		t.Errorf("bad policy: %v", err)
	}
}
