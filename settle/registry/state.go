package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/cocoonhost/cocoon/settle/internal/contract"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

var (
	// ErrNotDeployed: there is no active contract at the address.
	ErrNotDeployed = errors.New("registry: no active contract at this address")
	// ErrWrongCode: the account runs code other than contracts.RegistryCode, so
	// its get-methods prove nothing.
	ErrWrongCode = errors.New("registry: account code is not the registry contract")
	// ErrWrongAddress: the account runs the registry's code but its address is
	// not the one its settings give, so it was deployed with data that did not
	// start empty: host records nobody signed, or a change already due.
	ErrWrongAddress = errors.New("registry: address does not match the registry's settings")
)

// HostState is a host record's state.
type HostState uint8

// The states of a host record.
const (
	// HostActive: registered; a client may route to it once it verified it.
	HostActive HostState = 1
	// HostLeaving: deregistered; its stake comes back after the unstake delay.
	HostLeaving HostState = 2
	// HostWithdrawn: its stake came back; the record stays so that its seqno
	// keeps old signed messages from being played again.
	HostWithdrawn HostState = 3
)

// Host is one host record as the registry holds it.
type Host struct {
	Registration
	// Key is the host's settlement key, the record's key and its signer.
	Key   ed25519.PublicKey
	State HostState
	// Wallet sent the registration; the stake goes back to it.
	Wallet *address.Address
	// Stake is nanoTON, 0 once withdrawn.
	Stake *big.Int
	// Seqno is the last seqno the registry accepted from Key.
	Seqno uint32
	// RegisteredAt is the first registration (since the last withdrawal).
	RegisteredAt time.Time
	// LeavingAt is when it deregistered; zero while active.
	LeavingAt time.Time
}

// Pending is an allowlist change waiting for its delay.
type Pending struct {
	ApplyAt   time.Time
	Allowlist Allowlist
}

// State is a registry as read from the chain in one block.
type State struct {
	// Params are its settings and initial allowlist; GetState checked that
	// they give its address.
	Params
	// Current is the allowlist in effect at the block's time.
	Current Allowlist
	// Pending is nil when no change waits.
	Pending *Pending
	// Hosts are every record, withdrawn ones included, sorted by key.
	Hosts []Host
	// Now is the chain's time: the block's, which the get-methods ran at.
	Now time.Time
	// Balance is the account's balance: the stakes plus the fees it kept.
	Balance *big.Int
}

// NextSeqno returns the seqno key's next signed message must carry: one above
// its record's, or 1 for a key never registered.
func (s *State) NextSeqno(key ed25519.PublicKey) uint32 {
	if h := s.Host(key); h != nil {
		return h.Seqno + 1
	}
	return 1
}

// Host returns key's record, or nil.
func (s *State) Host(key ed25519.PublicKey) *Host {
	for i := range s.Hosts {
		if s.Hosts[i].Key.Equal(key) {
			return &s.Hosts[i]
		}
	}
	return nil
}

