// Package registry is the Go side of Cocoon's registry contract (protocol v1,
// settle/REGISTRY.md, which is authoritative; the code is contracts.RegistryCode).
//
// One registry is one market. Its owner governs an Allowlist of the measurements
// clients accept (host builds, ABI versions, sandbox policies, models, and
// optionally MRTD and RTMR0-2 values); a change is proposed (ProposeAllowlistBody)
// and takes effect only Params.ChangeDelay seconds later, so clients see it
// coming (State.Pending). Hosts register themselves (RegisterBody, signed by the
// settlement key their attestation measures, sent from their wallet with a
// stake), update their registration the same way, deregister (DeregisterBody)
// and get their stake back Params.UnstakeDelay seconds later
// (WithdrawStakeBody). A Registrar keeps one host's registration current.
//
// Clients discover hosts with Hosts. The registry records what each host claims
// (endpoint, settlement key, the hashes of its price list and of its boot
// quote) and that the settlement key signed the claim; it does not, and cannot,
// check the evidence. A client must fetch each host's evidence, verify it,
// check that sha256 of its boot quote is the registered EvidenceHash, that the
// settlement key its event log measures is the registered Key, and that its
// measurements pass the registry's Allowlist (Allowlist.Check); see
// REGISTRY.md "Client checks".
//
// All amounts are nanoTON as *big.Int. Every body carries a 64-bit query id
// that the contract ignores but echoes in what it sends.
package registry

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/contracts"
	"github.com/cocoonhost/cocoon/settle/internal/contract"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// Operation codes: the first 32 bits of every message body the contract
// receives (Op*) or sends (OpStakeReturned, to a host's wallet).
const (
	OpTopUp            uint32 = 0x52454700
	OpRegister         uint32 = 0x52454701
	OpDeregister       uint32 = 0x52454702
	OpWithdrawStake    uint32 = 0x52454703
	OpProposeAllowlist uint32 = 0x52454710
	OpCancelAllowlist  uint32 = 0x52454711
	OpApplyAllowlist   uint32 = 0x52454712
	OpStakeReturned    uint32 = 0x52454720
)

// RegistrationFee is what the registry keeps, in nanoTON (0.05 TON), of every
// registration or update for gas and storage; the rest of the value is stake.
const RegistrationFee = 50_000_000

// MaxValidity is the longest, in seconds, a signed registration or
// deregistration may be valid for, counted from when the registry receives it.
const MaxValidity = 3600

// MaxEndpointBytes is the longest endpoint URL a registration may carry.
const MaxEndpointBytes = 127

// ExitCode is a compute-phase exit code with which the contract rejects a
// message (REGISTRY.md, "Errors"). It is an error, so callers can match it
// with errors.Is.
type ExitCode int32

// The contract's exit codes.
const (
	ErrWrongSender     ExitCode = 201   // an owner operation from another address
	ErrBadSignature    ExitCode = 202   // a signature that does not verify (key, registry, wallet or fields differ)
	ErrStaleSeqno      ExitCode = 203   // a seqno not above the host's last one: a replay
	ErrExpired         ExitCode = 204   // valid_until has passed
	ErrValidityTooLong ExitCode = 205   // valid_until more than MaxValidity ahead
	ErrStakeTooSmall   ExitCode = 206   // less than RegistrationFee attached, or a stake below min_stake
	ErrTooEarly        ExitCode = 207   // applying a change or withdrawing a stake before its delay
	ErrNothingPending  ExitCode = 208   // cancelling or applying when no change waits
	ErrUnknownHost     ExitCode = 209   // deregistering or withdrawing for a key never registered or already withdrawn
	ErrNotLeaving      ExitCode = 210   // withdrawing the stake of a host that did not deregister
	ErrAlreadyLeaving  ExitCode = 211   // a second deregistration
	ErrBadEndpoint     ExitCode = 212   // an endpoint that is not 1..127 whole bytes without references
	ErrUnknownOp       ExitCode = 65535 // any other op, or an empty body
)

var exitCodeNames = map[ExitCode]string{
	ErrWrongSender:     "wrong sender",
	ErrBadSignature:    "bad signature",
	ErrStaleSeqno:      "stale seqno",
	ErrExpired:         "expired",
	ErrValidityTooLong: "validity too long",
	ErrStakeTooSmall:   "stake too small",
	ErrTooEarly:        "too early",
	ErrNothingPending:  "nothing pending",
	ErrUnknownHost:     "unknown host",
	ErrNotLeaving:      "not leaving",
	ErrAlreadyLeaving:  "already leaving",
	ErrBadEndpoint:     "bad endpoint",
	ErrUnknownOp:       "unknown op",
}

