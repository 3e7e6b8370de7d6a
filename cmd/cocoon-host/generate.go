package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
)

func init() {
	register("generate", "check a model: generate text, print tokens/s", generate)
}

// generate is the operator's smoke test of the embedded engine: it loads a model
// folder, continues a prompt through the same path as a served request, prints the
// prompt and the text to stdout and the speed to stderr.
func generate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate [--model-dir DIR] [--prompt TEXT] [--temperature T] [--top-p P] [--steps N] [--seed S]", stderr)
	modelDir := fs.String("model-dir", "", "model folder (default $COCOON_MODEL_DIR, then DATA/models/"+defaultModel+")")
	data := fs.String("data", defaultDataDir(), "data directory ($COCOON_DATA_DIR)")
	prompt := fs.String("prompt", "", "text to continue; empty starts a new story")
	temperature := fs.Float64("temperature", 1, "sampling temperature, 0 to 2; 0 is greedy")
	topP := fs.Float64("top-p", 0.9, "nucleus sampling: keep the most likely tokens up to this probability, in (0, 1]")
	steps := fs.Int("steps", 256, "tokens to generate; 0 fills the context window")
	seed := fs.Int64("seed", 0, "random seed; 0 picks one")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *steps < 0 {
		return cli.UsageError("--steps must not be negative")
	}
	dir := modelDirectory(*modelDir, *data)
	if err := checkModelDir("embedded", dir, *data); err != nil {
		return err
	}
	b, err := embedded.New(dir)
	if err != nil {
		return err
	}
	defer b.Close()

	req := &backend.Request{
		Messages:    []backend.Message{{Role: "user", Content: *prompt}},
		MaxTokens:   *steps,
		Temperature: temperature,
		TopP:        topP,
	}
	if *seed != 0 {
		req.Seed = seed
	}
	if _, err := io.WriteString(stdout, *prompt); err != nil {
		return err
	}
	start := time.Now()
	res, err := b.Generate(context.Background(), req, func(delta string) error {
		_, err := io.WriteString(stdout, delta)
		return err
	})
	elapsed := time.Since(start)
	var be *backend.Error
	if errors.As(err, &be) && be.Code == backend.CodeInvalidRequest {
		return cli.UsageError(be.Message)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "\n%s: %d prompt and %d generated tokens in %v, %.0f tokens/s (finish: %s)\n",
		res.Model, res.Usage.PromptTokens, res.Usage.CompletionTokens, elapsed.Round(time.Microsecond),
		float64(res.Usage.CompletionTokens)/elapsed.Seconds(), res.FinishReason)
	return nil
}

// modelDirectory picks the model folder: the flag, then $COCOON_MODEL_DIR, then the
// default model in the data directory.
func modelDirectory(flagValue, data string) string {
	if flagValue != "" {
		return flagValue
	}
	if dir := os.Getenv("COCOON_MODEL_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(data, "models", defaultModel)
}