// GetState reads the registry at addr as of the current masterchain block: its
// parameters, the allowlist in effect, the change waiting and every host
// record. It checks that addr is what the parameters give, so that every record
// was made by a registration its key signed and every change waited its delay. It costs six liteserver queries (block, time, account, three
// get-methods) and decodes the whole host dictionary, so a client calls it
// when it refreshes its view of the market, not per request.
//
// It fails with ErrNotDeployed if no contract is active there, ErrWrongCode
// if the code is not contracts.RegistryCode, ErrWrongAddress if the contract
// was deployed with data that did not start empty, and with a decoding error if a
// get-method returns what the protocol does not allow, an allowlist
// included; any other error is the chain's.
func GetState(ctx context.Context, api ton.APIClientWrapped, addr *address.Address) (*State, error) {
	checked, err := contract.Active(ctx, "registry", api, addr, code, ErrNotDeployed, ErrWrongCode)
	if err != nil {
		return nil, err
	}
	api, block, acc := checked.API, checked.Block, checked.Account
	run := func(method string, want int) ([]any, error) {
		res, err := api.RunGetMethod(ctx, block, addr, method)
		if err != nil {
			return nil, fmt.Errorf("registry: %s on %s: %w", method, addr, err)
		}
		v := res.AsTuple()
		if len(v) != want {
			return nil, fmt.Errorf("registry: %s on %s: %d results, want %d", method, addr, len(v), want)
		}
		return v, nil
	}
	st := &State{Balance: new(big.Int).Set(acc.State.Balance.Nano())}
	data, err := run("get_registry_data", 6)
	if err != nil {
		return nil, err
	}
	if st.Params, err = decodeRegistryData(data); err != nil {
		return nil, fmt.Errorf("registry: get_registry_data on %s: %w", addr, err)
	}
	allow, err := run("get_allowlist", 1)
	if err != nil {
		return nil, err
	}
	if st.Current, err = decodeAllowlist(allow[0]); err != nil {
		return nil, fmt.Errorf("registry: get_allowlist on %s: %w", addr, err)
	}
	pending, err := run("get_pending_allowlist", 2)
	if err != nil {
		return nil, err
	}
	if st.Pending, err = decodePending(pending); err != nil {
		return nil, fmt.Errorf("registry: get_pending_allowlist on %s: %w", addr, err)
	}
	hosts, err := run("get_hosts", 1)
	if err != nil {
		return nil, err
	}
	if st.Hosts, err = decodeHosts(hosts[0]); err != nil {
		return nil, fmt.Errorf("registry: get_hosts on %s: %w", addr, err)
	}
	derived, err := st.Params.Address(int8(addr.Workchain()))
	if err != nil {
		return nil, fmt.Errorf("registry: %s: %w", addr, err)
	}
	if !contract.SameAddr(derived, addr) {
		return nil, fmt.Errorf("%w: %s (its settings give %s)", ErrWrongAddress, addr, derived)
	}
	now, err := api.GetTime(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry: get time: %w", err)
	}
	st.Now = time.Unix(int64(now), 0)
	return st, nil
}

// Hosts returns the active hosts of the registry at addr, sorted by key, and
// the allowlist in effect: the candidates a client discovers and what it
// checks them against. Each one's registration is only what its
// settlement key claimed: before routing to it, a client fetches its boot
// evidence and price list from Endpoint and checks them against the record
// and the registry's allowlist (REGISTRY.md "Client checks"). It costs what
// GetState costs and fails as it does.
func Hosts(ctx context.Context, api ton.APIClientWrapped, addr *address.Address) ([]Host, Allowlist, error) {
	st, err := GetState(ctx, api, addr)
	if err != nil {
		return nil, Allowlist{}, err
	}
	active := slices.DeleteFunc(st.Hosts, func(h Host) bool { return h.State != HostActive })
	return active, st.Current, nil
}

// decodeRegistryData decodes get_registry_data: owner, min_stake,
// change_delay, unstake_delay, nonce, initial_allowlist.
func decodeRegistryData(v []any) (Params, error) {
	owner, err := stackAddr(v[0])
	if err != nil {
		return Params{}, fmt.Errorf("owner: %w", err)
	}
	limits := []struct {
		name string
		bits int
	}{{"min_stake", 120}, {"change_delay", 32}, {"unstake_delay", 32}, {"nonce", 64}}
	ints := make([]*big.Int, len(limits))
	for i, l := range limits {
		n, ok := v[1+i].(*big.Int)
		if !ok || n.Sign() < 0 || n.BitLen() > l.bits {
			return Params{}, fmt.Errorf("%s is %T %v, want a %d-bit unsigned integer", l.name, v[1+i], v[1+i], l.bits)
		}
		ints[i] = n
	}
	initial, err := decodeAllowlist(v[5])
	if err != nil {
		return Params{}, fmt.Errorf("initial_allowlist: %w", err)
	}
	return Params{Owner: owner, MinStake: ints[0], ChangeDelay: uint32(ints[1].Uint64()),
		UnstakeDelay: uint32(ints[2].Uint64()), Nonce: ints[3].Uint64(), Allowlist: initial}, nil
}

