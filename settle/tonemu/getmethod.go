package tonemu

import (
	"context"
	"fmt"
	"math/big"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm"
	"github.com/xssnick/tonutils-go/tvm/cell"
	"github.com/xssnick/tonutils-go/tvm/tuple"
	"github.com/xssnick/tonutils-go/tvm/vm"
)

// getMethodGas is the gas limit of a get-method run, the liteserver's default.
const getMethodGas = 1_000_000

// RunGetMethod runs the named get-method of addr's code on its state as of
// block. Parameters may be *big.Int, int, int64, uint64, *cell.Cell or
// *cell.Slice. Results come back in the order the method returns them, typed
// as a liteserver's are (*big.Int, *cell.Cell, *cell.Slice, []any, nil).
// An account without code fails with ton.ContractExecError code -256, and a
// method exiting with a code other than 0 or 1 with that code.
func (c *Chain) RunGetMethod(ctx context.Context, block *ton.BlockIDExt, addr *address.Address, method string, params ...any) (*ton.ExecutionResult, error) {
	return c.RunGetMethodByID(ctx, block, addr, tlb.MethodNameHash(method), params...)
}

// RunGetMethodByID is RunGetMethod with the method's numeric id.
func (c *Chain) RunGetMethodByID(ctx context.Context, block *ton.BlockIDExt, addr *address.Address, methodID uint64, params ...any) (*ton.ExecutionResult, error) {
	b, err := c.lockAt(ctx, block)
	if err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	acc := b.accounts[key(addr)]
	if acc == nil || acc.prepared.State().Status != tlb.AccountStatusActive || acc.prepared.State().StateInit == nil {
		return nil, ton.ContractExecError{Code: ton.ErrCodeContractNotInitialized}
	}
	st := acc.prepared.State()
	code, data := st.StateInit.Code, st.StateInit.Data

	stack := vm.NewStack()
	for i, p := range params {
		v, err := stackParam(p)
		if err != nil {
			return nil, fmt.Errorf("tonemu: get-method parameter %d: %w", i, err)
		}
		if err = stack.PushAny(v); err != nil {
			return nil, fmt.Errorf("tonemu: get-method parameter %d: %w", i, err)
		}
	}
	if err = stack.PushInt(new(big.Int).SetUint64(methodID)); err != nil {
		return nil, err
	}

	c7, err := c.getMethodC7(b, addr, code, st.Balance.Nano())
	if err != nil {
		return nil, err
	}
	res, err := c.vm.ExecuteGetMethod(code, data, c7, vm.GasWithLimit(getMethodGas), stack, tvm.ExecutionConfig{Config: c.cfg})
	if err != nil {
		return nil, fmt.Errorf("tonemu: get-method %d on %s: %w", methodID, addr, err)
	}
	if res.ExitCode != 0 && res.ExitCode != 1 {
		return nil, ton.ContractExecError{Code: int32(res.ExitCode)}
	}
	values, err := stackResult(res.Stack)
	if err != nil {
		return nil, fmt.Errorf("tonemu: get-method %d on %s: %w", methodID, addr, err)
	}
	return ton.NewExecutionResult(values), nil
}

// getMethodC7 builds the smart-contract info tuple the way a liteserver does
// for a get-method: the block's time, the account's address, balance and
// code, the config, and zeroed message-related fields. Its layout follows
// the config's global version (TVM Upgrade changelog: fields 10-13 from v4,
// 14-16 from v6, 17 from v11).
func (c *Chain) getMethodC7(b *block, addr *address.Address, code *cell.Cell, balance *big.Int) (tuple.Tuple, error) {
	blk, err := c.cfg.NewBlockContext(tvm.BlockOptions{Now: b.now})
	if err != nil {
		return tuple.Tuple{}, err
	}
	version := c.cfg.GlobalVersion()
	values := []any{
		big.NewInt(0x076ef1ea), // magic
		big.NewInt(0),          // actions
		big.NewInt(0),          // msgs_sent
		new(big.Int).SetUint64(uint64(b.now)),
		big.NewInt(0),                        // block_lt
		big.NewInt(0),                        // trans_lt
		new(big.Int).SetBytes(b.id.RootHash), // rand_seed
		tuple.NewTupleValue(new(big.Int).Set(balance), nil),
		cell.BeginCell().MustStoreAddr(addr).ToSlice(),
		c.cfg.Root(),
	}
	if version >= 4 {
		values = append(values, code, tuple.NewTupleValue(big.NewInt(0), nil), big.NewInt(0), nil)
	}
	if version >= 6 {
		var unpacked any
		if t, ok := blk.UnpackedConfig(); ok {
			unpacked = t
		}
		values = append(values, unpacked, big.NewInt(0), nil)
	}
	if version >= 11 {
		values = append(values, tuple.NewTupleValue(
			big.NewInt(0), big.NewInt(0), // bounce, bounced
			cell.BeginCell().MustStoreUInt(0, 2).ToSlice(), // src_addr: addr_none
			big.NewInt(0), big.NewInt(0), big.NewInt(0), // fwd_fee, created_lt, created_at
			big.NewInt(0), big.NewInt(0), nil, nil, // orig_value, value, value_extra, state_init
		))
	}
	return tuple.NewTupleValue(tuple.NewTupleValue(values...)), nil
}

func stackParam(p any) (any, error) {
	switch v := p.(type) {
	case *big.Int:
		return new(big.Int).Set(v), nil
	case int:
		return big.NewInt(int64(v)), nil
	case int64:
		return big.NewInt(v), nil
	case uint64:
		return new(big.Int).SetUint64(v), nil
	case *cell.Cell, *cell.Slice:
		return v, nil
	default:
		return nil, fmt.Errorf("unsupported type %T", p)
	}
}

// stackResult converts the VM's final stack into a liteserver's result list
// by the same route: serialized as a VmStack and parsed back with
// tonutils-go, so the value types are exactly those a liteserver client
// sees. The deepest value (the method's first result) comes first.
func stackResult(s *vm.Stack) ([]any, error) {
	cp := s.Copy()
	// tlb.Stack.ToCell writes its bottom element outermost, where a VmStack
	// has the VM's top of stack: so the VM's top goes in first.
	ser := tlb.NewStack()
	for cp.Len() > 0 {
		v, err := cp.PopAny()
		if err != nil {
			return nil, err
		}
		ser.Push(plainValue(v))
	}
	root, err := ser.ToCell()
	if err != nil {
		return nil, err
	}
	var parsed tlb.Stack
	if err = tlb.Parse(&parsed, root); err != nil {
		return nil, err
	}
	out := make([]any, 0, s.Len())
	for parsed.Depth() > 0 {
		v, err := parsed.Pop()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// plainValue turns VM tuples into the []any that tlb.Stack serializes.
func plainValue(v any) any {
	t, ok := v.(tuple.Tuple)
	if !ok {
		return v
	}
	out := make([]any, t.Len())
	for i := range out {
		el, _ := t.Index(i)
		out[i] = plainValue(el)
	}
	return out
}
