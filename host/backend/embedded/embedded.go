// Package embedded is the inference backend that needs no GPU and no other process: a
// pure-Go engine (host/internal/llama2) running a llama2.c model, by default
// stories260K, so a fresh host serves a real model out of the box.
//
// # What the model does
//
// The default model writes short children's stories. It is not an assistant and is not
// presented as one: a chat request becomes plain text that the model continues. The
// prompt template is
//
//	the contents of the messages in order, whatever their roles, joined with "\n"
//	(messages with empty content are skipped)
//
// and the answer is the model's continuation of that text. With no messages (or only
// empty ones) the model starts a new story. The prompt is encoded with a BOS token
// first, as llama2.c does, and usage counts it among the prompt tokens.
//
// # Generation
//
// Temperature (default 1, at most 2; 0 is greedy), top_p (default 1, in (0, 1]) and
// seed (default random) select the sampling of llama2.Sampler; with a seed, the same
// request gives the same answer. Generation ends with finish reason "stop" when the
// model produces an end-of-text token (EOS, or BOS, which TinyStories models put between
// stories) or a stop sequence, whose text is not emitted; and with "length" after
// max_tokens tokens or when the context window is full. A prompt that leaves no room in
// the window is an invalid request; one so long in bytes that it cannot fit even if
// every token were the vocabulary's longest is refused by its length alone, before it
// is tokenized (tokenizing takes about a second per megabyte). Deltas are valid UTF-8: the engine decodes some
// characters a byte per token, and those are held back until complete. Usage counts
// every token generated, including the end-of-text token that ended the answer.
//
// Each generation has its own KV cache, sized to the prompt plus max_tokens (4 × 2 ×
// layers × KV width bytes per position: 1.25 KiB for stories260K); the weights are
// shared and read-only, so generations run concurrently, one CPU each.
package embedded

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/internal/llama2"
)

// Limits on a request's stop sequences: matching costs, per token, up to the square of
// a sequence's length.
const (
	MaxStops     = 16
	MaxStopBytes = 256
)

// Backend serves one llama2.c model. It is safe for concurrent use.
type Backend struct {
	id    string
	model *llama2.Model
	tok   *llama2.Tokenizer
	// longestToken is the most bytes of text one token stands for: a prompt of n
	// bytes is at least n / longestToken tokens.
	longestToken  int
	weightsSHA256 string
	closed        atomic.Bool
}

var _ backend.Backend = (*Backend)(nil)

// New loads the model in dir: one llama2.c checkpoint NAME.bin, whose name without
// ".bin" is the model's id, and its tokenizer, tokenizer.bin or tokN.bin. When dir
// holds a SHA256SUMS file, both files must be listed in it with their sha256, or New
// fails. It also fails, saying which file and why, on a truncated file or one that is
// not in the llama2.c format. Loading reads each file once; the model then takes the
// size of its checkpoint in memory.
func New(dir string) (*Backend, error) {
	return load(dir)
}

// WeightsSHA256 returns the hex sha256 of the checkpoint file: the model's identity
// for attestation.
func (b *Backend) WeightsSHA256() string { return b.weightsSHA256 }

// Models returns the one model b serves.
func (b *Backend) Models(context.Context) ([]backend.Model, error) {
	return []backend.Model{{ID: b.id, OwnedBy: "cocoon", ContextLength: b.model.Config.SeqLen}}, nil
}

// Health returns nil until b is closed.
func (b *Backend) Health(context.Context) error {
	if b.closed.Load() {
		return errClosed
	}
	return nil
}

// Close makes generations in flight fail at their next token, and new ones fail.
func (b *Backend) Close() error {
	b.closed.Store(true)
	return nil
}

var errClosed = backend.Errorf(backend.CodeUnavailable, "the embedded backend is closed")

// Prompt returns the text the model continues for messages, by the template in the
// package documentation.
func Prompt(messages []backend.Message) string {
	parts := make([]string, 0, len(messages))
	for _, m := range messages {
		if m.Content != "" {
			parts = append(parts, m.Content)
		}
	}
	return strings.Join(parts, "\n")
}

// params are a request's checked generation settings.
type params struct {
	temperature, topP float32
	seed              uint64
	stops             []string
}

