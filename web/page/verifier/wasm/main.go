//go:build js && wasm

// Command wasm is the reviewer's page's verifier compiled to WebAssembly (GOOS=js
// GOARCH=wasm; `make page` builds it into web/page/dist/verifier.wasm). Run by Go's
// wasm_exec.js, it defines one JavaScript function and then waits for calls:
//
//	cocoonVerify(evidence Uint8Array | string, optionsJSON string) string
//
// (the evidence as the bytes fetched, so that nothing is lost in a text decoding), which
// returns verifier.Verify's result JSON: {"report": ...} or {"error": ...,
// "error_in": ...}. When the function is defined it dispatches the event
// "cocoon-verifier-ready" on globalThis, so a page need not poll for it.
package main

import (
	"fmt"
	"syscall/js"

	"github.com/cocoonhost/cocoon/web/page/verifier"
)

func main() {
	js.Global().Set("cocoonVerify", js.FuncOf(func(_ js.Value, args []js.Value) any {
		return verifyCall(args)
	}))
	js.Global().Call("dispatchEvent", js.Global().Get("Event").New("cocoon-verifier-ready"))
	select {} // the page calls cocoonVerify for as long as it is open
}

// verifyCall runs one cocoonVerify call. A panic would end the Go program and leave
// every later call failing with "Go program has already exited": it becomes this
// call's error instead.
func verifyCall(args []js.Value) (out string) {
	defer func() {
		if v := recover(); v != nil {
			out = fmt.Sprintf(`{"error":%q,"error_in":%q}`, fmt.Sprintf("the verifier failed: %v", v), verifier.InEvidence)
		}
	}()
	if len(args) != 2 || args[1].Type() != js.TypeString {
		return fmt.Sprintf(`{"error":"cocoonVerify(evidence, optionsJSON) takes the evidence's bytes and a string","error_in":%q}`, verifier.InOptions)
	}
	var evidence []byte
	switch ev := args[0]; {
	case ev.Type() == js.TypeString:
		evidence = []byte(ev.String())
	case ev.InstanceOf(js.Global().Get("Uint8Array")):
		evidence = make([]byte, ev.Get("length").Int())
		js.CopyBytesToGo(evidence, ev)
	default:
		return fmt.Sprintf(`{"error":"cocoonVerify: the evidence must be a Uint8Array or a string","error_in":%q}`, verifier.InOptions)
	}
	return string(verifier.Verify(evidence, []byte(args[1].String())))
}
