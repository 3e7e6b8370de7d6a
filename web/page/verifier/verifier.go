// Package verifier is the verifier of the reviewer's page and of the browser client
// library (web/browser): attest.VerifyEvidence behind one function of JSON in and JSON
// out, which web/page/verifier/wasm exposes to JavaScript as cocoonVerify(evidenceJSON,
// optionsJSON) when compiled to WebAssembly (GOOS=js GOARCH=wasm), and the library's
// checks of answers, receipts, request signatures and escrow deposits beside it
// (client.go, escrow.go). It holds no verification logic of its own: the page and the
// library run the very code `cocoon verify` and `cocoon chat` run, so they cannot
// disagree.
package verifier

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host/manifest"
)

// MaxOptionsBytes bounds the options Verify decodes: a policy (at most 1 MiB) and Intel
// collateral (at most 4 MiB) with room for their JSON escaping.
const MaxOptionsBytes = 8 << 20

// Options are what the reviewer gave the page and what the page sent, as JSON:
//
//	{"policy":         {...} or null,  a policy as `cocoon verify --policy` reads it
//	 "trust_sim_root": "-----BEGIN CERTIFICATE-----...",
//	 "pipeline_id":    "<64 hex>",     pipeline evidence only
//	 "nonce":          "<hex>",        the nonce the page sent, boot or pipeline evidence
//	 "expect_modules": ["sha256:<hex>", ...],
//	 "expect_manifest": {...},         the manifest the pipeline must be, configs included
//	 "strict":         true,           every check must pass outright
//	 "host_key":       "<64 hex>",     the host key of boot evidence already verified
//	 "collateral":     {...} or null}  Intel collateral, as `--collateral FILE` reads it
//
// Every member is optional. Nothing is trusted by default: without trust_sim_root (or a
// policy's trust_sim_root) simulated evidence fails. A policy's trust_sim_root must be
// PEM text, since a page has no files to read a path from. The nonce, when given, must
// be answered: boot evidence that answers none (the quote taken at boot) fails, as it
// does for cocoon verify. expect_manifest is a manifest as uploaded or as `cocoon
// pipeline-id --write-manifest` writes it: it is checked and canonicalized by package
// host/manifest, the code the host canonicalizes the attested manifest with, and the
// pipeline's must equal it byte for byte. strict is attest.EvidenceOptions.Strict: a
// skip (a measurement the policy leaves open), a warning or evidence that is not fresh
// fails.
type Options struct {
	Policy        json.RawMessage `json:"policy,omitempty"`
	TrustSimRoot  string          `json:"trust_sim_root,omitempty"`
	PipelineID    string          `json:"pipeline_id,omitempty"`
	Nonce         string          `json:"nonce,omitempty"`
	ExpectModules []string        `json:"expect_modules,omitempty"`
	// ExpectManifest stays raw JSON: it is canonicalized from the reviewer's bytes.
	ExpectManifest json.RawMessage `json:"expect_manifest,omitempty"`
	Strict         bool            `json:"strict,omitempty"`
	HostKey        string          `json:"host_key,omitempty"`
	Collateral     json.RawMessage `json:"collateral,omitempty"`
}

// Result is what Verify returns, as JSON: {"report": <the attest.Report JSON,
// cocoon-verify-report/v1>} when the evidence was verified (whether or not it passed:
// the report's "ok" says), with "keys" (Keys) when it passed, or {"error": "...",
// "error_in": "options" | "evidence"} when nothing could be verified: the reviewer's
// options are invalid, or the host's answer is not evidence at all.
type Result struct {
	Report *attest.Report `json:"report,omitempty"`
	// Keys are the keys a client pins, set only when the report passed.
	Keys    *Keys  `json:"keys,omitempty"`
	Error   string `json:"error,omitempty"`
	ErrorIn string `json:"error_in,omitempty"`
}

