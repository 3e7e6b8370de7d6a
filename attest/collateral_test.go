package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testcases "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"
)

// sampleTCBInfoURL is where go-tdx-guest's sample quote's TCB info is served: its
// PCK certificate's FMSPC is 50806f000000.
const sampleTCBInfoURL = "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000"

// sampleCollateral is go-tdx-guest's sample collateral for its sample quote, written to
// a collateral file and loaded back, so that the file format is what is tested.
func sampleCollateral(t testing.TB) Collateral {
	t.Helper()
	c := Collateral{}
	for url, r := range testcases.TestGetter.Responses {
		c[url] = CollateralResponse{Status: 200, Headers: r.Header, Body: r.Body}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "collateral.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCollateral(path)
	if err != nil {
		t.Fatal(err)
	}
	return loaded
}

func TestParseCollateral(t *testing.T) {
	c := sampleCollateral(t)
	h, body, err := c.Get(sampleTCBInfoURL)
	if err != nil || !bytes.Equal(body, testdata.TcbInfoBody) || len(h["Tcb-Info-Issuer-Chain"]) != 1 {
		t.Fatalf("Get(%s) = %v, %d bytes, %v; want the recorded response", sampleTCBInfoURL, h, len(body), err)
	}
	if _, _, err := c.Get("https://example.com/"); !errors.Is(err, ErrCollateral) {
		t.Errorf("Get of an unrecorded URL: err %v, want ErrCollateral", err)
	}
	c["https://example.com/"] = CollateralResponse{Status: 404}
	if _, _, err := c.Get("https://example.com/"); !errors.Is(err, ErrCollateral) {
		t.Errorf("Get of a 404: err %v, want ErrCollateral", err)
	}
	for name, bad := range map[string]string{
		"unknown member": `{"u":{"status":200,"bodyy":""}}`,
		"not base64":     `{"u":{"status":200,"body":"!!"}}`,
		"trailing data":  `{} {}`,
		"not an object":  `[]`,
	} {
		if _, err := ParseCollateral([]byte(bad)); !errors.Is(err, ErrCollateral) {
			t.Errorf("%s: err %v, want ErrCollateral", name, err)
		}
	}
	if _, err := LoadCollateral(filepath.Join(t.TempDir(), "absent.json")); !errors.Is(err, ErrCollateral) {
		t.Errorf("absent file: err %v, want ErrCollateral", err)
	}
}

// TestSampleQuoteTCBStatus evaluates go-tdx-guest's sample quote against its sample
// collateral offline. The collateral verifies (Intel's signatures, unexpired at the
// sample time) but its TCB levels are newer than the sample platform's SVNs, so the
// status is unknown, as go-tdx-guest's own test finds; every tamper of the collateral
// is a collateral failure instead.
func TestSampleQuoteTCBStatus(t *testing.T) {
	good := sampleCollateral(t)
	q, err := VerifyQuote(testdata.RawQuote, VerifyOptions{Now: intelSampleTime, Collateral: good})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(q.TCBErr, ErrTCBUnknown) || q.TCBStatus != "" {
		t.Fatalf("sample collateral: status %q, err %v; want ErrTCBUnknown", q.TCBStatus, q.TCBErr)
	}

	tampered := func(edit func(r *CollateralResponse)) Collateral {
		c := sampleCollateral(t)
		r := c[sampleTCBInfoURL]
		edit(&r)
		c[sampleTCBInfoURL] = r
		return c
	}
	for _, tc := range []struct {
		name string
		c    Collateral
		now  time.Time
		want string
	}{
		{"TCB info body changed", tampered(func(r *CollateralResponse) {
			r.Body = bytes.Replace(r.Body, []byte(`"tcbStatus":"UpToDate"`), []byte(`"tcbStatus":"OutOfDate"`), 1)
		}), intelSampleTime, "tcbInfo response verification failed"},
		{"TCB info issuer chain dropped", tampered(func(r *CollateralResponse) { r.Headers = nil }), intelSampleTime, "Tcb-Info-Issuer-Chain"},
		{"TCB info missing", func() Collateral { c := sampleCollateral(t); delete(c, sampleTCBInfoURL); return c }(), intelSampleTime,
			"no response recorded"},
		// The quote's PCK chain is still valid then; the TCB info is not.
		{"TCB info expired", good, time.Date(2024, time.July, 1, 0, 0, 0, 0, time.UTC), "tcbInfo has expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := VerifyQuote(testdata.RawQuote, VerifyOptions{Now: tc.now, Collateral: tc.c})
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(q.TCBErr, ErrCollateral) || q.TCBStatus != "" {
				t.Errorf("status %q, err %v; want ErrCollateral", q.TCBStatus, q.TCBErr)
			}
			if q.TCBErr == nil || !strings.Contains(q.TCBErr.Error(), tc.want) {
				t.Errorf("err %v, want the reason %q", q.TCBErr, tc.want)
			}
		})
	}
}

