package billing

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/settle/escrow"
)

// SettlerConfig configures a Settler. Store, API, Wallet and Key are required.
type SettlerConfig struct {
	Store Store
	API   ton.APIClientWrapped
	// Wallet is the host's wallet: it sends the charges and receives the payouts.
	Wallet *wallet.Wallet
	// Key is the settlement key that signs the charges.
	Key ed25519.PrivateKey
	// Threshold commits an account's charge once its unsettled amount reaches it
	// (nanoTON). Default 1 TON.
	Threshold uint64
	// MaxDelay commits an account's charge once it has had an unsettled amount for
	// this long, however small. Default 6 hours: a few transactions per client per day.
	MaxDelay time.Duration
	// Interval is how often the settler looks at the ledger. Default 1 minute.
	Interval time.Duration
	// ChargeValue is the TON (nanoTON) sent with each charge message for the escrow's
	// gas; the escrow returns what is left with the payout. Default 0.05 TON.
	ChargeValue uint64
	Logger      *slog.Logger
	Now         func() time.Time
	// Metrics counts the rounds and the charges sent: the Service's Config.Metrics,
	// which serves them. Default: a Metrics nobody serves.
	Metrics *Metrics
	// Escrows is the Service's escrow cache (Config.Escrows), if it is a ChainEscrows:
	// the settler files in it each escrow state it reads, before it records a
	// settlement from that state. Without it, admission finds a cached state charged
	// less than the ledger settled after each settlement, as if the escrow had been
	// reopened, and needs a chain read to tell; with the chain unreachable it then
	// refuses the account (CodeUnavailable) until the chain is back.
	Escrows *ChainEscrows
}

// maxChargesPerMessage is how many charges one wallet transaction carries: the V5R1
// wallet sends at most 255 messages at once.
const maxChargesPerMessage = 255

// Settler commits the ledger's charges to the escrows on-chain, in batches: an account
// is charged when its unsettled amount passes the threshold, when it has waited the
// maximum delay, or when its client has asked for a withdrawal (the host must charge
// before the escrow's timeout). Each round reads the escrow of every account with an
// unsettled amount, so a withdrawal request is charged at the first round after it
// lands on-chain: within Interval, far inside the escrow's timeout (an hour at least,
// Config.MinTimeout). Each charge is the account's cumulative total
// signed by the settlement key, so a charge sent twice, or lost and sent again later, is
// harmless: the contract only ever pays the difference to what it paid before. When the
// chain is unreachable the charges wait in the ledger for the next round.
type Settler struct {
	cfg SettlerConfig

	mu    sync.Mutex
	since map[string]time.Time // when the settler first saw an account unsettled
	// reported is what was last logged of an account that needs its operator (see
	// report), while it stays unsettled.
	reported map[string]string
}

