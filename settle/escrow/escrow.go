// Package escrow is the Go side of Cocoon's escrow contract (protocol v1,
// settle/ESCROW.md, which is authoritative; the code is contracts.EscrowCode).
//
// One escrow contract holds one client's deposit for one host. The client
// deploys it with Params.StateInit and a DepositBody, and may deposit more
// later. The host serves requests against the unspent deposit and, when it
// wants to be paid, signs the cumulative amount it is owed (SignCharge) and
// submits a ChargeBody from its wallet; the contract pays it the difference
// to the previous charge. To get its money back the client either closes
// cooperatively (CloseBody, signed by both parties) or requests a withdrawal
// (RequestWithdrawalBody) and, Params.Timeout seconds later, withdraws
// (WithdrawBody): the timeout is the host's window to submit its last charge.
//
// Signed amounts are bound to the escrow's address (ChargeDigest,
// CloseDigest), so a signature is useless on any other escrow.
//
// GetState reads an escrow from the chain and is the only way a host should
// learn about one: it refuses any account whose code is not the escrow's or
// whose address does not follow from its parameters (a contract deployed
// with forged initial data, e.g. a deposit that was never paid).
//
// All amounts are nanoTON as *big.Int. Every body carries a 64-bit query id
// that the contract ignores but echoes in what it sends.
package escrow

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"

	"github.com/cocoonhost/cocoon/settle/contracts"
	"github.com/cocoonhost/cocoon/settle/internal/contract"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// Operation codes: the first 32 bits of every message body the contract
// receives (Op*) or sends (OpPayout to the host, OpRefund to the client).
const (
	OpDeposit           uint32 = 0x434f4401
	OpCharge            uint32 = 0x434f4402
	OpRequestWithdrawal uint32 = 0x434f4403
	OpWithdraw          uint32 = 0x434f4404
	OpCooperativeClose  uint32 = 0x434f4405
	OpPayout            uint32 = 0x434f4410
	OpRefund            uint32 = 0x434f4411
)

// DepositReserve is the part of every deposit, in nanoTON (0.01 TON), that
// the contract keeps for gas and storage instead of adding it to Deposited.
// A deposit must carry more than this.
const DepositReserve = 10_000_000

// ExitCode is a compute-phase exit code with which the contract rejects a
// message (ESCROW.md, "Errors"). It is an error, so that code inspecting a
// failed transaction can return it and callers can match it with errors.Is.
type ExitCode int32

// The contract's exit codes.
const (
	ErrWrongSender      ExitCode = 101   // deposit, request or withdraw not from the client; charge not from the host
	ErrBadSignature     ExitCode = 102   // a charge or close signature that does not verify
	ErrNotIncreasing    ExitCode = 103   // a charge not above what was charged, or a close below it
	ErrOverDeposit      ExitCode = 104   // a charge or close above what was deposited
	ErrTooEarly         ExitCode = 105   // a withdrawal before the request's timeout ran out
	ErrClosing          ExitCode = 106   // a deposit after a withdrawal request; State.CheckOpen reports it too
	ErrAlreadyRequested ExitCode = 107   // a second withdrawal request
	ErrNotRequested     ExitCode = 108   // a withdrawal without a request
	ErrDepositTooSmall  ExitCode = 109   // a deposit of DepositReserve or less
	ErrUnknownOp        ExitCode = 65535 // any other op, or an empty body
)

var exitCodeNames = map[ExitCode]string{
	ErrWrongSender:      "wrong sender",
	ErrBadSignature:     "bad signature",
	ErrNotIncreasing:    "not increasing",
	ErrOverDeposit:      "over deposit",
	ErrTooEarly:         "too early",
	ErrClosing:          "closing",
	ErrAlreadyRequested: "already requested",
	ErrNotRequested:     "not requested",
	ErrDepositTooSmall:  "deposit too small",
	ErrUnknownOp:        "unknown op",
}

// Error returns "escrow: " and the code's name.
func (c ExitCode) Error() string { return "escrow: " + c.String() }

// String returns the code's name in ESCROW.md and its number.
func (c ExitCode) String() string { return contract.ExitCodeString(exitCodeNames[c], int32(c)) }

