package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/cocoonhost/cocoon/attest/internal/simroot"
)

const (
	// SimRootFile is the name, in the directory given to NewSim, of the simulator's root
	// certificate (PEM). A verifier accepts sim evidence only when given this file.
	SimRootFile = "sim-root.pem"
	// simRootKeyFile holds the root's private key (PKCS #8 PEM, mode 0600).
	simRootKeyFile = "sim-root-key.pem"
	// SimOrganization is the subject organisation of every simulator certificate. The
	// common names must be Intel's, because go-tdx-guest's verifier checks them; the
	// organisation tells a reader, and Verify, that the chain is not Intel's.
	SimOrganization = "Cocoon TDX simulator (not Intel)"
	// simDomain prefixes the labels of the simulator's fixed measurements.
	simDomain = "cocoon-host tdx simulator v1/"
)

// The simulator's fixed measurements: SHA-384 of the ASCII string
// "cocoon-host tdx simulator v1/" followed by the register's name ("MRTD", "RTMR0",
// "RTMR1", "RTMR2"). They stand for the firmware, kernel and command line a real TD
// would measure, so that a policy can pin them like real values.
var (
	SimMRTD   = simMeasurement("MRTD")
	SimRTMR0  = simMeasurement("RTMR0")
	SimRTMR1  = simMeasurement("RTMR1")
	SimRTMR2  = simMeasurement("RTMR2")
	simMRSEAM = simMeasurement("MRSEAM")
)

func simMeasurement(name string) [48]byte {
	return sha512.Sum384([]byte(simDomain + name))
}

// Sim is a Provider for machines without TDX. Its quotes have the TDX quote v4 byte
// format and carry a certificate chain shaped like Intel's (root, "PCK Platform CA",
// PCK leaf with SGX extensions), so the real verification code runs on them; the chain
// ends at a locally generated root that no verifier trusts unless told to. RTMR3 is a
// SimRegister; MRTD and RTMR0-2 are SimMRTD and SimRTMR0-2; MRSEAM is the simulator
// measurement of "MRSEAM"; the other fields are zero.
//
// The root key persists in the directory given to NewSim; the intermediate, PCK and
// attestation keys are generated anew by each NewSim. A Sim is safe for concurrent use.
type Sim struct {
	reg      SimRegister
	root     *x509.Certificate
	ak       *ecdsa.PrivateKey
	akPublic []byte // X || Y, 64 bytes, as quotes carry it
	// certData is the part of every quote that depends only on the keys: the QE
	// report over the attestation key, signed by the PCK key, and the chain.
	certData *pb.CertificationData
	// tdAttributes is what quotes carry as TD attributes: zero, unless a test of this
	// package sets it (a debug TD's quote); nothing outside the package can.
	tdAttributes [8]byte
}

