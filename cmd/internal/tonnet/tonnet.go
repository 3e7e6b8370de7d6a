// Package tonnet connects the commands to the TON network.
package tonnet

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/liteclient"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"
)

// Dial connects to the liteservers of the TON global config file at path (mainnet's or
// testnet's, as published at ton.org, or cocoon-host devnet's), checking proofs from the
// config's trusted block, and retries failed queries on other servers. When no
// liteserver of the config answers, the error says so in those words. The pool keeps its connections open,
// pings them and reconnects them in the background until stop is called: a daemon calls
// it when it shuts down, after the last query; a one-shot command may leave it to its
// exit.
func Dial(ctx context.Context, path string) (api ton.APIClientWrapped, stop func(), err error) {
	global, err := liteclient.GetConfigFromFile(path)
	if err != nil {
		return nil, nil, err
	}
	pool := liteclient.NewConnectionPool()
	if err := pool.AddConnectionsFromConfig(ctx, global); err != nil {
		pool.Stop()
		// The library's own error is about the last attempt only, and reads oddly
		// ("too big size of packet" from a port that speaks another protocol).
		return nil, nil, fmt.Errorf("cannot reach any liteserver of ton_config %s (%d listed; is the network up and the file current?): last error: %w",
			path, len(global.Liteservers), err)
	}
	client := ton.NewAPIClient(pool, ton.ProofCheckPolicyFast)
	client.SetTrustedBlockFromConfig(global)
	// No bound on the retries, no timeout per attempt: a query goes round the
	// liteservers until one answers or the caller's context ends.
	return client.WithRetryTimeout(0, 0), pool.Stop, nil
}

// CreateSeedFile writes the 24 words of a new TON wallet seed to path, readable by its
// owner only, and returns the wallet key they derive. It never replaces a file, and the
// words never appear in an error.
func CreateSeedFile(path string) (ed25519.PrivateKey, error) {
	words := wallet.NewSeed()
	key, err := SeedKey(words)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(strings.Join(words, " ") + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	return key, f.Close()
}

// SeedKey derives the key of a TON wallet from its seed words, as TON wallets do (no
// password, not BIP-39).
func SeedKey(words []string) (ed25519.PrivateKey, error) {
	key, err := wallet.SeedToPrivateKeyWithOptions(words)
	if err != nil {
		return nil, errors.New("not the seed words of a TON wallet") // the words stay out of errors
	}
	return key, nil
}

// WalletAddress is the address of key's V5R1 wallet on network (wallet.MainnetGlobalID
// or wallet.TestnetGlobalID).
func WalletAddress(key ed25519.PrivateKey, network int32) (*address.Address, error) {
	w, err := wallet.FromPrivateKeyWithOptions(key, wallet.ConfigV5R1Final{NetworkGlobalID: network})
	if err != nil {
		return nil, err
	}
	return w.WalletAddress(), nil
}

// ParseTON parses a TON amount written in TON with up to nine decimals ("1.5",
// "0.000000001", "12") into nanoTON, exactly. It refuses signs, exponents, empty parts
// and amounts of 2⁶⁴ nanoTON or more.
func ParseTON(s string) (uint64, error) {
	whole, frac, dot := strings.Cut(s, ".")
	switch {
	case whole == "" || dot && frac == "":
		return 0, fmt.Errorf("%q is not an amount in TON, such as 1.5", s)
	case len(frac) > 9:
		return 0, fmt.Errorf("%q has more than 9 decimals (1 nanoTON is 0.000000001 TON)", s)
	}
	digits := whole + frac + strings.Repeat("0", 9-len(frac))
	var n uint64
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not an amount in TON, such as 1.5", s)
		}
		if n > (math.MaxUint64-uint64(c-'0'))/10 {
			return 0, fmt.Errorf("%q TON is too large", s)
		}
		n = n*10 + uint64(c-'0')
	}
	return n, nil
}