func stackAddr(v any) (*address.Address, error) {
	s, ok := v.(*cell.Slice)
	if !ok {
		return nil, fmt.Errorf("%T, want an address slice", v)
	}
	return s.Copy().LoadAddr()
}

// stackCell returns a nullable cell result: nil for a null.
func stackCell(v any) (*cell.Cell, error) {
	switch c := v.(type) {
	case nil:
		return nil, nil
	case *cell.Cell:
		return c, nil
	default:
		return nil, fmt.Errorf("%T, want a cell or null", v)
	}
}

func decodeAllowlist(v any) (Allowlist, error) {
	c, err := stackCell(v)
	if err != nil {
		return Allowlist{}, err
	}
	return ParseAllowlist(c)
}

// decodePending decodes get_pending_allowlist: (apply_at, allowlist), with
// apply_at 0 for no change.
func decodePending(v []any) (*Pending, error) {
	at, ok := v[0].(*big.Int)
	if !ok || at.Sign() < 0 || at.BitLen() > 32 {
		return nil, fmt.Errorf("apply_at is %T %v, want a 32-bit unsigned integer", v[0], v[0])
	}
	if at.Sign() == 0 {
		if v[1] != nil {
			return nil, errors.New("an allowlist without apply_at")
		}
		return nil, nil
	}
	a, err := decodeAllowlist(v[1])
	if err != nil {
		return nil, err
	}
	return &Pending{ApplyAt: time.Unix(at.Int64(), 0), Allowlist: a}, nil
}

// decodeHosts decodes get_hosts: HashmapE 256 HostRecord.
func decodeHosts(v any) ([]Host, error) {
	c, err := stackCell(v)
	if err != nil || c == nil {
		return nil, err
	}
	kvs, err := c.AsDict(256).LoadAll()
	if err != nil {
		return nil, err
	}
	out := make([]Host, 0, len(kvs))
	for _, kv := range kvs {
		key, err := kv.Key.LoadSlice(256)
		if err != nil {
			return nil, err
		}
		h, err := decodeHostRecord(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("host %x: %w", key, err)
		}
		h.Key = ed25519.PublicKey(key)
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Host) int { return bytes.Compare(a.Key, b.Key) })
	return out, nil
}

// decodeHostRecord decodes state:uint8 wallet:MsgAddressInt stake:Coins
// seqno:uint32 registered_at:uint32 leaving_at:uint32 ^HostInfo.
func decodeHostRecord(s *cell.Slice) (Host, error) {
	var h Host
	state, err := s.LoadUInt(8)
	if err != nil {
		return h, err
	}
	if h.State = HostState(state); h.State < HostActive || h.State > HostWithdrawn {
		return h, fmt.Errorf("state %d", state)
	}
	if h.Wallet, err = s.LoadAddr(); err != nil {
		return h, err
	}
	if err := checkAddr("wallet", h.Wallet); err != nil {
		return h, err
	}
	if h.Stake, err = s.LoadBigCoins(); err != nil {
		return h, err
	}
	var times [3]uint64
	for i := range times {
		if times[i], err = s.LoadUInt(32); err != nil {
			return h, err
		}
	}
	h.Seqno = uint32(times[0])
	h.RegisteredAt = time.Unix(int64(times[1]), 0)
	if times[2] != 0 {
		h.LeavingAt = time.Unix(int64(times[2]), 0)
	}
	info, err := s.LoadRef()
	if err != nil {
		return h, err
	}
	price, err := info.LoadSlice(256)
	if err != nil {
		return h, err
	}
	evidence, err := info.LoadSlice(256)
	if err != nil {
		return h, err
	}
	endpoint, err := info.LoadRef()
	if err != nil {
		return h, err
	}
	url, err := endpoint.LoadSlice(endpoint.BitsLeft())
	if err != nil {
		return h, err
	}
	h.PriceHash, h.EvidenceHash, h.Endpoint = [32]byte(price), [32]byte(evidence), string(url)
	return h, nil
}
