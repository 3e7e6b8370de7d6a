package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest/nvidia"
)

// The ids the simulated GPU's report yields (nvidia.RIMIDs).
const (
	simDriverRIMID = "NV_GPU_DRIVER_GH100_" + nvidia.SimDriverVersion
	simVBIOSRIMID  = "NV_GPU_VBIOS_sim_sim_sim_9900000001"
)

// rimServiceGetter is an HTTPS getter that sends what is asked of NVIDIA's RIM service
// to a local server standing in for it, through a real HTTP round trip; the URLs it
// answers for, and so the URLs recorded, stay NVIDIA's.
type rimServiceGetter struct{ local string }

func (g rimServiceGetter) Get(url string) (map[string][]string, []byte, error) {
	local := strings.Replace(url, strings.TrimSuffix(nvidia.RIMServiceURL, "/v1/rim/"), g.local, 1)
	return rimGetter{http.DefaultClient}.Get(local)
}

// simRIMServer serves the simulated GPU's RIMs in dir as NVIDIA's RIM service does:
// GET /v1/rim/<id>, JSON {"id", "rim": base64}; 404 for any other id.
func simRIMServer(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	answers := simRIMCollateral(t, dir)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strings.CutPrefix(r.URL.Path, "/v1/rim/")
		answer, ok := answers[nvidia.RIMServiceURL+id]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(answer.Body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// simRIMCollateral is a saved collateral file's content holding the simulated GPU's
// RIMs in dir as NVIDIA's RIM service answers them, under its URLs.
func simRIMCollateral(t testing.TB, dir string) Collateral {
	t.Helper()
	c := Collateral{}
	for id, file := range map[string]string{simDriverRIMID: SimGPUDriverRIMFile, simVBIOSRIMID: SimGPUVBIOSRIMFile} {
		tag, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(map[string]any{"id": id, "rim": tag})
		if err != nil {
			t.Fatal(err)
		}
		c[nvidia.RIMServiceURL+id] = CollateralResponse{Status: 200, Body: body}
	}
	return c
}

// TestGPURIMsThroughCollateral: with a policy that gives no RIMs, an online verification
// fetches them from the RIM service under the ids the signed report yields, records
// them with the collateral, and the saved file verifies the same evidence offline; a
// RIM altered in the file fails the RIM signature line, a missing one fails its line
// naming the id and URL.
func TestGPURIMsThroughCollateral(t *testing.T) {
	g := newGPUHost(t)
	srv := simRIMServer(t, g.dir)
	ev := g.host.BootEvidence()
	noRIMs := Policy{}
	verify := func(src CollateralSource) *Report {
		opts := g.opts()
		opts.Collateral = src
		return mustVerify(t, ev, noRIMs, opts)
	}

	online := &RecordingSource{getter: rimServiceGetter{srv.URL}, Recorded: Collateral{}}
	if r := verify(online); !r.OK() {
		t.Fatalf("online: fails:\n%s", r)
	} else if c := check(t, r, "GPU 0 driver RIM"); !strings.Contains(c.Detail, "fetched as "+simDriverRIMID) {
		t.Errorf("driver RIM line %s does not say it was fetched", c)
	}
	for _, id := range []string{simDriverRIMID, simVBIOSRIMID} {
		if _, ok := online.Recorded[nvidia.RIMServiceURL+id]; !ok {
			t.Fatalf("%s was not recorded under NVIDIA's URL: %v", id, online.Recorded)
		}
	}
	b, err := json.Marshal(online.Recorded)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close() // offline from here on
	saved, err := ParseCollateral(b)
	if err != nil {
		t.Fatal(err)
	}
	if r := verify(saved); !r.OK() {
		t.Fatalf("offline, from the saved file: fails:\n%s", r)
	}

	driverURL := nvidia.RIMServiceURL + simDriverRIMID
	tampered := Collateral{}
	for url, resp := range saved {
		tampered[url] = resp
	}
	resp := tampered[driverURL]
	var body struct {
		ID  string `json:"id"`
		RIM []byte `json:"rim"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(body.RIM, []byte(`index="20" active="True"`), []byte(`index="20" active="False"`), 1)
	if bytes.Equal(altered, body.RIM) {
		t.Fatal("the driver RIM has no active measurement 20 to alter")
	}
	if resp.Body, err = json.Marshal(map[string]any{"id": body.ID, "rim": altered}); err != nil {
		t.Fatal(err)
	}
	tampered[driverURL] = resp
	missing := Collateral{}
	for url, resp := range saved {
		if url != driverURL {
			missing[url] = resp
		}
	}
	for _, tc := range []struct {
		name string
		src  CollateralSource
		want string
	}{
		{"an altered RIM", tampered, "signature"},
		{"a RIM missing from the file", missing, "RIM " + simDriverRIMID + " not available at " + driverURL},
		{"no collateral at all", nil, driverURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := verify(tc.src)
			if r.OK() {
				t.Fatalf("passes:\n%s", r)
			}
			c := check(t, r, "GPU 0 driver RIM")
			if c.OK || !strings.Contains(c.Detail, tc.want) {
				t.Errorf("driver RIM line %s, want a failure saying %q", c, tc.want)
			}
			if m := check(t, r, "GPU 0 measurements"); m.OK {
				t.Errorf("measurements line passes without a verified driver RIM: %s", m)
			}
		})
	}
}

// TestRIMGetterOnce: a RIM NVIDIA's service does not have (404) fails at once, after one
// request, where go-tdx-guest's getter retried for two minutes; and a recording source
// sends only RIM service URLs to it.
func TestRIMGetterOnce(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	start := time.Now()
	_, _, err := rimGetter{srv.Client()}.Get(srv.URL + "/v1/rim/" + simDriverRIMID)
	if err == nil || !strings.Contains(err.Error(), "404") || requests.Load() != 1 {
		t.Fatalf("error %v after %d requests, want a 404 after one", err, requests.Load())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a 404 took %v", d)
	}

	rimURL := nvidia.RIMServiceURL + simDriverRIMID
	src := &RecordingSource{getter: Collateral{}, rimGetter: Collateral{rimURL: {Status: 200, Body: []byte("rim")}}, Recorded: Collateral{}}
	if _, body, err := src.Get(rimURL); err != nil || string(body) != "rim" {
		t.Fatalf("the RIM URL: %q, %v", body, err)
	}
	if _, _, err := src.Get("https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity"); err == nil {
		t.Fatal("Intel's URL went to the RIM getter")
	}
}

// TestLoadGPURIMs: a policy's RIMs verified once when loaded serve every verification
// under that policy (the RIM files may even be gone), give the lines the files give, and
// are refused with another policy's RIM members or other GPU roots; a RIM that does not
// verify fails the load, naming the member.
func TestLoadGPURIMs(t *testing.T) {
	g := newGPUHost(t)
	ev, opts := g.pipeline(t, testNonce(7))
	want := mustVerify(t, ev, g.policy, opts)
	if !want.OK() {
		t.Fatalf("with the RIM files:\n%s", want)
	}
	rims, err := LoadGPURIMs(&g.policy, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Under the policy's trust_sim_gpu_root instead of the option's: the same roots.
	byPolicy := g.policy
	byPolicy.TrustSimGPURoot = filepath.Join(g.dir, SimGPURootsFile)
	policyOpts := opts
	policyOpts.SimGPURoots = nil
	byPolicyRIMs, err := LoadGPURIMs(&byPolicy, policyOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{SimGPUDriverRIMFile, SimGPUVBIOSRIMFile} {
		if err := os.Rename(filepath.Join(g.dir, name), filepath.Join(g.dir, name+".gone")); err != nil {
			t.Fatal(err)
		}
	}
	for name, c := range map[string]struct {
		p    Policy
		opts EvidenceOptions
		rims *GPURIMs
	}{"roots from the options": {g.policy, opts, rims}, "roots from the policy": {byPolicy, policyOpts, byPolicyRIMs},
		"roots from the policy, RIMs loaded under the options' (the same certificates)": {byPolicy, policyOpts, rims}} {
		t.Run(name, func(t *testing.T) {
			c.opts.GPURIMs = c.rims
			r := mustVerify(t, ev, c.p, c.opts)
			if !r.OK() {
				t.Fatalf("with loaded RIMs:\n%s", r)
			}
			if len(r.Checks) != len(want.Checks) {
				t.Fatalf("%d lines, with the files %d", len(r.Checks), len(want.Checks))
			}
			for _, line := range []string{"GPU 0 driver RIM", "GPU 0 VBIOS RIM"} {
				if d := check(t, r, line).Detail; !strings.HasSuffix(d, ", verified when loaded") {
					t.Errorf("%s: %s", line, d)
				}
			}
		})
	}

	other := newGPUHost(t)
	otherRIMs, err := LoadGPURIMs(&other.policy, other.opts())
	if err != nil {
		t.Fatal(err)
	}
	inline := g.policy
	inline.GPUDriverRIM = "<SoftwareIdentity/>"
	for name, c := range map[string]struct {
		p     Policy
		roots *SimGPURoots
		rims  *GPURIMs
	}{
		"another policy's RIMs":                         {g.policy, g.gpuRoots, otherRIMs},
		"this policy's RIMs under another GPU's roots":  {g.policy, other.gpuRoots, rims},
		"the RIMs of a policy whose driver RIM differs": {inline, g.gpuRoots, rims},
	} {
		t.Run(name, func(t *testing.T) {
			o := opts
			o.GPURIMs, o.SimGPURoots = c.rims, c.roots
			if r, err := VerifyEvidence(ev, c.p, o); err == nil || !strings.Contains(err.Error(), "loaded for another policy") {
				t.Fatalf("error %v\n%s", err, r)
			}
		})
	}

	// Loading refuses what does not verify.
	driverXML, err := os.ReadFile(filepath.Join(g.dir, SimGPUDriverRIMFile+".gone"))
	if err != nil {
		t.Fatal(err)
	}
	vbiosXML, err := os.ReadFile(filepath.Join(g.dir, SimGPUVBIOSRIMFile+".gone"))
	if err != nil {
		t.Fatal(err)
	}
	otherDriver, err := os.ReadFile(filepath.Join(other.dir, SimGPUDriverRIMFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		xml  []byte
		want error
	}{
		"a RIM changed after signing": {bytes.Replace(driverXML, []byte(`index="20" active="True"`), []byte(`index="20" active="False"`), 1), nvidia.ErrRIMSignature},
		"another simulator's RIM":     {otherDriver, nvidia.ErrUntrustedRoot},
	} {
		t.Run(name, func(t *testing.T) {
			p := g.policy
			p.GPUDriverRIM, p.GPUVBIOSRIM = string(c.xml), string(vbiosXML)
			_, err := LoadGPURIMs(&p, opts)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "gpu_driver_rim") {
				t.Fatalf("error %v, want %v naming gpu_driver_rim", err, c.want)
			}
		})
	}
	if _, err := LoadGPURIMs(&g.policy, opts); err == nil || !strings.Contains(err.Error(), "gpu_driver_rim") {
		t.Fatalf("the RIM files are gone, yet: %v", err)
	}
}
