package nvidia

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// rimService is a RIMSource standing in for NVIDIA's RIM service: it serves each body
// at RIMServiceURL + its id, and counts what it was asked for.
type rimService struct {
	bodies map[string][]byte
	asked  []string
}

func (s *rimService) Get(url string) (map[string][]string, []byte, error) {
	s.asked = append(s.asked, url)
	id, ok := strings.CutPrefix(url, RIMServiceURL)
	b, found := s.bodies[id]
	if !ok || !found {
		return nil, nil, fmt.Errorf("%s: 404", url)
	}
	return nil, b, nil
}

// rimServiceBody is the service's JSON answer for the RIM tag under id.
func rimServiceBody(t testing.TB, id string, tag []byte) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"id": id, "rim": tag, "sha256": "not read"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// simRIMService serves s's RIMs under the ids its report yields.
func simRIMService(t testing.TB, s *Sim) *rimService {
	driver, vbios := s.RIMs()
	return &rimService{bodies: map[string][]byte{
		simDriverRIMID: rimServiceBody(t, simDriverRIMID, driver),
		simVBIOSRIMID:  rimServiceBody(t, simVBIOSRIMID, vbios),
	}}
}

const (
	simDriverRIMID = "NV_GPU_DRIVER_GH100_" + SimDriverVersion
	simVBIOSRIMID  = "NV_GPU_VBIOS_sim_sim_sim_9900000001"
)

// TestNVIDIARIMIDs: the ids derived from NVIDIA's sample report are the ones NVIDIA's
// service names its RIMs by (attest/README.md), and parts that could steer the URL are
// refused.
func TestNVIDIARIMIDs(t *testing.T) {
	rep, err := ParseReport(loadSample(t).ev.Report)
	if err != nil {
		t.Fatal(err)
	}
	driver, vbios, err := RIMIDs(rep)
	if err != nil || driver != "NV_GPU_DRIVER_GH100_550.90.07" || vbios != "NV_GPU_VBIOS_1010_0200_882_96009F0001" {
		t.Fatalf("RIMIDs = %q, %q, %v", driver, vbios, err)
	}
	for _, bad := range []Report{
		{DriverVersion: "550/../../x", VBIOSVersion: "96.00.9F.00.01", Project: "1010", ProjectSKU: "0200", ChipSKU: "882"},
		{DriverVersion: "550.90.07", VBIOSVersion: "96.00.9F.00.01", Project: "1010?x=", ProjectSKU: "0200", ChipSKU: "882"},
		{DriverVersion: "550.90.07", VBIOSVersion: "96.00.9F.00.01", Project: "", ProjectSKU: "0200", ChipSKU: "882"},
		{DriverVersion: "550.90.07", VBIOSVersion: "96.00.9F.00.01", Project: "1010", ProjectSKU: "0200", ChipSKU: "8 82"},
	} {
		if _, _, err := RIMIDs(&bad); !errors.Is(err, ErrRIM) {
			t.Errorf("RIMIDs(%+v) = %v, want ErrRIM", bad, err)
		}
	}
}

// TestNVIDIARIMFetched: without RIM files, Verify fetches the RIMs under the ids the
// signed report yields and verifies them as files; a RIM missing, altered, or answered
// for another id fails its line, naming the id and URL.
func TestNVIDIARIMFetched(t *testing.T) {
	s := newSim(t)
	nonce := [32]byte{7}
	ev := simEvidence(t, s, nonce)
	driver, _ := s.RIMs()
	for _, tc := range []struct {
		name   string
		change func(*rimService, *Evidence)
		failed string
		want   error
		detail string
	}{
		{"served", func(*rimService, *Evidence) {}, "", nil, ""},
		{"missing", func(s *rimService, _ *Evidence) { delete(s.bodies, simDriverRIMID) }, CheckDriverRIM, ErrRIM,
			"RIM " + simDriverRIMID + " not available at " + RIMServiceURL + simDriverRIMID},
		{"altered", func(svc *rimService, _ *Evidence) {
			svc.bodies[simDriverRIMID] = rimServiceBody(t, simDriverRIMID,
				bytes.Replace(driver, []byte(`index="20" active="True"`), []byte(`index="20" active="False"`), 1))
		}, CheckDriverRIM, ErrRIMSignature, RIMServiceURL + simDriverRIMID},
		{"answered for another id", func(svc *rimService, _ *Evidence) {
			svc.bodies[simDriverRIMID] = rimServiceBody(t, "NV_GPU_DRIVER_GH100_1.0", driver)
		}, CheckDriverRIM, ErrRIM, "names id"},
		{"not JSON", func(svc *rimService, _ *Evidence) { svc.bodies[simVBIOSRIMID] = []byte("<SoftwareIdentity/>") }, CheckVBIOSRIM, ErrRIM, "not the RIM service's JSON"},
		{"the report is not the GPU's", func(_ *rimService, e *Evidence) { e.Report[len(e.Report)-1] ^= 1 }, CheckSignature, ErrSignature, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := simRIMService(t, s)
			e := Evidence{Report: bytes.Clone(ev.Report), CertChain: ev.CertChain}
			tc.change(svc, &e)
			opts := simOptions(t, s)
			opts.DriverRIM, opts.VBIOSRIM, opts.RIMSource = nil, nil, svc
			_, checks, err := Verify(e, nonce, opts)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("%v\n%v", err, checks)
				}
				if d := detail(checks, CheckDriverRIM); !strings.Contains(d, "fetched as "+simDriverRIMID) {
					t.Errorf("driver RIM line %q does not say what was fetched", d)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), tc.failed+":") {
				t.Fatalf("error %v, want %v from %s", err, tc.want, tc.failed)
			}
			if d := detail(checks, tc.failed); !strings.Contains(d, tc.detail) {
				t.Errorf("%s: %q does not say %q", tc.failed, d, tc.detail)
			}
			if tc.failed == CheckSignature && len(svc.asked) != 0 {
				t.Errorf("an unsigned report made the verifier fetch %v", svc.asked)
			}
		})
	}
	// Without RIMs nor a source, the lines name what would have been fetched.
	opts := simOptions(t, s)
	opts.DriverRIM, opts.VBIOSRIM = nil, nil
	_, checks, _ := Verify(ev, nonce, opts)
	if d := detail(checks, CheckVBIOSRIM); !strings.Contains(d, RIMServiceURL+simVBIOSRIMID) {
		t.Errorf("VBIOS RIM line %q does not name the URL", d)
	}
}

// FuzzFetchRIM feeds fetchRIM whatever the RIM service (or a collateral file) could
// answer: it returns a RIM's bytes only from the service's JSON for the id asked, and
// otherwise an ErrRIM naming the id.
func FuzzFetchRIM(f *testing.F) {
	f.Add([]byte(`{"id":"NV_GPU_DRIVER_GH100_1.0","rim":"PFNvZnR3YXJlSWRlbnRpdHkvPg==","sha256":"x"}`))
	f.Add([]byte(`{"id":"NV_GPU_DRIVER_GH100_1.0","rim":""}`))
	f.Add([]byte(`null`))
	const id = "NV_GPU_DRIVER_GH100_1.0"
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := fetchRIM(&rimService{bodies: map[string][]byte{id: body}}, id)
		switch {
		case err != nil && (!errors.Is(err, ErrRIM) || !strings.Contains(err.Error(), id)):
			t.Fatalf("refused without ErrRIM naming the id: %v", err)
		case err == nil && len(b) == 0:
			t.Fatal("accepted an answer without a RIM")
		}
	})
}
