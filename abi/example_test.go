package abi_test

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cocoonhost/cocoon/abi"
)

func ExampleValidate() {
	// SPEC.md §10's example module, compiled by wat2wasm.
	wasm, _ := hex.DecodeString("0061736d01000000010f0360000060017f017f60027f7f017e03040300010205030100010607017f01" +
		"4180080b073604066d656d6f727902000d636f636f6f6e5f6162695f763100000c636f636f6f6e5f616c6c6f6300010a636f636f6f" +
		"6e5f70726500020a430302000b3101017f23002101230020006a240023003f00418080046c4b0440200041107641016a4000417f46" +
		"044041000f0b0b20010b0c002000ad4220862001ad840b")
	info, err := abi.Validate(wasm)
	if err != nil {
		panic(err)
	}
	fmt.Printf("ABI v%d, hooks %s, memory %d pages\n", info.ABIVersion, info.Hooks, info.MemoryMinPages)

	// Anything else is refused with a code for programs and a message for people.
	_, err = abi.Validate([]byte("(module)"))
	var e *abi.Error
	if errors.As(err, &e) {
		fmt.Printf("%s: %s\n", e.Code, e.Message)
	}
	// Output:
	// ABI v1, hooks pre, memory 1 pages
	// not_wasm: not a WebAssembly module: bad magic number
}