// code is contracts.EscrowCode parsed once.
var code = contract.Code("escrow", contracts.EscrowCode)

// Code returns the contract's code cell. It fails only if the embedded BOC
// is corrupt.
func Code() (*cell.Cell, error) { return code() }

// CodeHash returns the representation hash of the contract's code, the hash
// GetState requires of an account.
func CodeHash() ([]byte, error) { return contract.CodeHash(code) }

// Params are the fixed parameters of one escrow. They make up its initial
// data and hence its address: the same Params always give the same address.
type Params struct {
	// ClientAddr is the client's wallet: the only sender of deposits and
	// withdrawal requests, and where refunds go.
	ClientAddr *address.Address
	// HostAddr is the host's wallet: the only sender of charges, and where
	// payouts go.
	HostAddr *address.Address
	// ClientKey signs the client's side of a cooperative close.
	ClientKey ed25519.PublicKey
	// HostKey is the host's settlement key: it signs charges and the host's
	// side of a cooperative close.
	HostKey ed25519.PublicKey
	// Timeout is the number of seconds between a withdrawal request and the
	// earliest withdrawal.
	Timeout uint32
	// ChannelID tells apart several escrows of the same client and host.
	ChannelID uint64
}

// Data returns the contract's initial data cell, bit for bit as ESCROW.md
// "Storage" lays it out, with close_requested_at, deposited and charged 0.
// It fails if an address is not a standard (addr_std) address or a key is
// not 32 bytes.
func (p Params) Data() (*cell.Cell, error) {
	if err := checkAddr("client", p.ClientAddr); err != nil {
		return nil, err
	}
	if err := checkAddr("host", p.HostAddr); err != nil {
		return nil, err
	}
	if len(p.ClientKey) != ed25519.PublicKeySize || len(p.HostKey) != ed25519.PublicKeySize {
		return nil, errors.New("escrow: client and host keys must be 32-byte ed25519 public keys")
	}
	parties := cell.BeginCell().MustStoreAddr(p.ClientAddr).MustStoreAddr(p.HostAddr).EndCell()
	return cell.BeginCell().
		MustStoreUInt(p.ChannelID, 64).
		MustStoreUInt(uint64(p.Timeout), 32).
		MustStoreUInt(0, 32). // close_requested_at
		MustStoreCoins(0).    // deposited
		MustStoreCoins(0).    // charged
		MustStoreSlice(p.ClientKey, 256).
		MustStoreSlice(p.HostKey, 256).
		MustStoreRef(parties).
		EndCell(), nil
}

// StateInit returns the state init (code and initial data) to attach to the
// first deposit, which deploys the contract.
func (p Params) StateInit() (*tlb.StateInit, error) {
	si, _, err := contract.StateInit(code, p.Data, 0)
	return si, err
}

// Address returns the escrow's address in the given workchain (0 for the
// basechain): the hash of its state init. The address is bounceable.
func (p Params) Address(workchain int8) (*address.Address, error) {
	_, a, err := contract.StateInit(code, p.Data, workchain)
	return a, err
}

func checkAddr(who string, a *address.Address) error {
	if !contract.IsStd(a) {
		return fmt.Errorf("escrow: %s address must be a standard 256-bit address", who)
	}
	return nil
}

// header starts a message body: op and query id.
func header(op uint32, queryID uint64) *cell.Builder {
	return cell.BeginCell().MustStoreUInt(uint64(op), 32).MustStoreUInt(queryID, 64)
}

// DepositBody is the body of a deposit, sent by the client's wallet with the
// amount to deposit plus DepositReserve (and, the first time, the state init).
func DepositBody(queryID uint64) *cell.Cell { return header(OpDeposit, queryID).EndCell() }

// RequestWithdrawalBody is the body of a withdrawal request, sent by the
// client's wallet; it starts the host's Timeout window.
func RequestWithdrawalBody(queryID uint64) *cell.Cell {
	return header(OpRequestWithdrawal, queryID).EndCell()
}

// WithdrawBody is the body of a withdrawal, sent by the client's wallet once
// the window is over: the whole balance goes back to the client and the
// contract is destroyed.
func WithdrawBody(queryID uint64) *cell.Cell { return header(OpWithdraw, queryID).EndCell() }