// NewSettler checks cfg and returns a settler; Run starts it.
func NewSettler(cfg SettlerConfig) (*Settler, error) {
	if cfg.Store == nil || cfg.API == nil || cfg.Wallet == nil || len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("settle: the settler needs a store, a TON API, the host's wallet and the settlement key")
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = 1e9
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 6 * time.Hour
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.ChargeValue == 0 {
		cfg.ChargeValue = 50_000_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	return &Settler{cfg: cfg, since: map[string]time.Time{}, reported: map[string]string{}}, nil
}

// Run settles every Interval until ctx is done. Failures are logged and retried at the
// next round. A round under way when ctx is done stops at its next chain query (what it
// sent is harmless: the next start sends the same cumulative totals), and Run returns
// only once it has: whoever waits for Run may then close the Store and the API.
func (s *Settler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := s.Settle(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("settlement deferred", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// charge is one account's pending charge.
type charge struct {
	account    string
	addr       *address.Address
	cumulative uint64
}

// Settle runs one round: it picks the accounts that are due, sends their charges in as
// few wallet transactions as possible, waits for them, and records in the ledger what
// each escrow has been charged. It returns how many charges it sent.
func (s *Settler) Settle(ctx context.Context) (sent int, err error) {
	defer func() { s.cfg.Metrics.settled(sent, err, s.cfg.Now()) }()
	due, err := s.due(ctx)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	for len(due) > 0 {
		batch := due[:min(len(due), maxChargesPerMessage)]
		due = due[len(batch):]
		msgs := make([]*wallet.Message, len(batch))
		for i, c := range batch {
			if msgs[i], err = s.chargeMessage(c); err != nil {
				return sent, err
			}
		}
		if _, _, err := s.cfg.Wallet.SendManyWaitTransaction(ctx, msgs); err != nil {
			return sent, fmt.Errorf("settle: send %d charges: %w", len(msgs), err)
		}
		sent += len(batch)
		for _, c := range batch {
			s.confirm(ctx, c)
		}
	}
	return sent, nil
}

// due returns the accounts to charge now, and records those the chain says are
// already charged.
func (s *Settler) due(ctx context.Context) ([]charge, error) {
	unsettled, err := s.cfg.Store.Unsettled(ctx)
	if err != nil {
		return nil, fmt.Errorf("settle: read the ledger: %w", err)
	}
	now := s.cfg.Now()
	var due []charge
	s.mu.Lock()
	seen := make(map[string]bool, len(unsettled))
	for _, t := range unsettled {
		seen[t.Account] = true
		if _, ok := s.since[t.Account]; !ok {
			s.since[t.Account] = now
		}
	}
	for account := range s.since {
		if !seen[account] {
			delete(s.since, account)
			delete(s.reported, account)
		}
	}
	s.mu.Unlock()
	for _, t := range unsettled {
		addr, err := address.ParseRawAddr(t.Account)
		if err != nil {
			return nil, fmt.Errorf("settle: ledger account %q: %w", t.Account, err)
		}
		st, err := escrow.GetState(ctx, s.cfg.API, addr)
		if err != nil {
			if errors.Is(err, escrow.ErrNotDeployed) || errors.Is(err, escrow.ErrWrongCode) || errors.Is(err, escrow.ErrWrongAddress) {
				s.report(ctx, slog.LevelWarn, t.Account, "escrow gone before its last charge", "unsettled", t.Cumulative-t.Settled, "err", err)
				continue
			}
			return nil, fmt.Errorf("settle: read escrow %s: %w", t.Account, err)
		}
		s.observe(t.Account, st)
		charged := st.Charged.Uint64()
		if charged < t.Settled {
			// Charged less than it paid this host: another contract at the same
			// address (closed, then deployed again with the same parameters). The
			// closed one's receipts are not its to pay.
			s.report(ctx, slog.LevelError, t.Account, "the escrow has been charged less than the ledger settled with it: opened again at the same address; not charged",
				"charged", charged, "settled", t.Settled, "cumulative", t.Cumulative)
			continue
		}
		if charged > t.Settled {
			// Charged in an earlier round whose confirmation was lost.
			if err := s.cfg.Store.RecordSettlement(ctx, t.Account, charged, now); err != nil {
				// The escrow is ahead of the ledger (a ledger restored from an older
				// copy): this account needs the operator; the others are settled.
				s.report(ctx, slog.LevelError, t.Account, "the escrow has been charged more than the ledger's receipts",
					"charged", charged, "cumulative", t.Cumulative, "err", err)
				continue
			}
		}
		// Never more than the deposit: the contract would refuse the whole charge.
		cumulative := min(t.Cumulative, st.Deposited.Uint64())
		if cumulative <= charged {
			continue
		}
		s.mu.Lock()
		waited := now.Sub(s.since[t.Account])
		s.mu.Unlock()
		if cumulative-charged >= s.cfg.Threshold || waited >= s.cfg.MaxDelay || st.CheckOpen() != nil {
			due = append(due, charge{account: t.Account, addr: addr, cumulative: cumulative})
		}
	}
	return due, nil
}

// chargeMessage is the wallet message that charges c.
func (s *Settler) chargeMessage(c charge) (*wallet.Message, error) {
	cumulative := new(big.Int).SetUint64(c.cumulative)
	sig, err := escrow.SignCharge(s.cfg.Key, c.addr, cumulative)
	if err != nil {
		return nil, err
	}
	body, err := escrow.ChargeBody(uint64(s.cfg.Now().UnixNano()), cumulative, sig)
	if err != nil {
		return nil, err
	}
	return wallet.SimpleMessage(c.addr, tlb.FromNanoTONU(s.cfg.ChargeValue), body), nil
}

// confirm records what c's escrow has been charged after the wallet's transaction. On
// the real chain the escrow's own transaction may land a few blocks later: the next
// round then records it (see due), or sends the same cumulative charge again, which the
// escrow pays at most once.
func (s *Settler) confirm(ctx context.Context, c charge) {
	st, err := escrow.GetState(ctx, s.cfg.API, c.addr)
	if err != nil {
		s.cfg.Logger.Info("charge sent, not confirmed yet", "account", c.account, "err", err)
		return
	}
	s.observe(c.account, st)
	charged := st.Charged.Uint64()
	if charged < c.cumulative {
		s.cfg.Logger.Info("charge sent, not processed by the escrow yet", "account", c.account, "cumulative", c.cumulative, "charged", charged)
		return
	}
	if err := s.cfg.Store.RecordSettlement(ctx, c.account, charged, s.cfg.Now()); err != nil {
		s.cfg.Logger.Error("charge confirmed but not recorded", "account", c.account, "err", err)
		return
	}
	s.mu.Lock()
	delete(s.since, c.account)
	s.mu.Unlock()
}

// observe files st, just read from the chain, in the Service's escrow cache (if any),
// before a settlement is recorded from it: what is cached is then never charged less
// than the ledger has settled, unless the escrow was really opened again.
func (s *Settler) observe(account string, st *escrow.State) {
	if s.cfg.Escrows != nil {
		s.cfg.Escrows.observe(account, st)
	}
}

// report logs msg about account, which the settler skips until its operator acts: at
// level the first time, and again when msg or its figures (args) change, else at debug
// level, since every round finds it again. What it reported of an account is forgotten
// once the account is no longer unsettled, so memory stays bounded by the ledger's
// unsettled accounts.
func (s *Settler) report(ctx context.Context, level slog.Level, account, msg string, args ...any) {
	said := msg + fmt.Sprint(args...)
	s.mu.Lock()
	repeated := s.reported[account] == said
	s.reported[account] = said
	s.mu.Unlock()
	if repeated {
		level = slog.LevelDebug
	}
	s.cfg.Logger.Log(ctx, level, msg, append([]any{"account", account}, args...)...)
}
