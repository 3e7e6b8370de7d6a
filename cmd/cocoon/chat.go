package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/settle"
)

// chatRequest is the part of an OpenAI chat completion request that chat sends.
type chatRequest struct {
	Messages    []chatMessage `json:"messages"`
	Stream      bool          `json:"stream,omitempty"`
	MaxTokens   int           `json:"max_tokens,omitempty"`
	Temperature *float64      `json:"temperature,omitempty"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatMaxAnswer bounds an answer chat reads whole, and one event of a stream.
const chatMaxAnswer = 16 << 20

// chat sends one user message through a pipeline and prints the answer, as it arrives
// when streaming, and checks the host's signature on it when it knows the attested host
// key.
func chat(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "chat --pipeline ID [flags] [PROMPT...]\n\n"+
		"Sends PROMPT (or standard input when no PROMPT is given) through the pipeline and prints the answer as it streams.\n"+
		"Without --pipeline it talks to the host's bare model.\n"+
		"With --escrow and --seed-file (or --client-key-file) the request is signed with the escrow's client key instead of\n"+
		"an API key; the receipt of a billed request is printed to standard error after the answer.\n"+
		"The answer is checked against the host's attested key: an https host's, verified in the TLS handshake, or an http\n"+
		"host's, whose boot evidence is verified first when --trust-sim-root, --policy or --collateral is given. A streamed\n"+
		"answer is printed as it arrives and checked at its end: one that does not verify makes chat fail (exit 1) after it.\n"+
		"Without a key to check with (http, no trust flags), chat says that the answer is not verified.", stderr)
	pipeline := fs.String("pipeline", "", "id of the pipeline, as push printed it")
	noStream := fs.Bool("no-stream", false, "ask for the whole answer at once instead of a stream")
	maxTokens := fs.Int("max-tokens", 0, "most tokens to generate (default: the host's)")
	var temperature *float64
	fs.Func("temperature", "sampling temperature, 0 to 2; 0 is greedy (default: the host's)", func(v string) error {
		t, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return errors.New("not a number")
		}
		temperature = &t
		return nil
	})
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
	prompt := strings.Join(words, " ")
	if len(words) == 0 {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		prompt = strings.TrimRight(string(b), "\n")
	}
	path := "/v1/chat/completions"
	if *pipeline != "" {
		path = "/p/" + *pipeline + path
	}
	req := chatRequest{Messages: []chatMessage{{Role: "user", Content: prompt}}, Stream: !*noStream,
		MaxTokens: *maxTokens, Temperature: temperature}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var bootKey ed25519.PublicKey
	if c.ratls == nil && c.trusted {
		boot, err := c.verifiedBoot(ctx, c.policy, c.opts, stderr)
		if err != nil {
			return err
		}
		bootKey = boot.HostKey
	}
	resp, err := c.request(ctx, http.MethodPost, path, body, account)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	v := &attest.ResponseVerifier{HostKey: c.answerKey(bootKey), Request: body, PipelineID: *pipeline}
	if v.HostKey == nil {
		v = nil
	}
	var receipt *settle.Receipt
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "text/event-stream" {
		receipt, err = printStream(streamEvents(resp.Body, v), stdout)
	} else {
		receipt, err = printWhole(resp, v, stdout)
	}
	if err != nil {
		return err
	}
	if _, err = io.WriteString(stdout, "\n"); err != nil {
		return err
	}
	if v == nil {
		fmt.Fprintln(stderr, "note: the answer is not verified: the host is http and no --trust-sim-root, --policy or --collateral was given, so chat has no attested key to check it with")
	}
	return keepReceipt(receipt, account, *receiptsFile, stderr)
}

// answerKey is the attested host key to check an answer with: an https host's, pinned
// by the TLS handshake that carried the request; else bootKey, from evidence verified
// before the request (nil when none was).
func (c *client) answerKey(bootKey ed25519.PublicKey) ed25519.PublicKey {
	if c.ratls != nil {
		if ev, _, ok := c.ratls.Pinned(); ok {
			return ev.HostKey
		}
	}
	return bootKey
}

// printWhole prints a non-streaming answer once its signature verifies (v nil: without
// a check), or returns the host's error, and returns its receipt.
func printWhole(resp *http.Response, v *attest.ResponseVerifier, stdout io.Writer) (*settle.Receipt, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, chatMaxAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if v != nil {
		if err := v.VerifyBody(resp.StatusCode, resp.Header.Get("Retry-After"), b, resp.Header.Get(attest.ResponseSignatureHeader)); err != nil {
			return nil, fmt.Errorf("the host's answer (%s) is not signed by the attested host key, so it is not shown: %w", resp.Status, err)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if resp.StatusCode/100 != 2 {
		return nil, responseError(resp)
	}
	receipt, err := headerReceipt(resp.Header)
	if err != nil {
		return nil, err
	}
	return receipt, printAnswer(resp.Body, stdout)
}

// headerReceipt decodes the receipt header of a billed answer; nil when there is none.
func headerReceipt(h http.Header) (*settle.Receipt, error) {
	v := h.Get(settle.ReceiptHeader)
	if v == "" {
		return nil, nil
	}
	var r settle.Receipt
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return nil, fmt.Errorf("the host's %s header is not a receipt: %w", settle.ReceiptHeader, err)
	}
	return &r, nil
}

// keepReceipt checks a billed answer's receipt (its signature and cost, and its account
// when the request was signed), prints it to stderr and appends it to file (if not
// empty). The settlement key is checked when the chain is: see 'cocoon receipts'.
func keepReceipt(r *settle.Receipt, account *signer, file string, stderr io.Writer) error {
	switch {
	case r == nil && (account != nil || file != ""):
		return errors.New("the host sent no receipt: it does not bill this request")
	case r == nil:
		return nil
	case account != nil && r.Account != account.account:
		return fmt.Errorf("the receipt is for account %s, not for escrow %s", r.Account, account.account)
	}
	if err := r.Verify(nil); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "receipt: seq %d, %d prompt + %d completion tokens, %d µs of modules, cost %s TON, %s TON in total on account %s (%s)\n",
		r.Seq, r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.ComputeUnits, settle.FormatTON(r.Cost), settle.FormatTON(r.Cumulative), r.Account, r.Status)
	if file == "" {
		return nil
	}
	if err := appendReceipt(file, r); err != nil {
		return fmt.Errorf("--receipts: %w", err)
	}
	return nil
}

// printAnswer prints the content of a complete answer.
func printAnswer(body io.Reader, stdout io.Writer) error {
	var answer struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(body).Decode(&answer); err != nil {
		return fmt.Errorf("the host's answer is not a chat completion: %w", err)
	}
	if len(answer.Choices) == 0 {
		return errors.New("the host's answer has no choices")
	}
	_, err := io.WriteString(stdout, answer.Choices[0].Message.Content)
	return err
}

// streamEvents returns a reader of the data of a stream's events, one per call and
// io.EOF at the end: with v, of the events before the signature event, and io.EOF only
// once the stream verified to its end (attest.SignedStream); without, of the events up
// to "data: [DONE]", and io.ErrUnexpectedEOF when the stream ends without it.
func streamEvents(body io.Reader, v *attest.ResponseVerifier) func() ([]byte, error) {
	if v != nil {
		s := v.ReadStream(body, chatMaxAnswer)
		return func() ([]byte, error) {
			for {
				ev, err := s.Next()
				if err != nil {
					return nil, err
				}
				if ev.Kind == attest.EventData {
					return ev.Data, nil
				}
			}
		}
	}
	r := bufio.NewReader(body)
	return func() ([]byte, error) {
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			} else if err != nil {
				return nil, err
			}
			data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data:")
			if !ok {
				continue // blank lines between events, comments, other fields
			}
			if data = strings.TrimPrefix(data, " "); data == "[DONE]" {
				return nil, io.EOF
			}
			return []byte(data), nil
		}
	}
}

// printStream prints the content of each chunk of a stream as it arrives, from next
// (streamEvents), and returns the receipt of a billed stream (its cocoon_receipt
// event). An error event, or a stream that does not end as it should (or, checked,
// does not verify), is an error.
func printStream(next func() ([]byte, error), stdout io.Writer) (*settle.Receipt, error) {
	var receipt *settle.Receipt
	var failed error
	for {
		data, err := next()
		switch {
		case err == io.EOF && failed == nil:
			return receipt, nil
		case failed != nil && (err == io.EOF || err == io.ErrUnexpectedEOF):
			return nil, failed
		case errors.Is(err, attest.ErrResponseSignature):
			return nil, fmt.Errorf("the answer above is not signed by the attested host key: do not trust it: %w", err)
		case err == io.ErrUnexpectedEOF:
			return nil, errors.New("the stream ended before the answer was complete")
		case err != nil:
			return nil, fmt.Errorf("reading the stream: %w", err)
		}
		var chunk struct {
			apiError
			Receipt *settle.Receipt `json:"cocoon_receipt"`
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(data, &chunk); err != nil {
			return nil, fmt.Errorf("the stream holds an event that is not JSON: %w", err)
		}
		if chunk.Error != nil {
			failed = fmt.Errorf("the answer failed midway: %s", chunk.Error.Message) // the stream's end follows
			continue
		}
		if chunk.Receipt != nil {
			receipt = chunk.Receipt
		}
		for _, ch := range chunk.Choices {
			if _, err := io.WriteString(stdout, ch.Delta.Content); err != nil {
				return nil, err
			}
		}
	}
}
