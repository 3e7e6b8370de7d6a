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
// and retries failed queries on other servers.
func Dial(ctx context.Context, path string) (ton.APIClientWrapped, error) {
	global, err := liteclient.GetConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	pool := liteclient.NewConnectionPool()
	if err := pool.AddConnectionsFromConfig(ctx, global); err != nil {
		return nil, fmt.Errorf("connect to TON liteservers: %w", err)
	}
	api := ton.NewAPIClient(pool, ton.ProofCheckPolicyFast)
	api.SetTrustedBlockFromConfig(global)
	return api.WithRetry(), nil
}
