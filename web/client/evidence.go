package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/cocoonhost/cocoon/attest"
)

// BootEvidence fetches the host's boot evidence (GET /v1/attestation), quoted for
// nonce when it is not nil (a fresh quote, which the host rate-limits), else the quote
// taken at boot. The API key goes along only to an https host (GetBytes). It waits as the host asks
// (Retry-After) and reads at most attest.MaxEvidenceBytes.
func (c *Client) BootEvidence(ctx context.Context, nonce []byte) (*attest.Evidence, error) {
	path := "/v1/attestation"
	if nonce != nil {
		path += "?nonce=" + hex.EncodeToString(nonce)
	}
	return c.Evidence(ctx, path)
}

// PipelineEvidence fetches a fresh quote of pipeline id's evidence for nonce (GET
// /v1/pipelines/{id}/attestation), as BootEvidence does.
func (c *Client) PipelineEvidence(ctx context.Context, id string, nonce []byte) (*attest.Evidence, error) {
	return c.Evidence(ctx, "/v1/pipelines/"+id+"/attestation?nonce="+url.QueryEscape(hex.EncodeToString(nonce)))
}

// Evidence fetches and decodes the evidence at path (with its query), one of the
// host's attestation routes; BootEvidence and PipelineEvidence name them. It reads at
// most attest.MaxEvidenceBytes (GetBytes) and fails with CodeBadAnswer when the answer
// is not evidence.
func (c *Client) Evidence(ctx context.Context, path string) (*attest.Evidence, error) {
	b, err := c.GetBytes(ctx, path, attest.MaxEvidenceBytes)
	if err != nil {
		return nil, err
	}
	ev, err := attest.ParseEvidence(b)
	if err != nil {
		return nil, &Error{Code: CodeBadAnswer, Err: err, Message: fmt.Sprintf("the host's answer to GET %s is not evidence: %v", path, err)}
	}
	return ev, nil
}

