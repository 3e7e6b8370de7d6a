package attest

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
)

// intelRootPEM is Intel's SGX Root CA, the root of every genuine PCK chain (SHA-256
// fingerprint 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3), the
// same certificate go-tdx-guest embeds. Passing it explicitly keeps the trust decision
// here, not in a default of the library.
//
//go:embed intel-sgx-root.pem
var intelRootPEM []byte

// Errors of quote verification, one per reason a quote is refused. Verify's errors wrap
// exactly one of them.
var (
	ErrQuoteFormat    = errors.New("quote: not a TDX quote")
	ErrQuoteTruncated = errors.New("quote: truncated")
	ErrQuoteMalformed = errors.New("quote: malformed")
	ErrUntrustedRoot  = errors.New("quote: certificate chain does not lead to a trusted root")
	ErrCertChain      = errors.New("quote: invalid certificate chain")
	ErrQuoteSignature = errors.New("quote: signature over header and TD report does not verify with the attestation key")
	ErrQEReport       = errors.New("quote: quoting enclave report does not vouch for the attestation key")
	ErrTCBUnknown     = errors.New("quote: Intel's TCB info lists no TCB level this platform reaches")
)

// IntelRoot returns Intel's SGX Root CA certificate, a copy of its own for the caller.
func IntelRoot() *x509.Certificate {
	c, err := ParseCertificatePEM(intelRootPEM)
	if err != nil {
		panic("attest: embedded Intel root: " + err.Error())
	}
	return c
}

// intelRoot is IntelRoot parsed once, for this package's own use: it is never handed
// out, so nothing outside can change what the verifier takes for Intel's root.
var intelRoot = sync.OnceValue(IntelRoot)

// isIntelRoot reports whether c is Intel's SGX Root CA: its public key, the one that
// vouches for a chain, is the embedded root's. A certificate that merely carries
// Intel's names ("Intel SGX Root CA", "Intel Corporation") is not, whatever a
// caller trusts it for: only Intel's key makes evidence genuine TDX.
func isIntelRoot(c *x509.Certificate) bool {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(intelRoot().PublicKey)
}

// VerifyOptions are the inputs of VerifyQuote besides the quote.
type VerifyOptions struct {
	// TrustedRoots are the roots a quote's PCK chain must lead to. Nil means Intel's
	// SGX Root CA alone. Sim evidence verifies only when the simulator's root is in
	// the pool, which a caller must do explicitly.
	TrustedRoots *x509.CertPool
	// Now is the time certificates must be valid at; zero means time.Now().
	Now time.Time
	// Collateral, when set, is where Intel's collateral comes from (a cached file, or
	// Intel PCS online) to evaluate the TCB status of a quote chained to Intel's root;
	// see Quote.TCBStatus. Nil leaves it unevaluated.
	Collateral CollateralSource
}

// Quote holds the fields of a TDX quote a verifier checks against its policy.
type Quote struct {
	MRTD       [48]byte
	RTMRs      [4][48]byte
	ReportData [64]byte
	// TDAttributes are the TD's attributes as the quote carries them (8 bytes, a
	// little-endian bit field): bit 0 is DEBUG, set in a debug TD whose memory the
	// host can read and write.
	TDAttributes [8]byte
	// XFAM is the set of extended CPU features the TD may use (8 bytes, little-endian).
	XFAM [8]byte
	// MRSEAM measures the TDX module; MROwner, MRConfigID and MROwnerConfig are set by
	// whoever created the TD (zero unless the TD image uses them).
	MRSEAM, MROwner, MRConfigID, MROwnerConfig [48]byte
	// Simulated is set by VerifyQuote when the chain's root is not Intel's SGX Root CA
	// (a simulator's root the caller trusted, or any other root it chose to trust).
	Simulated bool
	// Root is the trusted root the chain ends at, set by VerifyQuote.
	Root *x509.Certificate
	// TCBStatus is the TDX TCB status Intel's TCB info gives the quote's platform
	// (TCBUpToDate, TCBOutOfDate, ...), set by VerifyQuote when it had collateral and
	// the collateral verified. Empty otherwise: see TCBErr.
	TCBStatus string
	// TCBErr is why a TCB status could not be established from the collateral given
	// to VerifyQuote: it wraps ErrCollateral when the collateral is missing, expired or
	// not signed by Intel, and ErrTCBUnknown when it verified but lists no TCB level
	// the platform reaches. Nil when TCBStatus is set or no collateral was given.
	TCBErr error
}