// Error returns "registry: " and the code's name.
func (c ExitCode) Error() string { return "registry: " + c.String() }

// String returns the code's name in REGISTRY.md and its number.
func (c ExitCode) String() string { return contract.ExitCodeString(exitCodeNames[c], int32(c)) }

// code is contracts.RegistryCode parsed once.
var code = contract.Code("registry", contracts.RegistryCode)

// CodeHash returns the representation hash of the contract's code, the hash
// GetState requires of an account. It fails only if the embedded BOC is corrupt.
func CodeHash() ([]byte, error) { return contract.CodeHash(code) }

// Params are the fixed parameters of one registry and its initial allowlist.
// They make up its initial data and hence its address. The delays cannot be
// changed after deployment: an owner who could shorten them could swap the
// allowlist at once.
type Params struct {
	// Owner is the only sender of allowlist proposals and cancellations.
	Owner *address.Address
	// MinStake is the least stake, nanoTON, a registered host must hold.
	MinStake *big.Int
	// ChangeDelay is the seconds between an allowlist proposal and its effect.
	ChangeDelay uint32
	// UnstakeDelay is the seconds between a deregistration and the earliest
	// withdrawal of the stake.
	UnstakeDelay uint32
	// Nonce tells apart registries with the same owner and settings.
	Nonce uint64
	// Allowlist is in effect from deployment, and stays in the registry's
	// config after changes: the address follows from it.
	Allowlist Allowlist
}

// Data returns the contract's initial data cell, bit for bit as REGISTRY.md
// "Storage" lays it out: the config, the initial allowlist in effect, no
// pending change and no hosts. It fails for an owner that is not a standard
// address, a MinStake Coins cannot hold, or an invalid allowlist.
func (p Params) Data() (*cell.Cell, error) {
	if err := checkAddr("owner", p.Owner); err != nil {
		return nil, err
	}
	allow, err := p.Allowlist.Cell()
	if err != nil {
		return nil, err
	}
	b := cell.BeginCell().MustStoreAddr(p.Owner)
	if err := storeAmount(b, p.MinStake); err != nil {
		return nil, err
	}
	config := b.MustStoreUInt(uint64(p.ChangeDelay), 32).
		MustStoreUInt(uint64(p.UnstakeDelay), 32).
		MustStoreUInt(p.Nonce, 64).
		MustStoreMaybeRef(allow).
		EndCell()
	return cell.BeginCell().
		MustStoreRef(config).
		MustStoreMaybeRef(allow).
		MustStoreMaybeRef(nil). // pending
		MustStoreMaybeRef(nil). // hosts
		EndCell(), nil
}

// StateInit returns the state init (code and initial data) to attach to the
// first message (a TopUpBody), which deploys the contract.
func (p Params) StateInit() (*tlb.StateInit, error) {
	si, _, err := contract.StateInit(code, p.Data, 0)
	return si, err
}

// Address returns the registry's address in the given workchain (0 for the
// basechain): the hash of its state init.
func (p Params) Address(workchain int8) (*address.Address, error) {
	_, a, err := contract.StateInit(code, p.Data, workchain)
	return a, err
}

// Registration is what a host publishes about itself.
type Registration struct {
	// Endpoint is the base URL clients call, such as https://host.example:8443:
	// 1 to MaxEndpointBytes bytes.
	Endpoint string
	// PriceHash is PriceListHash of the host's signed price list.
	PriceHash [32]byte
	// EvidenceHash is EvidenceHash of the host's boot quote.
	EvidenceHash [32]byte
}

// infoCell is REGISTRY.md's HostInfo: price_hash evidence_hash ^endpoint.
func (r Registration) infoCell() (*cell.Cell, error) {
	if len(r.Endpoint) == 0 || len(r.Endpoint) > MaxEndpointBytes {
		return nil, fmt.Errorf("registry: endpoint is %d bytes, want 1 to %d", len(r.Endpoint), MaxEndpointBytes)
	}
	return cell.BeginCell().
		MustStoreSlice(r.PriceHash[:], 256).
		MustStoreSlice(r.EvidenceHash[:], 256).
		MustStoreRef(cell.BeginCell().MustStoreSlice([]byte(r.Endpoint), uint(8*len(r.Endpoint))).EndCell()).
		EndCell(), nil
}

