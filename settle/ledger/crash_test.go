package ledger_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/internal/fstrace"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
)

// The crash tests' child process is this test binary run with crashPathEnv set.
const (
	crashPathEnv   = "LEDGER_CRASH_PATH"
	crashRoundEnv  = "LEDGER_CRASH_ROUND"
	crashNoSyncEnv = "LEDGER_CRASH_NOSYNC"
	crashAccounts  = 4
	crashWorkers   = 6
)

// TestHelperProcess is the crash tests' child when crashPathEnv is set: it commits
// receipts on the ledger at that path from several goroutines until it is killed,
// printing to stdout
//
//	R account request-hash idempotency-key|- max-cost   after Reserve returned
//	C receipt-json                                      after Commit returned
//	E error                                             before exiting on an error
//
// With crashNoSyncEnv set its ledger never fsyncs (SetNoSync).
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(crashPathEnv)
	if path == "" {
		t.Skip("the child process of TestCrash and TestPowerLoss")
	}
	round := os.Getenv(crashRoundEnv)
	// In case the parent dies without killing us.
	time.AfterFunc(time.Minute, func() { os.Exit(2) })

	var mu sync.Mutex
	out := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	fail := func(err error) {
		out("E %v", err)
		os.Exit(1)
	}
	l, err := ledger.Open(path, macKey)
	if err != nil {
		fail(err)
	}
	if os.Getenv(crashNoSyncEnv) != "" {
		ledger.SetNoSync(l)
	}
	for w := range crashWorkers {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			for i := 0; ; i++ {
				res := billing.Reservation{
					Account:     account(rng.IntN(crashAccounts)),
					RequestHash: hash("crash", round, w, i),
					MaxCost:     1 + rng.Uint64N(1000),
					Limit:       math.MaxUint64,
				}
				key := "-"
				if i%4 == 0 {
					res.IdempotencyKey = fmt.Sprint("key-", round, "-", w, "-", i)
					key = res.IdempotencyKey
				}
				id, err := l.Reserve(ctx, res)
				if err != nil {
					fail(err)
				}
				out("R %s %s %s %d", res.Account, res.RequestHash, key, res.MaxCost)
				r := bill(res, rng.Uint64N(res.MaxCost+1))
				if err := l.Commit(ctx, id, r, []byte("response to "+res.RequestHash), sign); err != nil {
					fail(err)
				}
				out("C %s", r.MarshalHeader())
			}
		}()
	}
	select {}
}

// TestCrash SIGKILLs a process committing receipts at full speed, at a random moment,
// then checks on the reopened ledger that every receipt the process was told about is
// there byte for byte, the chains are whole, no request is billed twice, holds that
// did not commit left no trace, and the chains go on. It does so several times on the
// same file. A SIGKILL leaves the page cache, and so every completed write, intact: it
// tests the ledger's logic, not that its commits reach the disk (TestPowerLoss does).
func TestCrash(t *testing.T) {
	crashTest(t, sigkillRound)
}

// TestPowerLoss is TestCrash with a power cut instead of a SIGKILL: the child runs under
// ptrace (internal/fstrace), which records every write and sync of the ledger file; it
// is killed at a random ledger call (every other round at the entry of an fsync, when
// the commit's pages are written but not yet durable), and the file is rebuilt as a
// power loss would leave it, with only what was written before the last fsync that
// completed. Every receipt the child printed (after Commit returned) must be in that
// file. It fails when the fsync before the receipt is left out
// (TestPowerLossCatchesAMissingSync).
func TestPowerLoss(t *testing.T) {
	crashTest(t, powerLossRound(false))
}

// TestPowerLossCatchesAMissingSync runs one power-loss round on a ledger with bbolt's
// fsync turned off, and expects receipts the child printed to be lost: the proof that
// TestPowerLoss tests the sync, which a SIGKILL cannot.
func TestPowerLossCatchesAMissingSync(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	printed := make(map[string][]byte)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	powerLossRound(true)(t, path, 0, 50, rng, printed)
	l, err := ledger.Open(path, macKey)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if missing := missingReceipts(t, l, printed); len(missing) == 0 {
		t.Fatalf("without fsync, all %d printed receipts survived the power cut: the test cannot tell", len(printed))
	} else {
		t.Logf("without fsync, %d of %d printed receipts were lost, as expected", len(missing), len(printed))
	}
}

