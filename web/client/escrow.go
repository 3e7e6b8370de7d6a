package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/escrow"
)

// The client side of an escrow (settle/ESCROW.md): the transfers a client's wallet
// sends to it, and waiting for the escrow to show them.

// EscrowWait bounds how long WaitEscrow waits, polling every EscrowPoll, for the
// escrow to show a transaction its wallet sent: on TON the escrow's transaction lands
// a few blocks after the wallet's.
const (
	EscrowWait = 2 * time.Minute
	EscrowPoll = 2 * time.Second
)

// OpValue is the TON (nanoTON) sent with a withdrawal request or a withdrawal for the
// escrow's gas. It is not lost: the withdrawal returns the escrow's whole balance.
const OpValue = 50_000_000

// Transfer is one message the client's wallet sends to an escrow.
type Transfer struct {
	To    *address.Address
	Value uint64 // nanoTON
	Body  *cell.Cell
	Init  *tlb.StateInit // the first deposit's, else nil
}

// DepositTransfer is the transfer that adds nano to the escrow at to, with the
// escrow.DepositReserve it keeps for gas; init deploys it (the first deposit), else
// nil.
func DepositTransfer(to *address.Address, nano uint64, init *tlb.StateInit) Transfer {
	return Transfer{To: to, Value: nano + escrow.DepositReserve, Body: escrow.DepositBody(uint64(time.Now().Unix())), Init: init}
}

// Message is the wallet message of t: bounceable, so a refused message comes back.
func (t Transfer) Message() *wallet.Message {
	return &wallet.Message{Mode: wallet.PayGasSeparately + wallet.IgnoreErrors, InternalMessage: &tlb.InternalMessage{
		IHRDisabled: true, Bounce: true, DstAddr: t.To, Amount: tlb.FromNanoTONU(t.Value), Body: t.Body, StateInit: t.Init}}
}

// Wallet is a client's V5R1 wallet, connected to the chain.
type Wallet struct {
	*wallet.Wallet
	API ton.APIClientWrapped
}

// OpenWallet derives the V5R1 wallet of key on the network networkID
// (wallet.MainnetGlobalID or TestnetGlobalID) and connects it through api.
func OpenWallet(api ton.APIClientWrapped, key ed25519.PrivateKey, networkID int32) (*Wallet, error) {
	w, err := wallet.FromPrivateKey(api, key, wallet.ConfigV5R1Final{NetworkGlobalID: networkID})
	if err != nil {
		return nil, fmt.Errorf("the client wallet: %w", err)
	}
	return &Wallet{Wallet: w, API: api}, nil
}

// Send sends t and waits for the wallet's transaction. Before sending it checks that
// the wallet holds t's value and some TON for fees, so a short wallet is an error here
// rather than a message the chain drops.
func (w *Wallet) Send(ctx context.Context, t Transfer) error {
	block, err := w.API.CurrentMasterchainInfo(ctx)
	if err != nil {
		return fmt.Errorf("read the chain: %w", err)
	}
	balance, err := w.GetBalance(ctx, block)
	if err != nil {
		return fmt.Errorf("read the balance of wallet %s: %w", w.WalletAddress(), err)
	}
	const feeMargin = 20_000_000 // the wallet's own fees, about 0.005 TON, with room
	if need := new(big.Int).SetUint64(t.Value + feeMargin); balance.Nano().Cmp(need) < 0 {
		return fmt.Errorf("wallet %s holds %s TON; this transfer needs %s TON and about 0.02 TON of fees",
			w.WalletAddress(), balance.String(), settle.FormatTON(t.Value))
	}
	if _, _, err := w.SendWaitTransaction(ctx, t.Message()); err != nil {
		return fmt.Errorf("send from wallet %s: %w", w.WalletAddress(), err)
	}
	return nil
}

// WaitEscrow polls the escrow at addr every EscrowPoll until done accepts what
// escrow.GetState returns, or EscrowWait passes; what says what it waits for, for the
// error ("been deployed").
func WaitEscrow(ctx context.Context, api ton.APIClientWrapped, addr *address.Address, what string, done func(*escrow.State, error) bool) (*escrow.State, error) {
	ctx, cancel := context.WithTimeout(ctx, EscrowWait)
	defer cancel()
	for {
		st, err := escrow.GetState(ctx, api, addr)
		if done(st, err) {
			return st, err
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("its state did not change")
			}
			return nil, fmt.Errorf("the escrow %s has not %s after %v (%v): look up the wallet's last transaction in an explorer; a refused message bounces back to the wallet",
				addr, what, EscrowWait, err)
		case <-time.After(EscrowPoll):
		}
	}
}

// ReadEscrow reads the escrow at addr and, when client is not nil, checks that it is
// the escrow's client wallet, the only sender it accepts deposits and withdrawals from.
func ReadEscrow(ctx context.Context, api ton.APIClientWrapped, addr *address.Address, client *address.Address) (*escrow.State, error) {
	st, err := escrow.GetState(ctx, api, addr)
	switch {
	case errors.Is(err, escrow.ErrNotDeployed):
		return nil, fmt.Errorf("there is no escrow at %s: never deployed, or already withdrawn", addr)
	case err != nil:
		return nil, err
	case client != nil && !st.ClientAddr.Equals(client):
		return nil, fmt.Errorf("escrow %s belongs to client wallet %s, not to this seed's wallet %s: the escrow would refuse it", addr, st.ClientAddr, client)
	}
	return st, nil
}
