package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/attest/seal"
	"github.com/cocoonhost/cocoon/attest/tdx"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
)

// The purposes of the keys derived from the root sealing secret. A purpose names what
// the key protects and must never change: the data sealed or authenticated under it
// would no longer open.
const (
	// sealSettlementKey seals the settlement key file; it is also the blob's associated
	// data.
	sealSettlementKey = "settlement-key"
	// macLedger authenticates the ledger's records.
	macLedger = "ledger"
	// macPipelines authenticates the pipeline files' owners.
	macPipelines = "pipelines"
	// sealAnswers seals the answers the ledger keeps for idempotency keys.
	sealAnswers = "idempotency-answers"
)

// The settlement key in the data directory: sealed, and, from a version before sealing,
// in plain hex (read once, sealed, then removed).
const (
	sealedSettlementKeyFile = "settlement-key.sealed"
	plainSettlementKeyFile  = "settlement-key"
)

// errNoSealingForBilling is the one line a billing host without a sealing source prints.
var errNoSealingForBilling = errors.New("billing needs a persistent settlement key, which this host cannot keep: it has no sealing source. " +
	"On TDX, give it a root sealing secret with --sealing-key-file (a file the TD image provisions into TD-private memory, such as a tmpfs, for example released by a key broker against this TD's quote)")

// resolveAttestMode returns the evidence provider --attest names: auto is tdx on a TDX
// guest, sim elsewhere.
func resolveAttestMode(cfg *serveConfig) string {
	if cfg.Attest != "auto" {
		return cfg.Attest
	}
	if tdx.Available() {
		return attest.ModeTDX
	}
	return attest.ModeSim
}

// openSealer returns the host's sealer: the root sealing secret of --sealing-key-file
// when given (refused inside the data directory, which is a disk the machine's owner
// can read, and anywhere else that is not memory-backed), else the simulator's in
// DATA/attest in sim mode, else none (on TDX without a sealing key file).
func openSealer(cfg *serveConfig, mode string) (*seal.Sealer, error) {
	switch {
	case cfg.SealingKeyFile != "":
		if inside(cfg.SealingKeyFile, cfg.Data) {
			return nil, fmt.Errorf("--sealing-key-file %s is inside the data directory %s: the root sealing secret must never be on the data disk", cfg.SealingKeyFile, cfg.Data)
		}
		return seal.FromFile(cfg.SealingKeyFile)
	case mode == attest.ModeSim:
		return seal.Sim(filepath.Join(cfg.Data, "attest"))
	default:
		return seal.None(), nil
	}
}

