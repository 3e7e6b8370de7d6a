package nvidia

import (
	"encoding/json"
	"fmt"
	"strings"
)

// RIMServiceURL is NVIDIA's RIM service: the RIM named id is served at RIMServiceURL + id
// as JSON {"id": id, "rim": base64 of the SWID tag, "sha256": ...}.
const RIMServiceURL = "https://rim.attestation.nvidia.com/v1/rim/"

// RIMSource is where Verify fetches a RIM it was not given: the shape of
// attest.CollateralSource (and go-tdx-guest's HTTPS getter), so the same recording or
// replaying source serves Intel's collateral and NVIDIA's RIMs. What it serves is never
// trusted as such: a fetched RIM counts only once ParseRIM verified its signature.
type RIMSource interface {
	Get(url string) (header map[string][]string, body []byte, err error)
}

// hopperArchitecture names, in a driver RIM's id, the only architecture whose reports
// this package parses (SPDM 1.1 GET_MEASUREMENTS of a Hopper GPU): NVIDIA's verifier
// takes it from NVML, which the report does not carry.
const hopperArchitecture = "GH100"

// RIMIDs returns the ids under which NVIDIA's RIM service serves the RIMs of rep, as
// NVIDIA's verifier names them: NV_GPU_DRIVER_GH100_<driver version> and
// NV_GPU_VBIOS_<project>_<project SKU>_<chip SKU>_<VBIOS version without dots, in
// capitals>. It fails, wrapping ErrRIM, when a part is empty or holds anything but
// letters, digits, '.', '-' and '_': the parts come from the report, and nothing else may
// reach a URL path.
func RIMIDs(rep *Report) (driver, vbios string, err error) {
	driver = "NV_GPU_DRIVER_" + hopperArchitecture + "_" + rep.DriverVersion
	vbios = "NV_GPU_VBIOS_" + rep.Project + "_" + rep.ProjectSKU + "_" + rep.ChipSKU + "_" +
		strings.ToUpper(strings.ReplaceAll(rep.VBIOSVersion, ".", ""))
	for _, part := range []string{rep.DriverVersion, rep.Project, rep.ProjectSKU, rep.ChipSKU, rep.VBIOSVersion} {
		if part == "" || strings.Trim(part, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != "" {
			return "", "", fmt.Errorf("%w: the report's driver %q, VBIOS %q, project %q, project SKU %q, chip SKU %q do not name a RIM (letters, digits and .-_ only, none empty)",
				ErrRIM, rep.DriverVersion, rep.VBIOSVersion, rep.Project, rep.ProjectSKU, rep.ChipSKU)
		}
	}
	return driver, vbios, nil
}

// rimServiceResponse is the body NVIDIA's RIM service answers with; other members
// (its "sha256", dates) are not read: the RIM's signature is what counts.
type rimServiceResponse struct {
	ID  string `json:"id"`
	RIM []byte `json:"rim"`
}

// fetchRIM gets the RIM named id from src at RIMServiceURL + id and returns the SWID tag, not
// yet verified. It fails, wrapping ErrRIM and naming the id and URL, when src fails, the
// body is larger than a RIM's base64 could be, is not the service's JSON, names another
// id or holds no RIM. Cost: one src.Get (a network round trip online, a map lookup
// offline) and a base64 decode.
func fetchRIM(src RIMSource, id string) ([]byte, error) {
	url := RIMServiceURL + id
	_, body, err := src.Get(url)
	if err != nil {
		return nil, fmt.Errorf("%w: RIM %s not available at %s: %v", ErrRIM, id, url, err)
	}
	if len(body) > 2*MaxRIMSize {
		return nil, fmt.Errorf("%w: RIM %s at %s: %d bytes, at most %d", ErrRIM, id, url, len(body), 2*MaxRIMSize)
	}
	var r rimServiceResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: RIM %s at %s: not the RIM service's JSON: %v", ErrRIM, id, url, err)
	}
	if r.ID != id || len(r.RIM) == 0 {
		return nil, fmt.Errorf("%w: RIM %s at %s: the answer names id %q and holds %d bytes of RIM", ErrRIM, id, url, r.ID, len(r.RIM))
	}
	return r.RIM, nil
}
