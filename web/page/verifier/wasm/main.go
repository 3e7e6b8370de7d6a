//go:build js && wasm

// Command wasm is the reviewer's page's verifier compiled to WebAssembly (GOOS=js
// GOARCH=wasm; `make page` builds it into web/page/dist/verifier.wasm), which the
// browser client library (web/browser) loads too. Run by Go's wasm_exec.js, it defines
// these JavaScript functions and then waits for calls; each takes JSON and bytes
// (Uint8Array, or a string for the evidence) and returns JSON, never throws:
//
//	cocoonVerify(evidence, optionsJSON)           verifier.Verify: {"report", "keys"} or {"error", "error_in"}
//	cocoonCheckAnswer(argsJSON, request, answer)  verifier.CheckAnswer: {"ok", "events"} or {"error"}
//	cocoonCheckReceipt(argsJSON)                  verifier.CheckReceipt: {"ok"} or {"error"}
//	cocoonMaxPrice(argsJSON, body)                verifier.MaxPrice: {"max_price"} or {"error"}
//	cocoonSignRequest(argsJSON, body)             verifier.SignRequest: {"headers", "request_hash"} or {"error"}
//	cocoonEscrowDeposit(argsJSON)                 verifier.EscrowDeposit: {"address", ...} or {"error"}
//
// (the evidence as the bytes fetched, so that nothing is lost in a text decoding).
// When the functions are defined it dispatches the event "cocoon-verifier-ready" on
// globalThis where there is dispatchEvent (a browser), so a page need not poll for them.
package main

import (
	"encoding/json"
	"fmt"
	"syscall/js"

	"github.com/cocoonhost/cocoon/web/page/verifier"
)

func main() {
	define("cocoonVerify", 2, 1, func(a []js.Value) ([]byte, error) {
		ev, err := bytesArg(a[0], true)
		if err != nil {
			return nil, err
		}
		return verifier.Verify(ev, []byte(a[1].String())), nil
	})
	define("cocoonCheckAnswer", 3, 0, func(a []js.Value) ([]byte, error) {
		request, err := bytesArg(a[1], false)
		if err != nil {
			return nil, err
		}
		answer, err := bytesArg(a[2], false)
		if err != nil {
			return nil, err
		}
		return verifier.CheckAnswer([]byte(a[0].String()), request, answer), nil
	})
	define("cocoonCheckReceipt", 1, 0, func(a []js.Value) ([]byte, error) {
		return verifier.CheckReceipt([]byte(a[0].String())), nil
	})
	define("cocoonMaxPrice", 2, 0, func(a []js.Value) ([]byte, error) {
		body, err := bytesArg(a[1], false)
		if err != nil {
			return nil, err
		}
		return verifier.MaxPrice([]byte(a[0].String()), body), nil
	})
	define("cocoonSignRequest", 2, 0, func(a []js.Value) ([]byte, error) {
		body, err := bytesArg(a[1], false)
		if err != nil {
			return nil, err
		}
		return verifier.SignRequest([]byte(a[0].String()), body), nil
	})
	define("cocoonEscrowDeposit", 1, 0, func(a []js.Value) ([]byte, error) {
		return verifier.EscrowDeposit([]byte(a[0].String())), nil
	})
	if g := js.Global(); g.Get("dispatchEvent").Type() == js.TypeFunction { // a browser; Node has none
		g.Call("dispatchEvent", g.Get("Event").New("cocoon-verifier-ready"))
	}
	select {} // the page calls the functions for as long as it is open
}

// define sets globalThis[name] to a function of n arguments, argument jsonArg a JSON string,
// that returns fn's JSON, or {"error": ..., "error_in": "options"} for arguments of the
// wrong type. A panic would end the Go program and leave every later call failing
// with "Go program has already exited": it becomes this call's error instead.
func define(name string, n, jsonArg int, fn func([]js.Value) ([]byte, error)) {
	js.Global().Set(name, js.FuncOf(func(_ js.Value, args []js.Value) (out any) {
		fail := func(msg string) string {
			b, _ := json.Marshal(map[string]string{"error": msg, "error_in": verifier.InOptions})
			return string(b)
		}
		defer func() {
			if v := recover(); v != nil {
				out = fail(fmt.Sprintf("%s failed: %v", name, v))
			}
		}()
		if len(args) != n || args[jsonArg].Type() != js.TypeString {
			return fail(fmt.Sprintf("%s takes %d arguments, argument %d a JSON string", name, n, jsonArg+1))
		}
		b, err := fn(args)
		if err != nil {
			return fail(fmt.Sprintf("%s: %v", name, err))
		}
		return string(b)
	}))
}

// bytesArg copies a Uint8Array argument (or a string, where text is allowed) into Go.
func bytesArg(v js.Value, text bool) ([]byte, error) {
	switch {
	case text && v.Type() == js.TypeString:
		return []byte(v.String()), nil
	case v.InstanceOf(js.Global().Get("Uint8Array")):
		b := make([]byte, v.Get("length").Int())
		js.CopyBytesToGo(b, v)
		return b, nil
	}
	if text {
		return nil, fmt.Errorf("the evidence must be a Uint8Array or a string")
	}
	return nil, fmt.Errorf("bytes must be a Uint8Array")
}
