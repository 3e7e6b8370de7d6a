package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

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

// chat sends one user message through a pipeline and prints the answer, as it arrives
// when streaming.
func chat(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "chat --pipeline ID [flags] [PROMPT...]\n\n"+
		"Sends PROMPT (or standard input when no PROMPT is given) through the pipeline and prints the answer as it streams.\n"+
		"Without --pipeline it talks to the host's bare model.\n"+
		"With --escrow and --seed-file (or --client-key-file) the request is signed with the escrow's client key instead of\n"+
		"an API key; the receipt of a billed request is printed to standard error after the answer.", stderr)
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
	resp, err := c.sendSigned(context.Background(), http.MethodPost, path, body, account)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var receipt *settle.Receipt
	if req.Stream {
		receipt, err = printStream(resp.Body, stdout)
	} else {
		receipt, err = headerReceipt(resp.Header)
		if err == nil {
			err = printAnswer(resp.Body, stdout)
		}
	}
	if err != nil {
		return err
	}
	if _, err = io.WriteString(stdout, "\n"); err != nil {
		return err
	}
	return keepReceipt(receipt, account, *receiptsFile, stderr)
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

// printStream prints the content of each server-sent chunk as it arrives, until
// "data: [DONE]", and returns the receipt of a billed stream (its cocoon_receipt event).
// An error event, or a stream that ends without [DONE], is an error.
func printStream(body io.Reader, stdout io.Writer) (*settle.Receipt, error) {
	r := bufio.NewReader(body)
	var receipt *settle.Receipt
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return nil, errors.New("the stream ended before the answer was complete")
			}
			return nil, fmt.Errorf("reading the stream: %w", err)
		}
		data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data:")
		if !ok {
			continue // blank lines between events, comments, other fields
		}
		data = strings.TrimPrefix(data, " ")
		if data == "[DONE]" {
			return receipt, nil
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
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return nil, fmt.Errorf("the stream holds an event that is not JSON: %w", err)
		}
		if chunk.Error != nil {
			return nil, fmt.Errorf("the answer failed midway: %s", chunk.Error.Message)
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
