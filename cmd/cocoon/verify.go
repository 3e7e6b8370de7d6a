package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/attest/nvidia"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
)

// moduleList is a repeatable --expect-module flag.
type moduleList []string

func (m *moduleList) String() string { return strings.Join(*m, ",") }

func (m *moduleList) Set(v string) error {
	if err := host.CheckHash(v); err != nil {
		return err
	}
	*m = append(*m, v)
	return nil
}

// verify fetches a host's fresh boot evidence, and with --pipeline a fresh pipeline
// quote, each over a random nonce (or reads them back from --evidence), verifies them
// against the policy and prints one line per check, or the JSON reports. It fails (exit
// 1) when any check fails, and does not ask for pipeline evidence from a host whose
// boot evidence failed.
func verify(args []string, _ io.Reader, stdout, stderr io.Writer) (err error) {
	if wantsWeb(args) {
		return verifyWeb(args, stdout, stderr)
	}
	fs := cli.NewFlagSet("cocoon", `verify [--host URL] [--pipeline ID] [--expect-module sha256:...]... [--expect-manifest FILE] [--policy FILE] [--strict] [--json] [--collateral FILE] [--trust-sim-root FILE] [--trust-sim-gpu-root FILE] [--write-policy FILE] [--save-evidence FILE | --evidence FILE]
       cocoon verify --web [--host URL] [--listen ADDR]: the reviewer's page, verifying in your browser (see --web --help)

Verifies a host's attestation evidence: the TDX quote's signature chain, its TCB status
from Intel's collateral (--collateral: cached PCS responses, offline), the TD's
measurements and attributes against --policy (a debug TD always fails), the runtime event
log and every event it measures, where prompts go (a backend outside the TD fails unless
the policy names it), the keys and fresh nonce the quote binds, and each GPU's report
(NVIDIA's signature over a nonce derived from the quote's REPORTDATA, the GPU the event
log measured, its driver, VBIOS and CC mode); with --pipeline, a
fresh quote that binds the pipeline's manifest, which is printed and compared with the
modules and manifest expected. Prints one line per check (ok; skip: not pinned by the
policy; warn; FAIL) and exits 1 when any fails. --strict also fails on any skip or warn
line and on evidence that is not fresh. --write-policy FILE writes a policy that pins
everything the verified host measured; --save-evidence FILE keeps what was fetched, which
--evidence FILE verifies again later, offline.`, stderr)
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST)")
	key := apiKeyFlag(fs, "API key, sent when set")
	pipelineID := fs.String("pipeline", "", "also verify this pipeline's evidence (its 64-hex id); --expect-manifest implies it")
	var expect moduleList
	fs.Var(&expect, "expect-module", "a module hash the pipeline must run (repeatable; needs --pipeline): pins code, not what its config makes it do")
	expectManifest := fs.String("expect-manifest", "", "a manifest FILE the pipeline must be exactly, configs and limits included (as uploaded, or as `cocoon pipeline-id --write-manifest` writes it)")
	trust := trustFlags(fs)
	simGPURoots := fs.String("trust-sim-gpu-root", "", "trust a simulated GPU's reports under the roots in this FILE (DATA/attest/sim-gpu-roots.pem of a host run with --gpu sim), for testing only")
	saveCollateral := fs.String("save-collateral", "", "with --collateral online: write what was fetched to this file, for --collateral FILE offline")
	nonceBytes := fs.Int("nonce-bytes", 32, fmt.Sprintf("length of the random nonces, %d to %d", attest.MinNonceBytes, attest.MaxNonceBytes))
	bootNonce := fs.Bool("boot-nonce", true, "ask for boot evidence quoted for a fresh nonce; false takes the quote from boot, which a stopped or copied host serves too (not fresh)")
	strict := fs.Bool("strict", false, "fail unless every measurement is pinned by the policy, nothing warns and the evidence is fresh: for automation")
	jsonOut := fs.Bool("json", false, "print each report as one line of JSON (format cocoon-verify-report/v1, see attest/README.md) instead of text")
	writePolicy := fs.String("write-policy", "", "write a policy FILE that pins everything the verified host measured (only when everything verified)")
	saveEvidence := fs.String("save-evidence", "", "write what was fetched, with its nonces, to this FILE, for --evidence")
	evidenceFile := fs.String("evidence", "", "verify the evidence saved in this FILE (--save-evidence), offline, as of when it was fetched: not fresh")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if err := checkHostURL(*base); err != nil {
		return err
	}
	var expectCanonical []byte
	if *expectManifest != "" {
		m, err := readManifest(*expectManifest)
		if err != nil {
			return err
		}
		// With --pipeline too, or with --evidence, a pipeline other than the one
		// expected is verified all the same, so that the report says how it differs.
		if *pipelineID == "" && *evidenceFile == "" {
			*pipelineID = m.ID()
		}
		expectCanonical = m.Canonical()
	}
	switch {
	case *pipelineID != "" && host.CheckHash("sha256:"+*pipelineID) != nil:
		return cli.UsageError(fmt.Sprintf("--pipeline %q is not a pipeline id: an id is 64 lowercase hex digits", *pipelineID))
	case *pipelineID == "" && len(expect) > 0 && *evidenceFile == "":
		return cli.UsageError("--expect-module needs --pipeline")
	case *nonceBytes < attest.MinNonceBytes || *nonceBytes > attest.MaxNonceBytes:
		return cli.UsageError(fmt.Sprintf("--nonce-bytes %d: want %d to %d", *nonceBytes, attest.MinNonceBytes, attest.MaxNonceBytes))
	case *writePolicy != "" && *strict:
		return cli.UsageError("--write-policy records what a host runs, --strict checks it against a policy: write the policy first, then verify with --strict --policy FILE")
	case *evidenceFile != "" && (*saveEvidence != "" || *saveCollateral != "" || given["host"] || given["boot-nonce"] || given["nonce-bytes"]):
		return cli.UsageError("--evidence verifies a saved file offline: it names its host and nonces, and takes no --host, --boot-nonce, --nonce-bytes, --save-evidence or --save-collateral")
	}
	policy, opts, _, err := trust()
	if err != nil {
		return err
	}
	// Boot and pipeline evidence come from the same GPUs: their chains and RIMs are
	// verified once.
	opts.GPUCache = nvidia.NewCache()
	if *simGPURoots != "" {
		b, err := os.ReadFile(*simGPURoots)
		if err == nil {
			opts.SimGPURoots, err = attest.ParseSimGPURoots(b)
		}
		if err != nil {
			return fmt.Errorf("--trust-sim-gpu-root: %w", err)
		}
	}
	recorder, online := opts.Collateral.(*attest.RecordingSource)
	switch {
	case *saveCollateral != "" && !online:
		return cli.UsageError("--save-collateral needs --collateral online")
	case *evidenceFile != "" && online:
		return cli.UsageError("--evidence verifies offline: give --collateral FILE, not online")
	}
	if online && *saveCollateral != "" {
		defer func() {
			b, merr := json.MarshalIndent(recorder.Recorded, "", "  ")
			if merr == nil {
				merr = os.WriteFile(*saveCollateral, b, 0o644)
			}
			if merr != nil && err == nil {
				err = fmt.Errorf("--save-collateral: %w", merr)
			}
		}()
	}
	var src evidenceSource
	if *evidenceFile != "" {
		if src, err = loadSavedEvidence(*evidenceFile); err != nil {
			return err
		}
	} else {
		c, err := newClient(*base, key(), policy, opts)
		if err != nil {
			return err
		}
		fetched := &fetchedEvidence{c: c, nonceBytes: *nonceBytes, bootNonce: *bootNonce,
			saved: attest.SavedEvidence{Format: attest.SavedEvidenceFormat, Host: c.base, FetchedAt: time.Now().UTC().Truncate(time.Second)}}
		if *saveEvidence != "" {
			// Written whatever the verdict, since evidence that fails is worth keeping
			// too; not written when the host gave none.
			defer func() {
				if fetched.saved.Boot.Evidence.Quote == nil {
					return
				}
				b, werr := fetched.saved.Encode()
				if werr == nil {
					werr = os.WriteFile(*saveEvidence, b, 0o644)
				}
				if werr != nil && err == nil {
					err = fmt.Errorf("--save-evidence: %w", werr)
				}
			}()
		}
		src = fetched
	}
	out := reportWriter{w: stdout, json: *jsonOut}
	ctx := context.Background()
	opts.Strict = *strict
	boot, bootOpts, err := src.boot(ctx, opts)
	if err != nil {
		return err
	}
	bootReport, err := attest.VerifyEvidence(*boot, *policy, bootOpts)
	if err != nil {
		return err
	}
	if v := src.ratls(); v != nil {
		bootReport.Checks = append(bootReport.Checks, ratlsCheck(v, boot))
	}
	if err := out.report("boot evidence of "+src.describe(), bootReport); err != nil {
		return err
	}
	if !bootReport.OK() {
		if *pipelineID != "" {
			out.note("\npipeline evidence of %s: not asked for: the host's boot evidence failed\n", *pipelineID)
		}
		return fmt.Errorf("verification failed: do not trust %s (see the FAIL lines above)", src.describe())
	}
	reports := []*attest.Report{bootReport}
	id, ok := src.pipelineID(*pipelineID)
	switch {
	case !ok:
		return fmt.Errorf("--evidence %s holds no evidence of pipeline %s", *evidenceFile, *pipelineID)
	case id != "":
		popts := opts
		popts.PipelineID, popts.ExpectModules, popts.ExpectManifest, popts.HostKey = id, expect, expectCanonical, boot.HostKey
		ev, popts, err := src.pipeline(ctx, popts)
		if err != nil {
			return err
		}
		r, err := attest.VerifyEvidence(*ev, *policy, popts)
		if err != nil {
			return err
		}
		if err := out.report("\npipeline evidence of "+id, r); err != nil {
			return err
		}
		reports = append(reports, r)
	case len(expect) > 0 || expectCanonical != nil:
		return cli.UsageError("--expect-module and --expect-manifest need pipeline evidence, and the saved file holds none")
	}
	for _, r := range reports {
		if !r.OK() {
			return fmt.Errorf("verification failed: do not trust %s (see the FAIL lines above)", src.describe())
		}
	}
	if *writePolicy != "" {
		if err := writePinningPolicy(*writePolicy, bootReport, boot.Mode, policy, opts); err != nil {
			return err
		}
		out.note("\nwrote %s: a policy that pins everything this host measured\n", *writePolicy)
	}
	return nil
}

