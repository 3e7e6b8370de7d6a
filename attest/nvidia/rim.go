package nvidia

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/beevik/etree"
)

// What ParseRIM accepts: the namespaces and algorithms of NVIDIA's RIMs, and nothing
// else (a RIM signed any other way is refused, not verified some other way).
const (
	swidNamespace    = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
	dsigNamespace    = "http://www.w3.org/2000/09/xmldsig#"
	sha384Namespace  = "http://www.w3.org/2001/04/xmlenc#sha384" // of a Resource's HashN attributes
	algC14N11        = "http://www.w3.org/2006/12/xml-c14n11"
	algEnveloped     = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	algECDSASHA384   = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
	algDigestSHA384  = "http://www.w3.org/2001/04/xmldsig-more#sha384"
	measurementType  = "Measurement"
	measurementBytes = 48 // SHA-384
	// MaxRIMSize bounds what ParseRIM reads: NVIDIA's RIMs are about 20 KiB.
	MaxRIMSize = 1 << 20
	// maxAlternatives bounds a Resource's alternatives (NVIDIA's have at most 4).
	maxAlternatives = 64
	// maxRIMDepth bounds the element nesting (NVIDIA's RIMs nest 5 deep).
	maxRIMDepth = 16
	// maxSignerCerts bounds the certificates of a signature's KeyInfo (NVIDIA's: 4).
	maxSignerCerts = 8
)

// RIMOptions are the inputs of ParseRIM besides the document.
type RIMOptions struct {
	// Roots are the roots a RIM's signing chain must lead to; nil means NVIDIA's
	// pinned RIM root (verifier_RIM_root.pem).
	Roots *x509.CertPool
	// Now is the time the signing chain must be valid at; zero means time.Now().
	Now time.Time

	// signers, when set, remembers the signing chains verified under these options, so
	// that the driver and VBIOS RIMs of one Verify call (or one load: SharingSigners),
	// signed under the same chain, cost its certificates' verifications once.
	signers *signerChains
}

// SharingSigners returns opts that remember, across the ParseRIM calls made with them,
// the signing chains that verified: a driver and a VBIOS RIM signed under the same
// chain (NVIDIA's are) then cost its certificates' verifications once. Not safe for
// concurrent use.
func (opts RIMOptions) SharingSigners() RIMOptions {
	opts.signers = &signerChains{}
	return opts
}

// signerChains maps the SHA-384 of a KeyInfo's DER certificates, concatenated, to the
// chain they verified as, for one set of roots and one time (one Verify call). Only
// chains that verified are kept. Not safe for concurrent use.
type signerChains map[[sha512.Size384]byte][]*x509.Certificate

// RIMMeasurement is one Resource of a RIM's payload: the reference values a GPU's
// measurement at that index may take.
type RIMMeasurement struct {
	// Index is the RIM's index, 0-based (SPDM's index minus one).
	Index int
	// Active says whether the measurement is to be compared: an inactive one is not.
	Active bool
	// Alternatives are the accepted digests; the measurement matches if it equals one.
	Alternatives [][]byte
}

// RIM is a parsed SWID tag whose XML-DSig signature verified to a trusted root. Only
// ParseRIM makes one that Verify uses (VerifyOptions.LoadedDriverRIM): a RIM built or
// copied any other way carries no proof of its verification and is refused. It is
// read-only: verified RIMs are shared between verifications.
type RIM struct {
	// TagID is the tag's tagId, Name its name (the chip, "GH100").
	TagID, Name string
	// Version is the Meta element's colloquialVersion: the driver version for a driver
	// RIM ("545.00"), the VBIOS version for a VBIOS RIM.
	Version string
	// Measurements are the payload's Resources by Index.
	Measurements map[int]RIMMeasurement
	// Signer is the chain that signed the tag, leaf first, ending at the trusted root.
	Signer []*x509.Certificate

	// verified is ParseRIM's record of the verification, set by it alone.
	verified *rimVerification
}

// rimVerification is what ParseRIM verified a RIM under: the roots (nil for NVIDIA's
// pinned RIM root, a pool by its pointer, as Cache keys them) and when every
// certificate of the signing chain is valid. rim is the RIM it was made for, so that a
// copy of a verified RIM, which could then be changed, is not taken for it.
type rimVerification struct {
	rim   *RIM
	roots *x509.CertPool
	validity
}

