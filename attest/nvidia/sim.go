package nvidia

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/beevik/etree"

	"github.com/cocoonhost/cocoon/attest/internal/simroot"
)

// The simulated GPU's files in the directory given to NewSim, and what it reports.
const (
	// SimDeviceRootFile and SimRIMRootFile are the simulator's device root and RIM root
	// certificates (PEM): a verifier accepts sim evidence only when given both.
	SimDeviceRootFile = "gpu-sim-device-root.pem"
	SimRIMRootFile    = "gpu-sim-rim-root.pem"
	// The roots' private keys (PKCS #8 PEM, mode 0600).
	simDeviceRootKeyFile = "gpu-sim-device-root-key.pem"
	simRIMRootKeyFile    = "gpu-sim-rim-root-key.pem"
	// SimOrganization is the subject organisation of every simulator certificate.
	SimOrganization = "Cocoon GPU simulator (not NVIDIA)"
	// SimDriverVersion and SimVBIOSVersion are the versions the simulated GPU reports
	// and its RIMs describe.
	SimDriverVersion = "999.0.0"
	SimVBIOSVersion  = "99.00.00.00.01"
	// simDomain prefixes the labels of the simulator's fixed values.
	simDomain = "cocoon-host gpu simulator v1/"
	// simMeasurements is the number of measurement blocks, as a Hopper GPU reports;
	// the VBIOS RIM marks simVBIOSActive of them active from index 0, the driver RIM
	// the following simDriverActive.
	simMeasurements = 64
	simVBIOSActive  = 13
	simDriverActive = 28
)

// SimMeasurement returns the simulated GPU's measurement at RIM index i: SHA-384 of
// "cocoon-host gpu simulator v1/measurement <i>".
func SimMeasurement(i int) []byte {
	h := sha512.Sum384([]byte(simDomain + "measurement " + strconv.Itoa(i)))
	return h[:]
}

// simFWID is the firmware ID the simulated GPU reports and its device certificate names.
var simFWID = sha512.Sum384([]byte(simDomain + "FWID"))

// Sim is a simulated GPU for machines without one: its own local device root and RIM
// root, persisted in dir, producing Evidence in exactly NVIDIA's formats (SPDM report
// signed with ECDSA P-384 by a device key chained to the local root; driver and VBIOS
// RIMs signed by a key under the local RIM root), so the whole verification path runs.
// Verifiers refuse it unless told to trust its roots. The device key and the RIM
// signing key are generated anew by each NewSim; the roots persist. A Sim is safe for
// concurrent use.
type Sim struct {
	deviceKey           *ecdsa.PrivateKey
	chain               []byte // PEM, leaf then root
	deviceRoot, rimRoot []byte // PEM
	driverRIM, vbiosRIM []byte
	measurementsByIndex [][]byte
	opaque              []byte
}

// NewSim returns a simulated GPU whose roots are loaded from dir, or generated and
// written there (the Sim*RootFile certificates and 0600 key files, creating dir) when
// absent. It fails when a root's certificate or key is missing while the other exists,
// or they do not match. Cost: four P-384 key generations and a few signatures, a few
// milliseconds.
func NewSim(dir string) (*Sim, error) {
	deviceRoot, deviceRootKey, err := loadOrCreateRoot(dir, SimDeviceRootFile, simDeviceRootKeyFile, "Cocoon simulated GPU device identity root")
	if err != nil {
		return nil, err
	}
	rimRoot, rimRootKey, err := loadOrCreateRoot(dir, SimRIMRootFile, simRIMRootKeyFile, "Cocoon simulated GPU RIM root")
	if err != nil {
		return nil, err
	}
	s := &Sim{deviceRoot: pemCert(deviceRoot), rimRoot: pemCert(rimRoot)}
	// The device certificate names the firmware ID in NVIDIA's extension.
	var ext fwidExtension
	ext.Version = 1
	s.deviceKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&s.deviceKey.PublicKey)
	if err != nil {
		return nil, err
	}
	ext.Key = asn1.RawValue{FullBytes: spki}
	ext.FWID.Algorithm = oidSHA384
	ext.FWID.Digest = simFWID[:]
	fwid, err := asn1.Marshal(ext)
	if err != nil {
		return nil, err
	}
	leaf, err := issue(deviceRoot, deviceRootKey, &s.deviceKey.PublicKey, "Cocoon simulated GPU device key",
		[]pkix.Extension{{Id: oidFWIDExtension, Value: fwid}})
	if err != nil {
		return nil, err
	}
	s.chain = append(pemCert(leaf), s.deviceRoot...)

	signerKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := issue(rimRoot, rimRootKey, &signerKey.PublicKey, "Cocoon simulated GPU RIM signer", nil)
	if err != nil {
		return nil, err
	}
	for i := range simMeasurements {
		s.measurementsByIndex = append(s.measurementsByIndex, SimMeasurement(i))
	}
	rimSigner := []*x509.Certificate{signer, rimRoot}
	if s.vbiosRIM, err = simRIM(SimVBIOSVersion, 0, simVBIOSActive, signerKey, rimSigner); err != nil {
		return nil, err
	}
	if s.driverRIM, err = simRIM(SimDriverVersion, simVBIOSActive, simVBIOSActive+simDriverActive, signerKey, rimSigner); err != nil {
		return nil, err
	}
	vbios, err := vbiosVersionField(SimVBIOSVersion)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		typ   uint16
		value []byte
	}{
		{opaqueDriverVersion, append([]byte(SimDriverVersion), 0)},
		{opaqueVBIOSVersion, vbios},
		{opaqueChipSKU, []byte("sim\x00")},
		{opaqueProject, []byte("sim\x00")},
		{opaqueProjectSKU, []byte("sim\x00")},
		{opaqueFWID, simFWID[:]},
		{opaqueFeatureFlag, []byte{0}}, // CCModeSPT, as a current GPU in CC mode signs it
	} {
		s.opaque = binary.LittleEndian.AppendUint16(s.opaque, f.typ)
		s.opaque = binary.LittleEndian.AppendUint16(s.opaque, uint16(len(f.value)))
		s.opaque = append(s.opaque, f.value...)
	}
	return s, nil
}

