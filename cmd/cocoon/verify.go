package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
	webclient "github.com/cocoonhost/cocoon/web/client"
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
log measured, its driver, VBIOS and CC mode, its measurements against NVIDIA's RIMs: the
policy's files, or else fetched through --collateral from NVIDIA's RIM service, which
--save-collateral records with Intel's responses); with --pipeline, a
fresh quote that binds the pipeline's manifest, which is printed and compared with the
modules and manifest expected. Prints one line per check (ok; skip: not pinned by the
policy; warn; FAIL) and exits 1 when any fails. --strict also fails on any skip or warn
line and on evidence that is not fresh. --write-policy FILE writes a policy that pins
everything the verified host measured; --save-evidence FILE keeps what was fetched, which
--evidence FILE verifies again later, offline.`, stderr)
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST)")
	key := apiKeyFlag(fs, "API key, sent to an https host only, inside RA-TLS (over http a relay would read it; pipeline evidence then comes at the shared quote rate)")
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
	if *simGPURoots != "" {
		b, err := os.ReadFile(*simGPURoots)
		if err == nil {
			opts.SimGPURoots, err = attest.ParseSimGPURoots(b)
		}
		if err != nil {
			return fmt.Errorf("--trust-sim-gpu-root: %w", err)
		}
		opts = withGPUTrust(policy, opts)
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
	var src webclient.Source
	if *evidenceFile != "" {
		if src, err = loadSavedEvidence(*evidenceFile); err != nil {
			return err
		}
	} else {
		c, err := webclient.New(*base, webclient.WithAPIKey(key()), webclient.WithTrust(*policy, opts))
		if err != nil {
			return err
		}
		fetched := c.Fetch(*nonceBytes, *bootNonce)
		if *saveEvidence != "" {
			// Written whatever the verdict, since evidence that fails is worth keeping
			// too; not written when the host gave none.
			defer func() {
				if fetched.Saved.Boot.Evidence.Quote == nil {
					return
				}
				b, werr := fetched.Saved.Encode()
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
	boot, bootOpts, err := src.Boot(ctx, opts)
	if err != nil {
		return err
	}
	bootReport, err := attest.VerifyEvidence(*boot, *policy, bootOpts)
	if err != nil {
		return err
	}
	if v := src.RATLS(); v != nil {
		bootReport.Checks = append(bootReport.Checks, webclient.RATLSCheck(v, boot))
	}
	if err := out.report("boot evidence of "+src.Describe(), bootReport); err != nil {
		return err
	}
	if !bootReport.OK() {
		if *pipelineID != "" {
			out.note("\npipeline evidence of %s: not asked for: the host's boot evidence failed\n", *pipelineID)
		}
		return fmt.Errorf("verification failed: do not trust %s (see the FAIL lines above)", src.Describe())
	}
	reports := []*attest.Report{bootReport}
	id, ok := src.PipelineID(*pipelineID)
	switch {
	case !ok:
		return fmt.Errorf("--evidence %s holds no evidence of pipeline %s", *evidenceFile, *pipelineID)
	case id != "":
		popts := opts
		popts.PipelineID, popts.ExpectModules, popts.ExpectManifest, popts.HostKey = id, expect, expectCanonical, boot.HostKey
		ev, popts, err := src.Pipeline(ctx, popts)
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
			return fmt.Errorf("verification failed: do not trust %s (see the FAIL lines above)", src.Describe())
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

// loadSavedEvidence reads a file --save-evidence wrote.
func loadSavedEvidence(path string) (*webclient.SavedSource, error) {
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
	return webclient.NewSavedSource(path, s), nil
}

// writePinningPolicy writes the policy that pins what the boot report verified
// (webclient.PinningPolicy).
func writePinningPolicy(path string, r *attest.Report, mode string, current *attest.Policy, opts attest.EvidenceOptions) error {
	p, err := webclient.PinningPolicy(r, mode, current, opts)
	if err != nil {
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