// usableUnder says whether Verify may compare a report with r under RIM roots at now
// without verifying r again: ParseRIM made r, under the same roots, and every
// certificate of its signing chain is valid at now. A chain verified once and valid at
// now is what verifying it at now would establish (x509's verification depends on the
// time only through the certificates' validity; revocation is not checked either way).
// Errors wrap ErrRIM or ErrCertChain.
func (r *RIM) usableUnder(roots *x509.CertPool, now time.Time) error {
	switch {
	case r == nil || r.verified == nil || r.verified.rim != r:
		return fmt.Errorf("%w: a RIM not made by ParseRIM: it carries no verified signature", ErrRIM)
	case r.verified.roots != roots:
		return fmt.Errorf("%w: the RIM %s was verified under other roots than this verification trusts", ErrRIM, r.TagID)
	case !r.verified.covers(now):
		return fmt.Errorf("%w: the RIM %s's signing chain is valid from %s to %s, not at %s", ErrCertChain, r.TagID,
			r.verified.notBefore.Format(time.RFC3339), r.verified.notAfter.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	return nil
}

// ParseRIM parses a RIM, an ISO/IEC 19770-2 SWID tag with an enveloped XML-DSig
// signature, and returns its contents only if the signature verifies:
//
//   - the document is well-formed UTF-8 XML without DTD or processing instructions,
//     every prefix declared, no attribute twice, its root a SWID SoftwareIdentity;
//   - it holds exactly one ds:Signature, a child of the root, whose SignedInfo uses
//     c14n11, ECDSA P-384 with SHA-384, and one Reference with URI="" (the whole
//     document), transforms enveloped-signature then c14n11, and a SHA-384 digest;
//   - the digest equals the SHA-384 of the canonical document without the signature;
//   - the first KeyInfo certificate chains, through the others, to opts.Roots (NVIDIA's
//     pinned RIM root when nil) at opts.Now, and its P-384 key signed the canonical
//     SignedInfo (r || s, 96 bytes).
//
// Only then are the tag's attributes, Meta's colloquialVersion and the payload's
// Measurement resources read, from the same parsed tree that was digested. Errors wrap
// ErrRIM (malformed, or signed with what this package does not accept), ErrRIMSignature
// (digest or signature mismatch), ErrUntrustedRoot or ErrCertChain. Cost: two
// canonicalizations of the document and the P-384 verifications of the signing chain
// (its leaf's by circl, the certificates above its issuer by crypto/x509: two for
// NVIDIA's four-certificate KeyInfo, none for the simulator's) and of the signature
// (circl), a few ms on a loaded 2-core VM (BenchmarkParseRIMNVIDIA); a changed document
// fails at the digest, before any public-key operation.
func ParseRIM(xml []byte, opts RIMOptions) (*RIM, error) {
	doc, sig, err := parseRIMDocument(xml)
	if err != nil {
		return nil, err
	}
	signer, err := verifyRIMSignature(doc.Root(), sig, opts)
	if err != nil {
		return nil, err
	}
	rim, err := readRIM(doc.Root(), sig)
	if err != nil {
		return nil, err
	}
	rim.Signer = signer
	rim.verified = &rimVerification{rim: rim, roots: opts.Roots, validity: validityOf(signer)}
	return rim, nil
}

// parseRIMDocument parses and vets the XML (everything canonicalization assumes) and
// finds the one signature.
func parseRIMDocument(b []byte) (*etree.Document, *etree.Element, error) {
	if len(b) > MaxRIMSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrRIM, len(b), MaxRIMSize)
	}
	if !utf8.Valid(b) {
		return nil, nil, fmt.Errorf("%w: not UTF-8", ErrRIM)
	}
	doc := etree.NewDocument()
	doc.ReadSettings = rimReadSettings()
	if err := doc.ReadFromBytes(b); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrRIM, err)
	}
	for i, tok := range doc.Child {
		switch t := tok.(type) {
		case *etree.ProcInst:
			if t.Target != "xml" || i != 0 {
				return nil, nil, fmt.Errorf("%w: processing instruction %q", ErrRIM, t.Target)
			}
		case *etree.Directive:
			return nil, nil, fmt.Errorf("%w: a DTD or other directive", ErrRIM)
		}
	}
	root := doc.Root()
	if root == nil {
		return nil, nil, fmt.Errorf("%w: no document element", ErrRIM)
	}
	var sigs []*etree.Element
	if err := vet(root, &sigs); err != nil {
		return nil, nil, err
	}
	if !is(root, swidNamespace, "SoftwareIdentity") {
		return nil, nil, fmt.Errorf("%w: document element %s, want a SWID SoftwareIdentity", ErrRIM, root.FullTag())
	}
	if len(sigs) != 1 || sigs[0].Parent() != root {
		return nil, nil, fmt.Errorf("%w: %d signatures; want exactly one, a child of SoftwareIdentity", ErrRIM, len(sigs))
	}
	for _, a := range root.Attr {
		if a.Space == "xml" {
			return nil, nil, fmt.Errorf("%w: xml:%s on the document element", ErrRIM, a.Key)
		}
	}
	for _, a := range sigs[0].Attr {
		if a.Space == "xml" {
			return nil, nil, fmt.Errorf("%w: xml:%s on the signature", ErrRIM, a.Key)
		}
	}
	return doc, sigs[0], nil
}