func (b *Backend) params(req *backend.Request) (params, error) {
	p := params{temperature: 1, topP: 1}
	if req.Model != "" && req.Model != b.id {
		return p, backend.Errorf(backend.CodeInvalidRequest, "model %q is not served here; the embedded backend serves %q", req.Model, b.id)
	}
	if req.MaxTokens < 0 {
		return p, backend.Errorf(backend.CodeInvalidRequest, "max_tokens must not be negative")
	}
	if t := req.Temperature; t != nil {
		if !(*t >= 0 && *t <= 2) {
			return p, backend.Errorf(backend.CodeInvalidRequest, "temperature must be between 0 and 2")
		}
		p.temperature = float32(*t)
	}
	if t := req.TopP; t != nil {
		if !(*t > 0 && *t <= 1) {
			return p, backend.Errorf(backend.CodeInvalidRequest, "top_p must be greater than 0 and at most 1")
		}
		p.topP = float32(*t)
	}
	if req.Seed != nil {
		p.seed = uint64(*req.Seed)
	} else {
		p.seed = rand.Uint64()
	}
	if len(req.Stop) > MaxStops {
		return p, backend.Errorf(backend.CodeInvalidRequest, "at most %d stop sequences are allowed", MaxStops)
	}
	for _, s := range req.Stop {
		if len(s) > MaxStopBytes || !utf8.ValidString(s) {
			return p, backend.Errorf(backend.CodeInvalidRequest, "a stop sequence must be valid UTF-8 of at most %d bytes", MaxStopBytes)
		}
		if s != "" {
			p.stops = append(p.stops, s)
		}
	}
	return p, nil
}

// Generate continues the prompt built from req.Messages (see the package
// documentation), calling emit with each delta. It checks ctx and b's state before
// every token. Costs: one forward pass per prompt and completion token.
func (b *Backend) Generate(ctx context.Context, req *backend.Request, emit func(delta string) error) (backend.Result, error) {
	res := backend.Result{Model: b.id}
	if b.closed.Load() {
		return res, errClosed
	}
	p, err := b.params(req)
	if err != nil {
		return res, err
	}
	prompt := Prompt(req.Messages)
	window := b.model.Config.SeqLen
	if fewest := b.fewestTokens(len(prompt)); fewest >= window {
		return res, backend.Errorf(backend.CodeInvalidRequest,
			"the prompt is %d bytes, at least %d tokens; the model's context window of %d tokens leaves no room for a completion", len(prompt), fewest, window)
	}
	tokens := b.tok.Encode(prompt, true, false)
	res.Usage.PromptTokens = len(tokens)
	if len(tokens) >= window {
		return res, backend.Errorf(backend.CodeInvalidRequest,
			"the prompt is %d tokens; the model's context window of %d tokens leaves no room for a completion", len(tokens), window)
	}
	maxNew := window - len(tokens)
	if req.MaxTokens > 0 && req.MaxTokens < maxNew {
		maxNew = req.MaxTokens
	}
	// The last token generated is never run through the model.
	state := b.model.NewState(len(tokens) + maxNew - 1)
	sampler := llama2.NewSampler(p.temperature, p.topP, p.seed)
	out := &stream{stops: p.stops, emit: emit}

	fail := func(err error) (backend.Result, error) {
		res.FinishReason = "cancelled"
		return res, err
	}
	var logits []float32
	for pos, token := range tokens {
		if err := b.check(ctx); err != nil {
			return fail(err)
		}
		logits = state.Forward(token, pos)
	}
	prev := tokens[len(tokens)-1]
	for pos := len(tokens); ; pos++ {
		next := sampler.Sample(logits)
		res.Usage.CompletionTokens++
		if next == llama2.EOS || next == llama2.BOS {
			res.FinishReason = "stop"
			break
		}
		hit, err := out.write(b.tok.Decode(prev, next))
		if err != nil {
			return fail(err)
		}
		if hit {
			res.FinishReason = "stop"
			return res, nil
		}
		if res.Usage.CompletionTokens == maxNew {
			res.FinishReason = "length"
			break
		}
		if err := b.check(ctx); err != nil {
			return fail(err)
		}
		logits = state.Forward(next, pos)
		prev = next
	}
	if err := out.flush(); err != nil {
		return fail(err)
	}
	return res, nil
}

// fewestTokens is the fewest tokens a prompt of n bytes encodes to: BOS, then the
// prompt with its dummy-prefix space, each token standing for at most longestToken
// bytes of it.
func (b *Backend) fewestTokens(n int) int {
	if n == 0 {
		return 1
	}
	return 1 + (n+1+b.longestToken-1)/b.longestToken
}

// check returns why generation must stop now, if it must.
func (b *Backend) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return errClosed
	}
	return nil
}
