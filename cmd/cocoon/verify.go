package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/cocoonhost/cocoon/attest"
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

// verify fetches a host's boot evidence, and with --pipeline a fresh pipeline quote over
// a random nonce, verifies them against the policy and prints one line per check. It
// fails (exit 1) when any check fails.
func verify(args []string, _ io.Reader, stdout, stderr io.Writer) (err error) {
	fs := cli.NewFlagSet("cocoon", `verify [--host URL] [--pipeline ID] [--expect-module sha256:...]... [--policy FILE] [--collateral FILE] [--trust-sim-root FILE]

Verifies a host's attestation evidence: the TDX quote's signature chain, its TCB status
from Intel's collateral (--collateral: cached PCS responses, offline), the measurements
against --policy, the runtime event log, and the keys the quote binds; with --pipeline, a
fresh quote over a random nonce that binds the pipeline's manifest and its modules. Prints
one line per check (ok, skip: not pinned by the policy, FAIL) and exits 1 when any fails.`, stderr)
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST)")
	key := apiKeyFlag(fs, "API key, sent when set")
	pipelineID := fs.String("pipeline", "", "also verify this pipeline's evidence (its 64-hex id)")
	var expect moduleList
	fs.Var(&expect, "expect-module", "a module hash the pipeline must run (repeatable; needs --pipeline)")
	trust := trustFlags(fs)
	saveCollateral := fs.String("save-collateral", "", "with --collateral online: write what was fetched to this file, for --collateral FILE offline")
	nonceBytes := fs.Int("nonce-bytes", 32, fmt.Sprintf("length of the random nonce, %d to %d", attest.MinNonceBytes, attest.MaxNonceBytes))
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := checkHostURL(*base); err != nil {
		return err
	}
	switch {
	case *pipelineID != "" && host.CheckHash("sha256:"+*pipelineID) != nil:
		return cli.UsageError(fmt.Sprintf("--pipeline %q is not a pipeline id: an id is 64 lowercase hex digits", *pipelineID))
	case *pipelineID == "" && len(expect) > 0:
		return cli.UsageError("--expect-module needs --pipeline")
	case *nonceBytes < attest.MinNonceBytes || *nonceBytes > attest.MaxNonceBytes:
		return cli.UsageError(fmt.Sprintf("--nonce-bytes %d: want %d to %d", *nonceBytes, attest.MinNonceBytes, attest.MaxNonceBytes))
	}
	policy, opts, _, err := trust()
	if err != nil {
		return err
	}
	recorder, online := opts.Collateral.(*attest.RecordingSource)
	if *saveCollateral != "" && !online {
		return cli.UsageError("--save-collateral needs --collateral online")
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
	c, err := newClient(*base, key(), policy, opts)
	if err != nil {
		return err
	}
	ctx := context.Background()
	boot, err := c.evidence(ctx, "/v1/attestation")
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "boot evidence of %s\n", c.base)
	ok, err := printReport(stdout, *boot, *policy, opts)
	if err != nil {
		return err
	}
	if c.ratls != nil {
		check := ratlsCheck(c.ratls, boot)
		fmt.Fprintln(stdout, check)
		ok = ok && check.OK
	}
	if *pipelineID != "" {
		nonce := make([]byte, *nonceBytes)
		rand.Read(nonce) // crypto/rand.Read never fails.
		ev, err := c.evidence(ctx, "/v1/pipelines/"+*pipelineID+"/attestation?nonce="+url.QueryEscape(hex.EncodeToString(nonce)))
		if err != nil {
			return err
		}
		opts.PipelineID, opts.Nonce, opts.ExpectModules, opts.HostKey = *pipelineID, nonce, expect, boot.HostKey
		fmt.Fprintf(stdout, "\npipeline evidence of %s\n", *pipelineID)
		pipelineOK, err := printReport(stdout, *ev, *policy, opts)
		if err != nil {
			return err
		}
		ok = ok && pipelineOK
	}
	if !ok {
		return fmt.Errorf("verification failed: do not trust %s (see the FAIL lines above)", c.base)
	}
	return nil
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

func printReport(w io.Writer, ev attest.Evidence, p attest.Policy, opts attest.EvidenceOptions) (bool, error) {
	r, err := attest.VerifyEvidence(ev, p, opts)
	if err != nil {
		return false, err
	}
	_, err = io.WriteString(w, r.String())
	return r.OK(), err
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