// rimReadSettings are how a RIM is read: strict XML, UTF-8 only, bounded depth, and
// repeated attributes kept so that vet sees, and refuses, them.
func rimReadSettings() etree.ReadSettings {
	return etree.ReadSettings{
		PreserveDuplicateAttrs: true,
		MaxDepth:               maxRIMDepth,
		CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
			if !strings.EqualFold(charset, "utf-8") {
				return nil, fmt.Errorf("encoding %q, want UTF-8", charset)
			}
			return input, nil
		},
	}
}

// vet refuses what canonicalize does not handle (see c14n.go) in e's subtree and
// collects the ds:Signature elements.
func vet(e *etree.Element, sigs *[]*etree.Element) error {
	if e.Space != "" && e.NamespaceURI() == "" {
		return fmt.Errorf("%w: element %s: prefix %q is not declared", ErrRIM, e.FullTag(), e.Space)
	}
	if is(e, dsigNamespace, "Signature") {
		*sigs = append(*sigs, e)
	}
	seen := map[string]bool{}
	for _, a := range e.Attr {
		key := "attr " + a.NamespaceURI() + " " + a.Key
		if _, isNS := nsDeclaration(a); isNS {
			key = "xmlns " + a.FullKey()
			if a.Space == "xmlns" && (a.Key == "xml" || a.Key == "xmlns" || a.Value == "") {
				return fmt.Errorf("%w: element %s declares %s=%q", ErrRIM, e.FullTag(), a.FullKey(), a.Value)
			}
		} else if a.Space == "xml" {
			key = "attr " + xmlNamespace + " " + a.Key
		} else if a.Space != "" && a.NamespaceURI() == "" {
			return fmt.Errorf("%w: attribute %s of %s: prefix %q is not declared", ErrRIM, a.FullKey(), e.FullTag(), a.Space)
		}
		if seen[key] {
			return fmt.Errorf("%w: element %s has attribute %s twice", ErrRIM, e.FullTag(), a.FullKey())
		}
		seen[key] = true
	}
	for _, tok := range e.Child {
		switch t := tok.(type) {
		case *etree.Element:
			if err := vet(t, sigs); err != nil {
				return err
			}
		case *etree.ProcInst:
			return fmt.Errorf("%w: processing instruction %q", ErrRIM, t.Target)
		case *etree.Directive:
			return fmt.Errorf("%w: a directive inside %s", ErrRIM, e.FullTag())
		}
	}
	return nil
}

// is reports whether e is the element local in namespace uri.
func is(e *etree.Element, uri, local string) bool {
	return e != nil && e.Tag == local && e.NamespaceURI() == uri
}

// children returns e's child elements, requiring that they be exactly the given names
// of namespace uri in that order, and that e hold no text but whitespace.
func children(e *etree.Element, uri string, names ...string) ([]*etree.Element, error) {
	var els []*etree.Element
	for _, tok := range e.Child {
		switch t := tok.(type) {
		case *etree.Element:
			els = append(els, t)
		case *etree.CharData:
			if strings.TrimSpace(t.Data) != "" {
				return nil, fmt.Errorf("%w: text inside %s", ErrRIM, e.Tag)
			}
		}
	}
	if len(els) != len(names) {
		return nil, fmt.Errorf("%w: %s has %d child elements, want %s", ErrRIM, e.Tag, len(els), strings.Join(names, ", "))
	}
	for i, el := range els {
		if !is(el, uri, names[i]) {
			return nil, fmt.Errorf("%w: %s's child %d is %s, want %s", ErrRIM, e.Tag, i+1, el.FullTag(), names[i])
		}
	}
	return els, nil
}

// algorithm checks that e's Algorithm attribute is want.
func algorithm(e *etree.Element, want string) error {
	if got := e.SelectAttrValue("Algorithm", ""); got != want {
		return fmt.Errorf("%w: %s algorithm %q, want %q", ErrRIM, e.Tag, got, want)
	}
	return nil
}

