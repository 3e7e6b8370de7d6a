package registry

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"time"

	"github.com/cocoonhost/cocoon/settle/internal/contract"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// signedValidity is how long the Registrar's signed registrations stay valid:
// long enough for a message to reach the registry on a slow network, short
// enough that one held back is soon useless.
const signedValidity = 10 * time.Minute

// RegistrarConfig configures a Registrar. API, Wallet, Key and Registry are
// required.
type RegistrarConfig struct {
	API ton.APIClientWrapped
	// Wallet sends the registrations and pays their fee and stake; the stake
	// comes back to it after a deregistration.
	Wallet *wallet.Wallet
	// Key is the host's settlement key, which signs the registrations.
	Key ed25519.PrivateKey
	// Registry is the registry's address.
	Registry *address.Address
	// Stake is the stake, nanoTON, the host keeps on the registry; nil or less
	// than the registry's minimum means the minimum.
	Stake *big.Int
	// Interval is how often Run compares the registration on the chain with
	// the host's (default 1 minute): a changed price list is registered within
	// it. Backoff is the first wait after a failure (default 5 s), doubled up
	// to MaxBackoff (default 10 minutes).
	Interval, Backoff, MaxBackoff time.Duration
	// ConfirmTimeout bounds the wait for the registry's transaction after the
	// wallet's (default 2 minutes): on a real network they are blocks apart.
	ConfirmTimeout time.Duration
	Logger         *slog.Logger
}

// Registrar keeps one host's registration on one registry current: it
// registers when the record is missing, not active, held by another wallet,
// short of stake or different from what the host publishes now.
type Registrar struct {
	cfg RegistrarConfig
}