func TestSimQuoteHasNoTCBStatus(t *testing.T) {
	s, roots := newTestSim(t)
	q, err := VerifyQuote(simQuote(t, s, [64]byte{}), VerifyOptions{TrustedRoots: roots, Collateral: sampleCollateral(t)})
	if err != nil {
		t.Fatal(err)
	}
	if q.TCBStatus != "" || q.TCBErr != nil {
		t.Errorf("sim quote: status %q, err %v; want neither: Intel's collateral says nothing of a simulator", q.TCBStatus, q.TCBErr)
	}
}

func TestCheckTCB(t *testing.T) {
	collateralErr := errors.Join(ErrCollateral, errors.New("tcbInfo has expired"))
	unknownErr := errors.Join(ErrTCBUnknown, errors.New("no matching TCB level found"))
	for _, tc := range []struct {
		name           string
		q              Quote
		min            string
		haveCollateral bool
		want           string // the start of the report line
	}{
		// "any" is a choice the policy made, an ok line; no min_tcb_status leaves the
		// status unpinned, a skip line that --strict refuses.
		{"up to date, any", Quote{TCBStatus: TCBUpToDate}, TCBAny, true, "ok   TCB status: UpToDate"},
		{"up to date, unpinned", Quote{TCBStatus: TCBUpToDate}, "", true, "skip TCB status: UpToDate per Intel's TCB info; the policy does not pin it"},
		{"up to date, up to date", Quote{TCBStatus: TCBUpToDate}, TCBUpToDate, true, "ok   TCB status: UpToDate"},
		{"hardening, hardening", Quote{TCBStatus: TCBSWHardeningNeeded}, TCBSWHardeningNeeded, true, "ok   TCB status: SWHardeningNeeded"},
		{"config, out of date", Quote{TCBStatus: TCBConfigurationNeeded}, TCBOutOfDate, true, "ok   TCB status: ConfigurationNeeded"},
		{"hardening, up to date", Quote{TCBStatus: TCBSWHardeningNeeded}, TCBUpToDate, true, "FAIL TCB status: SWHardeningNeeded"},
		{"out of date, config and hardening", Quote{TCBStatus: TCBOutOfDate}, TCBConfigurationAndSWHardeningNeeded, true, "FAIL TCB status: OutOfDate"},
		{"revoked, worst", Quote{TCBStatus: TCBRevoked}, TCBOutOfDateConfigurationNeeded, true, "FAIL TCB status: Revoked"},
		{"bad collateral, any", Quote{TCBErr: collateralErr}, TCBAny, true, "FAIL TCB status: the collateral"},
		{"unknown, any", Quote{TCBErr: unknownErr}, TCBAny, true, "ok   TCB status: unknown"},
		{"unknown, unpinned", Quote{TCBErr: unknownErr}, "", true, "skip TCB status: unknown"},
		{"unknown, out of date", Quote{TCBErr: unknownErr}, TCBOutOfDate, true, "FAIL TCB status: unknown"},
		{"no collateral, any", Quote{}, "", false, "skip TCB status: not evaluated: no Intel collateral"},
		{"no collateral, up to date", Quote{}, TCBUpToDate, false, "FAIL TCB status: not evaluated"},
		{"sim, any", Quote{Simulated: true}, TCBAny, true, "ok   TCB status: not evaluated: simulated evidence has no Intel collateral; the policy accepts any status"},
		{"sim, unpinned", Quote{Simulated: true}, "", true, "skip TCB status: not evaluated: simulated"},
		{"sim, up to date", Quote{Simulated: true}, TCBUpToDate, true, "FAIL TCB status: simulated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{}
			checkTCB(r, &tc.q, tc.min, tc.haveCollateral)
			if got := r.String(); !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %q, want %q...", got, tc.want)
			}
		})
	}
}