// priceHashDomain starts what PriceListHash hashes.
const priceHashDomain = "cocoon-registry price-list v1\x00"

// PriceListHash returns the hash a host registers for its signed price list
// (GET /v1/pricing): sha256 of a domain and the list's JSON with the members
// that move with load and time (load_milli, utilization_ppm, time,
// signature) zeroed. It changes when the price table, the load curve, the
// wallet, the minimum escrow timeout or the settlement key change, and then
// the host registers again. A client fetches the list, checks its signature
// with the registered settlement key (settle.PriceList.Verify) and compares
// this hash with Host.PriceHash.
func PriceListHash(l settle.PriceList) [32]byte {
	l.LoadMilli, l.UtilizationPPM, l.Time, l.Signature = 0, 0, 0, nil
	b, err := json.Marshal(l)
	if err != nil {
		// A PriceList has fixed types (integers, strings, byte slices), which
		// json.Marshal never fails on.
		panic(fmt.Sprintf("registry: encode price list: %v", err))
	}
	return sha256.Sum256(append([]byte(priceHashDomain), b...))
}

// EvidenceHash returns the hash a host registers for its boot evidence:
// sha256 of the boot quote's bytes (attest.Evidence.Quote of GET
// /v1/attestation without a nonce). The quote's REPORTDATA binds the host's
// keys and its event log, so the hash names one booted host.
func EvidenceHash(bootQuote []byte) [32]byte { return sha256.Sum256(bootQuote) }

// header starts a message body: op and query id.
func header(op uint32, queryID uint64) *cell.Builder {
	return cell.BeginCell().MustStoreUInt(uint64(op), 32).MustStoreUInt(queryID, 64)
}

// TopUpBody is the body of a top-up: anyone may add to the registry's balance,
// and the first one, with Params.StateInit, deploys it.
func TopUpBody(queryID uint64) *cell.Cell { return header(OpTopUp, queryID).EndCell() }

// Signed is what every signed host operation carries besides its own fields:
// the settlement key's seqno and the last second (the chain's unix time) the
// registry accepts it.
type Signed struct {
	// Seqno must be above the host's last accepted one (State's NextSeqno).
	Seqno uint32
	// ValidUntil is in chain time: the registry refuses the message from then
	// on, and refuses it outright if it is more than MaxValidity ahead.
	ValidUntil uint32
}

// RegisterDigest returns the 32 bytes a host's settlement key signs to
// register (or update) reg on the registry at registryAddr, with the stake
// held by wallet, the only sender the registry then accepts: the hash of
// [OpRegister registry:MsgAddressInt wallet:MsgAddressInt host_key:uint256
// seqno:uint32 valid_until:uint32 ^HostInfo].
func RegisterDigest(registryAddr, wallet *address.Address, hostKey ed25519.PublicKey, reg Registration, s Signed) ([]byte, error) {
	if err := checkAddr("registry", registryAddr); err != nil {
		return nil, err
	}
	if err := checkAddr("wallet", wallet); err != nil {
		return nil, err
	}
	if len(hostKey) != ed25519.PublicKeySize {
		return nil, errors.New("registry: host key must be a 32-byte ed25519 public key")
	}
	info, err := reg.infoCell()
	if err != nil {
		return nil, err
	}
	return cell.BeginCell().
		MustStoreUInt(uint64(OpRegister), 32).
		MustStoreAddr(registryAddr).
		MustStoreAddr(wallet).
		MustStoreSlice(hostKey, 256).
		MustStoreUInt(uint64(s.Seqno), 32).
		MustStoreUInt(uint64(s.ValidUntil), 32).
		MustStoreRef(info).
		EndCell().Hash(), nil
}