// ChargeBody is the body of a charge, sent by the host's wallet: cumulative
// is the total the host is owed, sig its settlement key's signature
// (SignCharge). The contract pays cumulative minus what it already paid.
func ChargeBody(queryID uint64, cumulative *big.Int, sig []byte) (*cell.Cell, error) {
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("escrow: signature is %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	b := header(OpCharge, queryID)
	if err := storeAmount(b, cumulative); err != nil {
		return nil, err
	}
	return b.MustStoreSlice(sig, 512).EndCell(), nil
}

// CloseBody is the body of a cooperative close, which anyone may send:
// cumulative is the final total the host gets, the signatures are the
// client's and the host's over CloseDigest. The host is paid the difference
// to what it was already charged, the client the rest, and the contract is
// destroyed.
//
// Each signature is in its own reference cell: `cumulative:Coins
// ^[client_sig:bits512] ^[host_sig:bits512]` (ESCROW.md's single reference
// cannot hold 1024 bits).
func CloseBody(queryID uint64, cumulative *big.Int, clientSig, hostSig []byte) (*cell.Cell, error) {
	if len(clientSig) != ed25519.SignatureSize || len(hostSig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("escrow: signatures must be %d bytes", ed25519.SignatureSize)
	}
	b := header(OpCooperativeClose, queryID)
	if err := storeAmount(b, cumulative); err != nil {
		return nil, err
	}
	return b.
		MustStoreRef(cell.BeginCell().MustStoreSlice(clientSig, 512).EndCell()).
		MustStoreRef(cell.BeginCell().MustStoreSlice(hostSig, 512).EndCell()).
		EndCell(), nil
}

// ChargeDigest returns the 32 bytes the host's settlement key signs to
// authorize a charge of cumulative in total on the escrow at escrowAddr:
// the hash of the cell [0x434f4402:uint32 escrow:MsgAddressInt cumulative:Coins].
func ChargeDigest(escrowAddr *address.Address, cumulative *big.Int) ([]byte, error) {
	return digest(OpCharge, escrowAddr, cumulative)
}

// CloseDigest returns the 32 bytes both parties sign to close the escrow at
// escrowAddr with the host getting cumulative in total: the hash of the cell
// [0x434f4405:uint32 escrow:MsgAddressInt cumulative:Coins].
func CloseDigest(escrowAddr *address.Address, cumulative *big.Int) ([]byte, error) {
	return digest(OpCooperativeClose, escrowAddr, cumulative)
}

// SignCharge signs ChargeDigest(escrowAddr, cumulative) with the host's
// settlement key.
func SignCharge(key ed25519.PrivateKey, escrowAddr *address.Address, cumulative *big.Int) ([]byte, error) {
	d, err := ChargeDigest(escrowAddr, cumulative)
	if err != nil {
		return nil, err
	}
	return ed25519.Sign(key, d), nil
}

// SignClose signs CloseDigest(escrowAddr, cumulative); the client and the
// host each sign it with their key.
func SignClose(key ed25519.PrivateKey, escrowAddr *address.Address, cumulative *big.Int) ([]byte, error) {
	d, err := CloseDigest(escrowAddr, cumulative)
	if err != nil {
		return nil, err
	}
	return ed25519.Sign(key, d), nil
}

func digest(op uint32, escrowAddr *address.Address, cumulative *big.Int) ([]byte, error) {
	if err := checkAddr("escrow", escrowAddr); err != nil {
		return nil, err
	}
	b := cell.BeginCell().MustStoreUInt(uint64(op), 32).MustStoreAddr(escrowAddr)
	if err := storeAmount(b, cumulative); err != nil {
		return nil, err
	}
	return b.EndCell().Hash(), nil
}

// storeAmount stores a nanoTON amount as Coins, refusing what Coins cannot
// hold (nil, negative, or 2^120 and above) instead of panicking.
func storeAmount(b *cell.Builder, amount *big.Int) error {
	if err := contract.StoreAmount(b, amount); err != nil {
		return fmt.Errorf("escrow: %w", err)
	}
	return nil
}