// A crashRound runs the child on path, kills it at a random moment after it printed
// killAfter receipts, leaves path as the crash left it, and returns every reservation
// the child printed and the number of receipts it printed, which it adds to printed.
type crashRound func(t *testing.T, path string, round, killAfter int, rng *rand.Rand, printed map[string][]byte) ([]billing.Reservation, int)

// crashTest runs four rounds of crash on one file and checks the ledger after each.
func crashTest(t *testing.T, crash crashRound) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	var accounts []string
	for i := range crashAccounts {
		accounts = append(accounts, account(i))
	}
	printed := make(map[string][]byte) // "account seq" → receipt JSON, from every round

	for round := range 4 {
		killAfter := 100 + rng.IntN(300)
		reserved, committed := crash(t, path, round, killAfter, rng, printed)

		l, err := ledger.Open(path, macKey)
		if err != nil {
			t.Fatal(err)
		}
		if missing := missingReceipts(t, l, printed); len(missing) > 0 {
			t.Fatalf("round %d: %d receipts were printed but are missing or changed, such as %s", round, len(missing), missing[0])
		}
		chains := verifyAll(t, l, accounts)
		billed := make(map[string]settle.Receipt)
		for _, rs := range chains {
			for _, r := range rs {
				billed[r.RequestHash] = r
			}
		}

		// A request either has its receipt, with its idempotency record and response,
		// or left no trace: its hash and key are free.
		unprinted, untraced := 0, 0
		for _, res := range reserved {
			r, ok := billed[res.RequestHash]
			if !ok {
				untraced++
				id, err := l.Reserve(ctx, res)
				if err != nil {
					t.Fatalf("round %d: request %s has no receipt, but Reserve says %v", round, res.RequestHash, err)
				}
				if err := l.Release(id); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if _, done := printed[fmt.Sprint(r.Account, " ", r.Seq)]; !done {
				unprinted++
			}
			if res.IdempotencyKey == "" {
				if _, err := l.Reserve(ctx, res); err != billing.ErrReplay {
					t.Fatalf("round %d: replay of %s: %v, want ErrReplay", round, res.RequestHash, err)
				}
				continue
			}
			var ie *billing.IdempotentError
			_, err := l.Reserve(ctx, res)
			if !errors.As(err, &ie) || ie.Err != nil || ie.Receipt.Seq != r.Seq || string(ie.Response) != "response to "+res.RequestHash {
				t.Fatalf("round %d: retry of %s: %v", round, res.IdempotencyKey, err)
			}
		}
		if unprinted > crashWorkers {
			t.Errorf("round %d: %d receipts committed but not printed, with %d workers", round, unprinted, crashWorkers)
		}
		t.Logf("round %d: killed after %d receipts printed; %d more committed, %d holds lost", round, committed, unprinted, untraced)

		// The chains go on.
		for i, a := range accounts {
			before, err := l.Account(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			res := billing.Reservation{Account: a, RequestHash: hash("after", round, i), MaxCost: 10, Limit: math.MaxUint64}
			r := commit(t, l, res, 7, nil)
			if r.Seq != before.LastSeq+1 || r.Cumulative != before.Cumulative+7 {
				t.Fatalf("round %d: after %+v, next receipt has seq %d, cumulative %d", round, before, r.Seq, r.Cumulative)
			}
			printed[fmt.Sprint(a, " ", r.Seq)] = []byte(r.MarshalHeader())
		}
		verifyAll(t, l, accounts)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// missingReceipts returns the printed receipts ("account seq") that l lacks or holds
// with other bytes.
func missingReceipts(t *testing.T, l *ledger.Ledger, printed map[string][]byte) []string {
	t.Helper()
	var missing []string
	for k, want := range printed {
		var a string
		var seq uint64
		fmt.Sscan(k, &a, &seq)
		rs, err := l.Receipts(ctx, a, seq, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || rs[0].Seq != seq || !bytes.Equal([]byte(rs[0].MarshalHeader()), want) {
			missing = append(missing, k)
		}
	}
	return missing
}

// childArgs and childEnv run TestHelperProcess on path.
func childArgs() []string { return []string{"-test.run=^TestHelperProcess$", "-test.count=1"} }

func childEnv(path string, round int, noSync bool) []string {
	env := append(os.Environ(), crashPathEnv+"="+path, crashRoundEnv+"="+strconv.Itoa(round))
	if noSync {
		env = append(env, crashNoSyncEnv+"=1")
	}
	return env
}

// readChild parses the child's output until it ends, recording what it printed, and
// calls kill once it has printed killAfter receipts. It returns the reservations
// and the number of receipts printed.
func readChild(t *testing.T, out io.Reader, killAfter int, kill func(), printed map[string][]byte) ([]billing.Reservation, int) {
	t.Helper()
	var reserved []billing.Reservation
	committed := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "R":
			var res billing.Reservation
			var key string
			if _, err := fmt.Sscan(rest, &res.Account, &res.RequestHash, &key, &res.MaxCost); err != nil {
				t.Fatalf("child printed %q: %v", sc.Text(), err)
			}
			if key != "-" {
				res.IdempotencyKey = key
			}
			res.Limit = math.MaxUint64
			reserved = append(reserved, res)
		case "C":
			var r settle.Receipt
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				t.Fatalf("child printed %q: %v", sc.Text(), err)
			}
			printed[fmt.Sprint(r.Account, " ", r.Seq)] = []byte(rest)
			if committed++; committed == killAfter {
				kill()
			}
		case "E":
			kill()
			t.Fatalf("child failed: %s", rest)
		}
	}
	return reserved, committed
}

// sigkillRound is a crashRound that SIGKILLs the child.
func sigkillRound(t *testing.T, path string, round, killAfter int, rng *rand.Rand, printed map[string][]byte) ([]billing.Reservation, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], childArgs()...)
	cmd.Env = childEnv(path, round, false)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(15*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	reserved, committed := readChild(t, stdout, killAfter, func() {
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
	}, printed)
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL || committed < killAfter {
		t.Fatalf("child ended with %v after %d receipts, before it was killed; stderr:\n%s", err, committed, stderr.Bytes())
	}
	return reserved, committed
}

