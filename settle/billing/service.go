package billing

import (
	"github.com/cocoonhost/cocoon/settle"

	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// EscrowState is what the host needs to know of an account's escrow contract.
type EscrowState struct {
	ClientKey ed25519.PublicKey
	HostKey   ed25519.PublicKey
	// HostAddr is the raw address the contract pays charges to.
	HostAddr string
	// Deposited and Charged are the contract's totals in nanoTON.
	Deposited, Charged uint64
	// Closing is set once the client has asked for a withdrawal: the host must stop
	// serving the account and commit its last charge before the timeout.
	Closing bool
	// Timeout is the escrow's withdrawal timeout in seconds: the host's window to
	// commit its last charge once the client asks for its money back.
	Timeout uint32
	// ReadAt is when the state was read from the chain.
	ReadAt time.Time
	// Outdated is set on a state served although it was due to be read again, because
	// the chain could not be read: the host serves within it, but a deposit made since
	// ReadAt is not in it.
	Outdated bool
}

// EscrowSource reads escrows. ChainEscrows reads them from TON. A source that caches
// states should also implement FreshEscrows.
type EscrowSource interface {
	// Escrow returns the state of the escrow at account (raw address). It returns a
	// *Error with CodeUnknownAccount when there is no Cocoon escrow there, or
	// CodeUnavailable when it cannot be read.
	Escrow(ctx context.Context, account string) (EscrowState, error)
}

// FreshEscrows is what an EscrowSource that caches states implements so that Admit can
// read an escrow from the chain itself: a state read before the host's latest charge
// looks like a reopened escrow (ErrReopened), and only the chain tells the two apart.
type FreshEscrows interface {
	// Fresh reads the escrow at account from the chain, whatever is cached. It
	// returns a *Error with CodeUnavailable when the chain cannot be read, never what
	// is cached, and CodeUnknownAccount as Escrow does.
	Fresh(ctx context.Context, account string) (EscrowState, error)
}

// Config configures a Service.
type Config struct {
	Store   Store
	Pricer  *Pricer
	Escrows EscrowSource
	// Key is the settlement key: it signs receipts and charges, and escrows must name
	// its public key as their host key.
	Key ed25519.PrivateKey
	// HostAddr is the raw address of the host's wallet: escrows must pay to it.
	HostAddr string
	// ComputeReserve is the module compute (microseconds) admission reserves per
	// request; a request's compute charge is capped by its reservation.
	ComputeReserve uint64
	// MinTimeout is the shortest withdrawal timeout an escrow may have to be served:
	// with a shorter one a client could withdraw before the settler charges it.
	// Default DefaultMinTimeout.
	MinTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts admissions and receipts; share it with the Settler's config so
	// that Collectors serves both. Default: a Metrics of the service's own.
	Metrics *Metrics
}

// DefaultMinTimeout is the shortest escrow timeout a host serves by default: time for
// several settlement rounds, even with the chain briefly unreachable.
const DefaultMinTimeout = time.Hour

// Service admits requests against escrowed balances and turns what they consumed into
// signed receipts in the ledger. It is safe for concurrent use.
type Service struct {
	cfg Config
	pub ed25519.PublicKey
}

// NewService checks cfg and returns the service.
func NewService(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Pricer == nil || cfg.Escrows == nil || len(cfg.Key) != ed25519.PrivateKeySize || cfg.HostAddr == "" {
		return nil, errors.New("settle: service needs a store, a pricer, an escrow source, a settlement key and the host's wallet address")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MinTimeout <= 0 {
		cfg.MinTimeout = DefaultMinTimeout
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	return &Service{cfg: cfg, pub: cfg.Key.Public().(ed25519.PublicKey)}, nil
}

// PublicKey is the settlement key's public half.
func (s *Service) PublicKey() ed25519.PublicKey { return s.pub }

// Pricer is the service's pricer.
func (s *Service) Pricer() *Pricer { return s.cfg.Pricer }

// Collectors are the Prometheus collectors of Config.Metrics, for the host's /metrics.
func (s *Service) Collectors() []prometheus.Collector { return s.cfg.Metrics.collectors() }

// Admission is a request asking to be admitted.
type Admission struct {
	// Account is the escrow address in raw form.
	Account string
	// Verified is the request as its client signed it, checked by Authenticate; nil
	// for a request whose API key the operator mapped to Account.
	Verified *VerifiedRequest
	// Method, Path and Body are those of an API-key request (a signed request's are
	// in Verified).
	Method, Path   string
	Body           []byte
	IdempotencyKey string
	// MaxPromptTokens and MaxCompletionTokens bound the tokens the request can use:
	// the model's context window and the request's max_tokens.
	MaxPromptTokens, MaxCompletionTokens uint64
	// MaxPrice is the client's cap on the request's cost in nanoTON (0: none): a
	// request whose worst-case cost exceeds it is refused with CodeMaxPrice.
	MaxPrice uint64
	Pipeline string
	// Model is the model the request runs (a pipeline's manifest model, or the one a
	// request to the bare backend names, or the backend's default): its table of the
	// price list prices the request, and the receipt names it.
	Model string
}

// Ticket is an admitted request. Finish it exactly once, or Release it.
type Ticket struct {
	s       *Service
	hold    HoldID
	receipt settle.Receipt // the fields known at admission
	done    bool           // finished or released
}

// MaxCost is what admission reserved.
func (t *Ticket) MaxCost() uint64 { return t.receipt.MaxCost }

// Quote is the price the request was admitted at.
func (t *Ticket) Quote() settle.Quote {
	return settle.Quote{Prices: t.receipt.Prices, LoadMilli: t.receipt.LoadMilli}
}

// Admit checks the account's escrow and balance and reserves the request's maximum
// cost. A signed request comes checked (a.Verified, from Authenticate): Admit does not
// verify its signature again, but refuses it for another account or idempotency key
// than the one signed. Errors are *Error (see the codes), or *IdempotentError with the
// earlier receipt and response when the idempotency key was already completed.
//
// Cost: one escrow read (cached by ChainEscrows) and one ledger Reserve.
func (s *Service) Admit(ctx context.Context, a Admission) (t *Ticket, err error) {
	defer func() { s.cfg.Metrics.admitted(err) }()
	now := s.cfg.Now()
	requestHash, signatureHash := a.hashes()

	escrow, err := s.admissibleEscrow(ctx, a, s.cfg.Escrows.Escrow)
	if err != nil {
		return nil, err
	}
	quote, err := s.cfg.Pricer.Quote(a.Model)
	if err != nil {
		return nil, err
	}
	maxCost := quote.WorstCase(settle.Usage{PromptTokens: a.MaxPromptTokens, CompletionTokens: a.MaxCompletionTokens, ComputeUnits: s.cfg.ComputeReserve})
	if err := checkMaxPrice(maxCost, a, quote); err != nil {
		return nil, err
	}
	r := Reservation{Account: a.Account, RequestHash: requestHash, SignatureHash: signatureHash,
		IdempotencyKey: a.IdempotencyKey, MaxCost: maxCost, Limit: escrow.Deposited, Charged: escrow.Charged, Time: a.time(now)}
	hold, err := s.cfg.Store.Reserve(ctx, r)
	if cache, ok := s.cfg.Escrows.(FreshEscrows); ok && errors.Is(err, ErrReopened) {
		// The cached state may be older than the host's latest charge. Only the chain
		// tells that from a reopened escrow: when it cannot be read the client is told
		// so (CodeUnavailable, to retry later), not that its escrow was reopened.
		if escrow, err = s.admissibleEscrow(ctx, a, cache.Fresh); err != nil {
			return nil, err
		}
		r.Limit, r.Charged = escrow.Deposited, escrow.Charged
		hold, err = s.cfg.Store.Reserve(ctx, r)
	}
	if err != nil {
		return nil, s.reserveError(a, escrow, err)
	}
	return &Ticket{s: s, hold: hold, receipt: settle.Receipt{Account: a.Account, RequestHash: requestHash, Pipeline: a.Pipeline,
		Model: a.Model, Prices: quote.Prices, LoadMilli: quote.LoadMilli, MaxCost: maxCost}}, nil
}

// hashes name the request in the ledger. The request hash is its receipt's. With an
// idempotency key it is the SHA-256 of the account, the key, the method and path, and
// the body's SHA-256, so that a retry (signed again with a new nonce, or not) finds the
// first request's record, and the same key with another request is told apart. Without
// one it is the SHA-256 of the signing string of a signed request (a replay has the
// same hash), or of a random nonce and the body for an API-key request (which may
// legitimately repeat).
//
// The signature hash is set for a signed request with an idempotency key: the SHA-256
// of its signing string, which the ledger records too, so that the very request a
// client signed is charged at most once even when its key may run again (a retry after
// a cancelled attempt, see Store.Commit) and an eavesdropper replays it.
func (a Admission) hashes() (request, signature string) {
	method, path, body := a.Method, a.Path, a.Body
	if a.Verified != nil {
		method, path, body = a.Verified.req.Method, a.Verified.req.Path, a.Verified.req.Body
	}
	switch {
	case a.IdempotencyKey != "":
		request = settle.IdempotentRequestHash(a.Account, a.IdempotencyKey, method, path, body)
		if a.Verified != nil {
			signature = settle.RequestHash(a.Verified.req.SigningString())
		}
		return request, signature
	case a.Verified != nil:
		return settle.RequestHash(a.Verified.req.SigningString()), ""
	default:
		var nonce [16]byte
		rand.Read(nonce[:])
		return settle.RequestHash(append(nonce[:], body...)), ""
	}
}

// admissibleEscrow reads the escrow a is for with read (Escrow, or Fresh) and checks
// that it may be served: it pays this host, is not closing and has a timeout of at
// least MinTimeout, and a signed request was signed for it and for a's idempotency key.
func (s *Service) admissibleEscrow(ctx context.Context, a Admission, read func(context.Context, string) (EscrowState, error)) (EscrowState, error) {
	escrow, err := read(ctx, a.Account)
	if err != nil {
		return EscrowState{}, err
	}
	switch signed := a.Verified; {
	case !s.serves(escrow):
		return EscrowState{}, errorf(settle.CodeUnknownAccount, "escrow %s is for another host", a.Account)
	case signed != nil && (signed.req.IdempotencyKey != a.IdempotencyKey || signed.req.Account != a.Account):
		return EscrowState{}, errorf(settle.CodeBadSignature, "the signed request is for another account or idempotency key")
	case escrow.Closing:
		return EscrowState{}, errorf(settle.CodeClosing, "escrow %s is closing: its client asked for a withdrawal", a.Account)
	case time.Duration(escrow.Timeout)*time.Second < s.cfg.MinTimeout:
		return EscrowState{}, errorf(settle.CodeUnknownAccount, "escrow %s has a withdrawal timeout of %ds; this host serves escrows of at least %ds",
			a.Account, escrow.Timeout, int64(s.cfg.MinTimeout/time.Second))
	}
	return escrow, nil
}

// time is when the request was made, for the ledger (Reservation.Time): a signed
// request's signed timestamp, which a replay cannot change however late it comes (see
// Store.Prune), else now.
func (a Admission) time(now time.Time) time.Time {
	if a.Verified != nil {
		return time.Unix(a.Verified.req.Timestamp, 0)
	}
	return now
}

// reserveError maps a ledger refusal to what the client is told.
func (s *Service) reserveError(a Admission, escrow EscrowState, err error) error {
	var short *InsufficientError
	var idem *IdempotentError
	switch {
	case errors.As(err, &short) && escrow.Outdated:
		// The deposit is the last one the host saw: it cannot tell the client to
		// deposit more, which it could not see either.
		return errorf(settle.CodeUnavailable, "%s, and as of its last read (%s) the escrow has %s TON unspent and unreserved, less than this request may cost (%s TON); "+
			"a deposit made since counts once the host reaches the network again",
			unreachable(a.Account).Message, escrow.ReadAt.UTC().Format(time.RFC3339), settle.FormatTON(short.Available), settle.FormatTON(short.Needed))
	case errors.As(err, &short):
		return errorf(settle.CodeInsufficient, "escrow %s has %s TON unspent and unreserved; this request may cost up to %s TON: deposit at least %s TON more",
			a.Account, settle.FormatTON(short.Available), settle.FormatTON(short.Needed), settle.FormatTON(short.Missing()))
	case errors.As(err, &idem):
		switch {
		case idem.Err == nil:
			return idem
		case errors.Is(idem.Err, ErrInProgress):
			return errorf(settle.CodeInProgress, "a request with idempotency key %q is still running", a.IdempotencyKey)
		default:
			return errorf(settle.CodeIdempotencyMismatch, "idempotency key %q was used for a different request", a.IdempotencyKey)
		}
	case errors.Is(err, ErrReopened):
		return errorf(settle.CodeUnknownAccount, "escrow %s was closed and opened again at the same address: it has been charged %s TON, less than this host settled with the closed one, "+
			"whose receipts this host's records would bill to the new one; open an escrow with another channel id", a.Account, settle.FormatTON(escrow.Charged))
	case errors.Is(err, ErrReplay):
		return errorf(settle.CodeReplay, "this signed request was already received; sign each request with a new nonce")
	case errors.Is(err, ErrPruned) && a.Verified != nil:
		return errorf(settle.CodeExpired, "the request was signed at %d, before the requests this host's ledger still remembers (its clock has been more than a day ahead): it cannot tell it from a replay; sign it again", a.Verified.req.Timestamp)
	case errors.Is(err, ErrPruned):
		return errorf(settle.CodeUnavailable, "the host's clock is behind the requests its ledger has forgotten: it cannot tell a retry from a new request until its clock is right")
	default:
		return storeError(a.Account, err)
	}
}

// storeError is what the client is told of a ledger failure on account.
func storeError(account string, err error) *Error {
	if errors.Is(err, ErrIntegrity) {
		return errorf(settle.CodeIntegrity, "the host's records of escrow %s fail their integrity check: it neither serves nor charges this account until its operator restores them", account)
	}
	return errorf(settle.CodeUnavailable, "the ledger is unavailable")
}

// Finish commits the request's receipt: its cost for usage at the admitted quote,
// capped at the reservation, and status. response is stored for the idempotency key
// (nil stores none; a cancelled request stores none and leaves its key free for a
// retry, see Store.Commit). The receipt is durable when Finish returns. A Finish that
// fails releases the hold: nothing is charged.
func (t *Ticket) Finish(ctx context.Context, usage settle.Usage, status string, response []byte) (*settle.Receipt, error) {
	if t.done {
		return nil, errors.New("settle: the ticket was already finished or released")
	}
	t.done = true
	r := t.receipt
	r.Usage, r.Status, r.Time = usage, status, t.s.cfg.Now().Unix()
	r.Cost = r.Prices.Cost(usage, r.LoadMilli, r.MaxCost)
	if err := t.s.cfg.Store.Commit(ctx, t.hold, &r, response, func(r *settle.Receipt) { r.Sign(t.s.cfg.Key) }); err != nil {
		// Nothing was recorded, so nothing is charged: free the reservation.
		t.s.cfg.Store.Release(t.hold)
		return nil, fmt.Errorf("settle: commit the receipt: %w", err)
	}
	t.s.cfg.Metrics.committed(&r)
	return &r, nil
}

// Release gives up a ticket that will not be finished, such as one whose request
// panicked: its hold is dropped, nothing is charged, and its request hash and
// idempotency key are free again. After Finish or another Release it does nothing, so
// it is safe to defer.
func (t *Ticket) Release() {
	if !t.done {
		t.done = true
		t.s.cfg.Store.Release(t.hold)
	}
}

// PriceList is the current price list, signed by the settlement key.
func (s *Service) PriceList() settle.PriceList {
	return s.cfg.Pricer.PriceList(s.cfg.Key, s.cfg.HostAddr, uint32(s.cfg.MinTimeout/time.Second))
}

// AccountStatus is an account's ledger totals and its escrow's.
type AccountStatus struct {
	AccountTotals
	Deposited uint64
	Closing   bool
}

// View is s as GET /v1/accounts/{account} answers it.
func (s AccountStatus) View() settle.AccountView {
	return settle.AccountView{Account: s.Account, LastSeq: s.LastSeq, Cumulative: s.Cumulative, Held: s.Held, Settled: s.Settled,
		Deposited: s.Deposited, Unspent: s.Deposited - min(s.Deposited, s.Cumulative+s.Held), Closing: s.Closing}
}

// Account returns the ledger totals of account and its escrow's deposit. Errors are
// *Error.
func (s *Service) Account(ctx context.Context, account string) (AccountStatus, error) {
	escrow, err := s.cfg.Escrows.Escrow(ctx, account)
	if err != nil {
		return AccountStatus{}, err
	}
	t, err := s.cfg.Store.Account(ctx, account)
	if err != nil {
		return AccountStatus{}, storeError(account, err)
	}
	return AccountStatus{AccountTotals: t, Deposited: escrow.Deposited, Closing: escrow.Closing}, nil
}

// Receipts returns up to limit of account's receipts from Seq from on. Errors are
// *Error.
func (s *Service) Receipts(ctx context.Context, account string, from uint64, limit int) ([]settle.Receipt, error) {
	list, err := s.cfg.Store.Receipts(ctx, account, from, limit)
	if err != nil {
		return nil, storeError(account, err)
	}
	return list, nil
}

// VerifiedRequest is a signed request whose timestamp and signature Authenticate
// checked against its escrow's client key. Only Authenticate makes one, so Admit can
// rely on the check without repeating it.
type VerifiedRequest struct {
	req settle.SignedRequest
}

// Authenticate checks a signed request: its timestamp, that it names an escrow this
// host serves (its host key and wallet), and its signature by that escrow's client key.
// It records nothing, so reads may repeat; Admit records what a billed request
// consumes. Errors are *Error: CodeExpired, CodeBadSignature, CodeUnknownAccount for
// an address with no escrow or an escrow for another host, CodeUnavailable when the
// escrow cannot be read.
//
// Cost: one escrow read (cached by ChainEscrows, including for an address with no
// escrow) and one ed25519 verification, about 45 µs.
func (s *Service) Authenticate(ctx context.Context, r settle.SignedRequest, sig []byte) (*VerifiedRequest, error) {
	if err := s.checkTimestamp(r); err != nil {
		return nil, err
	}
	escrow, err := s.cfg.Escrows.Escrow(ctx, r.Account)
	switch {
	case err != nil:
		return nil, err
	case !s.serves(escrow):
		return nil, errorf(settle.CodeUnknownAccount, "escrow %s is for another host", r.Account)
	case !ed25519.Verify(escrow.ClientKey, r.SigningString(), sig):
		return nil, errorf(settle.CodeBadSignature, "the signature does not verify with escrow %s's client key", r.Account)
	}
	return &VerifiedRequest{req: r}, nil
}

// serves reports whether escrow pays this host: it names the settlement key and the
// host's wallet.
func (s *Service) serves(escrow EscrowState) bool {
	return s.pub.Equal(escrow.HostKey) && escrow.HostAddr == s.cfg.HostAddr
}

// checkTimestamp refuses a signed request outside RequestWindow of the host's clock.
func (s *Service) checkTimestamp(r settle.SignedRequest) error {
	now, window := s.cfg.Now().Unix(), int64(settle.RequestWindow/time.Second)
	if r.Timestamp < now-window || r.Timestamp > now+window {
		return errorf(settle.CodeExpired, "the request was signed at %d, more than %v from the host's clock (%d)", r.Timestamp, settle.RequestWindow, now)
	}
	return nil
}