// TestVerifyEvidenceSimTCBPolicy: a policy that requires a TCB status refuses sim
// evidence, which has no collateral, with a reason in the TCB line.
func TestVerifyEvidenceSimTCBPolicy(t *testing.T) {
	h := newTestHost(t)
	r := mustVerify(t, h.boot(t), Policy{MinTCBStatus: TCBUpToDate}, EvidenceOptions{SimRoot: h.sim.Root()})
	if r.OK() || !strings.Contains(r.String(), "FAIL TCB status: simulated evidence has no Intel collateral") {
		t.Errorf("sim evidence passes a policy requiring UpToDate:\n%s", r)
	}
}

// BenchmarkVerifyQuoteWithCollateral is a client's cost of verifying a TDX quote
// offline with cached collateral: the quote's chain and signatures, then the TCB info
// and QE identity signatures and the TCB evaluation.
func BenchmarkVerifyQuoteWithCollateral(b *testing.B) {
	c := sampleCollateral(b)
	for b.Loop() {
		q, err := VerifyQuote(testdata.RawQuote, VerifyOptions{Now: intelSampleTime, Collateral: c})
		if err != nil || !errors.Is(q.TCBErr, ErrTCBUnknown) {
			b.Fatal(err, q.TCBErr)
		}
	}
}

// TestRecordingSource: what an online verification fetches, saved as a collateral file,
// gives the same verdict offline. Intel PCS is stood in for by the sample responses.
func TestRecordingSource(t *testing.T) {
	online := &RecordingSource{getter: sampleCollateral(t), Recorded: Collateral{}}
	q1, err := VerifyQuote(testdata.RawQuote, VerifyOptions{Now: intelSampleTime, Collateral: online})
	if err != nil {
		t.Fatal(err)
	}
	if len(online.Recorded) == 0 {
		t.Fatal("nothing was recorded")
	}
	b, err := json.Marshal(online.Recorded)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := ParseCollateral(b)
	if err != nil {
		t.Fatal(err)
	}
	q2, err := VerifyQuote(testdata.RawQuote, VerifyOptions{Now: intelSampleTime, Collateral: saved})
	if err != nil {
		t.Fatal(err)
	}
	if q1.TCBStatus != q2.TCBStatus || errors.Is(q1.TCBErr, ErrTCBUnknown) != errors.Is(q2.TCBErr, ErrTCBUnknown) {
		t.Fatalf("online: %q %v; offline from the recording: %q %v", q1.TCBStatus, q1.TCBErr, q2.TCBStatus, q2.TCBErr)
	}
	failing := &RecordingSource{getter: Collateral{}, Recorded: Collateral{}}
	q3, _ := VerifyQuote(testdata.RawQuote, VerifyOptions{Now: intelSampleTime, Collateral: failing})
	if !errors.Is(q3.TCBErr, ErrCollateral) || len(failing.Recorded) != 0 {
		t.Fatalf("an unreachable PCS: %v, recorded %d", q3.TCBErr, len(failing.Recorded))
	}
}