// NewRegistrar checks cfg and fills in its defaults.
func NewRegistrar(cfg RegistrarConfig) (*Registrar, error) {
	if cfg.API == nil || cfg.Wallet == nil || len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("registry: a registrar needs the API, the host's wallet and its settlement key")
	}
	if err := checkAddr("registry", cfg.Registry); err != nil {
		return nil, err
	}
	if cfg.Stake != nil && (cfg.Stake.Sign() < 0 || cfg.Stake.BitLen() > 120) {
		return nil, fmt.Errorf("registry: stake %v is not a valid nanoTON amount", cfg.Stake)
	}
	defaults := []struct {
		d   *time.Duration
		def time.Duration
	}{{&cfg.Interval, time.Minute}, {&cfg.Backoff, 5 * time.Second}, {&cfg.MaxBackoff, 10 * time.Minute}, {&cfg.ConfirmTimeout, 2 * time.Minute}}
	for _, d := range defaults {
		if *d.d <= 0 {
			*d.d = d.def
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registrar{cfg: cfg}, nil
}

// Sync registers reg if the registry's record of the host differs from it
// (see Registrar), and returns whether it sent a registration. It costs one
// GetState when nothing changed; a registration costs the fee
// (RegistrationFee, 0.05 TON) plus whatever the stake lacks, one wallet
// transaction and a GetState per second until the registry's record shows
// it. It fails, before sending, when the wallet cannot pay; with the
// registry's ExitCode when the registry refused the registration; or with the
// chain's or the wallet's error.
func (r *Registrar) Sync(ctx context.Context, reg Registration) (sent bool, err error) {
	st, err := GetState(ctx, r.cfg.API, r.cfg.Registry)
	if err != nil {
		return false, err
	}
	value, needed := r.needed(st, reg)
	if !needed {
		return false, nil
	}
	if err := r.checkFunds(ctx, value); err != nil {
		return false, err
	}
	s := Signed{Seqno: st.NextSeqno(r.publicKey()), ValidUntil: uint32(st.Now.Add(signedValidity).Unix())}
	body, err := RegisterBody(r.cfg.Key, r.cfg.Registry, r.cfg.Wallet.WalletAddress(), reg, s, uint64(s.Seqno))
	if err != nil {
		return false, err
	}
	if err := send(ctx, r.cfg.Wallet, r.cfg.Registry, value, body); err != nil {
		return true, err
	}
	return true, r.confirm(ctx, reg, s.Seqno, body.Hash())
}

// walletFeeBound is a generous bound on the wallet's own fees for one message.
var walletFeeBound = big.NewInt(20_000_000)

// checkFunds fails, in words, when the wallet cannot pay value and its fees: the wallet
// would accept the message and drop the transfer (it ignores action errors), and the
// registration would never come.
func (r *Registrar) checkFunds(ctx context.Context, value *big.Int) error {
	block, err := r.cfg.API.CurrentMasterchainInfo(ctx)
	if err != nil {
		return fmt.Errorf("registry: get masterchain block: %w", err)
	}
	balance, err := r.cfg.Wallet.GetBalance(ctx, block)
	if err != nil {
		return fmt.Errorf("registry: wallet balance: %w", err)
	}
	if need := new(big.Int).Add(value, walletFeeBound); balance.Nano().Cmp(need) < 0 {
		return fmt.Errorf("registry: wallet %s holds %s TON; the registration needs %s TON (stake and fee) plus gas",
			r.cfg.Wallet.WalletAddress(), balance.String(), tlb.FromNanoTON(value).String())
	}
	return nil
}

// send sends body with value from w to the registry at addr and waits for the
// wallet's transaction.
func send(ctx context.Context, w *wallet.Wallet, addr *address.Address, value *big.Int, body *cell.Cell) error {
	msg := &wallet.Message{
		Mode: wallet.PayGasSeparately + wallet.IgnoreErrors,
		InternalMessage: &tlb.InternalMessage{IHRDisabled: true, Bounce: true, DstAddr: addr,
			Amount: tlb.FromNanoTON(value), Body: body},
	}
	if _, _, err := w.SendWaitTransaction(ctx, msg); err != nil {
		return fmt.Errorf("registry: send from %s: %w", w.WalletAddress(), err)
	}
	return nil
}

// OpValue is what to attach to an operation that carries no stake (0.05 TON):
// enough for its gas; the rest is kept (deregister, owner operations) or sent
// back with the stake (withdraw).
var OpValue = big.NewInt(50_000_000)

// Deregister signs and sends a deregistration of the host. Its stake can be
// withdrawn Params.UnstakeDelay seconds later (WithdrawStake). A Registrar
// still running (Run) registers the host again at its next round: stop it
// first. It costs 0.05 TON and fails with the registry's ExitCode if the
// registry refused it (ErrUnknownHost, ErrAlreadyLeaving).
func (r *Registrar) Deregister(ctx context.Context) error {
	st, err := GetState(ctx, r.cfg.API, r.cfg.Registry)
	if err != nil {
		return err
	}
	s := Signed{Seqno: st.NextSeqno(r.publicKey()), ValidUntil: uint32(st.Now.Add(signedValidity).Unix())}
	body, err := DeregisterBody(r.cfg.Key, r.cfg.Registry, s, uint64(s.Seqno))
	if err != nil {
		return err
	}
	return Send(ctx, r.cfg.API, r.cfg.Wallet, r.cfg.Registry, OpValue, body, r.cfg.ConfirmTimeout)
}

// WithdrawStake sends the message that returns the host's stake to the wallet
// that staked it. It fails with the registry's ExitCode if the registry
// refused it: ErrTooEarly before the unstake delay is over, ErrNotLeaving for
// an active host, ErrUnknownHost once withdrawn.
func (r *Registrar) WithdrawStake(ctx context.Context) error {
	// A fresh query id makes this body unlike any earlier withdrawal's, whose
	// transaction await would otherwise find first.
	body, err := WithdrawStakeBody(r.publicKey(), rand.Uint64())
	if err != nil {
		return err
	}
	return Send(ctx, r.cfg.API, r.cfg.Wallet, r.cfg.Registry, OpValue, body, r.cfg.ConfirmTimeout)
}

// Send sends body with value from w to the registry at addr, waits up to
// timeout for the registry's transaction on it, and returns the registry's
// ExitCode if it refused the message. A body must differ from earlier ones
// (a seqno or a fresh query id): the registry's transaction is found by the
// body's hash. It costs one wallet transaction and a liteserver query per
// second of waiting.
func Send(ctx context.Context, api ton.APIClientWrapped, w *wallet.Wallet, addr *address.Address, value *big.Int, body *cell.Cell, timeout time.Duration) error {
	if err := send(ctx, w, addr, value, body); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if tx, err := api.FindLastTransactionByInMsgHash(ctx, addr, body.Hash()); err == nil {
			if code, failed := exitCode(tx); failed {
				return code
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("registry: no transaction on the registry yet: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// needed returns the value to attach to a registration and whether one is
// needed at all.
func (r *Registrar) needed(st *State, reg Registration) (*big.Int, bool) {
	target := st.MinStake
	if r.cfg.Stake != nil && r.cfg.Stake.Cmp(target) > 0 {
		target = r.cfg.Stake
	}
	have := new(big.Int)
	h := st.Host(r.publicKey())
	if h != nil && h.State != HostWithdrawn {
		have = h.Stake
	}
	missing := new(big.Int).Sub(target, have)
	if missing.Sign() < 0 {
		missing.SetInt64(0)
	}
	current := h != nil && h.State == HostActive && contract.SameAddr(h.Wallet, r.cfg.Wallet.WalletAddress()) && h.Registration == reg
	if current && missing.Sign() == 0 {
		return nil, false
	}
	return missing.Add(missing, big.NewInt(RegistrationFee)), true
}

// confirm waits until the registry's record carries seqno and reg, or returns
// why it does not: the registry's exit code if it refused the message.
func (r *Registrar) confirm(ctx context.Context, reg Registration, seqno uint32, bodyHash []byte) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ConfirmTimeout)
	defer cancel()
	for {
		st, err := GetState(ctx, r.cfg.API, r.cfg.Registry)
		if err == nil {
			if h := st.Host(r.publicKey()); h != nil && h.Seqno >= seqno {
				if h.Seqno == seqno && h.Registration == reg {
					return nil
				}
				return fmt.Errorf("registry: another registration of this settlement key (seqno %d) came first", h.Seqno)
			}
			if code, ok := r.refusal(ctx, bodyHash); ok {
				return fmt.Errorf("registry refused the registration: %w", code)
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("registry: registration not confirmed: %w", err)
		case <-time.After(time.Second):
		}
	}
}

// refusal finds the registry's transaction on the message whose body hash is
// bodyHash and returns its exit code if it failed.
func (r *Registrar) refusal(ctx context.Context, bodyHash []byte) (ExitCode, bool) {
	tx, err := r.cfg.API.FindLastTransactionByInMsgHash(ctx, r.cfg.Registry, bodyHash)
	if err != nil {
		return 0, false
	}
	return exitCode(tx)
}

// exitCode returns the compute phase's exit code of tx if it failed.
func exitCode(tx *tlb.Transaction) (ExitCode, bool) {
	desc, ok := tx.Description.(tlb.TransactionDescriptionOrdinary)
	if !ok {
		return 0, false
	}
	vm, ok := desc.ComputePhase.Phase.(tlb.ComputePhaseVM)
	if !ok || vm.Success {
		return 0, false
	}
	return ExitCode(vm.Details.ExitCode), true
}

// Run keeps the registration current until ctx is done: it calls Sync with
// current() at once and then every Interval, and after a failure, which it
// logs, again after a backoff that doubles (with jitter) up to MaxBackoff. It
// returns ctx's error.
func (r *Registrar) Run(ctx context.Context, current func() Registration) error {
	backoff := r.cfg.Backoff
	for {
		wait := r.cfg.Interval
		reg := current()
		sent, err := r.Sync(ctx, reg)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			wait = backoff + rand.N(backoff/4+1)
			backoff = min(2*backoff, r.cfg.MaxBackoff)
			r.cfg.Logger.Warn("registration failed; retrying", "registry", r.cfg.Registry.String(), "retry_in", wait.Round(time.Second), "err", err)
		default:
			backoff = r.cfg.Backoff
			if sent {
				r.cfg.Logger.Info("registered", "registry", r.cfg.Registry.String(), "endpoint", reg.Endpoint)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (r *Registrar) publicKey() ed25519.PublicKey { return r.cfg.Key.Public().(ed25519.PublicKey) }