// GetBytes sends GET path (with its query), waits as the host asks (Retry-After, as
// every GET), and returns the body of a 2xx
// answer, at most limit bytes: a longer one is CodeBadAnswer. Any other status is an
// *Error with that Status (CodeRefused with the host's message, or CodeBadAnswer).
// It is for the host's public routes: evidence, prices, GET /readyz. It sends the API
// key only to an https host, inside the RA-TLS connection: over http whatever sits
// between would read it, and these routes need none (pipeline evidence without one
// comes at the host's shared quote rate).
func (c *Client) GetBytes(ctx context.Context, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err, Message: fmt.Sprintf("--host %q: %v", c.base, err)}
	}
	if c.key != "" && c.ratls != nil {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.do(req, nil)
	if err != nil {
		return nil, c.TransportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, responseError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	switch {
	case err != nil:
		return nil, &Error{Code: CodeUnreachable, Err: err, Message: fmt.Sprintf("reading the host's answer to GET %s: %v", path, err)}
	case int64(len(b)) > limit:
		return nil, &Error{Code: CodeBadAnswer, Status: resp.StatusCode, Message: fmt.Sprintf("the host's answer to GET %s exceeds %d bytes", path, limit)}
	}
	return b, nil
}

// VerifyBoot fetches the host's boot evidence (the quote from boot) and verifies it
// against the client's trust and, over https, that it is the evidence the TLS
// handshake verified (RATLSCheck). It returns the evidence and its report; when a
// check fails the error is CodeNotVerified and carries the report. Cost: one request.
func (c *Client) VerifyBoot(ctx context.Context) (*attest.Evidence, *attest.Report, error) {
	boot, err := c.BootEvidence(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	report, err := c.VerifyBootEvidence(boot, c.evidence)
	if err != nil {
		return nil, nil, err
	}
	if !report.OK() {
		return nil, report, &Error{Code: CodeNotVerified, Report: report,
			Message: fmt.Sprintf("the host's attestation does not verify: do not trust %s (see the FAIL lines above; `cocoon verify` shows every check)", c.base)}
	}
	return boot, report, nil
}

// VerifyBootEvidence verifies boot evidence this client fetched against its policy
// with opts (its trust's, with a nonce or strictness added) and, over https, adds
// RATLSCheck. It fails only when the evidence cannot be verified at all; failed checks
// are in the report.
func (c *Client) VerifyBootEvidence(boot *attest.Evidence, opts attest.EvidenceOptions) (*attest.Report, error) {
	report, err := attest.VerifyEvidence(*boot, c.policy, opts)
	if err != nil {
		return nil, err
	}
	if c.ratls != nil {
		report.Checks = append(report.Checks, RATLSCheck(c.ratls, boot))
	}
	return report, nil
}

// AttestedSettlementKey verifies the host's boot evidence (VerifyBoot) and returns the
// settlement key its verified event log measures. The event log replays to the quoted
// RTMR3, so the key is the one the attested host holds: receipts and charges signed by
// it come from that host. A host that measures none is CodeNotVerified.
func (c *Client) AttestedSettlementKey(ctx context.Context) (ed25519.PublicKey, error) {
	boot, _, err := c.VerifyBoot(ctx)
	if err != nil {
		return nil, err
	}
	key, err := measuredSettlementKey(boot)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, &Error{Code: CodeNotVerified, Message: fmt.Sprintf("the host at %s measures no settlement key at boot: its receipts and charges are not attested, refusing", c.base)}
	}
	return key, nil
}

// measuredSettlementKey is the settlement key verified evidence ev measures in its event
// log, nil when it measures none. It parses the log again (VerifyEvidence parsed and
// replayed it), so it fails only on evidence that was not verified.
func measuredSettlementKey(ev *attest.Evidence) (ed25519.PublicKey, error) {
	events, err := attest.ParseEventLog(ev.EventLog)
	if err != nil {
		return nil, err
	}
	return attest.SettlementKeyOf(events), nil
}

// RATLSCheck checks that the boot evidence served over an RA-TLS connection carries
// the keys of the evidence its handshake verified, so that what was verified is the
// host this connection reaches.
func RATLSCheck(v *attest.RATLSVerifier, boot *attest.Evidence) attest.Check {
	const name = "RA-TLS"
	pinned, _, ok := v.Pinned()
	switch {
	case !ok:
		return attest.Check{Name: name, Detail: "no TLS handshake verified the host's certificate"}
	case !bytes.Equal(pinned.TLSKey, boot.TLSKey) || !bytes.Equal(pinned.HostKey, boot.HostKey):
		return attest.Check{Name: name, Detail: "the evidence served names other keys than the evidence in the TLS certificate: it is not this connection's host"}
	default:
		return attest.Check{Name: name, OK: true, Detail: "the TLS handshake verified the certificate's evidence and pinned its key, the attested TLS key, and the evidence served names the same keys"}
	}
}

// NewNonce returns n random bytes, for an evidence request.
func NewNonce(n int) []byte {
	nonce := make([]byte, n)
	rand.Read(nonce) // crypto/rand.Read never fails.
	return nonce
}

// Source is evidence to verify, with the options that go with it: fetched from a host
// now (Client.Fetch), or read back from a saved file (NewSavedSource).
type Source interface {
	// Describe names where the evidence comes from.
	Describe() string
	// Boot returns the boot evidence and opts with its nonce.
	Boot(ctx context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error)
	// PipelineID returns the pipeline to verify: asked ("" for none) or, for a saved
	// file, the one it holds; false when a saved file holds no evidence of the one asked.
	PipelineID(asked string) (string, bool)
	// Pipeline returns the evidence of opts.PipelineID and opts with its nonce.
	Pipeline(ctx context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error)
	// RATLS is the verifier of the TLS connection the evidence came over, nil if none.
	RATLS() *attest.RATLSVerifier
}

// Fetched is evidence fetched from a host over fresh nonces, kept in Saved as it is
// fetched, for SavedEvidence.Encode.
type Fetched struct {
	c          *Client
	nonceBytes int
	bootNonce  bool
	Saved      attest.SavedEvidence
}

// Fetch returns a Source that fetches the host's evidence when asked, over nonces of
// nonceBytes random bytes; with bootNonce false the boot evidence is the quote from
// boot, which a stopped or copied host serves too (not fresh).
func (c *Client) Fetch(nonceBytes int, bootNonce bool) *Fetched {
	return &Fetched{c: c, nonceBytes: nonceBytes, bootNonce: bootNonce,
		Saved: attest.SavedEvidence{Format: attest.SavedEvidenceFormat, Host: c.base, FetchedAt: time.Now().UTC().Truncate(time.Second)}}
}

func (f *Fetched) Describe() string { return f.c.base }

func (f *Fetched) RATLS() *attest.RATLSVerifier { return f.c.ratls }

func (f *Fetched) PipelineID(asked string) (string, bool) { return asked, true }

func (f *Fetched) Boot(ctx context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error) {
	if f.bootNonce {
		opts.Nonce = NewNonce(f.nonceBytes)
	}
	ev, err := f.c.BootEvidence(ctx, opts.Nonce)
	if err != nil {
		return nil, opts, err
	}
	f.Saved.Boot = attest.SavedRequest{Nonce: hex.EncodeToString(opts.Nonce), Evidence: *ev}
	return ev, opts, nil
}

func (f *Fetched) Pipeline(ctx context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error) {
	opts.Nonce = NewNonce(f.nonceBytes)
	ev, err := f.c.PipelineEvidence(ctx, opts.PipelineID, opts.Nonce)
	if err != nil {
		return nil, opts, err
	}
	f.Saved.Pipeline = &attest.SavedRequest{PipelineID: opts.PipelineID, Nonce: hex.EncodeToString(opts.Nonce), Evidence: *ev}
	return ev, opts, nil
}

// SavedSource is evidence read back from a file: verified with the nonces it was
// fetched with, as of when it was fetched, and never fresh.
type SavedSource struct {
	path  string
	saved *attest.SavedEvidence
}

// NewSavedSource returns the Source of evidence saved (attest.ParseSavedEvidence) in
// the file path, which Describe names.
func NewSavedSource(path string, saved *attest.SavedEvidence) *SavedSource {
	return &SavedSource{path: path, saved: saved}
}

func (s *SavedSource) Describe() string {
	return fmt.Sprintf("%s, fetched %s, saved in %s", s.saved.Host, s.saved.FetchedAt.UTC().Format(time.RFC3339), s.path)
}

func (s *SavedSource) RATLS() *attest.RATLSVerifier { return nil }

func (s *SavedSource) PipelineID(asked string) (string, bool) {
	switch {
	case s.saved.Pipeline == nil:
		return "", asked == ""
	case asked == "":
		return s.saved.Pipeline.PipelineID, true
	}
	return asked, asked == s.saved.Pipeline.PipelineID
}

func (s *SavedSource) Boot(_ context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error) {
	return &s.saved.Boot.Evidence, s.options(opts, s.saved.Boot), nil
}

func (s *SavedSource) Pipeline(_ context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error) {
	return &s.saved.Pipeline.Evidence, s.options(opts, *s.saved.Pipeline), nil
}

// options are opts for evidence saved with its request req: its nonce, not fresh, and
// certificates and collateral checked as of when it was fetched.
func (s *SavedSource) options(opts attest.EvidenceOptions, req attest.SavedRequest) attest.EvidenceOptions {
	opts.Nonce, opts.Archived, opts.Now = req.NonceBytes(), true, s.saved.FetchedAt
	return opts
}

// PinningPolicy is the policy that pins what boot report r verified; for simulated
// evidence (mode attest.ModeSim) it trusts, as PEM, the simulator root the
// verification trusted (opts's, else current's), and it carries the simulated GPU
// roots and the GPU RIMs the verification used, inline, so that the policy stands alone.
func PinningPolicy(r *attest.Report, mode string, current *attest.Policy, opts attest.EvidenceOptions) (*attest.Policy, error) {
	p, err := r.PinningPolicy()
	if err != nil {
		return nil, err
	}
	if mode == attest.ModeSim {
		root := opts.SimRoot
		if root == nil {
			if root, err = current.SimRoot(); err != nil {
				return nil, err
			}
		}
		if root != nil { // evidence that verified as sim had one
			p.TrustSimRoot = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}))
		}
	}
	// The simulated GPU roots and the GPU RIMs the verification used go inline, so that
	// the policy file stands alone.
	if err := p.CarryGPUTrust(current, opts.SimGPURoots); err != nil {
		return nil, fmt.Errorf("--write-policy: %w", err)
	}
	return p, nil
}