// text is the text content of e, an element that holds nothing but text, with
// whitespace removed (base64 as XML-DSig wraps it); "" when e holds elements, which no
// base64 decoder takes for a value.
func text(e *etree.Element) string {
	if len(e.ChildElements()) != 0 {
		return ""
	}
	var b strings.Builder
	for _, tok := range e.Child {
		if t, ok := tok.(*etree.CharData); ok {
			b.WriteString(t.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), "")
}

// verifyRIMSignature checks sig (see ParseRIM) and returns the signer's chain.
func verifyRIMSignature(root, sig *etree.Element, opts RIMOptions) ([]*x509.Certificate, error) {
	parts, err := children(sig, dsigNamespace, "SignedInfo", "SignatureValue", "KeyInfo")
	if err != nil {
		return nil, err
	}
	signedInfo, sigValue, keyInfo := parts[0], parts[1], parts[2]
	si, err := children(signedInfo, dsigNamespace, "CanonicalizationMethod", "SignatureMethod", "Reference")
	if err != nil {
		return nil, err
	}
	if err := algorithm(si[0], algC14N11); err != nil {
		return nil, err
	}
	if err := algorithm(si[1], algECDSASHA384); err != nil {
		return nil, err
	}
	ref := si[2]
	if uri := ref.SelectAttr("URI"); uri == nil || uri.Value != "" || len(ref.Attr) != 1 {
		return nil, fmt.Errorf("%w: the reference must be URI=\"\" (the whole document) and nothing else", ErrRIM)
	}
	rp, err := children(ref, dsigNamespace, "Transforms", "DigestMethod", "DigestValue")
	if err != nil {
		return nil, err
	}
	transforms, err := children(rp[0], dsigNamespace, "Transform", "Transform")
	if err != nil {
		return nil, err
	}
	if err := algorithm(transforms[0], algEnveloped); err != nil {
		return nil, err
	}
	if err := algorithm(transforms[1], algC14N11); err != nil {
		return nil, err
	}
	if err := algorithm(rp[1], algDigestSHA384); err != nil {
		return nil, err
	}
	for _, el := range []*etree.Element{si[0], si[1], transforms[0], transforms[1], rp[1]} {
		if _, err := children(el, dsigNamespace); err != nil {
			return nil, err
		}
	}
	digest, err := base64.StdEncoding.DecodeString(text(rp[2]))
	if err != nil || len(digest) != sha512.Size384 {
		return nil, fmt.Errorf("%w: the digest value is not 48 bytes of base64", ErrRIM)
	}
	signature, err := base64.StdEncoding.DecodeString(text(sigValue))
	if err != nil || len(signature) != SignatureLen {
		return nil, fmt.Errorf("%w: the signature value is not 96 bytes of base64 (ECDSA P-384 r || s)", ErrRIM)
	}
	// The digest first: it costs no public-key operation, so a changed document is
	// refused before the chain's four.
	if got := canonicalSHA384(root, sig); !bytes.Equal(got[:], digest) {
		return nil, fmt.Errorf("%w: the document's SHA-384 is %x, the signed digest %x: the document was changed after signing", ErrRIMSignature, got, digest)
	}
	chain, err := signerChain(keyInfo, opts)
	if err != nil {
		return nil, err
	}
	h := canonicalSHA384(signedInfo, nil)
	if !ecdsaVerify(chain[0].PublicKey.(*ecdsa.PublicKey), h[:], signature) {
		return nil, fmt.Errorf("%w: the signature over SignedInfo does not verify with the key of %q", ErrRIMSignature, chain[0].Subject)
	}
	return chain, nil
}

// signerChain parses KeyInfo's X509Data certificates (leaf first) and verifies the
// leaf's chain to opts.Roots at opts.Now. The leaf's key must be ECDSA P-384.
func signerChain(keyInfo *etree.Element, opts RIMOptions) ([]*x509.Certificate, error) {
	data, err := children(keyInfo, dsigNamespace, "X509Data")
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for _, el := range data[0].ChildElements() {
		if !is(el, dsigNamespace, "X509Certificate") {
			return nil, fmt.Errorf("%w: X509Data holds %s", ErrRIM, el.FullTag())
		}
		der, err := base64.StdEncoding.DecodeString(text(el))
		if err != nil {
			return nil, fmt.Errorf("%w: a KeyInfo certificate is not base64: %v", ErrRIM, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: a KeyInfo certificate: %v", ErrRIM, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 || len(certs) > maxSignerCerts {
		return nil, fmt.Errorf("%w: %d KeyInfo certificates, want 1 to %d", ErrRIM, len(certs), maxSignerCerts)
	}
	if opts.signers == nil {
		return verifyChain(certs, opts.Roots, rimRoots, opts.Now)
	}
	h := sha512.New384()
	for _, c := range certs {
		h.Write(c.Raw)
	}
	key := [sha512.Size384]byte(h.Sum(nil))
	if chain, ok := (*opts.signers)[key]; ok {
		return chain, nil
	}
	chain, err := verifyChain(certs, opts.Roots, rimRoots, opts.Now)
	if err == nil {
		(*opts.signers)[key] = chain
	}
	return chain, err
}

// readRIM reads the signed tag: root's attributes, Meta's colloquialVersion and the
// Payload's Measurement resources. sig is skipped.
func readRIM(root, sig *etree.Element) (*RIM, error) {
	rim := &RIM{
		TagID:        root.SelectAttrValue("tagId", ""),
		Name:         root.SelectAttrValue("name", ""),
		Measurements: map[int]RIMMeasurement{},
	}
	var meta, payload *etree.Element
	for _, el := range root.ChildElements() {
		switch {
		case el == sig:
		case is(el, swidNamespace, "Meta"):
			if meta != nil {
				return nil, fmt.Errorf("%w: two Meta elements", ErrRIM)
			}
			meta = el
		case is(el, swidNamespace, "Payload"):
			if payload != nil {
				return nil, fmt.Errorf("%w: two Payload elements", ErrRIM)
			}
			payload = el
		}
	}
	if meta == nil || payload == nil {
		return nil, fmt.Errorf("%w: no Meta or no Payload", ErrRIM)
	}
	rim.Version = meta.SelectAttrValue("colloquialVersion", "")
	if rim.Version == "" {
		return nil, fmt.Errorf("%w: Meta has no colloquialVersion", ErrRIM)
	}
	for _, res := range payload.ChildElements() {
		if !is(res, swidNamespace, "Resource") || res.SelectAttrValue("type", "") != measurementType {
			continue
		}
		m, err := readMeasurement(res)
		if err != nil {
			return nil, err
		}
		if _, dup := rim.Measurements[m.Index]; dup {
			return nil, fmt.Errorf("%w: measurement index %d twice", ErrRIM, m.Index)
		}
		rim.Measurements[m.Index] = m
	}
	return rim, nil
}

// readMeasurement reads one Measurement resource: index, active, alternatives and the
// Hash0..HashN-1 attributes (SHA-384, hex).
func readMeasurement(res *etree.Element) (RIMMeasurement, error) {
	attr := func(name string) string { return res.SelectAttrValue(name, "") }
	index, err := strconv.Atoi(attr("index"))
	if err != nil || index < 0 || index > 254 {
		return RIMMeasurement{}, fmt.Errorf("%w: measurement index %q", ErrRIM, attr("index"))
	}
	m := RIMMeasurement{Index: index}
	switch attr("active") {
	case "True":
		m.Active = true
	case "False":
	default:
		return m, fmt.Errorf("%w: measurement %d: active=%q, want True or False", ErrRIM, index, attr("active"))
	}
	n, err := strconv.Atoi(attr("alternatives"))
	if err != nil || n < 1 || n > maxAlternatives {
		return m, fmt.Errorf("%w: measurement %d: alternatives=%q, want 1 to %d", ErrRIM, index, attr("alternatives"), maxAlternatives)
	}
	if size := attr("size"); size != strconv.Itoa(measurementBytes) {
		return m, fmt.Errorf("%w: measurement %d: size=%q, want %d", ErrRIM, index, size, measurementBytes)
	}
	hashes := map[string]string{}
	for _, a := range res.Attr {
		if a.Space != "" && a.NamespaceURI() == sha384Namespace {
			hashes[a.Key] = a.Value
		}
	}
	if len(hashes) != n {
		return m, fmt.Errorf("%w: measurement %d: %d SHA-384 hashes for %d alternatives", ErrRIM, index, len(hashes), n)
	}
	for i := range n {
		v, err := hex.DecodeString(hashes["Hash"+strconv.Itoa(i)])
		if err != nil || len(v) != measurementBytes {
			return m, fmt.Errorf("%w: measurement %d: Hash%d is not %d bytes of hex", ErrRIM, index, i, measurementBytes)
		}
		m.Alternatives = append(m.Alternatives, v)
	}
	return m, nil
}
