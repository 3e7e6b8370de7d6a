package escrow

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/cocoonhost/cocoon/settle/internal/contract"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

var (
	// ErrNotDeployed: there is no active contract at the address (never
	// deployed, or already withdrawn or closed and destroyed).
	ErrNotDeployed = errors.New("escrow: no active contract at this address")
	// ErrWrongCode: the account runs code other than contracts.EscrowCode,
	// perhaps a look-alike built to fool a host.
	ErrWrongCode = errors.New("escrow: account code is not the escrow contract")
	// ErrWrongAddress: the account runs the escrow code but its address is
	// not the one its parameters give, so it was deployed with forged
	// initial data (say, a deposit nobody paid).
	ErrWrongAddress = errors.New("escrow: address does not match the escrow's parameters")
)

// State is an escrow as read from the chain: the fields of get_escrow_data,
// the account's balance and code hash. Amounts are nanoTON.
type State struct {
	Params
	// CloseRequestedAt is the unix time of the withdrawal request, 0 if none.
	CloseRequestedAt uint32
	// Deposited is the sum of all deposits net of DepositReserve each.
	Deposited *big.Int
	// Charged is the cumulative amount paid to the host so far.
	Charged *big.Int
	// Balance is the account's balance, which covers Deposited - Charged
	// plus the reserves.
	Balance *big.Int
	// CodeHash is the hash of the account's code; GetState guarantees it is
	// CodeHash().
	CodeHash []byte
}

// Unspent returns Deposited - Charged: what the host may still charge, and
// what the client gets back otherwise.
func (s *State) Unspent() *big.Int { return new(big.Int).Sub(s.Deposited, s.Charged) }

// CheckOpen returns ErrClosing if the client has requested a withdrawal, in
// which case the host should serve no more requests against this escrow and
// submit its last charge before WithdrawableAt.
func (s *State) CheckOpen() error {
	if s.CloseRequestedAt != 0 {
		return ErrClosing
	}
	return nil
}

// WithdrawableAt returns the earliest time the client may withdraw, and
// false if no withdrawal was requested.
func (s *State) WithdrawableAt() (time.Time, bool) {
	if s.CloseRequestedAt == 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(s.CloseRequestedAt)+int64(s.Timeout), 0), true
}

// GetState reads the escrow at addr as of the current masterchain block.
// It costs three liteserver queries (block, account, get-method).
//
// It fails with ErrNotDeployed if no contract is active there, ErrWrongCode
// if the code is not contracts.EscrowCode, and ErrWrongAddress if addr is
// not what the contract's own parameters give (forged initial data); any
// other error is the chain's, or a malformed get-method result.
func GetState(ctx context.Context, api ton.APIClientWrapped, addr *address.Address) (*State, error) {
	checked, err := contract.Active(ctx, "escrow", api, addr, code, ErrNotDeployed, ErrWrongCode)
	if err != nil {
		return nil, err
	}
	api, block, acc := checked.API, checked.Block, checked.Account

	res, err := api.RunGetMethod(ctx, block, addr, "get_escrow_data")
	if err != nil {
		return nil, fmt.Errorf("escrow: get_escrow_data on %s: %w", addr, err)
	}
	st, err := decodeEscrowData(res.AsTuple())
	if err != nil {
		return nil, fmt.Errorf("escrow: get_escrow_data on %s: %w", addr, err)
	}
	st.Balance = new(big.Int).Set(acc.State.Balance.Nano())
	st.CodeHash = acc.Code.Hash()

	derived, err := st.Params.Address(int8(addr.Workchain()))
	if err != nil {
		return nil, fmt.Errorf("escrow: %s: %w", addr, err)
	}
	if !contract.SameAddr(derived, addr) {
		return nil, fmt.Errorf("%w: %s (its parameters give %s)", ErrWrongAddress, addr, derived)
	}
	return st, nil
}

// decodeEscrowData decodes get_escrow_data's nine results: channel_id,
// timeout, close_requested_at, deposited, charged, client_key, host_key,
// client_addr, host_addr.
func decodeEscrowData(v []any) (*State, error) {
	if len(v) != 9 {
		return nil, fmt.Errorf("%d results, want 9", len(v))
	}
	var ints [7]*big.Int
	for i := range ints {
		n, ok := v[i].(*big.Int)
		if !ok || n.Sign() < 0 {
			return nil, fmt.Errorf("result %d is %T %v, want a non-negative integer", i, v[i], v[i])
		}
		ints[i] = n
	}
	var addrs [2]*address.Address
	for i := range addrs {
		s, ok := v[7+i].(*cell.Slice)
		if !ok {
			return nil, fmt.Errorf("result %d is %T, want an address slice", 7+i, v[7+i])
		}
		a, err := s.Copy().LoadAddr()
		if err != nil {
			return nil, fmt.Errorf("result %d: %w", 7+i, err)
		}
		addrs[i] = a
	}
	limits := []struct {
		name string
		bits int
	}{{"channel_id", 64}, {"timeout", 32}, {"close_requested_at", 32}, {"deposited", 120}, {"charged", 120}, {"client_key", 256}, {"host_key", 256}}
	for i, l := range limits {
		if ints[i].BitLen() > l.bits {
			return nil, fmt.Errorf("%s %v does not fit %d bits", l.name, ints[i], l.bits)
		}
	}
	return &State{
		Params: Params{
			ClientAddr: addrs[0],
			HostAddr:   addrs[1],
			ClientKey:  ed25519.PublicKey(ints[5].FillBytes(make([]byte, ed25519.PublicKeySize))),
			HostKey:    ed25519.PublicKey(ints[6].FillBytes(make([]byte, ed25519.PublicKeySize))),
			Timeout:    uint32(ints[1].Uint64()),
			ChannelID:  ints[0].Uint64(),
		},
		CloseRequestedAt: uint32(ints[2].Uint64()),
		Deposited:        ints[3],
		Charged:          ints[4],
	}, nil
}