// readManifest reads a pipeline manifest from a file and checks it as a host does at
// upload.
func readManifest(path string) (*host.Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--expect-manifest: %w", err)
	}
	m, err := host.ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("--expect-manifest %s: %w", path, err)
	}
	return m, nil
}

// reportWriter prints reports as text (a heading, one line per check) or as one line
// of JSON each, with nothing else on w.
type reportWriter struct {
	w    io.Writer
	json bool
}

func (o reportWriter) report(heading string, r *attest.Report) error {
	if o.json {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(o.w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(o.w, "%s\n%s", heading, r)
	return err
}

// note prints a line of text that is not a report, unless the output is JSON.
func (o reportWriter) note(format string, args ...any) {
	if !o.json {
		fmt.Fprintf(o.w, format, args...)
	}
}

// evidenceSource gives verify the evidence to check, with the options that go with it:
// fetched from a host now, or read back from a saved file.
type evidenceSource interface {
	// describe names where the evidence comes from.
	describe() string
	// boot returns the boot evidence and opts with its nonce.
	boot(ctx context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error)
	// pipelineID returns the pipeline to verify: asked ("" for none) or, for a saved
	// file, the one it holds; false when a saved file holds no evidence of the one asked.
	pipelineID(asked string) (string, bool)
	// pipeline returns the evidence of opts.PipelineID and opts with its nonce.
	pipeline(ctx context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error)
	// ratls is the verifier of the TLS connection the evidence came over, nil if none.
	ratls() *attest.RATLSVerifier
}

// fetchedEvidence fetches evidence from a host over fresh nonces, and keeps what it
// fetched in saved.
type fetchedEvidence struct {
	c          *client
	nonceBytes int
	bootNonce  bool
	saved      attest.SavedEvidence
}

func (f *fetchedEvidence) describe() string { return f.c.base }

func (f *fetchedEvidence) ratls() *attest.RATLSVerifier { return f.c.ratls }

func (f *fetchedEvidence) pipelineID(asked string) (string, bool) { return asked, true }

func (f *fetchedEvidence) boot(ctx context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error) {
	path := "/v1/attestation"
	if f.bootNonce {
		opts.Nonce = newNonce(f.nonceBytes)
		path += "?nonce=" + hex.EncodeToString(opts.Nonce)
	}
	ev, err := f.c.evidence(ctx, path)
	if err != nil {
		return nil, opts, err
	}
	f.saved.Boot = attest.SavedRequest{Nonce: hex.EncodeToString(opts.Nonce), Evidence: *ev}
	return ev, opts, nil
}

func (f *fetchedEvidence) pipeline(ctx context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error) {
	opts.Nonce = newNonce(f.nonceBytes)
	ev, err := f.c.evidence(ctx, "/v1/pipelines/"+opts.PipelineID+"/attestation?nonce="+url.QueryEscape(hex.EncodeToString(opts.Nonce)))
	if err != nil {
		return nil, opts, err
	}
	f.saved.Pipeline = &attest.SavedRequest{PipelineID: opts.PipelineID, Nonce: hex.EncodeToString(opts.Nonce), Evidence: *ev}
	return ev, opts, nil
}

// newNonce returns n random bytes.
func newNonce(n int) []byte {
	nonce := make([]byte, n)
	rand.Read(nonce) // crypto/rand.Read never fails.
	return nonce
}

// savedEvidence is evidence read back from a file: verified with the nonces it was
// fetched with, as of when it was fetched, and never fresh.
type savedEvidence struct {
	path  string
	saved *attest.SavedEvidence
}

// loadSavedEvidence reads a file --save-evidence wrote.
func loadSavedEvidence(path string) (*savedEvidence, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) > attest.MaxSavedEvidenceBytes {
		err = fmt.Errorf("%d bytes, over the %d of saved evidence", len(b), attest.MaxSavedEvidenceBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("--evidence: %w", err)
	}
	s, err := attest.ParseSavedEvidence(b)
	if err != nil {
		return nil, fmt.Errorf("--evidence %s: %w", path, err)
	}
	return &savedEvidence{path: path, saved: s}, nil
}

func (s *savedEvidence) describe() string {
	return fmt.Sprintf("%s, fetched %s, saved in %s", s.saved.Host, s.saved.FetchedAt.UTC().Format(time.RFC3339), s.path)
}

func (s *savedEvidence) ratls() *attest.RATLSVerifier { return nil }

func (s *savedEvidence) pipelineID(asked string) (string, bool) {
	switch {
	case s.saved.Pipeline == nil:
		return "", asked == ""
	case asked == "":
		return s.saved.Pipeline.PipelineID, true
	}
	return asked, asked == s.saved.Pipeline.PipelineID
}

func (s *savedEvidence) boot(_ context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error) {
	return &s.saved.Boot.Evidence, s.options(opts, s.saved.Boot), nil
}

func (s *savedEvidence) pipeline(_ context.Context, opts attest.EvidenceOptions) (*attest.Evidence, attest.EvidenceOptions, error) {
	return &s.saved.Pipeline.Evidence, s.options(opts, *s.saved.Pipeline), nil
}

// options are opts for evidence saved with its request req: its nonce, not fresh, and
// certificates and collateral checked as of when it was fetched.
func (s *savedEvidence) options(opts attest.EvidenceOptions, req attest.SavedRequest) attest.EvidenceOptions {
	opts.Nonce, opts.Archived, opts.Now = req.NonceBytes(), true, s.saved.FetchedAt
	return opts
}

// writePinningPolicy writes the policy that pins what the boot report verified; for
// simulated evidence it trusts the simulator root the verification trusted, as PEM, and
// it carries the simulated GPU roots and the GPU RIMs the verification used, inline, so
// that the file stands alone.
func writePinningPolicy(path string, r *attest.Report, mode string, current *attest.Policy, opts attest.EvidenceOptions) error {
	p, err := r.PinningPolicy()
	if err != nil {
		return fmt.Errorf("--write-policy: %w", err)
	}
	if mode == attest.ModeSim {
		root := opts.SimRoot
		if root == nil {
			if root, err = current.SimRoot(); err != nil {
				return err
			}
		}
		if root != nil { // evidence that verified as sim had one
			p.TrustSimRoot = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}))
		}
	}
	if err := p.CarryGPUTrust(current, opts.SimGPURoots); err != nil {
		return fmt.Errorf("--write-policy: %w", err)
	}
	if err := writeJSONFile(path, p); err != nil {
		return fmt.Errorf("--write-policy: %w", err)
	}
	return nil
}

// writeJSONFile writes v as indented JSON to path.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// evidence fetches and decodes evidence from path. The API key goes along only when
// set, since a client may verify a host before it has a key.
func (c *client) evidence(ctx context.Context, path string) (*attest.Evidence, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("--host %q: %w", c.base, err)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.do(req, nil)
	if err != nil {
		return nil, c.doError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, responseError(resp)
	}
	// One byte over the limit, so that ParseEvidence reports oversized evidence.
	b, err := io.ReadAll(io.LimitReader(resp.Body, attest.MaxEvidenceBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the evidence of %s: %w", path, err)
	}
	ev, err := attest.ParseEvidence(b)
	if err != nil {
		return nil, fmt.Errorf("the host's answer to GET %s is not evidence: %w", path, err)
	}
	return ev, nil
}

// ratlsCheck checks that the boot evidence served over an RA-TLS connection carries the
// keys of the evidence its handshake verified, so that what was verified is the host
// this connection reaches.
func ratlsCheck(v *attest.RATLSVerifier, boot *attest.Evidence) attest.Check {
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
