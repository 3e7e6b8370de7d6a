package verifier

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/escrow"
)

// DepositArgs are an escrow deposit to build, as JSON:
//
//	{"wallet": "EQ... or 0:...",           the client's wallet (TON Connect's account)
//	 "client_key": "<base64 32-byte ed25519 public key>",
//	 "settlement_key": "<base64>",         the attested settlement key (Result.Keys)
//	 "price_list": {...},                  GET /v1/pricing, which must be signed by it
//	 "amount_nano": "1000000000",          what to deposit (the reserve is added)
//	 "channel_id": "0",                    tells apart escrows of one wallet and host
//	 "timeout_seconds": 0,                 0: the host's min_timeout
//	 "testnet": false}                     the address's user-friendly form
type DepositArgs struct {
	Wallet         string            `json:"wallet"`
	ClientKey      []byte            `json:"client_key"`
	SettlementKey  []byte            `json:"settlement_key"`
	PriceList      *settle.PriceList `json:"price_list"`
	AmountNano     string            `json:"amount_nano"`
	ChannelID      string            `json:"channel_id"`
	TimeoutSeconds uint32            `json:"timeout_seconds"`
	Testnet        bool              `json:"testnet"`
}

// Deposit is a TON Connect message that funds an escrow (and deploys it: the state
// init goes with every deposit, which a deployed contract ignores), and the escrow's
// parameters, which the client keeps to find it again.
type Deposit struct {
	Address        string `json:"address,omitempty"`     // user-friendly, bounceable
	AddressRaw     string `json:"address_raw,omitempty"` // "0:<64 hex>": the account that signs requests
	Amount         string `json:"amount,omitempty"`      // nanoTON: the deposit and escrow.DepositReserve
	StateInit      []byte `json:"state_init,omitempty"`  // BOC
	Payload        []byte `json:"payload,omitempty"`     // BOC: the deposit's body
	ChannelID      string `json:"channel_id,omitempty"`
	TimeoutSeconds uint32 `json:"timeout_seconds,omitempty"`
}

// EscrowDeposit builds the deposit of an escrow between the client's wallet and key
// and the host of the price list (its wallet and settlement key, checked against the
// attested one): escrow.Params, its address and state init, and the deposit's body
// (escrow.DepositBody), exactly as `cocoon channel open` builds them. Cost: one ed25519
// verification and the contract's hashes, about a millisecond.
func EscrowDeposit(args []byte) []byte {
	return run(args, func(a DepositArgs) (any, error) { return escrowDeposit(a, uint64(time.Now().Unix())) })
}

func escrowDeposit(a DepositArgs, queryID uint64) (*Deposit, error) {
	p, err := escrowParams(a)
	if err != nil {
		return nil, err
	}
	amount, err := strconv.ParseUint(a.AmountNano, 10, 64)
	if err != nil || amount == 0 || amount > math.MaxUint64-escrow.DepositReserve {
		return nil, fmt.Errorf("amount_nano %q: want a whole number of nanoTON above 0", a.AmountNano)
	}
	addr, err := p.Address(0)
	if err != nil {
		return nil, err
	}
	init, err := p.StateInit()
	if err != nil {
		return nil, err
	}
	initCell, err := tlb.ToCell(init)
	if err != nil {
		return nil, err
	}
	addr = addr.Testnet(a.Testnet)
	return &Deposit{Address: addr.String(), AddressRaw: addr.StringRaw(), Amount: strconv.FormatUint(amount+escrow.DepositReserve, 10),
		StateInit: initCell.ToBOC(), Payload: escrow.DepositBody(queryID).ToBOC(),
		ChannelID: strconv.FormatUint(p.ChannelID, 10), TimeoutSeconds: p.Timeout}, nil
}

// escrowParams are the escrow's parameters: the host's side from its price list,
// which its attested settlement key must have signed.
func escrowParams(a DepositArgs) (escrow.Params, error) {
	var p escrow.Params
	if len(a.SettlementKey) != ed25519.PublicKeySize {
		return p, errors.New("settlement_key: the host's attestation measures no settlement key: it does not bill")
	}
	if a.PriceList == nil {
		return p, errors.New("price_list: required (GET /v1/pricing)")
	}
	if err := a.PriceList.Verify(a.SettlementKey); err != nil {
		return p, fmt.Errorf("the host's price list: %w", err)
	}
	if len(a.ClientKey) != ed25519.PublicKeySize {
		return p, errors.New("client_key: want a 32-byte ed25519 public key")
	}
	var err error
	if p.ClientAddr, err = parseAddress(a.Wallet); err != nil {
		return p, fmt.Errorf("wallet: %w", err)
	}
	if p.HostAddr, err = address.ParseRawAddr(a.PriceList.Wallet); err != nil {
		return p, fmt.Errorf("the host's price list names wallet %q: %w", a.PriceList.Wallet, err)
	}
	p.Timeout = a.TimeoutSeconds
	if p.Timeout == 0 {
		p.Timeout = a.PriceList.MinTimeout
	}
	if p.Timeout < a.PriceList.MinTimeout {
		return p, fmt.Errorf("timeout_seconds %d: the host serves escrows with a timeout of at least %d s", p.Timeout, a.PriceList.MinTimeout)
	}
	if a.ChannelID != "" {
		if p.ChannelID, err = strconv.ParseUint(a.ChannelID, 10, 64); err != nil {
			return p, fmt.Errorf("channel_id %q: want a 64-bit unsigned number", a.ChannelID)
		}
	}
	p.ClientKey, p.HostKey = a.ClientKey, a.SettlementKey
	return p, nil
}

// parseAddress parses a TON address in raw ("0:…") or user-friendly form.
func parseAddress(s string) (*address.Address, error) {
	account, err := settle.ParseAccount(s)
	if err != nil {
		return nil, err
	}
	return address.ParseRawAddr(account)
}
