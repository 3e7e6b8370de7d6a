package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/settle"
	webclient "github.com/cocoonhost/cocoon/web/client"
)

// chat sends one user message through a pipeline and prints the answer, as it arrives
// when streaming, and checks the host's signature on it when it knows the attested host
// key.
func chat(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "chat --pipeline ID [flags] [PROMPT...]\n\n"+
		"Sends PROMPT (or standard input when no PROMPT is given) through the pipeline and prints the answer as it streams.\n"+
		"Without --pipeline it talks to the host's bare model.\n"+
		"With --escrow and --seed-file (or --client-key-file) the request is signed with the escrow's client key instead of\n"+
		"an API key; the host must then be verified (https, or a trust flag below). The receipt of a billed request is checked\n"+
		"against the attested settlement key, the pipeline, the escrow, the signed request and the host's signed price list,\n"+
		"and printed to standard error after the answer; one that does not verify makes chat fail (exit 1).\n"+
		"A request signed for an escrow carries max_price (--max-price; by default the worst case at the price list verified\n"+
		"before sending): a host that raised its prices since refuses it (402 max_price_exceeded, nothing charged), and a\n"+
		"receipt that reserved more than it is refused whatever price list the host shows afterwards.\n"+
		"The answer is checked against the host's attested key: an https host's, verified in the TLS handshake, or an http\n"+
		"host's, whose boot evidence is verified first when --trust-sim-root, --policy or --collateral is given. A streamed\n"+
		"answer is printed as it arrives and checked at its end: one that does not verify makes chat fail (exit 1) after it.\n"+
		"Without a key to check with (http, no trust flags), chat says that the answer is not verified.\n"+
		"To an http host whose boot evidence verified, the request (credentials included) is encrypted to the host's attested\n"+
		"end-to-end key and the answer opened with this request's key (web/E2E.md), unless --plaintext. A request that would\n"+
		"carry its API key or escrow signature in plaintext over http to a host other than localhost or a loopback address is refused before it is sent.", stderr)
	pipeline := fs.String("pipeline", "", "id of the pipeline, as push printed it")
	noStream := fs.Bool("no-stream", false, "ask for the whole answer at once instead of a stream")
	maxTokens := fs.Int("max-tokens", 0, "most tokens to generate (default: the host's)")
	maxPrice := fs.Uint64("max-price", 0, "most the request may cost, in nanoTON (default: for a request signed for an escrow, its worst case at the price list verified before sending: the context window that list signs of prompt tokens, --max-tokens or the window of completion, 10 s of module time, at the load curve's top, for the dearest model the list prices; an API-key request carries none)")
	var temperature *float64
	fs.Func("temperature", "sampling temperature, 0 to 2; 0 is greedy (default: the host's)", func(v string) error {
		t, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return errors.New("not a number")
		}
		temperature = &t
		return nil
	})
	plaintext := fs.Bool("plaintext", false, "send the request in plaintext even to a host whose verified evidence has end-to-end keys: whatever relays it reads the prompt and the answer (refused over http but to localhost or a loopback address when it carries a credential)")
	receiptsFile := fs.String("receipts", "", "append the request's receipt to this file as a JSON line (verify the chain with 'cocoon receipts --file')")
	newClient := billedHostFlags(fs)
	words, err := cli.Parse(fs, args)
	if err != nil {
		return err
	}
	if *maxTokens < 0 {
		return cli.UsageError("--max-tokens must not be negative")
	}
	c, account, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close() // its idle connections: the command runs in process in tests
	if *plaintext {
		c = c.WithPlaintext()
	}
	prompt := strings.Join(words, " ")
	if len(words) == 0 {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		prompt = strings.TrimRight(string(b), "\n")
	}
	req := webclient.ChatRequest{Messages: []webclient.ChatMessage{{Role: "user", Content: prompt}}, Stream: !*noStream,
		MaxTokens: *maxTokens, Temperature: temperature, MaxPrice: *maxPrice}
	answer, err := c.Chat(context.Background(), *pipeline, req, account, func(text string) error {
		_, err := io.WriteString(stdout, text)
		return err
	})
	if err != nil {
		return printFailedChecks(err, stderr)
	}
	if _, err = io.WriteString(stdout, "\n"); err != nil {
		return err
	}
	if !answer.Verified {
		fmt.Fprintln(stderr, "note: the answer is not verified: the host is http and no --trust-sim-root, --policy or --collateral was given, so chat has no attested key to check it with")
	}
	return keepReceipt(answer.Receipt, *receiptsFile, stderr)
}

// printFailedChecks writes the failed checks of a failed verification to w, one per
// line, and returns err.
func printFailedChecks(err error, w io.Writer) error {
	var v *webclient.Error
	if errors.As(err, &v) {
		for _, check := range v.FailedChecks() {
			fmt.Fprintln(w, check)
		}
	}
	return err
}

// keepReceipt prints a billed answer's receipt, which Chat checked against the
// attested settlement key, the pipeline, the escrow, the signed request and the host's
// price list, to stderr and appends it to file (if not empty). With a file, an answer
// without a receipt is an error: the host does not bill it.
func keepReceipt(r *settle.Receipt, file string, stderr io.Writer) error {
	switch {
	case r == nil && file != "":
		return &webclient.Error{Code: webclient.CodeNotVerified, Message: "the host sent no receipt: it does not bill this request (--receipts)"}
	case r == nil:
		return nil
	}
	fmt.Fprintf(stderr, "receipt: seq %d, %d prompt + %d completion tokens, %d µs of modules, cost %s TON, %s TON in total on account %s (%s)\n",
		r.Seq, r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.ComputeUnits, settle.FormatTON(r.Cost), settle.FormatTON(r.Cumulative), r.Account, r.Status)
	if file == "" {
		return nil
	}
	if err := webclient.AppendReceipt(file, r); err != nil {
		return fmt.Errorf("--receipts: %w", err)
	}
	return nil
}