// NewSim returns a simulator whose root certificate and key are loaded from dir, or
// generated and written there (SimRootFile and a 0600 key file, creating dir) when
// neither exists. It fails when only one of the two exists or they do not match. Cost:
// a few ECDSA key generations and signatures.
func NewSim(dir string) (*Sim, error) {
	rootCert, rootKey, err := loadOrCreateSimRoot(dir)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	inter, err := createCert(&x509.Certificate{
		Subject:               simName("Intel SGX PCK Platform CA"),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, rootCert, &interKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	pckKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sgx, err := simSGXExtension()
	if err != nil {
		return nil, err
	}
	pckPub, err := x509.MarshalPKIXPublicKey(&pckKey.PublicKey)
	if err != nil {
		return nil, err
	}
	ski := sha256.Sum256(pckPub)
	// Exactly six extensions, as go-tdx-guest requires of a PCK certificate: authority
	// and subject key ids, key usage, basic constraints, CRL distribution points, SGX.
	pck, err := createCert(&x509.Certificate{
		Subject:               simName("Intel SGX PCK Certificate"),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		BasicConstraintsValid: true,
		SubjectKeyId:          ski[:20],
		CRLDistributionPoints: []string{"https://invalid.example/cocoon-sim/pckcrl"},
		ExtraExtensions:       []pkix.Extension{{Id: pcs.OidSgxExtension, Value: sgx}},
	}, inter, &pckKey.PublicKey, interKey)
	if err != nil {
		return nil, err
	}
	ak, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &Sim{root: rootCert, ak: ak, akPublic: rawPublicKey(&ak.PublicKey)}
	chain := bytes.Join([][]byte{pemCert(pck), pemCert(inter), pemCert(rootCert)}, nil)
	if s.certData, err = simCertificationData(s.akPublic, chain, pckKey); err != nil {
		return nil, err
	}
	return s, nil
}

// Mode implements Provider.
func (s *Sim) Mode() string { return ModeSim }

// RTMR3 implements Provider.
func (s *Sim) RTMR3() Register { return &s.reg }

// Root returns the simulator's root certificate, the one written to SimRootFile.
func (s *Sim) Root() *x509.Certificate { return s.root }

// Quote implements Provider: it returns a TDX quote v4 over reportData, with the
// register's current value as RTMR3, signed by the simulator's attestation key. Cost:
// one ECDSA P-256 signature.
func (s *Sim) Quote(ctx context.Context, reportData [64]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rtmr3, err := s.reg.Read()
	if err != nil {
		return nil, err
	}
	header := &pb.Header{
		Version:            abi.QuoteVersionV4,
		AttestationKeyType: abi.AttestationKeyType,
		TeeType:            abi.TeeTDX,
		PceSvn:             make([]byte, 2),
		QeSvn:              make([]byte, 2),
		QeVendorId:         intelQEVendorID[:],
		UserData:           make([]byte, 20),
	}
	body := &pb.TDQuoteBody{
		TeeTcbSvn:      make([]byte, abi.TeeTcbSvnSize),
		MrSeam:         simMRSEAM[:],
		MrSignerSeam:   make([]byte, 48),
		SeamAttributes: make([]byte, 8),
		TdAttributes:   s.tdAttributes[:],
		Xfam:           make([]byte, abi.XfamSize),
		MrTd:           SimMRTD[:],
		MrConfigId:     make([]byte, abi.MrConfigIDSize),
		MrOwner:        make([]byte, abi.MrOwnerSize),
		MrOwnerConfig:  make([]byte, abi.MrOwnerConfigSize),
		Rtmrs:          [][]byte{SimRTMR0[:], SimRTMR1[:], SimRTMR2[:], rtmr3[:]},
		ReportData:     reportData[:],
	}
	headerBytes, err := abi.HeaderToAbiBytes(header)
	if err != nil {
		return nil, err
	}
	bodyBytes, err := abi.TdQuoteBodyToAbiBytes(body)
	if err != nil {
		return nil, err
	}
	sig, err := rawSign(s.ak, append(headerBytes, bodyBytes...))
	if err != nil {
		return nil, err
	}
	quote := &pb.QuoteV4{
		Header:      header,
		TdQuoteBody: body,
		// Signature, attestation key, then the certification data with its own
		// 2-byte type and 4-byte size.
		SignedDataSize: uint32(len(sig) + len(s.akPublic) + 6 + int(s.certData.GetSize())),
		SignedData: &pb.Ecdsa256BitQuoteV4AuthData{
			Signature:           sig,
			EcdsaAttestationKey: s.akPublic,
			CertificationData:   s.certData,
		},
	}
	return abi.QuoteToAbiBytes(quote)
}

// intelQEVendorID is the QE vendor id of Intel's quoting enclave, which real quotes
// carry in their header.
var intelQEVendorID = [16]byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}

// simCertificationData builds the quote's certification data (type 6): a QE report
// whose REPORTDATA is SHA-256(attestation key || QE auth data) padded with zeros,
// signed by the PCK key, then the QE auth data and the PCK chain (type 5, PEM leaf ||
// intermediate || root), as real quotes carry them.
func simCertificationData(akPublic, chain []byte, pckKey *ecdsa.PrivateKey) (*pb.CertificationData, error) {
	authData := make([]byte, 32) // Intel's QE puts the bytes 0..31 there.
	for i := range authData {
		authData[i] = byte(i)
	}
	binding := sha256.Sum256(append(bytes.Clone(akPublic), authData...))
	qeReportData := make([]byte, 64)
	copy(qeReportData, binding[:])
	mrenclave := sha256.Sum256([]byte(simDomain + "QE"))
	qeReport := &pb.EnclaveReport{
		CpuSvn:     make([]byte, 16),
		Reserved1:  make([]byte, 28),
		Attributes: make([]byte, 16),
		MrEnclave:  mrenclave[:],
		Reserved2:  make([]byte, 32),
		MrSigner:   make([]byte, 32),
		Reserved3:  make([]byte, 96),
		IsvProdId:  2, // the TD quoting enclave's product id
		Reserved4:  make([]byte, 60),
		ReportData: qeReportData,
	}
	qeReportBytes, err := abi.EnclaveReportToAbiBytes(qeReport)
	if err != nil {
		return nil, err
	}
	qeSig, err := rawSign(pckKey, qeReportBytes)
	if err != nil {
		return nil, err
	}
	const pckChainType = 5
	qe := &pb.QEReportCertificationData{
		QeReport:          qeReport,
		QeReportSignature: qeSig,
		QeAuthData:        &pb.QeAuthData{ParsedDataSize: uint32(len(authData)), Data: authData},
		PckCertificateChainData: &pb.PCKCertificateChainData{
			CertificateDataType: pckChainType,
			Size:                uint32(len(chain)),
			PckCertChain:        chain,
		},
	}
	const qeReportCertificationType = 6
	// Report, its signature, the auth data with its 2-byte size, the chain with its
	// 2-byte type and 4-byte size.
	size := len(qeReportBytes) + len(qeSig) + 2 + len(authData) + 6 + len(chain)
	return &pb.CertificationData{
		CertificateDataType:       qeReportCertificationType,
		Size:                      uint32(size),
		QeReportCertificationData: qe,
	}, nil
}

// simSGXExtension returns the DER value of the SGX extension of the sim PCK
// certificate, in the shape of Intel's: PPID, TCB (16 component SVNs, PCESVN,
// CPUSVN), PCE-ID, FMSPC and SGX type, all zero.
func simSGXExtension() ([]byte, error) {
	type octets struct {
		ID    asn1.ObjectIdentifier
		Value []byte
	}
	type integer struct {
		ID    asn1.ObjectIdentifier
		Value int
	}
	type enumerated struct {
		ID    asn1.ObjectIdentifier
		Value asn1.Enumerated
	}
	type sequence struct {
		ID    asn1.ObjectIdentifier
		Value []asn1.RawValue
	}
	var tcb []asn1.RawValue
	for i := 1; i <= 16; i++ {
		id := append(append(asn1.ObjectIdentifier{}, pcs.OidTCB...), i)
		tcb = append(tcb, mustRaw(integer{id, 0}))
	}
	tcb = append(tcb, mustRaw(integer{pcs.OidPCESvn, 0}), mustRaw(octets{pcs.OidCPUSvn, make([]byte, 16)}))
	sgxType := append(append(asn1.ObjectIdentifier{}, pcs.OidSgxExtension...), 5)
	return asn1.Marshal([]asn1.RawValue{
		mustRaw(octets{pcs.OidPPID, make([]byte, 16)}),
		mustRaw(sequence{pcs.OidTCB, tcb}),
		mustRaw(octets{pcs.OidPCEID, make([]byte, 2)}),
		mustRaw(octets{pcs.OidFMSPC, make([]byte, 6)}),
		mustRaw(enumerated{sgxType, 0}),
	})
}

// mustRaw marshals v, a fixed structure that always encodes.
func mustRaw(v any) asn1.RawValue {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return asn1.RawValue{FullBytes: b}
}

func simName(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{SimOrganization}}
}