// RegisterBody is the body of a registration or an update, signed here with
// the host's settlement key, to be sent from wallet with the stake (or the
// amount to add to it) plus RegistrationFee.
func RegisterBody(key ed25519.PrivateKey, registryAddr, wallet *address.Address, reg Registration, s Signed, queryID uint64) (*cell.Cell, error) {
	hostKey := key.Public().(ed25519.PublicKey)
	digest, err := RegisterDigest(registryAddr, wallet, hostKey, reg, s)
	if err != nil {
		return nil, err
	}
	info, _ := reg.infoCell() // checked by RegisterDigest
	return header(OpRegister, queryID).
		MustStoreSlice(hostKey, 256).
		MustStoreUInt(uint64(s.Seqno), 32).
		MustStoreUInt(uint64(s.ValidUntil), 32).
		MustStoreSlice(ed25519.Sign(key, digest), 512).
		MustStoreRef(info).
		EndCell(), nil
}

// DeregisterDigest returns the 32 bytes a host's settlement key signs to
// deregister from the registry at registryAddr: the hash of [OpDeregister
// registry:MsgAddressInt host_key:uint256 seqno:uint32 valid_until:uint32].
func DeregisterDigest(registryAddr *address.Address, hostKey ed25519.PublicKey, s Signed) ([]byte, error) {
	if err := checkAddr("registry", registryAddr); err != nil {
		return nil, err
	}
	if len(hostKey) != ed25519.PublicKeySize {
		return nil, errors.New("registry: host key must be a 32-byte ed25519 public key")
	}
	return cell.BeginCell().
		MustStoreUInt(uint64(OpDeregister), 32).
		MustStoreAddr(registryAddr).
		MustStoreSlice(hostKey, 256).
		MustStoreUInt(uint64(s.Seqno), 32).
		MustStoreUInt(uint64(s.ValidUntil), 32).
		EndCell().Hash(), nil
}

// DeregisterBody is the body of a deregistration, signed here with the host's
// settlement key; anyone may send it. The stake can be withdrawn
// Params.UnstakeDelay seconds after the registry receives it.
func DeregisterBody(key ed25519.PrivateKey, registryAddr *address.Address, s Signed, queryID uint64) (*cell.Cell, error) {
	hostKey := key.Public().(ed25519.PublicKey)
	digest, err := DeregisterDigest(registryAddr, hostKey, s)
	if err != nil {
		return nil, err
	}
	return header(OpDeregister, queryID).
		MustStoreSlice(hostKey, 256).
		MustStoreUInt(uint64(s.Seqno), 32).
		MustStoreUInt(uint64(s.ValidUntil), 32).
		MustStoreSlice(ed25519.Sign(key, digest), 512).
		EndCell(), nil
}

// WithdrawStakeBody is the body that returns a deregistered host's stake to
// the wallet that staked it, once its delay is over. Anyone may send it; the
// stake can go nowhere else.
func WithdrawStakeBody(hostKey ed25519.PublicKey, queryID uint64) (*cell.Cell, error) {
	if len(hostKey) != ed25519.PublicKeySize {
		return nil, errors.New("registry: host key must be a 32-byte ed25519 public key")
	}
	return header(OpWithdrawStake, queryID).MustStoreSlice(hostKey, 256).EndCell(), nil
}

// ProposeAllowlistBody is the body of an allowlist proposal, sent by the
// owner: a takes effect Params.ChangeDelay seconds after the registry
// receives it, replacing any proposal still waiting (whose delay is lost).
func ProposeAllowlistBody(a Allowlist, queryID uint64) (*cell.Cell, error) {
	c, err := a.Cell()
	if err != nil {
		return nil, err
	}
	return header(OpProposeAllowlist, queryID).MustStoreMaybeRef(c).EndCell(), nil
}

// CancelAllowlistBody is the body that drops the waiting proposal, sent by
// the owner. A proposal whose time has come can no longer be cancelled.
func CancelAllowlistBody(queryID uint64) *cell.Cell {
	return header(OpCancelAllowlist, queryID).EndCell()
}

// ApplyAllowlistBody is the body that records a due proposal as the
// allowlist in effect; anyone may send it. Get-methods and clients treat a
// due proposal as in effect without it.
func ApplyAllowlistBody(queryID uint64) *cell.Cell {
	return header(OpApplyAllowlist, queryID).EndCell()
}

// storeAmount stores a nanoTON amount as Coins, refusing what Coins cannot
// hold (nil, negative, or 2^120 and above) instead of panicking.
func storeAmount(b *cell.Builder, amount *big.Int) error {
	if err := contract.StoreAmount(b, amount); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

func checkAddr(who string, a *address.Address) error {
	if !contract.IsStd(a) {
		return fmt.Errorf("registry: %s address must be a standard 256-bit address", who)
	}
	return nil
}
