package verifier

import (
	"crypto/ed25519"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/escrow"
)

// TestEscrowDeposit: the deposit is the escrow `cocoon channel open` makes for the same
// parties (escrow.Params: the same address, state init and deposit body), with the host's
// side taken only from a price list the attested settlement key signed; a price list
// of another key, a timeout under the host's minimum or a bad amount are refused.
func TestEscrowDeposit(t *testing.T) {
	clientKey := otherKey.Public().(ed25519.PublicKey)
	settlement := hostKey.Public().(ed25519.PublicKey)
	hostWallet := "0:" + strings.Repeat("01", 32)
	wallet := address.MustParseRawAddr("0:" + strings.Repeat("02", 32))
	curve := settle.LoadCurve{MinMilli: 1000, MaxMilli: 1000}
	list := &settle.PriceList{Prices: settle.SamePrices(settle.PriceTable{PromptPerMillion: 1}), Windows: settle.SameWindow(settle.DefaultContextWindow), LoadMilli: curve.Coefficient(0), Wallet: hostWallet, MinTimeout: 3600, Curve: curve}
	list.Sign(hostKey)
	forged := *list
	forged.Wallet = "0:" + strings.Repeat("03", 32)
	forged.Sign(otherKey)
	args := func(edit func(*DepositArgs)) []byte {
		a := DepositArgs{Wallet: wallet.String(), ClientKey: clientKey, SettlementKey: settlement, PriceList: list, AmountNano: "1000000000", ChannelID: "7"}
		if edit != nil {
			edit(&a)
		}
		b, _ := json.Marshal(a)
		return b
	}

	var d failed[Deposit]
	if err := json.Unmarshal(EscrowDeposit(args(nil)), &d); err != nil || d.Error != "" {
		t.Fatalf("%+v %v", d, err)
	}
	p := escrow.Params{ClientAddr: wallet, HostAddr: address.MustParseRawAddr(hostWallet), ClientKey: clientKey, HostKey: settlement, Timeout: 3600, ChannelID: 7}
	want, _ := p.Address(0)
	init, _ := p.StateInit()
	initCell, _ := tlb.ToCell(init)
	if d.Value.AddressRaw != want.StringRaw() || d.Value.Address != want.String() {
		t.Fatalf("address %s (%s), want %s", d.Value.Address, d.Value.AddressRaw, want)
	}
	if string(d.Value.StateInit) != string(initCell.ToBOC()) {
		t.Fatal("the state init is not the escrow's")
	}
	if d.Value.Amount != strconv.FormatUint(1e9+escrow.DepositReserve, 10) || d.Value.TimeoutSeconds != 3600 || d.Value.ChannelID != "7" {
		t.Fatalf("amount %s, timeout %d, channel %s", d.Value.Amount, d.Value.TimeoutSeconds, d.Value.ChannelID)
	}
	body, err := cell.FromBOC(d.Value.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if op := body.MustBeginParse().MustLoadUInt(32); op != uint64(escrow.OpDeposit) {
		t.Fatalf("op %x, want the deposit's", op)
	}

	for _, tc := range []struct {
		name string
		edit func(*DepositArgs)
	}{
		{"a price list another key signed", func(a *DepositArgs) { a.PriceList = &forged }},
		{"no settlement key", func(a *DepositArgs) { a.SettlementKey = nil }},
		{"no price list", func(a *DepositArgs) { a.PriceList = nil }},
		{"a timeout under the host's minimum", func(a *DepositArgs) { a.TimeoutSeconds = 60 }},
		{"no amount", func(a *DepositArgs) { a.AmountNano = "0" }},
		{"an amount that is not a number", func(a *DepositArgs) { a.AmountNano = "1.5" }},
		{"a wallet that is not an address", func(a *DepositArgs) { a.Wallet = "EQnope" }},
		{"a short client key", func(a *DepositArgs) { a.ClientKey = clientKey[:31] }},
		{"a channel id that is not a number", func(a *DepositArgs) { a.ChannelID = "-1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d failed[Deposit]
			if err := json.Unmarshal(EscrowDeposit(args(tc.edit)), &d); err != nil {
				t.Fatal(err)
			}
			if d.Error == "" || d.Value.Address != "" {
				t.Fatalf("accepted: %+v", d)
			}
		})
	}
}