// createCert signs template with parentKey under parent (template itself when parent
// is nil) and parses the result.
func createCert(template, parent *x509.Certificate, pub *ecdsa.PublicKey, parentKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	template.SerialNumber = serial
	if parent == nil {
		parent = template
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// rawPublicKey returns X || Y, 32 bytes each, the form quotes carry.
func rawPublicKey(k *ecdsa.PublicKey) []byte {
	b, _ := k.Bytes() // P-256 public keys always encode.
	return b[1:]      // drop the 0x04 uncompressed-point prefix
}

// rawSign signs SHA-256(msg) and returns r || s, 32 bytes each, the form quotes carry.
func rawSign(k *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	der, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}

// loadOrCreateSimRoot loads the root certificate and key from dir, or creates both when
// neither exists.
func loadOrCreateSimRoot(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, SimRootFile), filepath.Join(dir, simRootKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return createSimRoot(certPath, keyPath, simName("Intel SGX Root CA"))
	case certErr != nil:
		return nil, nil, fmt.Errorf("sim root: %w", certErr)
	case keyErr != nil:
		return nil, nil, fmt.Errorf("sim root key: %w", keyErr)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("sim root %s: %w", certPath, err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("sim root key %s: no PRIVATE KEY PEM block", keyPath)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("sim root key %s: %w", keyPath, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("sim root key %s does not belong to %s", keyPath, certPath)
	}
	return cert, key, nil
}

// createSimRoot creates a root certificate named name and its key, and writes both.
// Tests of this package name one like Intel's, as a forger would.
func createSimRoot(certPath, keyPath string, name pkix.Name) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	cert, err := createCert(&x509.Certificate{
		Subject:               name,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}, nil, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := simroot.Write(keyPath, certPath, key, cert); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// ParseCertificatePEM parses the first CERTIFICATE block of b, such as a sim root file
// a tester passes to a verifier.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}