// tdReport is what the v4 and v5 TD report bodies have in common.
type tdReport interface {
	GetMrTd() []byte
	GetRtmrs() [][]byte
	GetReportData() []byte
	GetTdAttributes() []byte
	GetXfam() []byte
	GetMrSeam() []byte
	GetMrOwner() []byte
	GetMrConfigId() []byte
	GetMrOwnerConfig() []byte
}

// TDAttributeDebug is the DEBUG bit of Quote.TDAttributes (bit 0 of the little-endian
// field): the TD was created for debugging, and its host can read and write its memory
// and registers, so nothing it attests is protected.
const TDAttributeDebug = 1

// Debug reports whether the quote is of a debug TD (TDAttributeDebug set).
func (q *Quote) Debug() bool {
	return binary.LittleEndian.Uint64(q.TDAttributes[:])&TDAttributeDebug != 0
}

// ParseQuote decodes a TDX quote (v4 or v5 byte format) without checking any signature:
// its fields mean nothing until VerifyQuote succeeds. Errors wrap ErrQuoteFormat,
// ErrQuoteTruncated or ErrQuoteMalformed.
func ParseQuote(raw []byte) (*Quote, error) {
	_, q, err := parseQuote(raw)
	return q, err
}

func parseQuote(raw []byte) (any, *Quote, error) {
	// go-tdx-guest's parser reports every problem alike; these checks come first so
	// that a verifier can tell garbage and truncation apart from a malformed quote.
	if len(raw) < 8 {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrQuoteTruncated, len(raw))
	}
	version := binary.LittleEndian.Uint16(raw[0:2])
	if version != abi.QuoteVersionV4 && version != abi.QuoteVersionV5 {
		return nil, nil, fmt.Errorf("%w: quote version %d, want 4 or 5", ErrQuoteFormat, version)
	}
	if tee := binary.LittleEndian.Uint32(raw[4:8]); tee != abi.TeeTDX {
		return nil, nil, fmt.Errorf("%w: TEE type %#x, want %#x", ErrQuoteFormat, tee, abi.TeeTDX)
	}
	minSize := abi.QuoteMinSize
	if version == abi.QuoteVersionV5 {
		minSize = abi.QuoteMinSizeV5
	}
	if len(raw) < minSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, a TDX quote v%d has at least %d", ErrQuoteTruncated, len(raw), version, minSize)
	}
	if version == abi.QuoteVersionV4 {
		// The signed data's size sits right after the 48-byte header and the 584-byte
		// TD report.
		const sizeAt = 48 + 584
		if n := binary.LittleEndian.Uint32(raw[sizeAt:]); uint64(n) > uint64(len(raw)-sizeAt-4) {
			return nil, nil, fmt.Errorf("%w: signed data of %d bytes, %d present", ErrQuoteTruncated, n, len(raw)-sizeAt-4)
		}
	}
	parsed, err := quoteToProto(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrQuoteMalformed, err)
	}
	var body tdReport
	switch p := parsed.(type) {
	case *pb.QuoteV4:
		body = p.GetTdQuoteBody()
	case *pb.QuoteV5:
		body = p.GetTdQuoteBodyDescriptor().GetTdQuoteBodyV5()
	default:
		return nil, nil, fmt.Errorf("%w: quote type %T", ErrQuoteFormat, parsed)
	}
	// abi.QuoteToProto checked every field's size.
	q := &Quote{MRTD: [48]byte(body.GetMrTd()), ReportData: [64]byte(body.GetReportData()),
		TDAttributes: [8]byte(body.GetTdAttributes()), XFAM: [8]byte(body.GetXfam()),
		MRSEAM: [48]byte(body.GetMrSeam()), MROwner: [48]byte(body.GetMrOwner()),
		MRConfigID: [48]byte(body.GetMrConfigId()), MROwnerConfig: [48]byte(body.GetMrOwnerConfig())}
	for i, r := range body.GetRtmrs() {
		q.RTMRs[i] = [48]byte(r)
	}
	return parsed, q, nil
}

