package tonemu

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// messageTTL is how long the wallets of NewWallet sign their messages for: tests move
// the chain's clock by hours and days, past tonutils-go's default of minutes.
const messageTTL = 30 * 24 * 3600

// NewWallet returns the V5R1 wallet of key on this chain (mainnet id), credited with
// nanoTON. It deploys itself with its first message, as on the real chain.
func (c *Chain) NewWallet(key ed25519.PrivateKey, nanoTON uint64) (*wallet.Wallet, error) {
	w, err := wallet.FromPrivateKey(c, key, wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		return nil, err
	}
	w.GetSpec().(*wallet.SpecV5R1Final).SetMessagesTTL(messageTTL)
	if err := c.Fund(w.WalletAddress(), tlb.FromNanoTONU(nanoTON).Nano()); err != nil {
		return nil, err
	}
	return w, nil
}

// Send makes w send nanoTON with body (and stateInit, if not nil) to dst as a bounceable
// message, through the wallet's real signing path, and waits for the transaction. It
// does not check what dst did with the message: see Transactions.
func Send(ctx context.Context, w *wallet.Wallet, dst *address.Address, nanoTON uint64, body *cell.Cell, stateInit *tlb.StateInit) error {
	err := w.Send(ctx, &wallet.Message{
		Mode: wallet.PayGasSeparately + wallet.IgnoreErrors,
		InternalMessage: &tlb.InternalMessage{IHRDisabled: true, Bounce: true, DstAddr: dst,
			Amount: tlb.FromNanoTONU(nanoTON), Body: body, StateInit: stateInit},
	}, true)
	if err != nil {
		return fmt.Errorf("tonemu: send from %s: %w", w.WalletAddress(), err)
	}
	return nil
}
