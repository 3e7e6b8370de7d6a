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
		"Without --pipeline it talks to the host's bare model.", stderr)
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
	newClient := hostFlags(fs)
	words, err := cli.Parse(fs, args)
	if err != nil {
		return err
	}
	if *maxTokens < 0 {
		return cli.UsageError("--max-tokens must not be negative")
	}
	c, err := newClient()
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
	resp, err := c.send(context.Background(), http.MethodPost, path, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if req.Stream {
		err = printStream(resp.Body, stdout)
	} else {
		err = printAnswer(resp.Body, stdout)
	}
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, "\n")
	return err
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
// "data: [DONE]". An error event, or a stream that ends without [DONE], is an error.
func printStream(body io.Reader, stdout io.Writer) error {
	r := bufio.NewReader(body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return errors.New("the stream ended before the answer was complete")
			}
			return fmt.Errorf("reading the stream: %w", err)
		}
		data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data:")
		if !ok {
			continue // blank lines between events, comments, other fields
		}
		data = strings.TrimPrefix(data, " ")
		if data == "[DONE]" {
			return nil
		}
		var chunk struct {
			apiError
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return fmt.Errorf("the stream holds an event that is not JSON: %w", err)
		}
		if chunk.Error != nil {
			return fmt.Errorf("the answer failed midway: %s", chunk.Error.Message)
		}
		for _, ch := range chunk.Choices {
			if _, err := io.WriteString(stdout, ch.Delta.Content); err != nil {
				return err
			}
		}
	}
}
