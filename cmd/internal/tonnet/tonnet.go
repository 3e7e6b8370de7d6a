// Package tonnet connects the commands to the TON network.
package tonnet

import (
	"context"
	"fmt"

	"github.com/xssnick/tonutils-go/liteclient"
	"github.com/xssnick/tonutils-go/ton"
)

// Dial connects to the liteservers of the TON global config file at path (mainnet's or
// testnet's, as published at ton.org), checking proofs from the config's trusted block,
// and retries failed queries on other servers. The pool keeps its connections open,
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
		return nil, nil, fmt.Errorf("connect to TON liteservers: %w", err)
	}
	client := ton.NewAPIClient(pool, ton.ProofCheckPolicyFast)
	client.SetTrustedBlockFromConfig(global)
	// No bound on the retries, no timeout per attempt: a query goes round the
	// liteservers until one answers or the caller's context ends.
	return client.WithRetryTimeout(0, 0), pool.Stop, nil
}