// Places an error of Verify comes from.
const (
	InOptions  = "options"
	InEvidence = "evidence"
)

// Verify parses evidence (attest.ParseEvidence) and options, runs attest.VerifyEvidence
// and returns the Result as JSON. It never fails: what goes wrong is the Result's error.
// Cost: one VerifyEvidence, about a millisecond natively (more in a browser; see
// RATIONALE.md), plus parsing.
func Verify(evidence, options []byte) []byte {
	r := verify(evidence, options)
	b, err := json.Marshal(r)
	if err != nil { // a report always encodes; this is a bug, said rather than hidden
		b, _ = json.Marshal(Result{Error: "encoding the report: " + err.Error(), ErrorIn: InOptions})
	}
	return b
}

func verify(evidence, options []byte) Result {
	p, opts, err := parseOptions(options)
	if err != nil {
		return Result{Error: err.Error(), ErrorIn: InOptions}
	}
	ev, err := attest.ParseEvidence(evidence)
	if err != nil {
		return Result{Error: err.Error(), ErrorIn: InEvidence}
	}
	report, err := attest.VerifyEvidence(*ev, *p, opts)
	if err != nil {
		return Result{Error: err.Error(), ErrorIn: InOptions}
	}
	if report.OK() {
		return Result{Report: report, Keys: pinnedKeys(ev)}
	}
	return Result{Report: report}
}

// parseOptions decodes options strictly (unknown members are errors) into the policy
// and the attest options they stand for.
func parseOptions(b []byte) (*attest.Policy, attest.EvidenceOptions, error) {
	var o Options
	var opts attest.EvidenceOptions
	if len(b) > MaxOptionsBytes {
		return nil, opts, fmt.Errorf("options: %d bytes exceeds %d", len(b), MaxOptionsBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return nil, opts, fmt.Errorf("options: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, opts, errors.New("options: trailing data")
	}
	p := &attest.Policy{}
	if len(o.Policy) > 0 && string(o.Policy) != "null" {
		var err error
		if p, err = attest.ParsePolicy(o.Policy); err != nil {
			return nil, opts, err
		}
		if p.TrustSimRoot != "" && !strings.HasPrefix(strings.TrimSpace(p.TrustSimRoot), "-----BEGIN") {
			return nil, opts, fmt.Errorf("%w: trust_sim_root: the page reads no files: give the certificate's PEM text, not a path", attest.ErrPolicy)
		}
	}
	if o.TrustSimRoot != "" {
		root, err := attest.ParseCertificatePEM([]byte(o.TrustSimRoot))
		if err != nil {
			return nil, opts, fmt.Errorf("simulator root: %v", err)
		}
		opts.SimRoot = root
	}
	if len(o.Collateral) > 0 && string(o.Collateral) != "null" {
		c, err := attest.ParseCollateral(o.Collateral)
		if err != nil {
			return nil, opts, err
		}
		opts.Collateral = c
	}
	opts.PipelineID, opts.ExpectModules, opts.Strict = o.PipelineID, o.ExpectModules, o.Strict
	if len(o.ExpectManifest) > 0 && string(o.ExpectManifest) != "null" {
		m, err := manifest.Parse(o.ExpectManifest)
		if err != nil {
			return nil, opts, fmt.Errorf("expected %v", err)
		}
		opts.ExpectManifest = m.Canonical()
	}
	if o.Nonce != "" {
		nonce, err := hex.DecodeString(o.Nonce)
		if err != nil {
			return nil, opts, fmt.Errorf("nonce: not hex")
		}
		opts.Nonce = nonce
	}
	if o.HostKey != "" {
		key, err := hex.DecodeString(o.HostKey)
		if err != nil || len(key) != ed25519.PublicKeySize {
			return nil, opts, fmt.Errorf("host_key: want %d hex digits (an ed25519 public key)", 2*ed25519.PublicKeySize)
		}
		opts.HostKey = key
	}
	return p, opts, nil
}
