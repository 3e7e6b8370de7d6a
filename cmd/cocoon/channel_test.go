package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/settle"
)

func TestParseTON(t *testing.T) {
	tests := []struct {
		in   string
		nano uint64
		err  string
	}{
		{"1.5", 1_500_000_000, ""},
		{"12", 12_000_000_000, ""},
		{"0.000000001", 1, ""},
		{"0", 0, ""},
		{"007.10", 7_100_000_000, ""},
		{"18446744073.709551615", math.MaxUint64, ""},
		{"18446744073.709551616", 0, "too large"},
		{"99999999999999999999", 0, "too large"},
		{"1.0000000001", 0, "more than 9 decimals"},
		{"", 0, "is not an amount"},
		{".5", 0, "is not an amount"},
		{"1.", 0, "is not an amount"},
		{"-1", 0, "is not an amount"},
		{"+1", 0, "is not an amount"},
		{"1e9", 0, "is not an amount"},
		{"1,5", 0, "is not an amount"},
		{" 1", 0, "is not an amount"},
		{"1.2.3", 0, "is not an amount"},
	}
	for _, tt := range tests {
		got, err := tonnet.ParseTON(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseTON(%q) = %d, %v; want an error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.nano {
			t.Errorf("parseTON(%q) = %d, %v; want %d", tt.in, got, err, tt.nano)
		}
		// What FormatTON writes parses back to the same amount.
		if back, err := tonnet.ParseTON(settle.FormatTON(got)); err != nil || back != got {
			t.Errorf("parseTON(FormatTON(%d)) = %d, %v", got, back, err)
		}
	}
}

// Every usage mistake is caught before any network access, with exit code 2 and a
// message that says what to do.
func TestSettlementUsageErrors(t *testing.T) {
	for _, env := range []string{"COCOON_HOST", "COCOON_API_KEY", "COCOON_TON_CONFIG"} {
		t.Setenv(env, "")
	}
	escrowAddr := "0:" + strings.Repeat("ab", 32)
	seed := filepath.Join(t.TempDir(), "absent.seed")
	open := []string{"channel", "open", "--host", "http://127.0.0.1:1"}
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"channel"}, "which subcommand? open, deposit, status or withdraw"},
		{[]string{"channel", "close"}, `unknown subcommand "close"`},
		{[]string{"channel", "--nope"}, "flag provided but not defined: --nope"},

		{open, "how much? pass --deposit TON"},
		{append(open, "--deposit", "0"), "--deposit must be more than 0 TON"},
		{append(open, "--deposit", "1.0000000001"), "more than 9 decimals"},
		{append(open, "--deposit", "1,5"), `"1,5" is not an amount in TON`},
		{append(open, "--deposit", "1", "--timeout", "1500ms"), "--timeout 1.5s: want whole seconds"},
		{append(open, "--deposit", "1", "--timeout", "0s"), "--timeout 0s: want whole seconds"},
		{append(open, "--deposit", "1", "--channel-id", "-1"), "want an unsigned 64-bit number"},
		{append(open, "--deposit", "1"), "no wallet: pass --seed-file FILE"},
		{append(open, "--deposit", "1", "--print"), "--print needs the wallet"},
		{append(open, "--deposit", "1", "--print", "--client-address", escrowAddr), "--client-address needs --client-key-file"},
		{append(open, "--deposit", "1", "--print", "--client-address", escrowAddr, "--seed-file", seed), "--print needs the wallet"},
		{append(open, "--deposit", "1", "--seed-file", seed, "--client-address", escrowAddr), "--client-address is for --print"},
		{append(open, "--deposit", "1", "--seed-file", seed), "no TON network access: pass --ton-config FILE"},
		{append(open, "--deposit", "1", "--seed-file", seed, "--ton-config", "c", "--ton-network", "devnet"), `--ton-network "devnet": must be mainnet or testnet`},
		{append(open, "--deposit", "1", "--print", "--client-address", "nope", "--client-key-file", seed), `--client-address: "nope" is not a TON address`},

		{[]string{"channel", "deposit", "--amount", "1"}, "no escrow: pass --escrow ADDR"},
		{[]string{"channel", "deposit", "--escrow", escrowAddr}, "how much? pass --amount TON"},
		{[]string{"channel", "deposit", "--escrow", escrowAddr, "--amount", "0"}, "--amount must be more than 0 TON"},
		{[]string{"channel", "deposit", "--escrow", escrowAddr, "--amount", "1"}, "no wallet: pass --seed-file FILE"},
		{[]string{"channel", "deposit", "--escrow", escrowAddr, "--amount", "1", "--print", "--seed-file", seed}, "--print sends nothing"},
		{[]string{"channel", "deposit", "--escrow", "EQnope", "--amount", "1", "--print"}, `--escrow: "EQnope" is not a TON address`},
		{[]string{"channel", "deposit", "--escrow", escrowAddr, "--amount", "1", "--seed-file", seed}, "no TON network access"},

		{[]string{"channel", "status"}, "no escrow: pass --escrow ADDR"},
		{[]string{"channel", "status", "--escrow", escrowAddr}, "no TON network access"},
		{[]string{"channel", "status", "--escrow", escrowAddr, "--ton-config", "c", "--seed-file", seed}, "it needs --host"},
		{[]string{"channel", "status", "--escrow", escrowAddr, "--ton-config", "c", "--host", "http://h"}, "pass --seed-file (the wallet's seed words) or --client-key-file"},
		{[]string{"channel", "status", "--escrow", escrowAddr, "--ton-config", "c", "--host", "http://h", "--seed-file", seed, "--client-key-file", seed}, "not both"},

		{[]string{"channel", "withdraw"}, "no escrow: pass --escrow ADDR"},
		{[]string{"channel", "withdraw", "--escrow", escrowAddr}, "no wallet: pass --seed-file FILE"},
		{[]string{"channel", "withdraw", "--escrow", escrowAddr, "--seed-file", seed}, "no TON network access"},

		{[]string{"receipts"}, "give --host URL to fetch the receipts, or --file FILE"},
		{[]string{"receipts", "--file", "r", "--host", "http://h"}, "give --host URL to fetch the receipts, or --file FILE"},
		{[]string{"receipts", "--file", "r", "--escrow", escrowAddr}, "--file verifies a saved chain offline"},
		{[]string{"receipts", "--file", "r", "--from", "2"}, "--file verifies a saved chain offline"},
		{[]string{"receipts", "--host", "http://h", "--from", "0"}, "--from: sequence numbers start at 1"},
		{[]string{"receipts", "--file", "r", "--settlement-key", "abcd"}, `--settlement-key "abcd": want 64 hex digits`},
		{[]string{"receipts", "--host", "http://h"}, "no escrow: pass --escrow ADDR"},
		{[]string{"receipts", "--host", "ftp://h", "--escrow", escrowAddr, "--client-key-file", seed}, `--host "ftp://h": want a URL`},

		{[]string{"chat", "hi"}, "no API key: pass --api-key or set COCOON_API_KEY (cocoon-host serve prints the file it is in), or sign requests for an escrow"},
		{[]string{"chat", "--escrow", escrowAddr, "hi"}, "pass --seed-file (the wallet's seed words) or --client-key-file"},
		{[]string{"chat", "--seed-file", seed, "hi"}, "no escrow: pass --escrow ADDR"},
		{[]string{"chat", "--escrow", "0:12", "--seed-file", seed, "hi"}, `--escrow: "0:12" is not a TON address`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := cocoon(t, "", tt.args...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2, stderr containing %q", code, stdout, stderr, tt.stderr)
			}
		})
	}
}
