package attest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/attest/nvidia"
	"github.com/google/go-tdx-guest/verify/trust"
)

// ErrCollateral is wrapped by the errors of ParseCollateral and LoadCollateral, and by
// a quote's TCBErr when Intel's collateral is missing, expired or does not verify.
var ErrCollateral = errors.New("collateral")

// maxCollateralBytes bounds a collateral file: TCB info, QE identity and two CRLs with
// their issuer chains take a few tens of KiB.
const maxCollateralBytes = 4 << 20

// Collateral is a cached set of Intel PCS responses (TCB info, QE identity and, when
// recorded, CRLs) that lets VerifyQuote evaluate a quote's TCB status offline. Its
// JSON file maps each PCS URL to the response recorded for it:
//
//	{
//	  "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000": {
//	    "status":  200,
//	    "headers": {"Tcb-Info-Issuer-Chain": ["<url-encoded PEM chain>"]},
//	    "body":    "<base64 of the response body>"
//	  },
//	  ...
//	}
//
// Nothing in the file is trusted: the responses carry Intel's signatures, which
// VerifyQuote checks against Intel's root, so a tampered file makes the TCB status
// check fail rather than pass.
type Collateral map[string]CollateralResponse

// CollateralResponse is one recorded PCS response.
type CollateralResponse struct {
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers,omitempty"`
	Body    []byte              `json:"body"`
}

// ParseCollateral decodes a collateral file strictly; errors wrap ErrCollateral.
func ParseCollateral(b []byte) (Collateral, error) {
	var c Collateral
	if err := decodeStrict(b, maxCollateralBytes, &c, ErrCollateral, "collateral"); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadCollateral reads and parses the collateral file at path.
func LoadCollateral(path string) (Collateral, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCollateral, err)
	}
	c, err := ParseCollateral(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Get serves the recorded response for url, so that c is the go-tdx-guest getter
// (trust.HTTPSGetter) of an offline verification. A URL not recorded, or recorded with
// a status other than 200, is an error wrapping ErrCollateral.
func (c Collateral) Get(url string) (map[string][]string, []byte, error) {
	r, ok := c[url]
	switch {
	case !ok:
		return nil, nil, fmt.Errorf("%w: no response recorded for %s", ErrCollateral, url)
	case r.Status != 200:
		return nil, nil, fmt.Errorf("%w: %s was recorded with status %d", ErrCollateral, url, r.Status)
	}
	return r.Headers, r.Body, nil
}

// CollateralSource is where a verifier gets Intel's collateral: a Collateral (a cached
// file, offline) or a RecordingSource in front of Intel PCS (online). Its Get has the
// shape of go-tdx-guest's trust.HTTPSGetter. What it serves is never trusted as such:
// VerifyQuote checks Intel's signatures on it.
type CollateralSource interface {
	Get(url string) (header map[string][]string, body []byte, err error)
}

// RecordingSource fetches collateral from Intel PCS, and RIMs from NVIDIA's RIM service,
// and keeps what it fetched, so that a verifier online can save a collateral file for
// later verifications offline.
type RecordingSource struct {
	getter trust.HTTPSGetter
	// rimGetter, when set, fetches the URLs under nvidia.RIMServiceURL instead of getter.
	rimGetter trust.HTTPSGetter
	Recorded  Collateral
}

// OnlineCollateral returns a source that fetches from Intel PCS (go-tdx-guest's default
// HTTPS getter, with its retries) and from NVIDIA's RIM service (once, within
// rimFetchTimeout: see rimGetter), and records every answer.
func OnlineCollateral() *RecordingSource {
	return &RecordingSource{getter: trust.DefaultHTTPSGetter(), rimGetter: rimGetter{&http.Client{Timeout: rimFetchTimeout}},
		Recorded: Collateral{}}
}

// rimFetchTimeout bounds one request to NVIDIA's RIM service.
const rimFetchTimeout = 30 * time.Second

// rimGetter gets a RIM from NVIDIA's RIM service once: go-tdx-guest's getter retries any
// failure for two minutes, a 404 included, which for a RIM NVIDIA does not have (a
// simulated GPU's, an unreleased driver's) held each verification for minutes before the
// line failed. The body is read up to 2 MiB + 1 byte, so a larger answer fails
// nvidia's size check instead of filling memory.
type rimGetter struct{ client *http.Client }

func (g rimGetter) Get(url string) (map[string][]string, []byte, error) {
	resp, err := g.client.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 2*nvidia.MaxRIMSize+1))
	if err != nil {
		return nil, nil, err
	}
	return resp.Header, body, nil
}

// Get implements CollateralSource.
func (s *RecordingSource) Get(url string) (map[string][]string, []byte, error) {
	getter := s.getter
	if s.rimGetter != nil && strings.HasPrefix(url, nvidia.RIMServiceURL) {
		getter = s.rimGetter
	}
	header, body, err := getter.Get(url)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: fetching %s: %v", ErrCollateral, url, err)
	}
	s.Recorded[url] = CollateralResponse{Status: 200, Headers: header, Body: body}
	return header, body, nil
}