// Evidence returns the simulated GPU's signed report for nonce (the layout in
// report.go, a fresh responder nonce) and its chain. It fails only when the system's
// random source does.
func (s *Sim) Evidence(nonce [32]byte) (Evidence, error) {
	b := []byte{spdmVersion11, codeGetMeasurements, requestSignature, requestAllMeasurements}
	b = append(b, nonce[:]...)
	b = append(b, 0) // slot 0
	var record []byte
	for i, m := range s.measurementsByIndex {
		record = append(record, byte(i+1), dmtfSpecification)
		record = binary.LittleEndian.AppendUint16(record, uint16(3+len(m)))
		record = append(record, 0x01) // DMTF value type: mutable firmware, a digest, as NVIDIA's
		record = binary.LittleEndian.AppendUint16(record, uint16(len(m)))
		record = append(record, m...)
	}
	b = append(b, spdmVersion11, codeMeasurements, 0, 0, byte(len(s.measurementsByIndex)))
	b = append(b, byte(len(record)), byte(len(record)>>8), byte(len(record)>>16))
	b = append(b, record...)
	responderNonce := make([]byte, 32)
	if _, err := rand.Read(responderNonce); err != nil {
		return Evidence{}, err
	}
	b = append(b, responderNonce...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s.opaque)))
	b = append(b, s.opaque...)
	sig, err := rawSign(s.deviceKey, b)
	if err != nil {
		return Evidence{}, err
	}
	return Evidence{Report: append(b, sig...), CertChain: bytes.Clone(s.chain)}, nil
}

// RIMs returns the signed driver and VBIOS RIMs that match the simulated GPU's reports.
func (s *Sim) RIMs() (driver, vbios []byte) {
	return bytes.Clone(s.driverRIM), bytes.Clone(s.vbiosRIM)
}

// Roots returns the simulated device root and RIM root, PEM, for --trust-sim-gpu-root.
func (s *Sim) Roots() (device, rim []byte) {
	return bytes.Clone(s.deviceRoot), bytes.Clone(s.rimRoot)
}

// rawSign signs SHA-384(msg) with key, r || s as SPDM and XML-DSig carry it.
func rawSign(key *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	h := sha512.Sum384(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		return nil, err
	}
	sig := make([]byte, SignatureLen)
	r.FillBytes(sig[:SignatureLen/2])
	s.FillBytes(sig[SignatureLen/2:])
	return sig, nil
}

