// Package contract holds what the Go sides of Cocoon's contracts (settle/escrow,
// settle/registry) share: parsing embedded code, state-init addresses, the checks of
// addresses and amounts, and reading an account that must run a given code.
package contract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// Code returns a function that parses boc, an embedded code cell, once; name (the
// contract's) prefixes its error, which only a corrupt embedded BOC causes.
func Code(name string, boc []byte) func() (*cell.Cell, error) {
	return sync.OnceValues(func() (*cell.Cell, error) {
		c, err := cell.FromBOC(boc)
		if err != nil {
			return nil, fmt.Errorf("%s: parse the embedded code: %w", name, err)
		}
		return c, nil
	})
}

// CodeHash returns the representation hash of the code cell code gives.
func CodeHash(code func() (*cell.Cell, error)) ([]byte, error) {
	c, err := code()
	if err != nil {
		return nil, err
	}
	return c.Hash(), nil
}

// ExitCodeString is how a contract's exit code reads: its name and number, or the
// number alone for a code without a name.
func ExitCodeString(name string, code int32) string {
	if name != "" {
		return fmt.Sprintf("%s (%d)", name, code)
	}
	return fmt.Sprintf("exit code %d", code)
}

// StateInit returns the state init of code and data (the contract's code cell and its
// initial data, as their functions give them) and its address in workchain: the hash
// of the state init, bounceable. It fails with code's or data's error.
func StateInit(code, data func() (*cell.Cell, error), workchain int8) (*tlb.StateInit, *address.Address, error) {
	c, err := code()
	if err != nil {
		return nil, nil, err
	}
	d, err := data()
	if err != nil {
		return nil, nil, err
	}
	si := &tlb.StateInit{Code: c, Data: d}
	root, err := tlb.ToCell(si)
	if err != nil {
		return nil, nil, fmt.Errorf("serialize state init: %w", err)
	}
	return si, address.NewAddress(0, byte(workchain), root.Hash()), nil
}

// IsStd reports whether a is a standard (addr_std) 256-bit address, the only kind the
// contracts store.
func IsStd(a *address.Address) bool {
	return a != nil && a.Type() == address.StdAddress && a.BitsLen() == 256
}

// SameAddr compares two addresses by workchain and hash, ignoring the bounceable and
// testnet flags that are not part of the on-chain address.
func SameAddr(a, b *address.Address) bool {
	return a != nil && b != nil && a.Workchain() == b.Workchain() && bytes.Equal(a.Data(), b.Data())
}

// ErrAmount is returned by StoreAmount for what Coins cannot hold.
var ErrAmount = errors.New("not a valid nanoTON amount")

// StoreAmount stores a nanoTON amount as Coins, refusing what Coins cannot hold (nil,
// negative, or 2^120 and above) with ErrAmount instead of panicking.
func StoreAmount(b *cell.Builder, amount *big.Int) error {
	if amount == nil || amount.Sign() < 0 || amount.BitLen() > 120 {
		return fmt.Errorf("amount %v is %w", amount, ErrAmount)
	}
	return b.StoreBigCoins(amount)
}

// Checked is an account read by Active: the block it was read at, the API bound to that
// block for the get-methods that follow, and the account.
type Checked struct {
	API     ton.APIClientWrapped
	Block   *ton.BlockIDExt
	Account *tlb.Account
}

// Active reads addr as of the current masterchain block and checks that it is an active
// contract running the code code gives. It costs two liteserver queries and fails with
// notDeployed or wrongCode (the caller's errors, wrapped naming the address), or the
// chain's error prefixed with name.
func Active(ctx context.Context, name string, api ton.APIClientWrapped, addr *address.Address, code func() (*cell.Cell, error), notDeployed, wrongCode error) (*Checked, error) {
	codeHash, err := CodeHash(code)
	if err != nil {
		return nil, err
	}
	block, err := api.CurrentMasterchainInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: get masterchain block: %w", name, err)
	}
	api = api.WaitForBlock(block.SeqNo)
	acc, err := api.GetAccount(ctx, block, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: get account %s: %w", name, addr, err)
	}
	if !acc.IsActive || acc.State == nil || acc.State.Status != tlb.AccountStatusActive || acc.Code == nil {
		return nil, fmt.Errorf("%w: %s", notDeployed, addr)
	}
	if got := acc.Code.Hash(); !bytes.Equal(got, codeHash) {
		return nil, fmt.Errorf("%w: %s has code hash %x", wrongCode, addr, got)
	}
	return &Checked{API: api, Block: block, Account: acc}, nil
}
