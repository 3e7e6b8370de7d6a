package main

import (
	"crypto/ed25519"
	"net/http"

	webclient "github.com/cocoonhost/cocoon/web/client"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// What the tests of this package use of the host client's internals, since it moved to
// package web/client.

// apiError is the OpenAI error shape the host answers with.
type apiError struct {
	Error *struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
}

// signer signs a request for an escrow as webclient.Signer does.
type signer struct {
	account string
	key     ed25519.PrivateKey
}

func (s *signer) sign(req *http.Request, body []byte) {
	webclient.NewSigner(s.account, s.key).Sign(req, body)
}

// transfer is a message to an escrow, built as webclient.Transfer builds it.
type transfer struct {
	to    *address.Address
	value uint64
	body  *cell.Cell
	init  *tlb.StateInit
}

func (t transfer) message() *wallet.Message {
	return webclient.Transfer{To: t.to, Value: t.value, Body: t.body, Init: t.init}.Message()
}