// simRIM writes a RIM in NVIDIA's layout for the simulated measurements, active from
// index first up to last (excluded), and signs it as NVIDIA does (see ParseRIM).
func simRIM(version string, first, last int, key *ecdsa.PrivateKey, chain []*x509.Certificate) ([]byte, error) {
	doc := etree.NewDocument()
	root := doc.CreateElement("SoftwareIdentity")
	root.CreateAttr("xmlns", swidNamespace)
	root.CreateAttr("xmlns:ns0", swidNamespace)
	root.CreateAttr("xmlns:ns2", sha384Namespace)
	root.CreateAttr("corpus", "false")
	root.CreateAttr("name", "SIM")
	root.CreateAttr("patch", "false")
	root.CreateAttr("supplemental", "false")
	root.CreateAttr("tagId", "cocoon-gpu-sim-"+version)
	root.CreateAttr("version", "1.0")
	root.CreateAttr("tagVersion", "0")
	root.CreateText("\n    ")
	entity := root.CreateElement("ns0:Entity")
	entity.CreateAttr("name", SimOrganization)
	entity.CreateAttr("role", "softwareCreator tagCreator")
	root.CreateText("\n    ")
	meta := root.CreateElement("ns0:Meta")
	meta.CreateAttr("colloquialVersion", version)
	meta.CreateAttr("product", "SIM")
	root.CreateText("\n    ")
	payload := root.CreateElement("ns0:Payload")
	for i := range simMeasurements {
		payload.CreateText("\n        ")
		res := payload.CreateElement("ns0:Resource")
		res.CreateAttr("type", measurementType)
		res.CreateAttr("index", strconv.Itoa(i))
		active := i >= first && i < last
		res.CreateAttr("active", map[bool]string{true: "True", false: "False"}[active])
		alternatives := [][]byte{make([]byte, measurementBytes)}
		if active {
			// A second alternative, as NVIDIA lists for measurements with several
			// good values: the GPU's is the last.
			alternatives = [][]byte{SimMeasurement(i + simMeasurements), SimMeasurement(i)}
		}
		res.CreateAttr("alternatives", strconv.Itoa(len(alternatives)))
		for j, alt := range alternatives {
			res.CreateAttr("ns2:Hash"+strconv.Itoa(j), hex.EncodeToString(alt))
		}
		res.CreateAttr("name", "Measurement_"+strconv.Itoa(i))
		res.CreateAttr("size", strconv.Itoa(measurementBytes))
	}
	payload.CreateText("\n    ")
	root.CreateText("\n")
	digest := canonicalSHA384(root, nil)

	sig := root.CreateElement("ds:Signature")
	sig.CreateAttr("xmlns:ds", dsigNamespace)
	signedInfo := sig.CreateElement("ds:SignedInfo")
	signedInfo.CreateElement("ds:CanonicalizationMethod").CreateAttr("Algorithm", algC14N11)
	signedInfo.CreateElement("ds:SignatureMethod").CreateAttr("Algorithm", algECDSASHA384)
	ref := signedInfo.CreateElement("ds:Reference")
	ref.CreateAttr("URI", "")
	transforms := ref.CreateElement("ds:Transforms")
	transforms.CreateElement("ds:Transform").CreateAttr("Algorithm", algEnveloped)
	transforms.CreateElement("ds:Transform").CreateAttr("Algorithm", algC14N11)
	ref.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", algDigestSHA384)
	ref.CreateElement("ds:DigestValue").SetText(base64.StdEncoding.EncodeToString(digest[:]))
	value, err := rawSign(key, canonicalize(signedInfo, nil))
	if err != nil {
		return nil, err
	}
	sig.CreateElement("ds:SignatureValue").SetText(base64.StdEncoding.EncodeToString(value))
	data := sig.CreateElement("ds:KeyInfo").CreateElement("ds:X509Data")
	for _, c := range chain {
		data.CreateElement("ds:X509Certificate").SetText(base64.StdEncoding.EncodeToString(c.Raw))
	}
	return doc.WriteToBytes()
}

// loadOrCreateRoot loads a root certificate and key from dir, or creates them.
func loadOrCreateRoot(dir, certName, keyName, cn string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return createRoot(certPath, keyPath, cn)
	case certErr != nil:
		return nil, nil, fmt.Errorf("simulated GPU root: %w", certErr)
	case keyErr != nil:
		return nil, nil, fmt.Errorf("simulated GPU root key: %w", keyErr)
	}
	certs, err := parseChain(certPEM)
	if err != nil || len(certs) != 1 {
		return nil, nil, fmt.Errorf("simulated GPU root %s: not one PEM certificate", certPath)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("simulated GPU root key %s: not PEM", keyPath)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	key, ok := parsed.(*ecdsa.PrivateKey)
	if err != nil || !ok || !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, nil, fmt.Errorf("simulated GPU root key %s: not the ECDSA key of %s", keyPath, certPath)
	}
	return certs[0], key, nil
}

// createRoot generates a self-signed P-384 root, valid for ten years, and writes it.
func createRoot(certPath, keyPath, cn string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{SimOrganization}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := simroot.Write(keyPath, certPath, key, cert); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// issue signs a one-year leaf certificate for pub under parent.
func issue(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, pub *ecdsa.PublicKey, cn string, exts []pkix.Extension) (*x509.Certificate, error) {
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber:    serial(),
		Subject:         pkix.Name{CommonName: cn, Organization: []string{SimOrganization}},
		NotBefore:       now.Add(-time.Hour),
		NotAfter:        now.AddDate(1, 0, 0),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: exts,
	}, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("nvidia: system random source: " + err.Error())
	}
	return n
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