// powerLossRound returns a crashRound that runs the child under fstrace, kills it at a
// ledger call, and rebuilds the file as a power loss leaves it. With noSync the child's
// ledger never syncs.
func powerLossRound(noSync bool) crashRound {
	return func(t *testing.T, path string, round, killAfter int, rng *rand.Rand, printed map[string][]byte) ([]billing.Reservation, int) {
		t.Helper()
		initial, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		// Once killAfter receipts are printed, the child dies at the entry of its
		// n-th ledger fsync (even rounds) or of its n-th ledger call of any kind.
		var armed atomic.Bool
		n, atSync := 1+rng.IntN(6), round%2 == 0
		killAt := func(c fstrace.Call) bool {
			if !armed.Load() || (atSync && c.Kind != fstrace.Sync) {
				return false
			}
			n--
			return n == 0
		}
		if noSync {
			killAt = func(fstrace.Call) bool { return armed.Load() }
		}
		pr, pw := io.Pipe()
		var stderr bytes.Buffer
		p, err := fstrace.Start(os.Args[0], fstrace.Options{Args: childArgs(), Env: childEnv(path, round, noSync),
			Stdout: pw, Stderr: &stderr, Record: func(p string) bool { return p == path }, KillAt: killAt})
		if errors.Is(err, fstrace.ErrUnsupported) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		watchdog := time.AfterFunc(30*time.Second, func() { p.Kill() })
		defer watchdog.Stop()
		var trace fstrace.Trace
		var traceErr error
		traced := make(chan struct{})
		go func() {
			defer close(traced)
			trace, traceErr = p.Wait()
			pw.Close()
		}()
		reserved, committed := readChild(t, pr, killAfter, func() {
			armed.Store(true)
			if noSync { // a ledger that never syncs gives KillAt nothing to wait for
				p.Kill()
			}
		}, printed)
		<-traced
		if traceErr != nil {
			t.Fatal(traceErr)
		}
		if committed < killAfter {
			t.Fatalf("child ended after %d receipts, before it was killed; stderr:\n%s", committed, stderr.Bytes())
		}
		rebuilt, synced := trace.PowerLoss(path, initial)
		if !synced && !noSync {
			t.Fatalf("round %d: no fsync of the ledger completed in %d receipts", round, committed)
		}
		if err := os.WriteFile(path, rebuilt, 0o600); err != nil {
			t.Fatal(err)
		}
		writes := 0
		for _, c := range trace.Touched(path) {
			if c.Kind == fstrace.Write && c.Exit != 0 {
				writes++
			}
		}
		t.Logf("round %d: the power cut came at %s, after %d ledger writes", round, lastLedgerCall(trace, path), writes)
		return reserved, committed
	}
}

// lastLedgerCall describes the last call on the ledger file the child entered.
func lastLedgerCall(tr fstrace.Trace, path string) string {
	calls := tr.Touched(path)
	if len(calls) == 0 {
		return "none"
	}
	return calls[len(calls)-1].String()
}
