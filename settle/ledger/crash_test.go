package ledger_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/ledger"
)

// The crash test's child process is this test binary run with crashPathEnv set.
const (
	crashPathEnv  = "LEDGER_CRASH_PATH"
	crashRoundEnv = "LEDGER_CRASH_ROUND"
	crashAccounts = 4
	crashWorkers  = 6
)

// TestHelperProcess is the crash test's child when crashPathEnv is set: it commits
// receipts on the ledger at that path from several goroutines until it is killed,
// printing to stdout
//
//	R account request-hash idempotency-key|- max-cost   after Reserve returned
//	C receipt-json                                      after Commit returned
//	E error                                             before exiting on an error
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(crashPathEnv)
	if path == "" {
		t.Skip("the child process of TestCrash")
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
	for w := range crashWorkers {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			for i := 0; ; i++ {
				res := settle.Reservation{
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
// same file.
func TestCrash(t *testing.T) {
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
		reserved, committed := crashRound(t, path, round, killAfter, rng, printed)

		l, err := ledger.Open(path, macKey)
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range printed {
			var a string
			var seq uint64
			fmt.Sscan(k, &a, &seq)
			rs, err := l.Receipts(ctx, a, seq, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 || rs[0].Seq != seq {
				t.Fatalf("round %d: receipt %s was printed but is missing", round, k)
			}
			if got := []byte(rs[0].MarshalHeader()); !bytes.Equal(got, want) {
				t.Fatalf("round %d: receipt %s is\n%s\nwas printed as\n%s", round, k, got, want)
			}
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
				if _, err := l.Reserve(ctx, res); err != settle.ErrReplay {
					t.Fatalf("round %d: replay of %s: %v, want ErrReplay", round, res.RequestHash, err)
				}
				continue
			}
			var ie *settle.IdempotentError
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
			res := settle.Reservation{Account: a, RequestHash: hash("after", round, i), MaxCost: 10, Limit: math.MaxUint64}
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

// crashRound runs the child on path, SIGKILLs it a random moment after it printed
// killAfter receipts, and returns every reservation it printed and the number of
// receipts it printed, which it adds to printed.
func crashRound(t *testing.T, path string, round, killAfter int, rng *rand.Rand, printed map[string][]byte) ([]settle.Reservation, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashPathEnv+"="+path, crashRoundEnv+"="+strconv.Itoa(round))
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

	var reserved []settle.Reservation
	committed := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "R":
			var res settle.Reservation
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
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		case "E":
			cmd.Process.Kill()
			t.Fatalf("child failed: %s", rest)
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL || committed < killAfter {
		t.Fatalf("child ended with %v after %d receipts, before it was killed; stderr:\n%s", err, committed, stderr.Bytes())
	}
	return reserved, committed
}