// inside reports whether path is dir or below it, symbolic links resolved.
func inside(path, dir string) bool {
	resolve := func(p string) string {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return p
	}
	rel, err := filepath.Rel(resolve(dir), resolve(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// openRegistry opens the pipeline registry in DATA/pipelines, its owners authenticated
// under a key derived from s; without a root sealing secret it keeps pipelines in memory
// only, since the owners of a file it wrote could not be authenticated at the next start.
func openRegistry(s *seal.Sealer, sandbox *host.Sandbox, store *host.Store, data string) (reg *host.Registry, persistent bool, err error) {
	key, err := s.MACKey(macPipelines)
	if errors.Is(err, seal.ErrNoSealing) {
		reg, err = host.OpenRegistry(sandbox, store, "", nil)
		return reg, false, err
	}
	if err != nil {
		return nil, false, err
	}
	reg, err = host.OpenRegistry(sandbox, store, filepath.Join(data, "pipelines"), key)
	return reg, true, err
}

// openLedger opens the ledger in DATA/ledger.db, its records authenticated under a key
// derived from s; the settlement key verifies the receipts of a ledger an earlier version
// wrote before it is upgraded.
func openLedger(s *seal.Sealer, data string, settlementKey ed25519.PublicKey, opts ...ledger.Option) (*ledger.Ledger, error) {
	key, err := s.MACKey(macLedger)
	if err != nil {
		return nil, err
	}
	return ledger.Open(filepath.Join(data, ledgerFile), key, append(opts, ledger.WithReceiptKey(settlementKey))...)
}

// sealedAnswers is the ledger as billing stores in it, with the answers kept for
// idempotency keys sealed (purpose sealAnswers): an answer is what a client paid to
// read, and the ledger is on the data disk, which the machine's owner reads. The
// ledger's record tag covers the sealed bytes with the account and the key, so a
// sealed answer cannot be moved to another record either. Cost: one AES-GCM pass over
// the answer when it is stored and when it is replayed.
type sealedAnswers struct {
	billing.Store
	sealer *seal.Sealer
}

// Commit seals response, then commits as the ledger does. A host that bills always
// has a root sealing secret, so sealing fails only on a bug; the hold is then left to
// the caller, which answers that the receipt was not recorded.
func (s sealedAnswers) Commit(ctx context.Context, id billing.HoldID, r *settle.Receipt, response []byte, sign func(*settle.Receipt)) error {
	if len(response) > 0 {
		sealed, err := s.sealer.Seal(sealAnswers, response)
		if err != nil {
			return err
		}
		response = sealed
	}
	return s.Store.Commit(ctx, id, r, response, sign)
}

// Reserve reserves as the ledger does, and opens the stored answer of a completed
// idempotency key. One that does not open (an answer an earlier version stored in
// the clear, until the ledger prunes it) comes back as not kept: the client is told
// the request completed, with its receipt, and is charged nothing again.
func (s sealedAnswers) Reserve(ctx context.Context, r billing.Reservation) (billing.HoldID, error) {
	id, err := s.Store.Reserve(ctx, r)
	var idem *billing.IdempotentError
	if errors.As(err, &idem) && len(idem.Response) > 0 {
		idem.Response, _ = s.sealer.Open(sealAnswers, idem.Response)
	}
	return id, err
}

// settlementKey returns the billing host's settlement key and its origin
// (attest.SettlementKeyGenerated or SettlementKeyImported), kept sealed by s in
// DATA/settlement-key.sealed: the seed, then the origin, sealed for the purpose
// "settlement-key". On the first start it generates the key. A plain hex key an
// earlier version left in DATA/settlement-key is sealed in place, its origin
// "imported", and the plain file removed, so escrows opened with it stay chargeable.
//
// It never silently replaces a key, which would strand every escrow opened with it: a
// sealed file that does not open (altered, or sealed under another root secret), a
// plain file beside a sealed one with another key, or a ledger without any key file, is
// an error saying what to restore. Without a root sealing secret it fails with
// errNoSealingForBilling.
func settlementKey(data string, s *seal.Sealer) (ed25519.PrivateKey, string, error) {
	if s.Source() == attest.SealingNone {
		return nil, "", errNoSealingForBilling
	}
	sealedPath, plainPath := filepath.Join(data, sealedSettlementKeyFile), filepath.Join(data, plainSettlementKeyFile)
	plain, plainErr := readPlainSettlementKey(plainPath)
	if plainErr != nil && !errors.Is(plainErr, fs.ErrNotExist) {
		return nil, "", plainErr
	}
	blob, err := os.ReadFile(sealedPath)
	switch {
	case err == nil:
		key, origin, err := openSettlementKey(s, blob)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w; refusing to start rather than make a new settlement key, which would strand every escrow opened with this one: restore the file, and the root sealing secret it was sealed under (%s)", sealedPath, err, s.Source())
		}
		if plain != nil {
			// An upgrade interrupted after the sealed file was written: finish it.
			if !plain.Equal(key) {
				return nil, "", fmt.Errorf("%s and %s hold different settlement keys: remove the one that is not the key your escrows were opened with", sealedPath, plainPath)
			}
			if err := removeSynced(plainPath); err != nil {
				return nil, "", err
			}
		}
		return key, origin, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, "", err
	}
	key, origin := plain, attest.SettlementKeyImported
	if plain == nil {
		if _, err := os.Stat(filepath.Join(data, ledgerFile)); err == nil {
			return nil, "", fmt.Errorf("%s exists but the settlement key %s is missing: restore it; a new key would strand every escrow opened with the old one", filepath.Join(data, ledgerFile), sealedPath)
		}
		_, key, _ = ed25519.GenerateKey(rand.Reader)
		origin = attest.SettlementKeyGenerated
	}
	sealed, err := s.Seal(sealSettlementKey, append(key.Seed(), origin...))
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, "", err
	}
	if err := writeAtomic(sealedPath, 0o600, func(w io.Writer) error { _, err := w.Write(sealed); return err }); err != nil {
		return nil, "", fmt.Errorf("settlement key: %w", err)
	}
	if plain != nil {
		if err := removeSynced(plainPath); err != nil {
			return nil, "", err
		}
	}
	return key, origin, nil
}

// openSettlementKey opens a sealed settlement key file: an ed25519 seed, then its origin.
func openSettlementKey(s *seal.Sealer, blob []byte) (ed25519.PrivateKey, string, error) {
	b, err := s.Open(sealSettlementKey, blob)
	if err != nil {
		return nil, "", err
	}
	if len(b) < ed25519.SeedSize {
		return nil, "", errors.New("the sealed settlement key is too short")
	}
	seed, origin := b[:ed25519.SeedSize], string(b[ed25519.SeedSize:])
	if !slices.Contains([]string{attest.SettlementKeyGenerated, attest.SettlementKeyImported}, origin) {
		return nil, "", fmt.Errorf("the sealed settlement key has an unknown origin %q", origin)
	}
	return ed25519.NewKeyFromSeed(seed), origin, nil
}

// readPlainSettlementKey reads the hex ed25519 seed an earlier version kept in path.
func readPlainSettlementKey(path string) (ed25519.PrivateKey, error) {
	seedHex, err := readSecret(path)
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(seedHex)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: not a hex ed25519 seed", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// removeSynced removes path and syncs its directory, so that the removal is durable.
func removeSynced(path string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir syncs directory dir, making the creation, renaming or removal of its entries
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
