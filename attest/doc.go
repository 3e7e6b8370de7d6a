// Package attest is how a Cocoon host proves what it runs, and how anyone checks it:
// the evidence format (a TDX quote, the runtime event log it vouches for, the host's
// keys), the host side that produces it, and the verifier that a client, a reviewer or
// the reviewer's page in a browser runs on it. README.md beside this file specifies
// every format byte for byte, for outside implementers.
//
// Two kinds of program import it. A verifier (cocoon verify, cocoon chat, the proxy,
// web/client, web/page/verifier compiled to WebAssembly) uses only the verifier side;
// the host (cocoon-host, package web) uses the host side and, to serve them, the
// formats. The host-only parts that touch the machine live in subpackages a verifier
// never imports: attest/tdx (the TDX guest's quote interface and RTMR3) and attest/seal
// (the root sealing secret and what it seals). Neither imports anything but attest.
//
// # Verifier side
//
//	evidence      Evidence, ParseEvidence, MaxEvidenceBytes, ManifestHash
//	verify        VerifyEvidence with EvidenceOptions (nonce, pipeline, expected modules
//	              or manifest, simulator root, collateral, strict, archived) → *Report
//	              of Checks; Report.OK, Report.PinningPolicy
//	policy        Policy, ParsePolicy, LoadPolicy, the TCB* statuses
//	quotes        ParseQuote, VerifyQuote, Quote, VerifyOptions, IntelRoot,
//	              TDAttributeDebug; Collateral, LoadCollateral, OnlineCollateral,
//	              RecordingSource (Intel's TCB collateral, cached or from PCS)
//	event log     ParseEventLog, VerifyLog, Replay, Event, EventType and its values,
//	              the Sealing* sources, the SettlementKey* origins
//	RA-TLS        NewRATLSVerifier, RATLSVerifier (verifies a host's certificate inside
//	              each TLS handshake and pins its key), OIDEvidence, ErrRATLS
//	answers       ResponseVerifier (VerifyBody, ReadStream → SignedStream),
//	              ResponseSignatureHeader, ErrResponseSignature, ErrSignatureMismatch
//	saved         SavedEvidence, ParseSavedEvidence (evidence kept to verify offline)
//	nonces        MinNonceBytes, MaxNonceBytes
//	simulator     ParseCertificatePEM, SimRootFile, SimMRTD and its registers: what a
//	              tester trusts explicitly to accept a simulated host
//
// # Host side
//
//	boot          Boot(provider, backend, model, events) → *Host, which holds the host
//	              and TLS keys, the sealed event log and the boot quote, and serves
//	              BootEvidence, FreshBootEvidence, PipelineEvidence, Certificate and
//	              TLSConfig (RA-TLS), SignResponse
//	providers     Provider (Mode, RTMR3, Quote) and Register; NewSim (Sim, a simulated
//	              TDX for machines without it; SimRegister); attest/tdx for a TD
//	event log     Log (append-only, extends RTMR3 as it appends, then sealed), NewLog,
//	              the event constructors (HostBinaryEvent ... SealEvent),
//	              EncodeEventLog, ExtendRTMR, SandboxPolicy, ExecutableSHA256
//	sealing       attest/seal
//
// Both sides compute the same bytes from the same functions, so that what is verified
// is what was produced: the REPORTDATA of each kind of evidence (BootReportData,
// FreshBootReportData, PipelineReportData) and the signed message of an answer
// (SignedResponse; SignatureEvent ends a signed stream).
//
// # Costs and failures
//
// VerifyEvidence parses at most MaxEvidenceBytes and checks one certificate chain, the
// quote and QE signatures (VerifyQuote: 0.62 ms on one EPYC core, README.md's
// figures) and one replay of the event log; with collateral it parses Intel's TCB info
// too. It fails only on evidence it cannot read;
// every failed property is a failed Check in the report, and a verifier trusts a host
// only when Report.OK. On the host, a fresh quote costs a quote of the provider (up to
// a second on TDX), which web rate-limits.
package attest