// VerifyQuote checks a quote's signature chain offline: the PCK chain it carries leads
// to one of opts.TrustedRoots and is valid at opts.Now, the PCK key signed the quoting
// enclave's report, that report binds the attestation key, and the attestation key
// signed the header and TD report. It does not evaluate the TCB status (that needs
// Intel's collateral) nor any measurement: the caller checks the returned fields against
// its policy. Errors wrap one of the Err values of this file. Cost: the chain's X.509
// verification and the ECDSA verifications, about 0.6 ms on one server core.
//
// With opts.Collateral, a quote chained to Intel's root also gets its TCB status
// evaluated (Quote.TCBStatus, or Quote.TCBErr): the TCB info and QE identity must be
// signed by Intel's TCB signing key, unexpired at opts.Now, and match the quote's
// platform; go-tdx-guest then checks the QE report against the QE identity when the
// TDX TCB is up to date. A TCB status is a policy matter, so it is not an error of
// VerifyQuote.
func VerifyQuote(raw []byte, opts VerifyOptions) (*Quote, error) {
	parsed, q, err := parseQuote(raw)
	if err != nil {
		return nil, err
	}
	roots := opts.TrustedRoots
	if roots == nil {
		roots = x509.NewCertPool()
		roots.AddCert(intelRoot())
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	chain, err := verify.ExtractChainFromQuote(parsed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertChain, err)
	}
	// The trust decision is taken here, before go-tdx-guest's checks, so that an
	// untrusted root gets its own reason instead of a generic chain error.
	intermediates := x509.NewCertPool()
	intermediates.AddCert(chain.IntermediateCertificate)
	chains, err := chain.PCKCertificate.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: now})
	if err != nil {
		if errors.As(err, new(x509.UnknownAuthorityError)) {
			if root := chain.RootCertificate; root != nil && !isIntelRoot(root) {
				return nil, fmt.Errorf("%w: the quote's chain ends at %q (SHA-256 %x), not at Intel's SGX Root CA: simulated evidence, trusted only when that root is given explicitly", ErrUntrustedRoot, root.Subject, sha256.Sum256(root.Raw))
			}
			return nil, fmt.Errorf("%w: %v", ErrUntrustedRoot, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrCertChain, err)
	}
	q.Root = chains[0][len(chains[0])-1]
	q.Simulated = !isIntelRoot(q.Root)
	times := &verify.TimeSet{PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now}
	if err := verify.TdxQuote(parsed, &verify.Options{TrustedRoots: roots, Now: times}); err != nil {
		return nil, classifyVerifyError(err)
	}
	if opts.Collateral != nil && !q.Simulated {
		q.TCBStatus, q.TCBErr = tcbStatus(parsed, opts.Collateral, times)
	}
	return q, nil
}

// tcbStatus evaluates a quote whose signatures verified against Intel's collateral.
// go-tdx-guest refuses any status but UpToDate with an error, after it verified the
// collateral's signatures and before it compares the QE report with the QE identity;
// the status is then read from the verified collateral so that the policy decides.
func tcbStatus(parsed any, c CollateralSource, times *verify.TimeSet) (string, error) {
	intel := x509.NewCertPool()
	intel.AddCert(intelRoot())
	opts := &verify.Options{GetCollateral: true, Getter: c, TrustedRoots: intel, Now: times}
	err := verify.TdxQuote(parsed, opts)
	if err == nil {
		return TCBUpToDate, nil
	}
	if !strings.HasPrefix(err.Error(), "TDX TCB info reported by Intel PCS failed TCB status check") {
		return "", fmt.Errorf("%w: %v", ErrCollateral, err)
	}
	td, _, err := verify.SupportedTcbLevelsFromCollateral(parsed, opts)
	if td.TcbStatus == "" {
		return "", fmt.Errorf("%w: %v", ErrTCBUnknown, err)
	}
	return string(td.TcbStatus), nil
}

// classifyVerifyError maps an error of go-tdx-guest's verify.TdxQuote to this file's
// reasons. The library wraps only the quote signature failure as a sentinel; the QE
// report failures are recognised by their message prefix, which the tests pin.
func classifyVerifyError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, verify.ErrHashVerificationFail):
		return ErrQuoteSignature
	case strings.HasPrefix(msg, "error verifying QE report"):
		return fmt.Errorf("%w: %v", ErrQEReport, err)
	case strings.HasPrefix(msg, "attestation key in the quote is invalid"):
		return fmt.Errorf("%w: %v", ErrQuoteSignature, err)
	default:
		return fmt.Errorf("%w: %v", ErrCertChain, err)
	}
}
